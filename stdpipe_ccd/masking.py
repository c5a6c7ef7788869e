"""Masking of CCD frames: `make_mask` and a private helper per reason (cosmic rays apart)."""

import mmap
import numbers
import re
import warnings

import numpy as np
from astropy import log
from astropy import units as u
from astropy.nddata import CCDData, VarianceUncertainty
from astropy.stats import mad_std

from . import _cosmics
from ._bleed import flag_bleed_trails
from ._cosmics import CosmicRayTuning
from ._provenance import add_provenance
from ._sections import valid_region
from .exceptions import StdpipeCCDWarning
from .flags import FLAGS_DTYPE, MaskFlag

__all__ = ["make_mask"]


def make_mask(
    ccd,
    *,
    saturation=None,
    mask_bleed=False,
    external_mask=None,
    mask_cosmics=False,
    gain=None,
    readnoise=None,
    cosmics_options=None,
    cosmics_tuning=None,
    dark=None,
    hot_threshold=10.0,
    flat=None,
    flat_threshold=0.5,
    add_keyword=True,
):
    """Mask the pixels of a CCD frame that must not be used, and say why.

    Parameters
    ----------
    ccd : `~astropy.nddata.CCDData`
        The frame, 2D. It is not modified. Its ``uncertainty``, if any,
        raises the cosmic-ray noise model wherever it is higher (a coadd's
        noise where fewer frames cover it).
    saturation : float, `~astropy.units.Quantity`, bool or None, optional
        Saturation level; pixels at or above it are masked. `None` takes
        ``SATURATE`` from ``ccd.meta`` when it is there; a number is in the
        unit of the image; a `~astropy.units.Quantity` is converted to it;
        `True` estimates it as ``median + 0.95 (max - median)``; `False` turns
        saturation masking off. Default is `None`.
    mask_bleed : bool, optional
        Mask bleeding-charge trails: saturated pixels that extend a saturated
        star along its columns beyond its round core, the partly filled pixel
        past each saturated run, and their continuation along those columns
        while it stands 5 robust sigma of the sky (and 10 %) above the star's
        own light at the same distance, or holds 90 % of the level (a trail's
        charge falls below full well towards its tips, and a flat moves
        saturated pixels below the level). Needs a saturation level.
        Default is `False`.
    external_mask : array-like, optional
        Boolean or integer array of the image shape; non-zero pixels are
        masked as `~stdpipe_ccd.MaskFlag.EXTERNAL`.
    mask_cosmics : bool or callable, optional
        `True` detects cosmic rays with LACosmic [1]_ through
        `astroscrappy.detect_cosmics`, on the pixels not masked for another
        reason, then drops the cores of stars it flagged and completes the
        rays it found in part (see `~stdpipe_ccd.CosmicRayTuning`). With a
        gain, the noise model is LACosmic's own (Poisson noise of the data
        plus read noise, shaped by the flat when one is given), so the
        structure of galaxies is never taken for noise; a subtracted sky is
        noticed and its noise added back. A callable is your own detector:
        it is called with the data as a float `~numpy.ndarray` and returns a
        boolean image of the rays. Default is `False`.
    gain : float or `~astropy.units.Quantity`, optional
        Gain in e-/ADU for the cosmic-ray noise model; `None` reads ``GAIN``
        from ``ccd.meta``. Without either, the sky's noise is measured in
        boxes and the sources' goes through the gain the sky's level and
        noise imply, with a warning. Ignored (taken as 1) when the image is
        in electrons.
    readnoise : float or `~astropy.units.Quantity`, optional
        Read noise in electrons: the floor of the noise model; `None` reads
        ``RDNOISE``, ``READNOIS`` or ``READNOISE`` from ``ccd.meta``.
        Without any, the sky's measured variance beyond its Poisson noise.
    cosmics_options : dict, optional
        Further options for `astroscrappy.detect_cosmics` (``sigclip``,
        ``objlim``, ...). A name it does not know raises `TypeError`.
    cosmics_tuning : `~stdpipe_ccd.CosmicRayTuning`, optional
        Switches and thresholds of the steps after LACosmic. Default is
        ``CosmicRayTuning()``.
    dark : `~astropy.nddata.CCDData` or array-like, optional
        Master dark of the image shape. Pixels above its median by more than
        ``hot_threshold`` times its MAD standard deviation are masked as hot.
    hot_threshold : float, optional
        Threshold for hot pixels, in robust standard deviations. Default is 10.
    flat : `~astropy.nddata.CCDData` or array-like, optional
        Master flat of the image shape. Pixels whose response is below
        ``flat_threshold`` times its median, or not finite, are masked as low
        response; the flat also shapes the cosmic-ray noise model.
    flat_threshold : float, optional
        Relative response below which a pixel is masked. Default is 0.5.
    add_keyword : bool, str, dict or `~ccdproc.Keyword`, optional
        Provenance in ``.meta``, in the ccdproc manner: `True` records the call
        (``HISTORY`` cards) and the number of pixels per reason (``MSK*``
        keywords); a str, dict or `~ccdproc.Keyword` is recorded instead of the
        call; `None` or `False` adds nothing. Default is `True`.

    Returns
    -------
    masked : `~astropy.nddata.CCDData`
        A new frame: ``.data`` is a read-only view of the input data,
        ``.mask`` is `True` for excluded pixels (the input's own mask included),
        ``.flags`` is a ``uint16`` image of `~stdpipe_ccd.MaskFlag` bits that
        says why, with ``mask == (flags != 0)``, and ``.meta`` is a copy of the
        input header with the provenance.

    Raises
    ------
    ValueError
        The data are not 2D; a mask, dark or flat has another shape; a section
        in ``.meta`` is malformed; the saturation level is not positive and
        finite, or is missing while ``mask_bleed`` needs it; with
        ``mask_cosmics=True``, a side of the frame is under 4 pixels
        (astroscrappy writes outside the memory of such frames).
    TypeError
        ``cosmics_options`` names an option astroscrappy does not have;
        ``cosmics_tuning`` is not a `~stdpipe_ccd.CosmicRayTuning`; a
        ``mask_cosmics`` callable returns no boolean image of the data's shape.
    astropy.units.UnitsError
        A quantity cannot be converted to the unit it needs.

    Notes
    -----
    The ``.data`` of the result shares memory with the input (it is a
    read-only view, so neither can be changed through the other by
    accident); use ``masked.data.copy()`` for an array of your own.

    References
    ----------
    .. [1] van Dokkum, P. G. 2001, PASP, 113, 1420, "Cosmic-Ray Rejection by
       Laplacian Edge Detection"

    Examples
    --------
    >>> from stdpipe_ccd import datasets, make_mask, MaskFlag
    >>> frame = datasets.make_frame((256, 256), seed=1)
    >>> masked = make_mask(frame.ccd, mask_bleed=True)
    >>> masked.meta["MSKDSEC"]  # pixels outside DATASEC: the 32-column overscan
    8192
    >>> bool((masked.mask == (masked.flags != 0)).all())
    True
    """
    data = _check_ccd(ccd)
    for name, value in (("hot_threshold", hot_threshold), ("flat_threshold", flat_threshold)):
        _check_positive(name, value)
    if mask_cosmics is True:  # options are checked before any work
        _cosmics.check_shape(data.shape)
        _cosmics.check_options(cosmics_options)
        if cosmics_tuning is not None and not isinstance(cosmics_tuning, CosmicRayTuning):
            msg = f"cosmics_tuning must be a CosmicRayTuning, not {type(cosmics_tuning).__name__}"
            raise TypeError(msg)
    image = _FlagImage(data.shape)

    level = _saturation_level(ccd, saturation)
    _mask_nonfinite_and_saturated(data, level, image)
    _mask_outside_datasec(ccd.meta, image)
    if mask_bleed:
        if level is None:
            msg = "mask_bleed=True needs a saturation level: pass saturation= or set SATURATE"
            raise ValueError(msg)
        flag_bleed_trails(data, level, image)
    if external_mask is not None:
        image.add(MaskFlag.EXTERNAL, _same_shape(external_mask, data.shape, "external_mask") != 0)
    if ccd.mask is not None:
        image.add(MaskFlag.INPUT, _same_shape(ccd.mask, data.shape, "ccd.mask") != 0)
    if dark is not None:
        _mask_hot(_same_shape(dark, data.shape, "dark"), hot_threshold, image)
    response = None
    if flat is not None:
        response = _mask_low_response(_same_shape(flat, data.shape, "flat"), flat_threshold, image)
    if callable(mask_cosmics):
        image.add(MaskFlag.COSMIC_RAY, _own_detector(mask_cosmics, _as_float(data)) & ~image.mask)
    elif mask_cosmics:
        gain, readnoise, gain_known = _gain_readnoise(ccd, gain, readnoise)
        cosmics = _cosmics.detect(
            _as_float(data),
            image.mask,
            gain=gain,
            readnoise=readnoise,
            gain_known=gain_known,
            response=response,
            saturation=level,
            options=cosmics_options,
            tuning=cosmics_tuning,
            uncertainty=_uncertainty_variance(ccd),
        )
        image.add(MaskFlag.COSMIC_RAY, cosmics)

    view = data.view()
    view.flags.writeable = False
    result = CCDData(
        view,
        unit=ccd.unit,
        meta=ccd.meta.copy(),
        wcs=ccd.wcs,
        uncertainty=_own_uncertainty(ccd.uncertainty),
        mask=image.mask,
        flags=image.flags,
        psf=getattr(ccd, "psf", None),
    )
    total = image.total
    log.debug(
        "masked %d pixels: %s", total, ", ".join(f"{k} {v}" for k, v in image.counts.items() if v)
    )
    call = _describe_call(
        saturation=level,
        mask_bleed=mask_bleed,
        external_mask=external_mask is not None,
        mask_cosmics=getattr(mask_cosmics, "__name__", mask_cosmics),
        dark=dark is not None,
        hot_threshold=hot_threshold,
        flat=flat is not None,
        flat_threshold=flat_threshold,
    )
    add_provenance(result.meta, add_keyword, "make_mask", call, image.counts, total=total)
    return result


