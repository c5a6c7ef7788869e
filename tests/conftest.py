"""Shared fixtures: synthetic frames with truth, made once per session."""

import os
import shutil
import signal

import pytest

from stdpipe_ccd import datasets, make_mask

SHAPE = (1024, 1024)
#: documentation pages whose examples run SWarp
SWARP_PAGES = {"getting_started.rst", "stacking.rst", "migrating_from_stdpipe.rst"}


def pytest_collection_modifyitems(config, items):
    """Skip SWarp tests where the binary is missing, or fail if it is required.

    The doctests of the documentation pages in `SWARP_PAGES` count as SWarp tests.
    """
    for item in items:
        if item.path.name in SWARP_PAGES and item.path.parent.name == "docs":
            item.add_marker(pytest.mark.requires_swarp)
    if shutil.which("SWarp") or shutil.which("swarp"):
        return
    if os.environ.get("STDPIPE_CCD_REQUIRE_SWARP") == "1":
        raise pytest.UsageError("STDPIPE_CCD_REQUIRE_SWARP=1 but no SWarp binary on PATH")
    skip = pytest.mark.skip(reason="SWarp binary not found (install Debian's swarp package)")
    for item in items:
        if "requires_swarp" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def frame():
    """A 1024 x 1024 light frame with every kind of defect, and its truth."""
    return datasets.make_frame(SHAPE, seed=1)


@pytest.fixture(scope="session")
def dark():
    return datasets.make_dark(SHAPE)


@pytest.fixture(scope="session")
def flat():
    return datasets.make_flat(SHAPE)


@pytest.fixture(scope="session")
def masked(frame, dark, flat):
    """``frame`` masked for every reason."""
    return make_mask(frame.ccd, mask_bleed=True, mask_cosmics=True, dark=dark, flat=flat)


@pytest.fixture
def default_stop_signals():
    """Stop signals as an interactive shell leaves them, for the tests of what they do.

    A run under ``nohup`` ignores SIGHUP, one started in the background
    SIGINT, and the processes it starts inherit that. Within the test,
    SIGINT raises `KeyboardInterrupt`; the function returned, passed as
    ``preexec_fn``, gives a child process the default dispositions.
    """

    def restore():
        for number in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
            signal.signal(number, signal.SIG_DFL)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield restore
    signal.signal(signal.SIGINT, previous)
