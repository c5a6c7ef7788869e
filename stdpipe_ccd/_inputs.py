"""The inputs of the stacking functions, parsed once into what every back end needs.

Every accepted kind of input (FITS paths, ``(path, hdu)``, `~astropy.nddata.CCDData`,
``(array, Header)`` or ``(array, WCS)`` tuples, lists of them, an
`~ccdproc.ImageFileCollection`) becomes an `Item`. A file is opened once: its
header, and as much of its pixels as the back end asked for, are read then.
"""

import os
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import (
    CCDData,
    InverseVariance,
    StdDevUncertainty,
    VarianceUncertainty,
)
from astropy.wcs import WCS

from ._headers import (
    WCS_STARTS,
    apply_head,
    fits_layout,
    head_blocks,
    header_unit,
    inherit_primary,
    keyword_number,
    pixel_dtype,
)
from ._wcs import celestial_wcs, covering_grid, has_sip, sip_to_tpv
from .exceptions import StdpipeCCDWarning

__all__ = [
    "READ_LEVELS",
    "Item",
    "ccd_from_hdulist",
    "common_unit",
    "companions",
    "flux_scales",
    "image_hdus",
    "parse_inputs",
    "read_file",
    "target_grid",
    "warn_unused",
]

#: how much of a file `parse_inputs` reads: headers only; the finite pixels and the
#: noise of float images; the noise of every image; every image as a CCDData
READ_LEVELS = ("header", "finite", "noise", "pixels")

#: extensions that go with an image rather than being images to stack
COMPANIONS = frozenset(
    {"MASK", "UNCERT", "FLAGS", "EXPMAP", "NIMAGES", "ERR", "DQ", "WHT", "VAR", "WEIGHT", "RMS"}
)
#: the companions this package writes and reads
OWN_COMPANIONS = frozenset({"MASK", "UNCERT", "FLAGS", "EXPMAP", "NIMAGES"})
#: WCS keywords replaced by those of a CCDData's ``.wcs``
_WCS_PREFIXES = ("CTYPE", "CRPIX", "CRVAL", "CDELT", "CUNIT")


