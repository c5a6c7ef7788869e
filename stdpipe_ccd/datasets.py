"""Realistic synthetic CCD frames with known truth, deterministic from a seed.

A *detector* (hot pixels, flat-field response with vignetted corners, an
overscan strip) is fixed by ``detector_seed``; a *field* (a star catalogue on
the sky) by ``field_seed``; each exposure adds its own sky, noise and cosmic
rays from ``seed``. Frames of one night share the detector and the field, so
dithered frames show the same stars at different pixels, and the master dark
and flat match the hot pixels and the vignetting of the lights.

The light frames are bias-subtracted and flat-fielded, but not
dark-subtracted: hot pixels stay in them, as in many real frames. Cosmic rays
and hot pixels are deposited in the raw frame, so the flat-fielding amplifies
them where the response is low, as it does in reality.
"""

from dataclasses import dataclass, field

import numpy as np
from astropy import units as u
from astropy.nddata import CCDData
from astropy.table import Table
from astropy.wcs import WCS
from scipy import ndimage

from ._render import bleed, cosmic_rays, detector_response, hot_pixels, render_stars

__all__ = [
    "SyntheticFrame",
    "make_dark",
    "make_dither_set",
    "make_flat",
    "make_frame",
    "score_bleed",
    "score_cosmic_rays",
]

GAIN = 1.6  # e-/ADU
READNOISE = 6.0  # e-
SATURATE = 60000.0  # ADU, as written in the header
FULL_WELL = 62000.0  # ADU in the raw frame, where charge starts to bleed
OVERSCAN = 32  # columns on the right of the data section
MIN_SIZE = 32  # pixels of the data section along each axis
PIXEL_SCALE = 0.5  # arcsec per pixel
FIELD_CENTER = (150.0, 2.0)  # RA, Dec in degrees


@dataclass
class SyntheticFrame:
    """A synthetic light frame and what is known to be in it.

    Attributes
    ----------
    ccd : `~astropy.nddata.CCDData`
        The frame in ADU, with ``GAIN``, ``RDNOISE``, ``SATURATE``,
        ``DATASEC``, ``EXPTIME``, ``IMAGETYP`` and a celestial WCS.
    stars : `~astropy.table.Table`
        ``x``, ``y`` (0-based pixels), ``ra``, ``dec`` (deg), ``flux`` (ADU,
        total over the PSF, after flat-fielding) and ``saturated``.
    cosmic_rays : `~astropy.table.Table`
        One row per ray: ``id`` (its value in ``cosmic_label``), ``kind``
        (``"point"``, ``"short"``, ``"long"``), ``npix``, ``peak`` (largest
        deposit in one pixel, ADU after flat-fielding) and ``peak_snr``
        (``peak`` over the sky noise at that pixel).
    cosmic_label : `~numpy.ndarray`
        ``int32`` image: the ``id`` of the ray whose deposit is at least a
        fifth of its per-pixel charge, 0 elsewhere.
    bleed_mask : `~numpy.ndarray`
        Pixels that received charge bled from a saturated star.
    saturated_mask : `~numpy.ndarray`
        Pixels saturated by their own star light (star cores).
    hot_pixels : `~astropy.table.Table`
        ``x``, ``y`` and ``current`` (ADU in this exposure) of the hot pixels.
    nonfinite_mask : `~numpy.ndarray`
        Pixels set to NaN.
    sky : float
        Sky level (ADU, after flat-fielding).
    noise : `~numpy.ndarray`
        Expected standard deviation of every pixel (ADU), from the noise model.
    model : `~numpy.ndarray`
        The noiseless flat-fielded image: sky plus stars, without cosmic
        rays, hot pixels or bleeding.
    response : `~numpy.ndarray`
        The true flat-field response of the detector (1 at the centre).
    """

    ccd: CCDData
    stars: Table
    cosmic_rays: Table
    cosmic_label: np.ndarray
    bleed_mask: np.ndarray
    saturated_mask: np.ndarray
    hot_pixels: Table
    nonfinite_mask: np.ndarray
    sky: float
    noise: np.ndarray = field(repr=False)
    model: np.ndarray = field(repr=False)
    response: np.ndarray = field(repr=False)

    @property
    def cosmic_mask(self):
        """Boolean image of all cosmic-ray pixels."""
        return self.cosmic_label > 0