class _FlagImage:
    """The flags, the mask and the pixel count per reason, kept in step as reasons are added."""

    def __init__(self, shape):
        self.flags = np.zeros(shape, dtype=FLAGS_DTYPE)
        # one write per memory page, in order: the fresh pages of the flags are
        # then mapped by one fault each, not a read fault and then a write fault
        self.flags.ravel()[:: mmap.PAGESIZE // FLAGS_DTYPE.itemsize] = 0
        self.mask = np.zeros(shape, dtype=bool)
        self.counts = dict.fromkeys((flag.name for flag in MaskFlag), 0)
        # pixels masked for any reason, kept while that is cheap; None: count at the end
        self._total = 0

    def add(self, flag, where):
        """Flag the pixels where the boolean image ``where`` is True."""
        np.bitwise_or(self.flags, FLAGS_DTYPE.type(flag), out=self.flags, where=where)
        self.mask |= where
        self.counts[flag.name] += int(np.count_nonzero(where))
        self._total = None

    def add_at(self, flag, index):
        """Flag the pixels at flat ``index`` (each once)."""
        if self._total is not None:
            self._total += len(index) - int(np.count_nonzero(self.mask.ravel()[index]))
        self.flags.ravel()[index] |= FLAGS_DTYPE.type(flag)
        self.mask.ravel()[index] = True
        self.counts[flag.name] += len(index)

    def add_region(self, flag, part):
        """Flag every pixel of the slice ``part``."""
        region = self.mask[part]
        if self._total is not None:
            self._total += region.size - int(np.count_nonzero(region))
        self.flags[part] |= FLAGS_DTYPE.type(flag)
        region[...] = True
        self.counts[flag.name] += region.size

    def has(self, flag):
        """Boolean image of the pixels that carry ``flag``."""
        return (self.flags & flag) != 0

    @property
    def total(self):
        """Pixels masked for any reason."""
        if self._total is None:
            self._total = int(np.count_nonzero(self.mask))
        return self._total


# --- checks -----------------------------------------------------------------


def _check_ccd(ccd):
    """Return the data of ``ccd`` as a native-endian array, checking that it is 2D."""
    if not isinstance(ccd, CCDData):
        msg = f"ccd must be an astropy.nddata.CCDData, not {type(ccd).__name__}"
        raise TypeError(msg)
    data = np.asarray(ccd.data)
    if data.ndim != 2:
        msg = f"ccd.data must be 2D, not {data.ndim}D with shape {data.shape}"
        raise ValueError(msg)
    if data.dtype.kind not in "biuf":
        msg = f"ccd.data must hold real numbers, not {data.dtype}"
        raise TypeError(msg)
    if not data.dtype.isnative:
        # FITS data are big-endian; numpy and astroscrappy want native order
        data = data.astype(data.dtype.newbyteorder("="))
    return data


def _check_positive(name, value):
    """Raise unless ``value`` is a positive, finite number."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        msg = f"{name} must be a number, not {value!r}"
        raise TypeError(msg)
    if not (np.isfinite(value) and value > 0):
        msg = f"{name} must be positive and finite, not {value}"
        raise ValueError(msg)


def _uncertainty_variance(ccd):
    """Return the variance ``ccd.uncertainty`` holds, in the data's unit squared (or None)."""
    if ccd.uncertainty is None:
        return None
    try:
        with np.errstate(divide="ignore", invalid="ignore"):  # inverse variances of 0
            variance = ccd.uncertainty.represent_as(VarianceUncertainty)
        array = variance.array
        if variance.unit is not None and ccd.unit is not None:
            array = array * variance.unit.to(ccd.unit**2)
    except (TypeError, ValueError, u.UnitsError) as err:
        log.debug("ccd.uncertainty not used for the cosmic-ray noise model: %s", err)
        return None
    return np.asarray(array, dtype=np.float32)


def _own_uncertainty(uncertainty):
    """Return a copy of ``uncertainty``: the result shares no writable array with the input."""
    if uncertainty is None:
        return None
    return type(uncertainty)(np.array(uncertainty.array, copy=True), unit=uncertainty.unit)


def _own_detector(detector, data):
    """Call a user's cosmic-ray detector and check that it returns a boolean image."""
    found = np.asarray(detector(data.copy()))
    if found.shape != data.shape or found.dtype.kind not in "bui":
        msg = (
            f"the mask_cosmics callable must return a boolean image of shape {data.shape}, "
            f"not {found.dtype} of shape {found.shape}"
        )
        raise TypeError(msg)
    return found != 0


def _as_float(data):
    """Return ``data`` in floating point: integers and float16 become float32."""
    if data.dtype.kind == "f" and data.dtype.itemsize >= 4:
        return data
    return data.astype(np.float32)


def _same_shape(item, shape, name):
    """Return ``item`` (array, NDData) as an array, checking its type and shape."""
    array = np.asarray(getattr(item, "data", item))
    if array.dtype.kind not in "biuf":
        msg = f"{name} must be an array of numbers or booleans, not {array.dtype}"
        raise TypeError(msg)
    if array.shape != tuple(shape):
        msg = f"{name} has shape {array.shape}, but the image has shape {tuple(shape)}"
        raise ValueError(msg)
    return array


def _quantity_value(value, unit, name):
    """Return ``value`` in ``unit``; bare numbers are taken to be in ``unit`` already."""
    if isinstance(value, u.Quantity):
        try:
            return float(value.to_value(unit))
        except u.UnitConversionError as err:
            msg = f"{name}={value} cannot be converted to {unit}"
            raise u.UnitsError(msg) from err
    return float(value)


# --- the reasons --------------------------------------------------------------

#: pixels per block in `_mask_nonfinite_and_saturated`: small enough (2 MB of
#: float32) to stay in the CPU cache while two tests run over it
BLOCK_PIXELS = 1 << 19


def _mask_nonfinite_and_saturated(data, level, image):
    """Flag NaN/inf pixels and pixels at or above ``level``.

    One test, ``not |value| < level``, catches NaN, both infinities and
    saturation; the few pixels that fail it are then classified (very
    negative values get no flag). The test runs on blocks of rows that stay
    in the CPU cache. A non-finite pixel is NONFINITE only: +inf is no
    saturated star (a flat with zeros makes it), so it seeds no bleed trail.
    """
    if data.dtype.kind != "f":
        if level is not None:
            image.add(MaskFlag.SATURATED, data >= level)
        return
    top = np.inf if level is None else level
    index = _failing(data, top)
    values = data[np.divmod(index, data.shape[1])]
    finite = np.isfinite(values)
    image.add_at(MaskFlag.NONFINITE, index[~finite])
    if level is not None:
        image.add_at(MaskFlag.SATURATED, index[finite & (values >= level)])


def _failing(data, top):
    """Flat indices of the pixels of ``data`` (2D, float) that fail ``|value| < top``."""
    ncols = data.shape[1]
    rows = max(BLOCK_PIXELS // max(ncols, 1), 1)
    magnitude = np.empty((rows, ncols), dtype=data.dtype)
    good = np.empty((rows, ncols), dtype=bool)
    found = [np.zeros(0, dtype=np.intp)]
    for start in range(0, data.shape[0], rows):
        block = data[start : start + rows]
        size = block.shape[0]
        np.abs(block, out=magnitude[:size])
        np.less(magnitude[:size], top, out=good[:size])
        found.append(_false_at(good[:size].ravel()) + start * ncols)
    return np.concatenate(found)


_ALL_TRUE = np.frombuffer(np.ones(8, dtype=bool).tobytes(), dtype=np.uint64)[0]


def _false_at(good):
    """Flat indices of the few False values of a contiguous boolean array.

    The array is scanned as 64-bit words of 8 booleans, 8 times fewer
    elements than `numpy.flatnonzero` would visit.
    """
    if good.size % 8:
        return np.flatnonzero(~good)
    words = np.flatnonzero(good.view(np.uint64) != _ALL_TRUE)
    where, within = np.nonzero(~good.reshape(-1, 8)[words])
    return words[where] * 8 + within


def _mask_outside_datasec(meta, image):
    region = valid_region(meta, image.flags.shape)
    if region is None:
        return
    (y0, y1), (x0, x1) = region
    for part in (np.s_[:y0], np.s_[y1:], np.s_[y0:y1, :x0], np.s_[y0:y1, x1:]):
        image.add_region(MaskFlag.OUTSIDE_DATASEC, part)


def _saturation_level(ccd, saturation):
    """Return the saturation level in the image unit, or None for no saturation masking."""
    if saturation is False:
        return None
    if saturation is None:
        if "SATURATE" not in ccd.meta:
            return None
        level = _header_saturation(ccd)
        name = "SATURATE in .meta"
    elif saturation is True:
        finite = ccd.data[np.isfinite(ccd.data)]
        if not finite.size:
            msg = "saturation=True cannot estimate a level: the image has no finite pixel"
            raise ValueError(msg)
        median = np.median(finite)
        level = float(median + 0.95 * (finite.max() - median))
        log.debug("estimated saturation level %.1f %s", level, ccd.unit)
        name = "estimated saturation"
    else:
        level = _quantity_value(saturation, ccd.unit, "saturation")
        name = "saturation"
    if not (np.isfinite(level) and level > 0):
        msg = f"{name} must be positive and finite, not {level}"
        raise ValueError(msg)
    return level


def _header_saturation(ccd):
    """``SATURATE`` in the image unit: in ADU on an image that ccdproc put in electrons.

    ccdproc's `~ccdproc.gain_correct` leaves ``SATURATE`` in ADU and records
    the gain it applied (``gaincor``); the level is converted with it, or
    with ``GAIN`` when the record holds a keyword instead of a number.
    """
    value = ccd.meta["SATURATE"]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, u.Quantity)):
        msg = f"SATURATE = {value!r} in .meta is not a number"
        raise ValueError(msg)
    level = _quantity_value(value, ccd.unit, "SATURATE")
    record = str(ccd.meta.get("gaincor", ""))
    if ccd.unit != u.electron or not isinstance(value, numbers.Real) or not record:
        return level
    found = re.search(r"gain=([-+0-9.eE]+) electron / adu", record)
    gain = (
        float(found.group(1))
        if found
        else _quantity_value(ccd.meta.get("GAIN", 1.0), u.electron / u.adu, "GAIN")
    )
    log.debug(
        "SATURATE = %s ADU converted to %s e- with the gain %s e-/ADU that gain_correct applied",
        value,
        level * gain,
        gain,
    )
    return level * gain