class Item:
    """One input image: where it comes from, its header, WCS and unit, and its pixels.

    Attributes
    ----------
    name : str
        How messages name it.
    source : object
        The input as given (tiles parse it again for their pixels).
    path : `pathlib.Path` or None
        The file, for file inputs.
    hdu : int
        Index of the image HDU in the file.
    header : `~astropy.io.fits.Header`
        Its header, with the WCS of ``ccd.wcs`` for in-memory images.
    wcs : `~astropy.wcs.WCS`
        Its celestial WCS.
    shape : tuple of int
    unit : `~astropy.units.Unit` or None
    dtype : `numpy.dtype`
        Of the pixels as read (native byte order).
    extensions : set of str
        Names of the file's other HDUs with data.
    ccd : `~astropy.nddata.CCDData` or None
        The pixels, for in-memory images and files read at level ``"pixels"``
        (or that cannot be given to SWarp as they are).
    finite : numpy.ndarray or None
        Where a scanned float file is finite, when it has NaN or infinite pixels.
    noise : float or None
        Robust standard deviation of a scanned file's pixels, from the lower
        half of their distribution.
    """

    def __init__(self, *, name, source, path=None, hdu=0, ccd=None):
        self.name, self.source, self.path, self.hdu, self.ccd = name, source, path, hdu, ccd
        self.extensions = set()
        self.finite = self.noise = None
        self.head = self.head_path = None
        self._pending = None
        if ccd is not None:
            self._set_memory(ccd)
            self._check()

    def _set_memory(self, ccd):
        if ccd.data.ndim != 2:
            msg = f"input {self.name} must be 2D, not {ccd.data.ndim}D"
            raise ValueError(msg)
        header = fits.Header(ccd.meta) if not isinstance(ccd.meta, fits.Header) else ccd.meta
        header = header.copy()
        if ccd.wcs is not None:
            for key in list(header):
                if key[:5] in _WCS_PREFIXES or key.startswith(WCS_STARTS):
                    del header[key]
            header.update(ccd.wcs.to_header(relax=True))
        self.header, self.shape, self.unit = header, ccd.data.shape, ccd.unit
        self.dtype = np.asarray(ccd.data).dtype.newbyteorder("=")
        self.wcs = celestial_wcs(header, self.name)

    @property
    def gain(self):
        """Gain in e- per unit of the image.

        1 for electrons, else ``GAIN`` (or 1); times ``EXPTIME`` for rates
        (ADU/s, e-/s), whose unit holds 1/EXPTIME of the counts.
        """
        gain = 1.0 if self.unit in (u.electron, u.electron / u.s) else self.header.get("GAIN", 1.0)
        gain = keyword_number(gain, "GAIN", self.name)
        return gain * (self.exptime or 1.0) if self._is_rate else gain

    @property
    def _is_rate(self):
        return self.unit is not None and (
            self.unit.is_equivalent(u.adu / u.s) or self.unit.is_equivalent(u.electron / u.s)
        )

    def _check(self):
        """Refuse keywords the product would need but cannot read."""
        if self._is_rate and not self.exptime:
            msg = f"input {self.name} is in {self.unit} but has no EXPTIME for its gain"
            raise ValueError(msg)
        self.gain  # noqa: B018 (raises on a GAIN that is not a number)
        for key in ("SATURATE", "FLXSCALE"):
            if key in self.header:
                keyword_number(self.header[key], key, self.name)

    @property
    def description(self):
        """Name of the input, with the SCAMP ``.head`` file applied to it, if any."""
        return self.name + (f" with {self.head_path.name}" if self.head_path else "")

    @property
    def exptime(self):
        """``EXPTIME`` in seconds, or `None`."""
        value = self.header.get("EXPTIME")
        return None if value is None else keyword_number(value, "EXPTIME", self.name)

    def swarp_header(self, keywords):
        """Header of the image as SWarp reads it: its WCS (TPV for SIP) and ``keywords``."""
        header = fits.Header()
        header.update(self.tpv_cards() if has_sip(self.wcs) else self.wcs.celestial.to_header())
        for key in keywords:
            if key in self.header:
                header[key] = self.header[key]
        if self.unit == u.electron:
            header["GAIN"] = 1.0
        return header

    def tpv_cards(self):
        """Return the WCS with its SIP distortion as TPV (which SWarp understands)."""
        return sip_to_tpv(self.wcs.celestial, self.shape)

    def _read_hdu(self, hdul, primary):
        """Read this item's header from an open file (its pixels wait for `load`)."""
        hdu = hdul[self.hdu]
        if not hdu.is_image or hdu.header.get("NAXIS") != 2:
            msg = f"HDU {self.hdu} of {self.path} is not a 2D image"
            raise ValueError(msg)
        header = inherit_primary(hdu.header, primary) if self.hdu else hdu.header.copy()
        if self.head is not None:
            apply_head(header, self.head)
        self.header = header
        self.shape = (header["NAXIS2"], header["NAXIS1"])
        self.unit = header_unit(header)
        self.dtype = pixel_dtype(header)
        self.wcs = celestial_wcs(header, self.name)
        self._check()

    def load(self):
        """Read the pixels the back end asked for, from the file opened at parsing.

        Pixels are read one input at a time, as the back end reaches it, and
        the file is closed once its items are read: a call holds the pixels
        of one input, not of all of them. In-memory inputs have nothing to load.
        """
        if self._pending is None:
            return self
        opened, level = self._pending
        self._pending = None
        try:
            hdu = opened.hdul[self.hdu]
            if level == "pixels" or self.hdu != 0 or self.extensions:
                unit = self.unit or u.adu
                self.ccd = ccd_from_hdulist(opened.hdul, self.hdu, self.header, self.wcs, unit)
            elif level == "noise" or (level == "finite" and self.dtype.kind == "f"):
                self.finite, self.noise = _scan(hdu.data)
        except (OSError, TypeError, IndexError, KeyError) as err:
            msg = f"cannot read {self.path}: {err}"
            raise ValueError(msg) from err
        finally:
            opened.release()
        return self

    def release(self):
        """Drop the pixels read from a file (and close it if they were never read)."""
        if self._pending is not None:
            self._pending[0].release()
            self._pending = None
        if self.path is not None:
            self.ccd = self.finite = None


