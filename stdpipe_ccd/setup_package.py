"""Compiled modules of the package, collected by extension-helpers at build time."""

import os

from extension_helpers import get_compiler
from setuptools import Extension

HERE = os.path.relpath(os.path.dirname(__file__))


def get_extensions():
    """Return the one-pass pixel scan of `stdpipe_ccd.make_mask` (numpy does it where missing)."""
    # -O3: the test of a block of pixels is vectorised at -O3, not at -O2
    options = [] if get_compiler() == "msvc" else ["-O3"]
    return [
        Extension(
            "stdpipe_ccd._scan",
            [os.path.join(HERE, "_scan.c")],
            extra_compile_args=options,
            optional=True,
        )
    ]
