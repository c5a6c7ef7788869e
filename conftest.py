"""SWarp tests (marked ``requires_swarp``) skip where the binary is missing, or fail."""

import os
import shutil

import pytest


def pytest_collection_modifyitems(config, items):
    """Skip SWarp tests where the binary is missing, or fail if it is required."""
    if shutil.which("SWarp") or shutil.which("swarp"):
        return
    if os.environ.get("STDPIPE_CCD_REQUIRE_SWARP") == "1":
        raise pytest.UsageError("STDPIPE_CCD_REQUIRE_SWARP=1 but no SWarp binary on PATH")
    skip = pytest.mark.skip(reason="SWarp binary not found (install Debian's swarp package)")
    for item in items:
        if "requires_swarp" in item.keywords:
            item.add_marker(skip)
