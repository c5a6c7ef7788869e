"""What FITS headers say: units, pixel types, numbers, and SCAMP ``.head`` files."""

import numpy as np
from astropy import units as u
from astropy.io import fits

__all__ = [
    "INHERITED",
    "apply_head",
    "fits_layout",
    "head_blocks",
    "header_unit",
    "inherit_primary",
    "keyword_number",
    "pixel_dtype",
]

#: keywords an image extension takes from the primary header when it has none
INHERITED = ("BUNIT", "GAIN", "SATURATE", "EXPTIME", "RDNOISE", "READNOISE", "FLXSCALE")

#: WCS keywords a new astrometry replaces
WCS_STARTS = ("CD1_", "CD2_", "PC1_", "PC2_", "A_", "B_", "AP_", "BP_", "PV1_", "PV2_")


def head_blocks(path, suffix):
    """Return the header blocks of a SCAMP ``.head`` file beside ``path`` (one per image HDU)."""
    if not suffix:
        return [], None
    stem = path.name
    for ending in (".fz", ".gz", ".fits", ".fit", ".fts"):
        stem = stem.removesuffix(ending)
    head_path = path.with_name(stem + suffix)
    if not head_path.is_file():
        return [], None
    blocks, cards = [], []
    for line in head_path.read_text(encoding="ascii", errors="replace").splitlines():
        if line[:8].strip() == "END":
            blocks.append(fits.Header.fromstring("\n".join(cards), sep="\n"))
            cards = []
        elif line.strip():
            cards.append(line)
    if cards:
        blocks.append(fits.Header.fromstring("\n".join(cards), sep="\n"))
    return blocks, head_path


def apply_head(header, head):
    """Replace the cards of ``header`` that a ``.head`` block holds.

    A new astrometry drops the old distortion; SCAMP's TAN with PV terms is TPV.
    """
    if any(key.startswith(("CRVAL", "CD1_", "CD2_", "CTYPE")) for key in head):
        for key in list(header):
            if key.startswith(WCS_STARTS) or key in ("A_ORDER", "B_ORDER", "AP_ORDER", "BP_ORDER"):
                del header[key]
    header.update(head)
    if any(key.startswith("PV1_") for key in header):
        for axis, kind in ((1, "RA---TPV"), (2, "DEC--TPV")):
            if str(header.get(f"CTYPE{axis}", "")).endswith("TAN"):
                header[f"CTYPE{axis}"] = kind


def keyword_number(value, key, name):
    """Return a header value as a float, or raise ValueError naming the keyword and input."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = np.nan
    if isinstance(value, bool) or not np.isfinite(number):
        msg = f"input {name}: {key} = {value!r} is not a number"
        raise ValueError(msg)
    return number


def header_unit(header):
    try:
        return u.Unit(header["BUNIT"]) if "BUNIT" in header else None
    except ValueError:
        return None


def pixel_dtype(header):
    """Return the dtype astropy gives the pixels: scaled integers become floats or unsigned."""
    bitpix = header["BITPIX"]
    if bitpix < 0:
        return np.dtype(f"f{-bitpix // 8}")
    bzero, bscale = header.get("BZERO", 0), header.get("BSCALE", 1)
    if bscale == 1 and bzero == 2 ** (bitpix - 1) and bitpix > 8:
        return np.dtype(f"u{bitpix // 8}")
    if bscale != 1 or bzero != 0:
        return np.dtype(np.float32 if bitpix <= 16 else np.float64)
    return np.dtype(np.uint8 if bitpix == 8 else f"i{bitpix // 8}")


def fits_layout(stream):
    """Read the headers of an open FITS file; return them and whether its data are all there.

    Each header is read in turn and the data after it skipped by its size
    (``BITPIX``, ``NAXISn``, ``PCOUNT``, ``GCOUNT``), so a truncated file is
    told without astropy's warning (whose filters are process-wide, unsafe
    to change from threads). The stream is left at its start.
    """
    stream.seek(0, 2)
    size = stream.tell()
    stream.seek(0)
    headers, position = [], 0
    while position < size:
        try:
            header = fits.Header.fromfile(stream)
        except (OSError, ValueError, EOFError):
            break
        headers.append(header)
        axes = [header.get(f"NAXIS{i}", 0) for i in range(1, header.get("NAXIS", 0) + 1)]
        count = int(np.prod(axes)) if axes else 0
        data = abs(header.get("BITPIX", 8)) // 8 * header.get("GCOUNT", 1)
        data *= header.get("PCOUNT", 0) + count
        position = stream.tell() + -(-data // 2880) * 2880
        stream.seek(min(position, size))
    stream.seek(0)
    return headers, bool(headers) and position <= size


def inherit_primary(header, primary):
    """Return a copy of an extension's header with the `INHERITED` keywords it lacks.

    Instruments write gain, exposure time and the like once, in the primary header.
    """
    merged = header.copy()
    for key in INHERITED:
        if key not in merged and key in primary:
            merged[key] = primary[key]
    return merged
