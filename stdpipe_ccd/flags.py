"""Bit flags that say why a pixel is masked.

The `~stdpipe_ccd.make_mask` result carries them in ``.flags``; every set bit
is one reason, and ``mask == (flags != 0)``.
"""

import enum

import numpy as np
from astropy.nddata import bitmask

__all__ = ["FLAGS_DTYPE", "MaskFlag", "MaskFlagMap", "flag_counts", "trim_with_flags"]

#: dtype of the flag images (room for 16 reasons).
FLAGS_DTYPE = np.dtype(np.uint16)


class MaskFlag(enum.IntFlag):
    """Reasons for masking a pixel, one bit each.

    Examples
    --------
    >>> from stdpipe_ccd import MaskFlag
    >>> MaskFlag.SATURATED | MaskFlag.BLEED
    <MaskFlag.SATURATED|BLEED: 12>
    """

    NONFINITE = 1
    """The pixel value is NaN or infinite."""
    OUTSIDE_DATASEC = 2
    """The pixel lies outside ``DATASEC`` or ``TRIMSEC`` (overscan, prescan)."""
    SATURATED = 4
    """The value is at or above the saturation level."""
    BLEED = 8
    """The pixel belongs to a bleeding-charge trail of a saturated star."""
    EXTERNAL = 16
    """The pixel is set in the user's external mask."""
    COSMIC_RAY = 32
    """The pixel is hit by a cosmic ray (LACosmic)."""
    HOT = 64
    """The pixel is hot in the master dark."""
    LOW_RESPONSE = 128
    """The response in the master flat is low (vignetting, dust, dead pixel)."""
    INPUT = 256
    """The pixel was already masked in the input ``CCDData``."""


#: `astropy.nddata.bitmask` name map of `MaskFlag`, for
#: `~astropy.nddata.bitmask.bitfield_to_boolean_mask` with ``flag_name_map=``.
MaskFlagMap = bitmask.extend_bit_flag_map(
    "MaskFlagMap", **{flag.name: flag.value for flag in MaskFlag}
)


def flag_counts(flags):
    """Count the pixels that carry each flag.

    Parameters
    ----------
    flags : `~numpy.ndarray`
        Integer flag image, as in the ``.flags`` of a masked `~astropy.nddata.CCDData`.

    Returns
    -------
    counts : dict
        Number of pixels per `MaskFlag` name (a pixel with several reasons is
        counted once for each).

    Examples
    --------
    >>> import numpy as np
    >>> from stdpipe_ccd import MaskFlag
    >>> from stdpipe_ccd.flags import flag_counts
    >>> flags = np.array([[0, MaskFlag.HOT], [MaskFlag.HOT | MaskFlag.BLEED, 0]])
    >>> flag_counts(flags)["HOT"]
    2
    """
    flags = np.asarray(flags)
    used = np.bitwise_or.reduce(flags[flags != 0], initial=0)
    return {
        flag.name: int(np.count_nonzero(flags & flag.value)) if used & flag.value else 0
        for flag in MaskFlag
    }


def trim_with_flags(ccd, fits_section=None, *, add_keyword=True):
    """Trim a masked frame with `ccdproc.trim_image`, keeping its ``.flags``.

    Slicing a `~astropy.nddata.CCDData`, `ccdproc.trim_image` and arithmetic
    drop ``.flags`` (astropy carries data, mask, uncertainty and WCS, not
    flags); this trims the flags with the same section.

    Parameters
    ----------
    ccd : `~astropy.nddata.CCDData`
        A frame with ``.flags``, such as the result of `~stdpipe_ccd.make_mask`.
    fits_section : str, optional
        The section to keep, in FITS convention (``"[1:2048, 1:4096]"``), as
        for `ccdproc.trim_image`; `None` keeps the whole frame.
    add_keyword : bool, optional
        Passed to `ccdproc.trim_image` (records the trim in ``.meta``).

    Returns
    -------
    trimmed : `~astropy.nddata.CCDData`
        With ``.flags`` cut like the data, so ``mask == (flags != 0)`` still holds.

    Examples
    --------
    >>> from stdpipe_ccd import datasets, make_mask
    >>> from stdpipe_ccd.flags import trim_with_flags
    >>> masked = make_mask(datasets.make_frame((128, 160), seed=1).ccd)
    >>> trimmed = trim_with_flags(masked, masked.meta["DATASEC"])
    >>> trimmed.shape, trimmed.flags.shape, bool((trimmed.mask == (trimmed.flags != 0)).all())
    ((128, 128), (128, 128), True)
    """
    from ccdproc import trim_image
    from ccdproc.utils.slices import slice_from_string

    trimmed = trim_image(ccd, fits_section=fits_section, add_keyword=add_keyword)
    if ccd.flags is not None:
        section = (
            slice_from_string(fits_section, fits_convention=True)
            if fits_section
            else (slice(None), slice(None))
        )
        trimmed.flags = np.array(ccd.flags[section])
    return trimmed
