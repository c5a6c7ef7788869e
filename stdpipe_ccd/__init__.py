"""STDPipe pre-processing for `astropy.nddata.CCDData`: masking, reprojection and stacking."""

try:
    from ._version import version as __version__
except ImportError:  # not installed
    __version__ = "unknown"

from . import datasets, io, validation
from ._conf import Conf, conf
from ._cosmics import CosmicRayTuning
from .coadd import coadd
from .collection import mask_collection
from .exceptions import (
    StdpipeCCDError,
    StdpipeCCDWarning,
    SwarpError,
    SwarpNotFoundError,
)
from .flags import MaskFlag
from .masking import make_mask
from .swarp import find_swarp, reproject_swarp, resample_swarp

__all__ = [
    "Conf",
    "CosmicRayTuning",
    "MaskFlag",
    "StdpipeCCDError",
    "StdpipeCCDWarning",
    "SwarpError",
    "SwarpNotFoundError",
    "__version__",
    "coadd",
    "conf",
    "datasets",
    "find_swarp",
    "io",
    "make_mask",
    "mask_collection",
    "reproject_swarp",
    "resample_swarp",
    "validation",
]
