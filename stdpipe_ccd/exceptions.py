"""Exception and warning classes of stdpipe_ccd."""

from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["StdpipeCCDError", "StdpipeCCDWarning"]


class StdpipeCCDError(Exception):
    """Base class of the errors raised by stdpipe_ccd itself.

    Bad arguments raise the builtin types (`ValueError`, `TypeError`) or
    `~astropy.units.UnitsError`; this class is for failures of the processing.
    """


class StdpipeCCDWarning(AstropyUserWarning):
    """Warning for a recoverable problem: the run goes on, but check the result."""
