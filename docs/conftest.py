"""Doctests of pages that run SWarp carry the ``requires_swarp`` marker."""

import pytest

#: pages whose examples run the SWarp binary
SWARP_PAGES = {"getting_started.rst", "stacking.rst", "scaling.rst", "migrating_from_stdpipe.rst"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark the doctests of `SWARP_PAGES`; tests/conftest.py skips or fails them."""
    for item in items:
        if item.path.name in SWARP_PAGES:
            item.add_marker(pytest.mark.requires_swarp)