def _mask_hot(dark, threshold, image):
    dark = np.asarray(dark, dtype=np.float32)
    finite = dark[np.isfinite(dark)]
    if not finite.size:
        msg = "dark has no finite pixel"
        raise ValueError(msg)
    median = np.median(finite)
    spread = mad_std(finite)
    image.add(MaskFlag.HOT, dark > median + threshold * spread)


def _mask_low_response(flat, threshold, image):
    """Flag low-response pixels; return the flat normalised to its median."""
    flat = np.asarray(flat, dtype=np.float32)
    lit = flat[np.isfinite(flat) & (flat > 0)]
    if not lit.size:
        msg = "flat has no positive finite pixel"
        raise ValueError(msg)
    response = flat / np.median(lit)
    with np.errstate(invalid="ignore"):
        image.add(MaskFlag.LOW_RESPONSE, ~(response >= threshold))
    return response


#: where ``.meta`` may hold the read noise (e-)
_READNOISE_KEYWORDS = ("RDNOISE", "READNOIS", "READNOISE")


def _gain_readnoise(ccd, gain, readnoise):
    """Return gain (e-/ADU), read noise (e-, None if unknown) and whether the gain is known."""
    in_electrons = ccd.unit == u.electron
    if gain is None:
        gain = ccd.meta.get("GAIN")
    known = gain is not None or in_electrons
    if not known:
        warnings.warn(
            "no gain given and no GAIN in .meta; the cosmic-ray noise model measures the sky's "
            "noise in boxes and takes the sources' through the gain the sky's level and noise "
            "imply (1 e-/ADU where the sky is near zero)",
            StdpipeCCDWarning,
            stacklevel=3,
        )
        gain = 1.0
    if in_electrons:
        if gain is not None and _quantity_value(gain, u.electron / u.adu, "gain") != 1:
            warnings.warn(
                "the image is in electrons, so gain is taken as 1 for the cosmic-ray noise model",
                StdpipeCCDWarning,
                stacklevel=3,
            )
        gain = 1.0
    gain = _quantity_value(gain, u.electron / u.adu, "gain")
    if readnoise is None:
        keyword = next((k for k in _READNOISE_KEYWORDS if k in ccd.meta), None)
        readnoise = None if keyword is None else ccd.meta[keyword]
    if readnoise is not None:  # else measured on the sky (`_cosmics.frame.sky_readnoise`)
        readnoise = _quantity_value(readnoise, u.electron, "readnoise")
    if not (np.isfinite(gain) and gain > 0):
        msg = f"gain must be positive and finite, not {gain}"
        raise ValueError(msg)
    return gain, readnoise, known


def _describe_call(**params):
    """Return the options of a call as ``name=value`` text for the provenance."""
    return ", ".join(f"{name}={value}" for name, value in params.items())
