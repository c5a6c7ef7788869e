"""STDPipe pre-processing for `astropy.nddata.CCDData`: masking, reprojection and stacking."""

try:
    from ._version import version as __version__
except ImportError:  # not installed
    __version__ = "unknown"

from astropy import config as _config


class Conf(_config.ConfigNamespace):
    """Configuration parameters of `stdpipe_ccd`."""

    swarp_path = _config.ConfigItem(
        "", "Path of the SWarp binary; empty means: search the PATH for 'swarp' and 'SWarp'."
    )
    nthreads = _config.ConfigItem(0, "Threads SWarp may use; 0 means all cores.", cfgtype="integer")
    tmpdir = _config.ConfigItem(
        "", "Directory for SWarp's temporary files; empty means the system default."
    )


conf = Conf()

from . import datasets, io, validation  # noqa: E402
from ._cosmics import CosmicRayTuning  # noqa: E402
from .coadd import coadd  # noqa: E402
from .collection import mask_collection  # noqa: E402
from .exceptions import (  # noqa: E402
    StdpipeCCDError,
    StdpipeCCDWarning,
    SwarpError,
    SwarpNotFoundError,
)
from .flags import MaskFlag  # noqa: E402
from .masking import make_mask  # noqa: E402
from .swarp import find_swarp, reproject_swarp, resample_swarp  # noqa: E402

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
