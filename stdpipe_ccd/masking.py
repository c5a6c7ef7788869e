"""Masking of CCD frames: `make_mask` and one private helper per reason."""

import inspect
import logging
import warnings

import numpy as np
from astropy import units as u
from astropy.nddata import CCDData
from scipy import ndimage

from ._provenance import add_provenance
from ._sections import valid_region
from ._sky import SkyModel
from .exceptions import StdpipeCCDWarning
from .flags import FLAGS_DTYPE, MaskFlag

__all__ = ["make_mask"]

logger = logging.getLogger(__name__)

#: astroscrappy options that `make_mask` sets itself.
COSMICS_DEFAULTS = {
    "sigclip": 4.5,
    "sigfrac": 0.3,
    "objlim": 5.0,
    "niter": 4,
    "sepmed": True,
    "cleantype": "meanmask",
}
_COSMICS_RESERVED = (
    "indat",
    "inmask",
    "inbkg",
    "invar",
    "gain",
    "readnoise",
    "satlevel",
    "verbose",
)


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
        The frame, 2D. It is not modified.
    saturation : float, `~astropy.units.Quantity`, bool or None, optional
        Saturation level; pixels at or above it are masked. `None` takes
        ``SATURATE`` from ``ccd.meta`` when it is there; a number is in the
        unit of the image; a `~astropy.units.Quantity` is converted to it;
        `True` estimates it as ``median + 0.95 (max - median)``; `False` turns
        saturation masking off. Default is `None`.
    mask_bleed : bool, optional
        Mask bleeding-charge trails: saturated pixels that extend a saturated
        star along its columns beyond its round core, and the partly filled
        pixel at each end of a trail. Needs a saturation level. Default is
        `False`.
    external_mask : array-like, optional
        Boolean or integer array of the image shape; non-zero pixels are
        masked as `~stdpipe_ccd.MaskFlag.EXTERNAL`.
    mask_cosmics : bool, optional
        Detect cosmic rays with LACosmic [1]_ through `astroscrappy.detect_cosmics`.
        The noise model is measured from the frame itself (so it holds whether
        or not the sky was subtracted), weighted by the flat when one is given,
        plus the Poisson noise of the sources. Pixels masked for any other
        reason are excluded from the detection. Default is `False`.
    gain : float or `~astropy.units.Quantity`, optional
        Gain in e-/ADU for the cosmic-ray noise model; `None` reads ``GAIN``
        from ``ccd.meta``, or uses 1 with a warning. Ignored (taken as 1) when
        the image is in electrons.
    readnoise : float or `~astropy.units.Quantity`, optional
        Read noise in electrons: the floor of the noise model; `None` reads
        ``RDNOISE`` or ``READNOISE`` from ``ccd.meta``.
    cosmics_options : dict, optional
        Further options for `astroscrappy.detect_cosmics` (``sigclip``,
        ``objlim``, ...). A name it does not know raises `TypeError`.
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
        finite, or is missing while ``mask_bleed`` needs it.
    TypeError
        ``cosmics_options`` names an option astroscrappy does not have.
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
    image = _FlagImage(data.shape)

    level = _saturation_level(ccd, saturation)
    _mask_nonfinite_and_saturated(data, level, image)
    _mask_outside_datasec(ccd.meta, image)
    if mask_bleed:
        if level is None:
            msg = "mask_bleed=True needs a saturation level: pass saturation= or set SATURATE"
            raise ValueError(msg)
        _mask_bleed(data, image)
    if external_mask is not None:
        image.add(MaskFlag.EXTERNAL, _same_shape(external_mask, data.shape, "external_mask") != 0)
    if ccd.mask is not None:
        image.add(MaskFlag.INPUT, _same_shape(ccd.mask, data.shape, "ccd.mask") != 0)
    if dark is not None:
        _mask_hot(_same_shape(dark, data.shape, "dark"), hot_threshold, image)
    response = None
    if flat is not None:
        response = _mask_low_response(_same_shape(flat, data.shape, "flat"), flat_threshold, image)
    if mask_cosmics:
        gain, readnoise = _gain_readnoise(ccd, gain, readnoise)
        _mask_cosmics(
            data,
            image,
            gain=gain,
            readnoise=readnoise,
            response=response,
            saturation=level,
            options=cosmics_options,
        )

    view = data.view()
    view.flags.writeable = False
    result = CCDData(
        view,
        unit=ccd.unit,
        meta=ccd.meta.copy(),
        wcs=ccd.wcs,
        uncertainty=ccd.uncertainty,
        mask=image.mask,
        flags=image.flags,
        psf=getattr(ccd, "psf", None),
    )
    total = int(np.count_nonzero(image.mask))
    logger.info(
        "masked %d pixels: %s", total, ", ".join(f"{k} {v}" for k, v in image.counts.items() if v)
    )
    call = _describe_call(
        saturation=level,
        mask_bleed=mask_bleed,
        external_mask=external_mask is not None,
        mask_cosmics=mask_cosmics,
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
        self.mask = np.zeros(shape, dtype=bool)
        self.counts = dict.fromkeys((flag.name for flag in MaskFlag), 0)

    def add(self, flag, where):
        """Flag the pixels where the boolean image ``where`` is True."""
        np.bitwise_or(self.flags, FLAGS_DTYPE.type(flag), out=self.flags, where=where)
        self.mask |= where
        self.counts[flag.name] += int(np.count_nonzero(where))

    def add_at(self, flag, rows, cols):
        """Flag the pixels at the given indices (each once)."""
        self.flags[rows, cols] |= FLAGS_DTYPE.type(flag)
        self.mask[rows, cols] = True
        self.counts[flag.name] += len(rows)

    def has(self, flag):
        """Boolean image of the pixels that carry ``flag``."""
        return (self.flags & flag) != 0


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
    if not data.dtype.isnative:
        # FITS data are big-endian; numpy and astroscrappy want native order
        data = data.astype(data.dtype.newbyteorder("="))
    return data


def _same_shape(item, shape, name):
    """Return ``item`` (array, NDData) as an array, checking its shape."""
    array = np.asarray(getattr(item, "data", item))
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

#: pixels per block in `_mask_nonfinite_and_saturated`: small enough (1 MB of
#: float32) to stay in the CPU cache while several tests run over it
BLOCK_PIXELS = 1 << 18


def _mask_nonfinite_and_saturated(data, level, image):
    """Flag NaN/inf pixels and pixels at or above ``level``, block by block.

    One test, ``not |value| < level``, catches NaN, both infinities and
    saturation while a block sits in the CPU cache; the few pixels that fail
    it are then classified one by one (very negative values get no flag).
    It runs first, on a mask that is still all False.
    """
    if data.dtype.kind != "f":
        if level is not None:
            image.add(MaskFlag.SATURATED, data >= level)
        return
    top = np.inf if level is None else level
    rows = max(BLOCK_PIXELS // max(data.shape[1], 1), 1)
    buffer = np.empty((rows, data.shape[1]), dtype=data.dtype)
    good_buffer = np.empty((rows, data.shape[1]), dtype=bool)
    for start in range(0, data.shape[0], rows):
        block = data[start : start + rows]
        size = block.shape[0]
        magnitude = np.abs(block, out=buffer[:size])
        good = np.less(magnitude, top, out=good_buffer[:size])
        if good.all():
            continue  # the mask is still all False here: nothing to write
        index = _false_at(good.ravel())
        values = block.ravel()[index]
        nonfinite = ~np.isfinite(values)
        saturated = values >= level if level is not None else np.zeros(index.size, dtype=bool)
        code = np.where(nonfinite, MaskFlag.NONFINITE, 0) | np.where(
            saturated, MaskFlag.SATURATED, 0
        )
        index, code = index[code != 0], code[code != 0]
        image.flags[start : start + rows].ravel()[index] = code
        image.mask[start : start + rows].ravel()[index] = True
        image.counts[MaskFlag.NONFINITE.name] += int(nonfinite.sum())
        image.counts[MaskFlag.SATURATED.name] += int(saturated.sum())


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
    ny, nx = image.flags.shape
    bit = FLAGS_DTYPE.type(MaskFlag.OUTSIDE_DATASEC)
    for part in (np.s_[:y0], np.s_[y1:], np.s_[y0:y1, :x0], np.s_[y0:y1, x1:]):
        image.flags[part] |= bit
        image.mask[part] = True
    image.counts[MaskFlag.OUTSIDE_DATASEC.name] += ny * nx - (y1 - y0) * (x1 - x0)


def _saturation_level(ccd, saturation):
    """Return the saturation level in the image unit, or None for no saturation masking."""
    if saturation is False:
        return None
    if saturation is None:
        if "SATURATE" not in ccd.meta:
            return None
        level = _quantity_value(ccd.meta["SATURATE"], ccd.unit, "SATURATE")
        name = "SATURATE in .meta"
    elif saturation is True:
        finite = ccd.data[np.isfinite(ccd.data)]
        median = np.median(finite)
        level = float(median + 0.95 * (finite.max() - median))
        logger.info("estimated saturation level %.1f %s", level, ccd.unit)
        name = "estimated saturation"
    else:
        level = _quantity_value(saturation, ccd.unit, "saturation")
        name = "saturation"
    if not (np.isfinite(level) and level > 0):
        msg = f"{name} must be positive and finite, not {level}"
        raise ValueError(msg)
    return level


#: the round core of a saturated star is this much (pixels) smaller than half the blob's width
CORE_SHRINK = 0.15


def _mask_bleed(data, image):
    """Flag saturated column runs beyond each star's round core, and the pixel past each run."""
    saturated = image.has(MaskFlag.SATURATED)
    blobs, _ = ndimage.label(saturated)
    trail = np.zeros_like(saturated)
    for index, box in enumerate(ndimage.find_objects(blobs), start=1):
        blob = blobs[box] == index
        trail[box] |= blob & ~_round_core(data, blob, box)
    # the charge that did not fill a whole pixel sits just past each end of a trail
    ends = np.zeros_like(trail)
    ends[1:] |= trail[:-1]
    ends[:-1] |= trail[1:]
    image.add(MaskFlag.BLEED, trail | (ends & ~saturated))


def _round_core(data, blob, box):
    """Return the disk of a saturated star inside its saturated blob (in the blob's box).

    Bleeding runs along columns, so the blob is as wide as the star's core:
    its radius is half the width. The centre row is where the unsaturated
    pixels just left and right of the blob are brightest, refined to a
    fraction of a pixel by a parabola through the logarithm of the brightest
    three (exact for a Gaussian profile).
    """
    rows, cols = box
    flanks = [c for c in (cols.start - 1, cols.stop) if 0 <= c < data.shape[1]]
    height, width = blob.shape
    yc = (height - 1) / 2
    if flanks:
        flank = np.nanmax(data[rows, flanks], axis=1)
        flank = np.where(np.isfinite(flank), flank, -np.inf)
        yc = int(np.argmax(flank))
        if 0 < yc < height - 1 and np.all(flank[yc - 1 : yc + 2] > 0):
            below, peak, above = np.log(flank[yc - 1 : yc + 2])
            curvature = below - 2 * peak + above
            if curvature < 0:
                yc += 0.5 * (below - above) / curvature
    radius = width / 2
    y, x = np.ogrid[:height, :width]
    # a little inside: the bled charge fills the rim of the disk first
    return (y - yc) ** 2 + (x - (width - 1) / 2) ** 2 <= (radius - CORE_SHRINK) ** 2


def _mask_hot(dark, threshold, image):
    dark = np.asarray(dark, dtype=np.float32)
    finite = dark[np.isfinite(dark)]
    median = np.median(finite)
    spread = 1.4826 * np.median(np.abs(finite - median))
    image.add(MaskFlag.HOT, dark > median + threshold * spread)


def _mask_low_response(flat, threshold, image):
    """Flag low-response pixels; return the flat normalised to its median."""
    flat = np.asarray(flat, dtype=np.float32)
    finite = np.isfinite(flat)
    response = flat / np.median(flat[finite & (flat > 0)])
    with np.errstate(invalid="ignore"):
        image.add(MaskFlag.LOW_RESPONSE, ~(response >= threshold))
    return response


def _gain_readnoise(ccd, gain, readnoise):
    """Gain (e-/ADU) and read noise (e-) from the arguments or ``ccd.meta``."""
    in_electrons = ccd.unit == u.electron
    if gain is None:
        gain = ccd.meta.get("GAIN")
        if gain is None and not in_electrons:
            warnings.warn(
                "no gain given and no GAIN in .meta; using 1 e-/ADU for the cosmic-ray noise model",
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
        readnoise = ccd.meta.get("RDNOISE", ccd.meta.get("READNOISE", 0.0))
    readnoise = _quantity_value(readnoise, u.electron, "readnoise")
    if not (np.isfinite(gain) and gain > 0):
        msg = f"gain must be positive and finite, not {gain}"
        raise ValueError(msg)
    return gain, readnoise


def _mask_cosmics(data, image, *, gain, readnoise, response, saturation, options):
    """Run LACosmic on the unmasked pixels with a measured noise model, then refine.

    LACosmic's Laplacian is noisy for rays a few sigma above the sky, so
    sharp pixels it misses are added (`_add_sharp_events`), and so are faint
    tracks that stand out along a line (`_add_faint_lines`); groups of pixels
    that are star cores are dropped (`_drop_star_cores`, and
    `_drop_faint_on_sources` for noise peaks on faint stars); the rest grow
    into the weaker edges of their tracks (`_grow`), tracks found in pieces
    are completed along their line (`_complete_tracks`) and faint rays get
    their weak rim (`_widen_faint_groups`).
    """
    import astroscrappy

    options = _cosmics_options(astroscrappy.detect_cosmics, options)
    known = image.mask.copy()
    sky_model = SkyModel(data, known, response)
    variance = sky_model.variance(data, known, gain=gain, readnoise=readnoise)
    satlevel = np.inf if saturation is None else saturation * gain  # astroscrappy wants e-
    cosmics, _ = astroscrappy.detect_cosmics(
        data,
        inmask=known,
        invar=variance,
        gain=gain,
        readnoise=readnoise,
        satlevel=satlevel,
        **options,
    )
    cosmics &= ~known
    sigma = np.sqrt(variance, out=variance)
    del variance
    sky = sky_model.level()
    _add_sharp_events(cosmics, data, sky, sigma, known)
    _add_faint_lines(cosmics, data, sky, sigma, known)
    _drop_star_cores(cosmics, data, sky)
    _drop_faint_on_sources(cosmics, data, sky, sigma)
    _grow(cosmics, data, sky, sigma, known)
    _complete_tracks(cosmics, data, sky, sigma, known)
    _widen_faint_groups(cosmics, data, sky, sigma, known)
    image.add(MaskFlag.COSMIC_RAY, cosmics)


#: a pixel this many sigma above the sky is a candidate sharp event
SHARP_SIGMA = 3.5
#: ... and is sharp if its 8 neighbours hold less than this times its excess
#: (a star with FWHM >= 2.7 pixels puts at least 4 times its core there)
SHARP_NEIGHBOURS = 3.0
#: ... and, if fainter than FAINT_SIGMA, the median of the ring two pixels out
#: is less than this many sigma above the sky
SHARP_RING_SIGMA = 0.75
#: a detection is on a smooth source if its 5 x 5 median exceeds the sky by
#: this fraction of the pixel's own excess (star cores: 0.3 or more; rays: about 0)
SMOOTH_FRACTION = 0.2
#: growth adds neighbours this many sigma above their own 5 x 5 median ...
GROW_SIGMA = 1.75
#: ... for this many steps of one pixel
GROW_STEPS = 3
#: the dimmest neighbour of a star core keeps at least this fraction of its excess
STAR_MIN_NEIGHBOUR = 0.2
#: flagged groups longer than this (pixels), and thin or sparse, are tracks, not star cores
STAR_CORE_EXTENT = 7
#: detections fainter than this (sigma above the sky) must also not sit on a smooth source
FAINT_SIGMA = 10.0
#: a brighter flagged pixel is a star's if its 5 x 5 median exceeds the sky by this
#: fraction of its excess (star pixels beside a ray: about 0.5; a track's edge: 0.25)
STAR_PIXEL_FRACTION = 0.4
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def _pixels_above(data, sky, sigma, nsigma, known):
    """Rows and columns of unmasked pixels ``nsigma`` above the sky, one pixel in from the edges.

    Block by block, so that the temporary arrays stay small and in the cache.
    """
    ny, nx = data.shape
    rows = max(BLOCK_PIXELS // max(nx, 1), 1)
    found_y, found_x = [], []
    for start in range(1, ny - 1, rows):
        stop = min(start + rows, ny - 1)
        above = data[start:stop] - sky[start:stop] > nsigma * sigma[start:stop]
        above &= ~known[start:stop]
        above[:, [0, -1]] = False
        iy, ix = _flagged(above)
        found_y.append(iy + start)
        found_x.append(ix)
    return np.concatenate(found_y), np.concatenate(found_x)


def _add_sharp_events(cosmics, data, sky, sigma, known):
    """Flag local maxima well above the sky whose neighbours hold too little light for a star.

    A noise peak on a faint star can pass that test; the ring two pixels out
    is lit around a star, while a track crosses it in two places only.
    """
    iy, ix = _pixels_above(data, sky, sigma, SHARP_SIGMA, known)
    centre = data[iy, ix]
    excess = centre - sky[iy, ix]
    around = np.zeros_like(excess)
    sharp = np.ones(iy.size, dtype=bool)
    for dy, dx in _NEIGHBOURS:
        neighbour = data[iy + dy, ix + dx]
        around += neighbour - sky[iy, ix]
        sharp &= (neighbour <= centre) & ~known[iy + dy, ix + dx]
    sharp &= around < SHARP_NEIGHBOURS * excess
    faint = np.flatnonzero(sharp & (excess < FAINT_SIGMA * sigma[iy, ix]))
    ring = _ring_median(data, iy[faint], ix[faint]) - sky[iy[faint], ix[faint]]
    sharp[faint] = ring < SHARP_RING_SIGMA * sigma[iy[faint], ix[faint]]
    cosmics[iy[sharp], ix[sharp]] = True


#: a pixel this many sigma above the sky may lie on a faint track ...
LINE_SIGMA = 2.5
#: ... if it and its two neighbours along one of 4 directions sum to this many
#: sigma, and to this many more than it and its neighbours across
LINE_SUM = 8.0
LINE_CONTRAST = 4.0
#: ... and both neighbours along the line are this many sigma above the sky
LINE_END_SIGMA = 1.0
#: ... and its 5 x 5 median is less than this many sigma above the sky
LINE_MEDIAN_SIGMA = 0.5
_DIRECTIONS = [(0, 1), (1, 0), (1, 1), (1, -1)]


def _add_faint_lines(cosmics, data, sky, sigma, known):
    """Flag pixels of tracks too faint per pixel for LACosmic, but bright along a line.

    Three pixels in a row of a track add up; across it they stay dark. The
    edge of a faint star can look the same, but it lifts its 5 x 5 median.
    """
    iy, ix = _pixels_above(data, sky, sigma, LINE_SIGMA, known)
    iy, ix = iy[~cosmics[iy, ix]], ix[~cosmics[iy, ix]]
    level, scale = sky[iy, ix], sigma[iy, ix]
    centre = (data[iy, ix] - level) / scale
    pairs, lit = np.empty((4, iy.size), np.float32), np.empty((4, iy.size), bool)
    for k, (dy, dx) in enumerate(_DIRECTIONS):
        ahead = (data[iy + dy, ix + dx] - level) / scale
        behind = (data[iy - dy, ix - dx] - level) / scale
        pairs[k] = ahead + behind
        # both ends lit: inside a track, not on the edge of a star looking inwards
        lit[k] = np.minimum(ahead, behind) >= LINE_END_SIGMA
    along = np.where(lit, pairs, -np.inf)
    k = np.argmax(along, axis=0)
    column = np.arange(iy.size)
    best = centre + along[k, column]
    contrast = along[k, column] - pairs[k ^ 1, column]  # directions 0/1 and 2/3 are across
    line = np.flatnonzero((best >= LINE_SUM) & (contrast >= LINE_CONTRAST))
    # the 5 x 5 median must see only valid pixels
    line = line[~_near_known(known, iy[line], ix[line])]
    iy, ix = iy[line], ix[line]
    # not on any source: a short track barely lifts the 5 x 5 median, a faint star does
    clear = _box_median(data, iy, ix) - sky[iy, ix] < LINE_MEDIAN_SIGMA * sigma[iy, ix]
    cosmics[iy[clear], ix[clear]] = True


def _flagged(mask):
    """Rows and columns of the True pixels of a 2-D mask (faster than `numpy.nonzero`)."""
    return np.divmod(np.flatnonzero(mask), mask.shape[1])


def _near_known(known, iy, ix, half=2):
    """Whether any pixel of the (2 half + 1)^2 box around each pixel is already masked."""
    ny, nx = known.shape
    near = np.zeros(iy.size, dtype=bool)
    for dy in range(-half, half + 1):
        for dx in range(-half, half + 1):
            near |= known[np.clip(iy + dy, 0, ny - 1), np.clip(ix + dx, 0, nx - 1)]
    return near


#: the 16 pixels two steps away from a pixel, around its 5 x 5 box
_RING2 = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if max(abs(dy), abs(dx)) == 2]


def _ring_median(data, iy, ix):
    """Median of the outer ring of the 5 x 5 box around each pixel (clipped at the edges)."""
    ny, nx = data.shape
    ring = [data[np.clip(iy + dy, 0, ny - 1), np.clip(ix + dx, 0, nx - 1)] for dy, dx in _RING2]
    return np.median(ring, axis=0)


def _box_median(data, iy, ix, half=2):
    """Median of the (2 half + 1)^2 box around each pixel (clipped at the image edges)."""
    ny, nx = data.shape
    offsets = np.arange(-half, half + 1)
    rows = np.clip(iy[:, None, None] + offsets[None, :, None], 0, ny - 1)
    cols = np.clip(ix[:, None, None] + offsets[None, None, :], 0, nx - 1)
    return np.median(data[rows, cols].reshape(iy.size, offsets.size**2), axis=1)


def _on_smooth_source(data, sky, sigma, iy, ix, fraction=SMOOTH_FRACTION):
    """Whether each pixel sits on a smooth source, and its excess over its 5 x 5 median.

    On a source, the 5 x 5 median exceeds the sky by more than ``fraction``
    (a number or one per pixel) of the pixel's own excess.
    """
    local = _box_median(data, iy, ix)
    smooth = local - sky[iy, ix]
    # the median of 25 pixels scatters by about a quarter of one pixel's sigma
    on_source = (smooth > fraction * (data[iy, ix] - sky[iy, ix])) & (smooth > 0.75 * sigma[iy, ix])
    return on_source, data[iy, ix] - local


def _drop_star_cores(cosmics, data, sky):
    """Unflag groups of pixels whose brightest pixel has a star's light around it.

    The 8 neighbours of a star core hold at least 4 times its excess over the
    sky; those of a cosmic ray, even one on a star's wing, hold much less.
    """
    labels, count = ndimage.label(cosmics, np.ones((3, 3), dtype=bool))
    if not count:
        return
    flagged = _flagged(cosmics)
    iy, ix = _group_peaks(data, labels, flagged)
    ny, nx = data.shape
    neighbours = (
        np.array(
            [
                data[np.clip(iy + dy, 0, ny - 1), np.clip(ix + dx, 0, nx - 1)]
                for dy, dx in _NEIGHBOURS
            ]
        )
        - sky[iy, ix]
    )
    excess = data[iy, ix] - sky[iy, ix]
    # a star lights all its neighbours; a track leaves dark pixels across it
    star = (neighbours.sum(axis=0) >= SHARP_NEIGHBOURS * excess) & (
        neighbours.min(axis=0) >= STAR_MIN_NEIGHBOUR * excess
    )
    star &= ~_is_track(labels[flagged], *flagged, count)
    cosmics &= np.concatenate([[False], ~star])[labels]


def _is_track(group, iy, ix, count):
    """Whether each group (labels 1..count of pixels ``iy, ix``) is shaped like a track.

    A star core keeps its flags within a compact blob; a track, even one that
    crosses another track or a star, stretches out of it: long, and thin or sparse.
    """
    sizes = []
    for coordinate in (iy, ix):
        low, high = np.full(count, coordinate.max()), np.zeros(count, dtype=coordinate.dtype)
        np.minimum.at(low, group - 1, coordinate)
        np.maximum.at(high, group - 1, coordinate)
        sizes.append(high - low + 1)
    longest, shortest = np.maximum(*sizes), np.minimum(*sizes)
    fill = np.bincount(group - 1, minlength=count) / (longest * shortest)
    return (longest > STAR_CORE_EXTENT) & ((longest >= 3 * shortest) | (fill < 0.4))


def _group_peaks(data, labels, flagged):
    """Row and column of the brightest pixel of each labelled group, in label order."""
    iy, ix = flagged
    group = labels[iy, ix]
    order = np.lexsort((data[iy, ix], group))  # by group, brightest last
    last = np.flatnonzero(np.diff(group[order], append=group.max() + 1))
    return iy[order[last]], ix[order[last]]


def _drop_faint_on_sources(cosmics, data, sky, sigma):
    """Unflag pixels of smooth sources: noise peaks on faint stars, star pixels beside a ray.

    Noise in a faint star's neighbours defeats `_drop_star_cores`, and a
    group whose brightest pixel is a ray can hold star pixels that LACosmic
    added around it; their 5 x 5 median gives them away. Faint detections
    use `SMOOTH_FRACTION`; brighter ones `STAR_PIXEL_FRACTION`, above what the
    weak edge of a bright track shows.
    """
    iy, ix = _flagged(cosmics)
    faint = data[iy, ix] - sky[iy, ix] < FAINT_SIGMA * sigma[iy, ix]
    fraction = np.where(faint, SMOOTH_FRACTION, STAR_PIXEL_FRACTION)
    on_source, _ = _on_smooth_source(data, sky, sigma, iy, ix, fraction)
    cosmics[iy[on_source], ix[on_source]] = False


def _grow(cosmics, data, sky, sigma, known):
    """Add neighbours of flagged pixels that stand out of their own 5 x 5 median (track edges).

    Each step tests only the neighbours of the pixels added by the step before.
    """
    flat_cosmics = cosmics.ravel()
    frontier = np.flatnonzero(flat_cosmics)
    for _ in range(GROW_STEPS):
        iy, ix = _free_neighbours(frontier, cosmics, known)
        on_source, sharpness = _on_smooth_source(data, sky, sigma, iy, ix)
        keep = ~on_source & (sharpness > GROW_SIGMA * sigma[iy, ix])
        frontier = np.ravel_multi_index((iy[keep], ix[keep]), data.shape)
        if not frontier.size:
            break
        flat_cosmics[frontier] = True


def _free_neighbours(index, cosmics, known):
    """Rows and columns of the neighbours of flat pixel ``index`` not flagged or known yet."""
    ny, nx = cosmics.shape
    offsets = np.array(_NEIGHBOURS)
    rows = (index // nx)[:, None] + offsets[None, :, 0]
    cols = (index % nx)[:, None] + offsets[None, :, 1]
    inside = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
    candidate = np.unique(rows[inside] * nx + cols[inside])
    candidate = candidate[~cosmics.ravel()[candidate] & ~known.ravel()[candidate]]
    return np.divmod(candidate, nx)


#: a faint group (brightest pixel below FAINT_SIGMA) of at least two pixels whose
#: pixels add up to this many sigma (sum over square root of their number) ...
WIDEN_TOTAL = 5.5
#: ... is widened by the neighbours of its pixels above SHARP_SIGMA that stand
#: this many sigma out of their 5 x 5 median
WIDEN_SIGMA = 0.5


def _widen_faint_groups(cosmics, data, sky, sigma, known):
    """Flag the weak rim of faint rays that are certain.

    A faint short track is two pixels wide and its charge is shared out, so
    its rim is only a sigma or two above the sky: too little for `_grow`
    from any seed, but enough beside the core of a group that is a ray for sure.
    """
    labels, count = ndimage.label(cosmics, np.ones((3, 3), dtype=bool))
    iy, ix = _flagged(cosmics)
    group = labels[iy, ix] - 1
    z = (data[iy, ix] - sky[iy, ix]) / sigma[iy, ix]
    size = np.bincount(group, minlength=count)
    peak = np.full(count, -np.inf)
    np.maximum.at(peak, group, z)
    total = np.bincount(group, z, count) / np.sqrt(np.maximum(size, 1))
    certain = (size >= 2) & (peak < FAINT_SIGMA) & (total >= WIDEN_TOTAL)
    core = certain[group] & (z > SHARP_SIGMA)
    index = np.ravel_multi_index((iy[core], ix[core]), data.shape)
    ry, rx = _free_neighbours(index, cosmics, known)
    on_source, sharpness = _on_smooth_source(data, sky, sigma, ry, rx)
    add = ~on_source & (sharpness > WIDEN_SIGMA * sigma[ry, rx])
    cosmics[ry[add], rx[add]] = True


#: flagged groups this long (pixels) and this elongated (ratio of the spreads
#: along and across their axis) are tracks, completed along their line
TRACK_MIN_LENGTH = 4
TRACK_ELONGATION = 3.0
#: ... and no wider than this spread (pixel^2) across it (not two tracks in a V)
TRACK_SPREAD = 0.5
#: a track is followed past its flagged ends while the pixels on its line,
#: in windows of this many, stand out of their 5 x 5 median by this many sigma
TRACK_WINDOW = 4
TRACK_FOLLOW_SIGMA = 1.0
#: ... for at most this many pixels at each end
TRACK_FOLLOW_MAX = 40
#: pixels whose centres lie this close to a track's line share its charge ...
TRACK_HALF_WIDTH = 1.0
#: ... unless the ring two pixels out is this many sigma above the sky (a star)
TRACK_SOURCE_SIGMA = 1.0


def _complete_tracks(cosmics, data, sky, sigma, known):
    """Flag the whole line of each track found in part.

    The charge of a faint track is shared between the pixels along it, so
    LACosmic and `_grow` find it in pieces. Each elongated group is followed
    along its axis past its ends (over gaps shorter than `TRACK_WINDOW`) and
    the pixels within `TRACK_HALF_WIDTH` of its line are flagged, unless they
    belong to a smooth source the track crosses.
    """
    centre, axis, start, end = _track_lines(cosmics)
    if not len(centre):
        return
    start -= _follow(data, sky, sigma, known, centre, -axis, -start)
    end += _follow(data, sky, sigma, known, centre, axis, end)
    normal = axis[:, ::-1] * [-1, 1]
    pixels = []
    for c, a, n, t0, t1 in zip(centre, axis, normal, start, end, strict=True):
        # pixels whose centres lie within TRACK_HALF_WIDTH of the segment
        t = np.arange(t0, t1 + 0.25, 0.5)
        s = np.arange(-2, 3) * 0.5 * (TRACK_HALF_WIDTH + 0.5)
        points = np.rint(c + t[:, None, None] * a + s[None, :, None] * n).reshape(-1, 2)
        across, along = (points - c) @ n, (points - c) @ a
        near = (np.abs(across) <= TRACK_HALF_WIDTH) & (along >= t0 - 0.5) & (along <= t1 + 0.5)
        pixels.append(points[near].astype(np.intp))
    ny, nx = data.shape
    iy, ix = np.concatenate(pixels).T
    inside = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    index = np.unique(iy[inside] * nx + ix[inside])
    index = index[~known.ravel()[index] & ~cosmics.ravel()[index]]
    iy, ix = np.divmod(index, nx)
    # the track lifts the 5 x 5 median of its own pixels; the ring around it, less
    on_source = _ring_median(data, iy, ix) - sky[iy, ix] > TRACK_SOURCE_SIGMA * sigma[iy, ix]
    cosmics[iy[~on_source], ix[~on_source]] = True


def _track_lines(cosmics):
    """Centre, unit axis (dy, dx) and extent along it of each elongated flagged group."""
    labels, count = ndimage.label(cosmics, np.ones((3, 3), dtype=bool))
    iy, ix = _flagged(cosmics)
    group = labels[iy, ix] - 1
    size = np.bincount(group, minlength=count)
    centre = np.column_stack([np.bincount(group, c, count) / size for c in (iy, ix)])
    dy, dx = iy - centre[group, 0], ix - centre[group, 1]
    syy, sxx, sxy = (np.bincount(group, p, count) / size for p in (dy * dy, dx * dx, dy * dx))
    # the eigenvalues and major axis of each group's 2 x 2 covariance
    mean, root = (syy + sxx) / 2, np.hypot((syy - sxx) / 2, sxy)
    along_spread, across_spread = mean + root, mean - root
    angle = np.arctan2(2 * sxy, syy - sxx) / 2
    axis = np.column_stack([np.cos(angle), np.sin(angle)])
    along = dy * axis[group, 0] + dx * axis[group, 1]
    start, end = np.full(count, np.inf), np.full(count, -np.inf)
    np.minimum.at(start, group, along)
    np.maximum.at(end, group, along)
    # a one-pixel-wide line still spreads 1/12 pixel^2 across
    line = (
        (end - start + 1 >= TRACK_MIN_LENGTH)
        & (across_spread <= TRACK_SPREAD)
        & (along_spread >= TRACK_ELONGATION**2 * np.maximum(across_spread, 1 / 12))
    )
    return centre[line], axis[line], start[line], end[line]


def _follow(data, sky, sigma, known, centre, axis, end):
    """How far (pixels) each track goes on past ``centre + end * axis`` along ``axis``.

    Most tracks stop at once, so the steps are scored a few at a time, and
    only for the tracks still going.
    """
    reach = np.full(len(centre), float(TRACK_FOLLOW_MAX))
    going = np.arange(len(centre))
    for first in range(1, TRACK_FOLLOW_MAX + 1, TRACK_WINDOW):
        steps = np.arange(first, first + 2 * TRACK_WINDOW - 1)
        score = _line_score(data, sky, sigma, known, centre[going], axis[going], end[going], steps)
        # the mean of the TRACK_WINDOW steps from each step on
        window = np.lib.stride_tricks.sliding_window_view(score, TRACK_WINDOW, axis=1).mean(axis=2)
        stop = window < TRACK_FOLLOW_SIGMA
        stopped = stop.any(axis=1)
        reach[going[stopped]] = first - 1 + np.argmax(stop[stopped], axis=1)
        going = going[~stopped]
        if not going.size:
            break
    return np.minimum(reach, TRACK_FOLLOW_MAX)


def _line_score(data, sky, sigma, known, centre, axis, end, steps):
    """Excess over the ring two pixels out, in sigma, of the pixels ``steps`` past each end."""
    points = centre[:, None, :] + (end[:, None] + steps[None, :])[..., None] * axis[:, None, :]
    iy, ix = np.rint(points).astype(np.intp).transpose(2, 0, 1)
    ny, nx = data.shape
    inside = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    iy, ix = np.clip(iy, 0, ny - 1), np.clip(ix, 0, nx - 1)
    local = _ring_median(data, iy.ravel(), ix.ravel()).reshape(iy.shape)
    score = (data[iy, ix] - local) / sigma[iy, ix]
    # a track is not followed off the image, into masked pixels or into a source
    on_source = local - sky[iy, ix] > TRACK_SOURCE_SIGMA * sigma[iy, ix]
    score[~inside | known[iy, ix] | on_source] = -np.inf
    return score


def _cosmics_options(function, options):
    """Merge user options into the defaults, rejecting names ``function`` does not take."""
    options = dict(options or {})
    allowed = set(inspect.signature(function).parameters) - set(_COSMICS_RESERVED)
    unknown = sorted(set(options) - allowed)
    if unknown:
        msg = (
            f"cosmics_options has unknown astroscrappy option(s) {unknown}; "
            f"allowed are {sorted(allowed)}"
        )
        raise TypeError(msg)
    return {**COSMICS_DEFAULTS, **options}


def _describe_call(**params):
    """Return the options of a call as ``name=value`` text for the provenance."""
    return ", ".join(f"{name}={value}" for name, value in params.items())
