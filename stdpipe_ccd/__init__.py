"""STDPipe pre-processing for `astropy.nddata.CCDData`: masking, reprojection and stacking."""

try:
    from ._version import version as __version__
except ImportError:  # not installed
    __version__ = "unknown"

from . import datasets
from .exceptions import StdpipeCCDError, StdpipeCCDWarning
from .flags import MaskFlag
from .masking import make_mask

__all__ = [
    "MaskFlag",
    "StdpipeCCDError",
    "StdpipeCCDWarning",
    "__version__",
    "datasets",
    "make_mask",
]