class _OpenFile:
    """A FITS file kept open from parsing until each of its items has read its pixels."""

    def __init__(self, stream, hdul, users):
        self.stream, self.hdul, self.users = stream, hdul, users

    def release(self):
        self.users -= 1
        if self.users <= 0:
            self.hdul.close()
            self.stream.close()


def parse_inputs(input, *, read="header", header_suffix=".head"):  # noqa: A002 (as the fronts)
    """Turn every kind of input into a list of `Item`, opening each file once.

    Parameters
    ----------
    input : path-like, tuple, `~astropy.nddata.CCDData`, list or `~ccdproc.ImageFileCollection`
        The inputs.
    read : {"header", "finite", "noise", "pixels"}, optional
        How much of each file to read; see `READ_LEVELS`.
    header_suffix : str or None, optional
        Suffix of the SCAMP header files applied to file inputs; `None` ignores them.
    """
    items = []
    try:
        for index, entry in enumerate(_entries(input)):
            items += _items(entry, index, read, header_suffix)
    except BaseException:
        for item in items:
            item.release()  # close the files parsed before the bad one
        raise
    return items


def _entries(input):  # noqa: A002
    """List the inputs one by one."""
    from ccdproc import ImageFileCollection

    if isinstance(input, ImageFileCollection):
        files = input.files_filtered(include_path=True)
        if not len(files):
            msg = "the ImageFileCollection has no files (after its filters)"
            raise ValueError(msg)
        return list(files)
    if _is_single(input):
        return [input]
    entries = list(input)
    if not entries:
        msg = "no input images"
        raise ValueError(msg)
    return entries


def _is_single(entry):
    if isinstance(entry, (str, os.PathLike, CCDData)):
        return True
    return (
        isinstance(entry, tuple)
        and len(entry) == 2
        and isinstance(entry[1], (fits.Header, WCS, int, str))
        and not isinstance(entry[0], (tuple, CCDData))
    )


def _items(entry, index, read, header_suffix):
    """Return the items of one input: one per image HDU of a multi-extension file."""
    if isinstance(entry, (str, os.PathLike)):
        return read_file(entry, None, read, header_suffix)
    if isinstance(entry, CCDData):
        return [Item(name=f"CCDData #{index}", source=entry, ccd=entry)]
    if isinstance(entry, tuple) and len(entry) == 2:
        first, second = entry
        if isinstance(first, (str, os.PathLike)) and isinstance(second, (int, str)):
            return read_file(first, second, read, header_suffix)
        if isinstance(second, WCS):
            ccd = CCDData(np.asarray(first), unit=u.adu, wcs=second)
            return [Item(name=f"array #{index}", source=entry, ccd=ccd)]
        if isinstance(second, fits.Header):
            unit = header_unit(second) or u.adu
            ccd = CCDData(np.asarray(first), unit=unit, meta=second.copy())
            return [Item(name=f"array #{index}", source=entry, ccd=ccd)]
    msg = (
        f"input #{index} is a {type(entry).__name__}; expected a FITS path, a (path, hdu) "
        "tuple, a CCDData, or an (array, Header) or (array, WCS) tuple"
    )
    raise TypeError(msg)


