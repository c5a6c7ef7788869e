"""FITS-safe provenance in ``.meta``, with ccdproc's ``add_keyword`` vocabulary."""

import textwrap

from astropy.io import fits
from ccdproc import Keyword

from .flags import MaskFlag

__all__ = ["add_custom_keyword", "add_history_lines", "add_provenance", "record_provenance"]

#: 8-character keywords for the number of pixels per mask reason
COUNT_KEYWORDS = {
    MaskFlag.NONFINITE: "MSKNFIN",
    MaskFlag.OUTSIDE_DATASEC: "MSKDSEC",
    MaskFlag.SATURATED: "MSKSAT",
    MaskFlag.BLEED: "MSKBLEED",
    MaskFlag.EXTERNAL: "MSKEXT",
    MaskFlag.COSMIC_RAY: "MSKCR",
    MaskFlag.HOT: "MSKHOT",
    MaskFlag.LOW_RESPONSE: "MSKLOWR",
    MaskFlag.INPUT: "MSKINPUT",
}


def add_provenance(meta, add_keyword, function, call, counts, *, total):
    """Record a call and its per-reason pixel counts in ``meta`` (in place).

    Parameters
    ----------
    meta : `~astropy.io.fits.Header` or dict
        Metadata of the result.
    add_keyword : bool, str, dict, `~ccdproc.Keyword` or None
        `True` records the call as ``HISTORY``; a str, dict or
        `~ccdproc.Keyword` is recorded instead; `None`/`False` records nothing.
    function : str
        Name of the function that made the result.
    call : str
        Its options as ``name=value, ...``.
    counts : dict
        Pixels per `~stdpipe_ccd.MaskFlag` name.
    total : int
        Pixels masked for any reason.
    """
    if add_keyword is None or add_keyword is False:
        return
    record_provenance(meta, add_keyword, function, [f"{function}({call})"])
    for flag, keyword in COUNT_KEYWORDS.items():
        _set_card(meta, keyword, counts[flag.name], f"pixels masked: {flag.name}")
    _set_card(meta, "MSKTOTAL", total, "pixels masked for any reason")


def record_provenance(meta, add_keyword, function, lines):
    """Record how a result was made in its ``meta`` (in place); the one place that does.

    Parameters
    ----------
    meta : `~astropy.io.fits.Header` or dict
        Metadata of the result.
    add_keyword : bool, str, dict, `~ccdproc.Keyword` or None
        `True` writes ``lines`` as ``HISTORY`` after the package version; a
        str, dict or `~ccdproc.Keyword` is recorded instead (as ccdproc's
        ``add_keyword``); `None`/`False` records nothing.
    function : str
        Name of the function that made the result.
    lines : list of str
        The call and what else it used (inputs, external programs).
    """
    if add_keyword is None or add_keyword is False:
        return
    if add_keyword is True:
        from . import __version__

        add_history_lines(meta, [f"stdpipe_ccd {__version__} {lines[0]}", *lines[1:]])
    else:
        add_custom_keyword(meta, add_keyword, function)


def _set_card(meta, key, value, comment):
    """Set a keyword, with its comment where ``meta`` is a Header."""
    meta[key] = (value, comment) if isinstance(meta, fits.Header) else value


def add_history_lines(meta, lines):
    r"""Append text as HISTORY cards, wrapped to fit FITS cards.

    FITS cards are ASCII: other characters (of a file name, say) are kept as
    backslash escapes, ``\u043d`` for a Cyrillic letter.
    """
    for text in lines:
        text = text.encode("ascii", "backslashreplace").decode("ascii")
        for line in textwrap.wrap(text, 70):
            _add_history(meta, line)


def add_custom_keyword(meta, add_keyword, function):
    """Record a user-chosen provenance entry (str, dict or `~ccdproc.Keyword`)."""
    for key, value in _custom_items(add_keyword, function):
        meta[key] = value


def _custom_items(add_keyword, function):
    """``(key, value)`` pairs of a user-chosen provenance entry."""
    if isinstance(add_keyword, str):
        return [(add_keyword, function)]
    if isinstance(add_keyword, Keyword):
        return [(add_keyword.name, add_keyword.value)]
    if isinstance(add_keyword, dict):
        return list(add_keyword.items())
    kind = type(add_keyword).__name__
    msg = f"add_keyword must be a bool, str, dict or ccdproc.Keyword, not {kind}"
    raise TypeError(msg)


def _add_history(meta, line):
    """Append a HISTORY line to a Header or a plain dict."""
    if hasattr(meta, "add_history"):
        meta.add_history(line)
    else:
        history = meta.get("HISTORY")
        meta["HISTORY"] = [*history, line] if isinstance(history, list) else [line]