def make_frame(
    shape=(1024, 1024),
    *,
    seed=0,
    field_seed=0,
    detector_seed=0,
    sky=1000.0,
    fwhm=3.0,
    exptime=60.0,
    star_density=800.0,
    n_saturated=None,
    cosmic_density=300.0,
    diffuse_cosmics=False,
    cosmic_blur=0.0,
    n_hot=None,
    vignetting=0.35,
    offset=(0.0, 0.0),
    rotation=0.0,
    sip=False,
    overscan=OVERSCAN,
    nan_patch=True,
    dtype=np.float32,
):
    """Make one realistic light frame with its truth.

    Parameters
    ----------
    shape : tuple of int, optional
        ``(ny, nx)`` including the overscan strip. Default is ``(1024, 1024)``.
    seed : int, optional
        Seed of this exposure (noise, sky, cosmic rays).
    field_seed : int, optional
        Seed of the star field on the sky.
    detector_seed : int, optional
        Seed of the detector (hot pixels, response).
    sky : float, optional
        Sky level in ADU. Default is 1000.
    fwhm : float, optional
        Full width at half maximum of the Moffat PSF, in pixels. Default is 3.
    exptime : float, optional
        Exposure time in seconds; scales the hot pixels. Default is 60.
    star_density : float, optional
        Stars per million pixels brighter than about 5 sigma. Default is 800.
    n_saturated : int, optional
        Number of saturated (and bleeding) stars added on top of the luminosity
        function. Default is one per million pixels, at least 2.
    cosmic_density : float, optional
        Cosmic rays per million pixels: 40 % single or double pixel hits,
        40 % short tracks (2-8 px) and 20 % long oblique tracks (20-120 px),
        deposits log-uniform between 80 and 8000 ADU per pixel of track.
        A pixel that a track crosses gets the deposit times the length of
        the track inside it.
    diffuse_cosmics : bool, optional
        Share each ray's charge bilinearly with the neighbouring pixels, as
        charge diffusion does in thick CCDs: tracks turn two pixels wide,
        their pixels fainter, and a double hit spreads one deposit over its
        pixels. A harder population than the default.
    cosmic_blur : float, optional
        Blur each ray with a Gaussian of this standard deviation (pixels),
        as deep charge diffusion does; 0.5-0.9 makes rays that LACosmic
        takes for sources. Default is 0 (no blur).
    n_hot : int, optional
        Number of hot pixels. Default is 30 per million pixels.
    vignetting : float, optional
        Response in the corners of the detector (1 at the centre).
    offset : tuple of float, optional
        Pointing offset ``(dx, dy)`` in pixels from the field centre.
    rotation : float, optional
        Rotation of the detector on the sky, in degrees.
    sip : bool, optional
        Give the frame a TAN-SIP WCS with about 3 pixels of distortion at the
        corners (the stars follow it).
    overscan : int, optional
        Width of the overscan strip outside ``DATASEC``. Default is 32.
    nan_patch : bool, optional
        Put a small patch of NaN pixels in the frame.
    dtype : dtype, optional
        Data type of the image. Default is ``float32``.

    Returns
    -------
    frame : `SyntheticFrame`
        The frame and its truth.

    Examples
    --------
    >>> from stdpipe_ccd import datasets
    >>> frame = datasets.make_frame((256, 256), seed=1)
    >>> frame.ccd.shape, frame.ccd.unit
    ((256, 256), Unit("adu"))
    >>> frame.ccd.meta["DATASEC"]
    '[1:224,1:256]'
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    data_nx = nx - overscan
    if ny < MIN_SIZE or data_nx < MIN_SIZE:
        msg = (
            f"shape {tuple(shape)} is too small: the data section (without the {overscan} "
            f"overscan columns) must be at least {MIN_SIZE} x {MIN_SIZE} pixels"
        )
        raise ValueError(msg)
    wcs = _frame_wcs(shape, offset, rotation, sip, overscan)
    response = detector_response(shape, detector_seed, vignetting, overscan)

    # star light in ADU after flat-fielding
    stars = _field_stars(field_seed, star_density, n_saturated, wcs, shape, overscan)
    model = np.full(shape, sky, dtype=np.float64)
    model[:, data_nx:] = 0.0
    render_stars(model, stars, fwhm)
    model[:, data_nx:] = 0.0

    # the raw frame in electrons: what reaches the pixels times the response
    raw = model * response * GAIN
    saturated_mask = raw >= FULL_WELL * GAIN
    bleed_mask = bleed(raw, FULL_WELL * GAIN)
    hot = hot_pixels(shape, detector_seed, n_hot, exptime, overscan)
    raw[hot["y"], hot["x"]] += hot["current"] * GAIN
    raw = rng.poisson(np.clip(raw, 0, None)).astype(np.float64)
    raw += rng.normal(0.0, READNOISE, shape)

    noise = _sky_noise(model, response)
    cosmic_label, rays = cosmic_rays(
        rng, raw, shape, data_nx, cosmic_density, diffuse_cosmics, cosmic_blur, gain=GAIN
    )
    raw = np.minimum(raw, 65535.0 * GAIN)  # the ADC saturates too

    data = raw / GAIN / response
    rays["peak"] /= response[rays["py"], rays["px"]]
    rays["peak_snr"] = rays["peak"] / _sky_noise(sky, response[rays["py"], rays["px"]])
    rays.remove_columns(["px", "py"])
    hot["current"] /= response[hot["y"], hot["x"]]

    iy = np.clip(np.round(stars["y"]).astype(int), 0, ny - 1)
    ix = np.clip(np.round(stars["x"]).astype(int), 0, data_nx - 1)
    stars["saturated"] = saturated_mask[iy, ix]

    nonfinite_mask = np.zeros(shape, dtype=bool)
    if nan_patch:
        y0, x0 = rng.integers(ny // 4, 3 * ny // 4), rng.integers(data_nx // 4, 3 * data_nx // 4)
        nonfinite_mask[y0 : y0 + 5, x0 : x0 + 7] = True
        data[nonfinite_mask] = np.nan

    header = wcs.to_header(relax=True)
    header.update(
        {
            "IMAGETYP": ("LIGHT", "type of exposure"),
            "EXPTIME": (exptime, "[s] exposure time"),
            "GAIN": (GAIN, "[e-/ADU] detector gain"),
            "RDNOISE": (READNOISE, "[e-] read noise"),
            "SATURATE": (SATURATE, "[ADU] saturation level"),
            "DATASEC": (f"[1:{data_nx},1:{ny}]", "data section, without the overscan"),
            "FWHM": (fwhm, "[pix] seeing"),
            "SKYLEVEL": (sky, "[ADU] true sky level"),
        }
    )
    ccd = CCDData(data.astype(dtype), unit=u.adu, meta=header, wcs=wcs)
    return SyntheticFrame(
        ccd=ccd,
        stars=stars,
        cosmic_rays=rays,
        cosmic_label=cosmic_label,
        bleed_mask=bleed_mask & ~saturated_mask,
        saturated_mask=saturated_mask,
        hot_pixels=hot,
        nonfinite_mask=nonfinite_mask,
        sky=float(sky),
        noise=noise.astype(np.float32),
        model=model.astype(np.float32),
        response=response.astype(np.float32),
    )


def make_dither_set(
    n_frames=8, shape=(1024, 1024), *, seed=0, max_offset=60.0, max_rotation=0.4, **frame_options
):
    """Make a dithered sequence of frames of one field with one detector.

    Sky levels are drawn between 600 and 1950 ADU and seeing between 2.7 and
    3.4 pixels; offsets up to ``max_offset`` pixels and rotations up to
    ``max_rotation`` degrees.

    Parameters
    ----------
    n_frames : int, optional
        Number of frames. Default is 8.
    shape : tuple of int, optional
        Shape of each frame.
    seed : int, optional
        Seed of the sequence; frame ``i`` uses ``seed * 1000 + i``.
    max_offset, max_rotation : float, optional
        Largest pointing offset (pixels) and rotation (degrees).
    **frame_options
        Passed on to `make_frame`.

    Returns
    -------
    frames : list of `SyntheticFrame`
    """
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_frames):
        options = {
            "sky": rng.uniform(600.0, 1950.0),
            "fwhm": rng.uniform(2.7, 3.4),
            "offset": tuple(rng.uniform(-max_offset, max_offset, 2)) if i else (0.0, 0.0),
            "rotation": rng.uniform(-max_rotation, max_rotation) if i else 0.0,
        }
        options.update(frame_options)
        frames.append(make_frame(shape, seed=seed * 1000 + i, **options))
    return frames


def make_dark(
    shape=(1024, 1024),
    *,
    detector_seed=0,
    exptime=60.0,
    n_hot=None,
    n_combined=10,
    overscan=OVERSCAN,
    dtype=np.float32,
):
    """Make a master dark (ADU) with the detector's hot pixels.

    Parameters
    ----------
    shape : tuple of int, optional
        Image shape.
    detector_seed : int, optional
        Seed of the detector; use the one of the lights.
    exptime : float, optional
        Exposure time in seconds. Default is 60.
    n_hot : int, optional
        Number of hot pixels, as in `make_frame`.
    n_combined : int, optional
        Number of dark frames averaged (sets the noise). Default is 10.
    overscan : int, optional
        Width of the overscan strip.
    dtype : dtype, optional
        Data type. Default is ``float32``.

    Returns
    -------
    dark : `~astropy.nddata.CCDData`
    """
    rng = np.random.default_rng([detector_seed, 1])
    data = rng.normal(0.0, READNOISE / GAIN / np.sqrt(n_combined), shape)
    hot = hot_pixels(shape, detector_seed, n_hot, exptime, overscan)
    data[hot["y"], hot["x"]] += hot["current"]
    meta = {"IMAGETYP": "DARK", "EXPTIME": exptime, "NCOMBINE": n_combined}
    return CCDData(data.astype(dtype), unit=u.adu, meta=meta)


def make_flat(
    shape=(1024, 1024),
    *,
    detector_seed=0,
    vignetting=0.35,
    n_combined=10,
    overscan=OVERSCAN,
    level=20000.0,
    dtype=np.float32,
):
    """Make a master flat normalised to 1 at the centre of the detector.

    Parameters
    ----------
    shape : tuple of int, optional
        Image shape.
    detector_seed : int, optional
        Seed of the detector; use the one of the lights.
    vignetting : float, optional
        Response in the corners.
    n_combined : int, optional
        Number of flat frames combined (sets the noise).
    overscan : int, optional
        Width of the overscan strip (its response is 0).
    level : float, optional
        ADU level of each flat frame at the centre (sets the noise).
    dtype : dtype, optional
        Data type. Default is ``float32``.

    Returns
    -------
    flat : `~astropy.nddata.CCDData`
        In ADU, as a master flat combined by ccdproc from ADU frames and
        scaled to 1 (`ccdproc.flat_correct` normalises it again): it writes
        and reads back with ``CCDData.write`` and ``CCDData.read``, which
        have no FITS unit for a dimensionless image.
    """
    rng = np.random.default_rng([detector_seed, 2])
    response = detector_response(shape, detector_seed, vignetting, overscan)
    noise = np.sqrt(np.clip(response, 1e-6, None) * level * GAIN * n_combined) / (
        level * GAIN * n_combined
    )
    data = response + rng.normal(0.0, 1.0, shape) * noise
    data[:, shape[1] - overscan :] = 0.0
    meta = {"IMAGETYP": "FLAT", "NCOMBINE": n_combined}
    return CCDData(data.astype(dtype), unit=u.adu, meta=meta)


def _sky_noise(level, response):
    """Return the noise (ADU, flat-fielded) of a pixel at ``level`` ADU with ``response``."""
    return np.sqrt(np.clip(level * response * GAIN, 0, None) + READNOISE**2) / GAIN / response


# --- detector ---------------------------------------------------------------


def _frame_wcs(shape, offset, rotation, sip, overscan=OVERSCAN):
    """TAN (or TAN-SIP) WCS of a frame pointed ``offset`` pixels from the field centre."""
    ny, nx = shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = FIELD_CENTER
    wcs.wcs.crpix = [(nx - overscan) / 2 + 0.5 - offset[0], ny / 2 + 0.5 - offset[1]]
    scale = PIXEL_SCALE / 3600.0
    angle = np.deg2rad(rotation)
    wcs.wcs.cd = scale * np.array([[-np.cos(angle), np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    if sip:
        header = wcs.to_header()
        header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
        half = max(nx, ny) / 2
        amplitude = 3.0 / half**2  # about 3 px at the corners
        header.update(
            {
                "A_ORDER": 2,
                "B_ORDER": 2,
                "A_2_0": amplitude,
                "A_1_1": -0.4 * amplitude,
                "B_0_2": amplitude,
                "B_1_1": 0.3 * amplitude,
                "A_0_2": 0.0,
                "B_2_0": 0.0,
            }
        )
        wcs = WCS(header)
    return wcs


# --- sky --------------------------------------------------------------------


def _field_stars(field_seed, density, n_saturated, wcs, shape, overscan):
    """Stars of the field (fixed on the sky) that fall on this frame."""
    ny, nx = shape
    rng = np.random.default_rng([field_seed, 5])
    # the field is a square 1.5 times the frame (dithers stay inside it)
    side = 1.5 * max(nx, ny)
    area = side**2 / 1e6
    n_faint = rng.poisson(density * area)
    # N(>F) ~ F^-0.8 from 5 sigma (about 1000 ADU) upwards
    flux = 1000.0 * rng.uniform(0, 1, n_faint) ** (-1 / 0.8)
    flux = np.minimum(flux, 2e6)
    if n_saturated is None:
        n_saturated = max(2, round(nx * ny / 1e6))
    n_bright = rng.poisson(n_saturated * 2.25)
    flux = np.concatenate([flux, 10 ** rng.uniform(6.2, 7.6, n_bright)])
    # positions on the sky through a reference (undistorted) grid
    uv = rng.uniform(-side / 2, side / 2, (flux.size, 2))
    ref = _frame_wcs(shape, (0.0, 0.0), 0.0, False, overscan)
    centre = np.array([(nx - overscan - 1) / 2, (ny - 1) / 2])
    ra, dec = ref.all_pix2world(uv[:, 0] + centre[0], uv[:, 1] + centre[1], 0)
    x, y = wcs.all_world2pix(ra, dec, 0)
    inside = (x > -10) & (x < nx - overscan + 10) & (y > -10) & (y < ny + 10)
    return Table(
        {"x": x[inside], "y": y[inside], "ra": ra[inside], "dec": dec[inside], "flux": flux[inside]}
    )


def score_cosmic_rays(frame, cosmic_mask, *, masked=None):
    """Score a cosmic-ray mask against the truth of a frame.

    Parameters
    ----------
    frame : `SyntheticFrame`
        The frame with its truth.
    cosmic_mask : array-like of bool
        Pixels flagged as cosmic rays.
    masked : array-like of bool, optional
        Pixels masked for other reasons (saturation, hot pixels, ...); a ray
        pixel there counts as caught, since it is excluded anyway.

    Returns
    -------
    scores : dict
        ``recall`` (fraction of rays with at least half their pixels caught),
        ``recall_5sigma`` (the same for rays peaking at least 5 sigma above
        the sky), ``recall_faint`` (rays peaking below 150 ADU),
        ``precision`` (fraction of flagged pixels within 1 pixel of a ray
        pixel), ``star_cores`` (fraction of isolated unsaturated stars whose
        3 x 3 core has a flagged pixel though no ray is near) and the numbers
        ``n_rays``, ``n_flagged``, ``n_stars``.
    """
    cosmic_mask = np.asarray(cosmic_mask, dtype=bool)
    caught = cosmic_mask if masked is None else cosmic_mask | np.asarray(masked, dtype=bool)
    label = frame.cosmic_label
    on = label > 0
    npix = np.bincount(label[on], minlength=label.max() + 1)
    hit = np.bincount(label[on & caught], minlength=label.max() + 1)
    rays = frame.cosmic_rays[frame.cosmic_rays["npix"] > 0]
    found = hit[rays["id"]] >= 0.5 * npix[rays["id"]]
    bright = rays["peak_snr"] >= 5
    faint = rays["peak"] < 150
    near_ray = ndimage.binary_dilation(on, np.ones((3, 3), bool))
    n_flagged = int(cosmic_mask.sum())
    stars = _isolated_stars(frame)
    core_hit = [cosmic_mask[y - 1 : y + 2, x - 1 : x + 2].any() for x, y in stars]
    return {
        "recall": float(found.mean()),
        "recall_5sigma": float(found[bright].mean()),
        "recall_faint": float(found[faint].mean()) if faint.any() else float("nan"),
        "precision": float((cosmic_mask & near_ray).sum() / max(n_flagged, 1)),
        "star_cores": float(np.mean(core_hit)) if core_hit else 0.0,
        "n_rays": len(rays),
        "n_flagged": n_flagged,
        "n_stars": len(stars),
    }


def _isolated_stars(frame):
    """Pixel centres of unsaturated stars above 5 sigma, far from other stars and rays."""
    stars = frame.stars
    ny, nx = frame.model.shape
    xy = np.column_stack([stars["x"], stars["y"]])
    distance = (
        np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)) if len(xy) < 20000 else None
    )
    near_ray = ndimage.binary_dilation(frame.cosmic_label > 0, np.ones((5, 5), bool))
    centres = []
    for i, (x, y) in enumerate(xy):
        ix, iy = round(x), round(y)
        if not (2 <= ix < nx - 2 and 2 <= iy < ny - 2) or stars["saturated"][i]:
            continue
        if frame.model[iy, ix] - frame.sky < 5 * frame.noise[iy, ix]:
            continue
        if distance is not None and np.partition(distance[i], 1)[1] < 8:
            continue
        if near_ray[iy, ix] or frame.nonfinite_mask[iy - 1 : iy + 2, ix - 1 : ix + 2].any():
            continue
        centres.append((ix, iy))
    return centres


def score_bleed(frame, bleed_mask):
    """Score a bleed-trail mask against the truth of a frame.

    Parameters
    ----------
    frame : `SyntheticFrame`
        The frame with its truth.
    bleed_mask : array-like of bool
        Pixels flagged as bleeding-charge trails.

    Returns
    -------
    scores : dict
        ``recall`` (fraction of true bleed pixels flagged), ``extra``
        (flagged pixels that are not bleed pixels, as a fraction of the true
        bleed pixels) and ``n_true``.
    """
    bleed_mask = np.asarray(bleed_mask, dtype=bool)
    truth = frame.bleed_mask
    n_true = int(truth.sum())
    return {
        "recall": float((bleed_mask & truth).sum() / max(n_true, 1)),
        "extra": float((bleed_mask & ~truth).sum() / max(n_true, 1)),
        "n_true": n_true,
    }