def read_file(path, hdu, read, header_suffix=".head"):
    """Open a FITS file once and return an `Item` per image HDU (or for ``hdu``).

    Every 2D image HDU that is not a known companion (mask, uncertainty,
    flags, error, data quality, ...) is an image to stack, so the CCDs of a
    mosaic camera's file each become an item. Companions this package does
    not use are named in a warning. A SCAMP ``.head`` file beside the file
    (``header_suffix``; `None` to ignore it) replaces the header cards it
    holds, one block per image HDU, as SWarp applies it.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"input file {path} does not exist"
        raise FileNotFoundError(msg)
    stream = open(path, "rb")  # noqa: SIM115 (the only open of the file, closed by its items)
    hdul = None
    try:
        if not fits_layout(stream)[1]:
            msg = f"cannot read {path}: the file is truncated (or not FITS)"
            raise ValueError(msg)
        hdul = fits.open(stream)
        images = image_hdus(hdul)
        chosen = images if hdu is None else [_hdu_index(hdul, hdu, path)]
        if not chosen:
            msg = f"{path} has no 2D image"
            raise ValueError(msg)
        warn_unused(hdul, path)
        heads, head_path = head_blocks(path, header_suffix)
        named = hdu is not None or len(chosen) > 1
        items = []
        for index in chosen:
            item = Item(
                name=f"{path}[{index}]" if named else str(path),
                source=(path, index) if named else path,
                path=path.resolve(),
                hdu=index,
            )
            item.extensions = {
                h.name for i, h in enumerate(hdul) if i != index and h.header.get("NAXIS")
            }
            position = images.index(index) if index in images else 0
            if heads and position < len(heads):
                item.head, item.head_path = heads[position], head_path
            item._read_hdu(hdul, hdul[0].header)
            items.append(item)
    except BaseException as err:
        if hdul is not None:
            hdul.close()
        stream.close()
        if isinstance(err, (OSError, TypeError, IndexError, KeyError)):
            msg = f"cannot read {path}: {err}"
            raise ValueError(msg) from err
        raise
    if read == "header":
        hdul.close()
        stream.close()
        return items
    opened = _OpenFile(stream, hdul, len(items))
    for item in items:
        item._pending = (opened, read)
    return items


def ccd_from_hdulist(hdul, index, header, wcs, unit, *, flags=False):
    """Return the image of HDU ``index`` of an open file as a CCDData, with its companions.

    The ``MASK``, ``UNCERT`` and ``FLAGS`` of an image are the extensions of
    those names with its ``EXTVER`` (several CCDs in one file), or the only
    ones of the file; ``UNCERT`` is of the class its ``UTYPE`` names, as
    ``CCDData.write`` writes it.
    """
    parts = companions(hdul, index)
    uncertainty = None
    if "UNCERT" in parts:
        kind = parts["UNCERT"].header.get("UTYPE", "StdDevUncertainty")
        classes = {"InverseVariance": InverseVariance, "VarianceUncertainty": VarianceUncertainty}
        uncertainty = classes.get(kind, StdDevUncertainty)(np.array(parts["UNCERT"].data))
    mask = np.array(parts["MASK"].data, dtype=bool) if "MASK" in parts else None
    ccd = CCDData(
        np.array(hdul[index].data),
        unit=unit,
        meta=header,
        wcs=wcs,
        mask=mask,
        uncertainty=uncertainty,
    )
    if flags and "FLAGS" in parts:
        values = parts["FLAGS"].data
        ccd.flags = values.astype(values.dtype.newbyteorder("="))
    return ccd


def companions(hdul, index):
    """Return the ``MASK``, ``UNCERT`` and ``FLAGS`` HDUs of the image in HDU ``index``."""
    version = hdul[index].header.get("EXTVER")
    found = {}
    for name in ("MASK", "UNCERT", "FLAGS"):
        if version is not None and (name, version) in hdul:
            found[name] = hdul[name, version]
        elif name in hdul and len(image_hdus(hdul)) == 1:
            found[name] = hdul[name]
    return found


def image_hdus(hdul):
    """Return the indices of the 2D image HDUs that hold images to stack (not companions)."""
    return [
        index
        for index, hdu in enumerate(hdul)
        if hdu.is_image and hdu.header.get("NAXIS") == 2 and hdu.name not in COMPANIONS
    ]


def _hdu_index(hdul, hdu, path):
    try:
        return hdul.index_of(hdu)
    except (KeyError, IndexError) as err:
        msg = f"{path} has no HDU {hdu!r}"
        raise ValueError(msg) from err


def warn_unused(hdul, path, stacklevel=5):
    """Warn about companion extensions this package does not use (ERR, DQ, ...)."""
    unused = sorted(
        hdu.name
        for hdu in hdul
        if hdu.header.get("NAXIS") and hdu.name in COMPANIONS and hdu.name not in OWN_COMPANIONS
    )
    if unused:
        warnings.warn(
            f"{path}: extensions {', '.join(unused)} are not used",
            StdpipeCCDWarning,
            stacklevel=stacklevel,
        )


def _scan(data, rows=256):
    """Where the pixels are finite (None when all are) and their robust noise, row block by block.

    The noise is from the lower half of the distribution (stars only add
    light), sampled on every fourth pixel.
    """
    finite = np.empty(data.shape, dtype=bool)
    samples = []
    for start in range(0, data.shape[0], rows):
        block = data[start : start + rows]
        good = np.isfinite(block) if block.dtype.kind == "f" else np.ones(block.shape, bool)
        finite[start : start + rows] = good
        samples.append(block[::4, ::4][good[::4, ::4]])
    sample = np.concatenate(samples).astype(np.float64)
    noise = None
    if sample.size:
        median, low = np.percentile(sample, [50, 15.8655])
        noise = float(median - low) if median > low else None
    return (None if finite.all() else finite), noise


def common_unit(items):
    """Return the one unit of the inputs (ADU when none says), or raise `UnitsError`."""
    units = {item.unit for item in items if item.unit is not None}
    if len(units) > 1:
        msg = f"the inputs have different units: {sorted(map(str, units))}"
        raise u.UnitsError(msg)
    return units.pop() if units else u.adu


def flux_scales(items, *, flux_scale_keyword=None, zeropoint_keyword=None, zeropoint=None):
    """Factor each input is multiplied by before combining, and the common zero point.

    The factor is the header value of ``flux_scale_keyword``, times
    ``10**(0.4 * (zeropoint - ZP_i))`` with ``ZP_i`` the value of
    ``zeropoint_keyword`` (``zeropoint`` defaults to the first input's).
    """
    scales = np.ones(len(items))
    if flux_scale_keyword:
        scales *= _header_values(items, flux_scale_keyword)
    if zeropoint_keyword:
        points = _header_values(items, zeropoint_keyword)
        zeropoint = float(points[0] if zeropoint is None else zeropoint)
        scales *= 10 ** (0.4 * (zeropoint - points))
    elif zeropoint is not None:
        msg = "zeropoint needs zeropoint_keyword, the keyword of each input's zero point"
        raise ValueError(msg)
    if not np.all(np.isfinite(scales) & (scales > 0)):
        msg = f"flux scales must be positive and finite, not {scales.tolist()}"
        raise ValueError(msg)
    return scales, zeropoint


def _header_values(items, keyword):
    values = []
    for item in items:
        if keyword not in item.header:
            msg = f"input {item.name} has no {keyword} keyword"
            raise ValueError(msg)
        values.append(keyword_number(item.header[keyword], keyword, item.name))
    return np.array(values)


def frame_weights(weights, count):
    """Per-frame weight factors as an array of ``count`` positive numbers, or None."""
    if weights is None:
        return None
    weights = np.asarray(weights, dtype=float).ravel()
    if weights.size != count or not np.all(np.isfinite(weights) & (weights > 0)):
        msg = f"weights must be {count} positive numbers, one per input, not {weights.tolist()}"
        raise ValueError(msg)
    return weights


def target_grid(items, *, wcs=None, shape=None, width=None, height=None, header=None):
    """Return the target grid as a header with ``NAXIS1``/``NAXIS2``, TPV instead of SIP."""
    if header is not None:
        target = fits.Header(header).copy()
        if "NAXIS1" not in target or "NAXIS2" not in target:
            msg = "header must have NAXIS1 and NAXIS2 for the target grid"
            raise ValueError(msg)
        shape = (target["NAXIS2"], target["NAXIS1"])
        wcs = celestial_wcs(target, "header")
    elif wcs is not None:
        if shape is None:
            if width is None or height is None:
                msg = "wcs needs shape=(ny, nx), or width and height"
                raise ValueError(msg)
            shape = (int(height), int(width))
        target = None
    else:
        if shape is not None or width is not None or height is not None:
            msg = "shape, width and height need wcs"
            raise ValueError(msg)
        return covering_grid([item.wcs.celestial for item in items], [i.shape for i in items])
    celestial = wcs.celestial
    cards = sip_to_tpv(celestial, shape) if has_sip(celestial) else celestial.to_header()
    result = fits.Header([("NAXIS", 2), ("NAXIS1", int(shape[1])), ("NAXIS2", int(shape[0]))])
    result.update(cards)
    if target is not None:
        for key in ("EQUINOX", "RADESYS"):
            if key in target:
                result[key] = target[key]
    return result
