"""The valid pixel region from ``DATASEC`` and ``TRIMSEC``, also after trimming.

A trimmed image keeps the sections of the raw frame, in the raw frame's
pixels. IRAF records the trim in ``LTV1``/``LTV2`` (image pixel = raw pixel
+ LTV) and ccdproc's `~ccdproc.trim_image` in its ``trimim`` keyword; the
sections are shifted by either. Without a record, an axis whose section is
as long as the image is taken as trimmed already: it has no pixel to mask.
"""

import re
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
        box = _section_box(keyword, str(value), _trim_offset(meta), shape)
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


def _section_box(keyword, value, offset, shape):
    """Return the 0-based box of one section in the image, clipped to it, or None."""
    box = _parse(keyword, value)
    if offset is not None:
        shifted = tuple((lo - o, hi - o) for (lo, hi), o in zip(box, offset, strict=True))
        if _inside(shifted, shape) or not _inside(box, shape):
            box = shifted
        else:  # the section was already updated to the trimmed image
            _warn(f"{keyword} = {value} fits the image as it is; not shifted by the trim record")
    elif box != ((0, shape[0]), (0, shape[1])):
        # without a record of the trim, an axis as long as the section was trimmed to it
        trimmed = [hi - lo == n and lo != 0 for (lo, hi), n in zip(box, shape, strict=True)]
        if any(trimmed):
            _warn(
                f"{keyword} = {value} is as long as the image along "
                f"{' and '.join(a for a, t in zip('yx', trimmed, strict=True) if t)}, "
                "which looks already trimmed there"
            )
            box = tuple((0, n) if t else b for b, n, t in zip(box, shape, trimmed, strict=True))
    if box == ((0, shape[0]), (0, shape[1])):
        return None

    clipped = tuple((max(lo, 0), min(hi, n)) for (lo, hi), n in zip(box, shape, strict=True))
    if any(lo >= hi for lo, hi in clipped):
        msg = f"{keyword} = {value!r} in .meta does not overlap the image of shape {tuple(shape)}"
        raise ValueError(msg)
    if clipped != box and offset is None:  # a recorded trim may cut into a section
        _warn(f"{keyword} = {value} extends beyond the image of shape {tuple(shape)}; clipped")
    return clipped


def _parse(keyword, value):
    """Return the 0-based, half-open ``((y0, y1), (x0, x1))`` of a FITS section."""
    try:
        slices = slice_from_string(value, fits_convention=True)
        if len(slices) != 2:
            raise ValueError("a 2D section needs two ranges")
        return tuple(_bounds(s) for s in slices)
    except (ValueError, TypeError, IndexError, AttributeError) as err:
        example = "'[1:2048,1:4096]'"
        msg = f"{keyword} = {value!r} in .meta is not a FITS section like {example}: {err}"
        raise ValueError(msg) from err


def _trim_offset(meta):
    """``(dy, dx)`` of the image's first pixel in the raw frame, from a trim record, or None."""
    if "LTV1" in meta or "LTV2" in meta:
        try:
            return tuple(-round(float(meta.get(key, 0))) for key in ("LTV2", "LTV1"))
        except (TypeError, ValueError) as err:
            msg = (
                f"LTV1/LTV2 in .meta must be numbers, not {meta.get('LTV1')!r}/{meta.get('LTV2')!r}"
            )
            raise ValueError(msg) from err
    found = re.search(r"fits_section=(\[[^\]]*\])", str(meta.get("trimim", "")))
    if found is None:
        return None
    (y0, _), (x0, _) = _parse("trimim", found.group(1))
    return y0, x0


def _inside(box, shape):
    """Whether a box lies within an image of ``shape``."""
    return all(0 <= lo < hi <= n for (lo, hi), n in zip(box, shape, strict=True))


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
