"""Exception and warning classes of stdpipe_ccd."""

from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["StdpipeCCDError", "StdpipeCCDWarning", "SwarpError", "SwarpNotFoundError"]


class StdpipeCCDError(Exception):
    """Base class of the errors raised by stdpipe_ccd itself.

    Bad arguments raise the builtin types (`ValueError`, `TypeError`) or
    `~astropy.units.UnitsError`; this class is for failures of the processing.
    """


class StdpipeCCDWarning(AstropyUserWarning):
    """Warning for a recoverable problem: the run goes on, but check the result."""


class SwarpError(StdpipeCCDError, RuntimeError):
    """SWarp failed, or its result cannot be trusted.

    Attributes
    ----------
    command : list of str or None
        The command line that was run.
    returncode : int or None
        Its exit code.
    output_tail : str
        The last lines of what SWarp printed.
    """

    def __init__(self, message, *, command=None, returncode=None, output_tail=""):
        super().__init__(message)
        self.command = command
        self.returncode = returncode
        self.output_tail = output_tail


class SwarpNotFoundError(SwarpError):
    """No SWarp binary was found."""
