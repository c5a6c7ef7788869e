"""The valid pixel region from ``DATASEC`` and ``TRIMSEC``."""

import warnings

from ccdproc.utils.slices import slice_from_string

from .exceptions import StdpipeCCDWarning

__all__ = ["valid_region"]

SECTION_KEYWORDS = ("DATASEC", "TRIMSEC")


def valid_region(meta, shape):
    """Intersect the sections in ``meta`` into one box of valid pixels.

    Parameters
    ----------
    meta : dict-like
        Header; ``DATASEC`` and ``TRIMSEC`` are read when present.
    shape : tuple of int
        ``(ny, nx)`` of the image.

    Returns
    -------
    region : tuple of (int, int) pairs, or None
        ``((y0, y1), (x0, x1))``, 0-based and half-open, or `None` when no
        section applies.

    Raises
    ------
    ValueError
        A section is malformed or does not overlap the image.
    """
    region = None
    for keyword in SECTION_KEYWORDS:
        value = meta.get(keyword)
        if value is None or not str(value).strip():
            continue
        box = _section_box(keyword, str(value), meta, shape)
        if box is None:
            continue
        if region is not None:
            box = tuple(
                (max(a[0], b[0]), min(a[1], b[1])) for a, b in zip(region, box, strict=True)
            )
        region = box
    if region is not None and any(lo >= hi for lo, hi in region):
        sections = f"{meta.get('DATASEC')}, {meta.get('TRIMSEC')}"
        msg = f"DATASEC and TRIMSEC in .meta do not overlap ({sections})"
        raise ValueError(msg)
    return region


def _section_box(keyword, value, meta, shape):
    """Return the 0-based box of one section, clipped to the image, or None."""
    try:
        slices = slice_from_string(value, fits_convention=True)
        if len(slices) != 2:
            raise ValueError("a 2D section needs two ranges")
        box = tuple(_bounds(s) for s in slices)
    except (ValueError, TypeError, IndexError, AttributeError) as err:
        example = "'[1:2048,1:4096]'"
        msg = f"{keyword} = {value!r} in .meta is not a FITS section like {example}: {err}"
        raise ValueError(msg) from err

    size = tuple(hi - lo for lo, hi in box)
    if size == tuple(shape) and box != ((0, shape[0]), (0, shape[1])):
        _warn(
            f"{keyword} = {value} has the size of the image, which looks already trimmed; ignored"
        )
        return None
    if "LTV1" in meta or "LTV2" in meta:
        _warn(f"LTV1/LTV2 in .meta say the image was trimmed; {keyword} = {value} ignored")
        return None

    clipped = tuple((max(lo, 0), min(hi, n)) for (lo, hi), n in zip(box, shape, strict=True))
    if any(lo >= hi for lo, hi in clipped):
        msg = f"{keyword} = {value!r} in .meta does not overlap the image of shape {tuple(shape)}"
        raise ValueError(msg)
    if clipped != box:
        _warn(f"{keyword} = {value} extends beyond the image of shape {tuple(shape)}; clipped")
    return clipped


def _bounds(item):
    """Turn one slice (either direction) into 0-based half-open bounds."""
    if item.step in (None, 1):
        start = 0 if item.start is None else item.start
        return start, item.stop
    # a reversed FITS range such as 110:11 covers the same pixels as 11:110
    stop = -1 if item.stop is None else item.stop
    return stop + 1, item.start + 1


def _warn(msg):
    warnings.warn(msg, StdpipeCCDWarning, stacklevel=4)
