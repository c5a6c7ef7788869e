"""The settings of `stdpipe_ccd` (``stdpipe_ccd.conf``), apart so any module may import them."""

from astropy import config as _config

__all__ = ["Conf", "conf"]


class Conf(_config.ConfigNamespace):
    """Configuration parameters of `stdpipe_ccd`."""

    # module=: the items belong to the package's section of the configuration file
    swarp_path = _config.ConfigItem(
        "",
        "Path of the SWarp binary; empty means: search the PATH for 'swarp' and 'SWarp'.",
        module="stdpipe_ccd",
    )
    nthreads = _config.ConfigItem(
        0, "Threads SWarp may use; 0 means all cores.", cfgtype="integer", module="stdpipe_ccd"
    )
    tmpdir = _config.ConfigItem(
        "",
        "Directory for SWarp's temporary files; empty means the system default.",
        module="stdpipe_ccd",
    )

    max_output_pixels = _config.ConfigItem(
        2**31,
        "Largest target grid (pixels) a coadd may hold in memory; larger ones need tiles=.",
        cfgtype="integer",
        module="stdpipe_ccd",
    )


conf = Conf()
