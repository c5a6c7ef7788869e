"""Frames of an independent kind, with their truth, for validating cosmic-ray masks.

`make_field` draws stars, galaxies and cosmic rays in other ways than
`stdpipe_ccd.datasets.make_frame`, which the masking steps were first built
on: Gaussian or Moffat stars integrated over the pixels, Sérsic galaxies
convolved with the PSF, rays as paths of charge deposited every twentieth of
a pixel (sharp, diffused or blurred), all counted in electrons and read out
through a gain. `score_cosmic_mask` scores a mask against that truth.
"""

from dataclasses import dataclass

import numpy as np
from astropy.nddata import CCDData
from astropy.table import Table
from scipy import ndimage, signal, special
from scipy.spatial import cKDTree

__all__ = ["Field", "make_field", "score_cosmic_mask"]

#: Gaussian spread (pixels) of the charge of a ray, for each kind of ray
RAY_SPREAD = {"sharp": 0.0, "diffused": 0.4, "blurred": 0.8}
#: a pixel belongs to a ray when the ray put this many sigma of charge in it
RAY_PIXEL_SIGMA = 2.0
#: flagged pixels where a ray put this many sigma of charge (or next to them) are right
RAY_NEAR_SIGMA = 0.5


@dataclass
class Field:
    """A synthetic field and its truth (made by `make_field`).

    Attributes
    ----------
    ccd : `~astropy.nddata.CCDData`
        The frame in ADU, with ``GAIN`` (e-/ADU), ``RDNOISE`` (e-) and
        ``SKYSUB`` (the sky level subtracted, ADU) in its header.
    model : `~numpy.ndarray`
        The noiseless frame without rays (ADU), as subtracted or not.
    sigma : `~numpy.ndarray`
        The true noise of each pixel (ADU).
    deposit : `~numpy.ndarray`
        The charge of the rays in each pixel (ADU).
    rays : `~astropy.table.Table`
        One row per ray: ``id``, ``y``, ``x``, ``length``, ``peak_snr`` (its
        brightest pixel, in sigma) and ``npix`` (its pixels of at least
        ``RAY_PIXEL_SIGMA`` = 2 sigma).
    ray_label : `~numpy.ndarray`
        The id of the ray that owns each ray pixel, 0 elsewhere.
    stars : `~astropy.table.Table`
        ``x``, ``y``, ``flux`` (ADU) and ``peak_snr`` of each star.
    galaxies : `~astropy.table.Table`
        ``x``, ``y``, ``flux``, ``re`` (pixels), ``n`` and ``peak_snr`` of each galaxy.
    """

    ccd: CCDData
    model: np.ndarray
    sigma: np.ndarray
    deposit: np.ndarray
    rays: Table
    ray_label: np.ndarray
    stars: Table
    galaxies: Table


def make_field(
    shape=(1024, 1024),
    *,
    seed=0,
    psf="moffat",
    fwhm=3.0,
    beta=4.765,
    elongation=1.0,
    angle=30.0,
    sky=500.0,
    gain=2.0,
    readnoise=5.0,
    sky_subtracted=False,
    n_stars=1500,
    n_galaxies=0,
    sersic=(1.0, 4.0),
    rays="sharp",
    n_rays=300,
    rays_on_galaxies=0.3,
):
    """Make a field of stars, galaxies and cosmic rays with its truth.

    Parameters
    ----------
    shape : tuple of int, optional
        ``(ny, nx)``. Default is ``(1024, 1024)``.
    seed : int, optional
        Seed of everything drawn. Default is 0.
    psf : {"moffat", "gaussian"}, optional
        Profile of the stars. Default is ``"moffat"``.
    fwhm : float, optional
        Full width at half maximum of the stars (pixels). Default is 3.
    beta : float, optional
        Moffat power index. Default is 4.765.
    elongation : float, optional
        Ratio of the stars' long axis to their short one (tracking errors,
        the edges of a wide field); ``fwhm`` is then their geometric mean.
        Default is 1 (round).
    angle : float, optional
        Angle of the stars' long axis from the x axis (degrees). Default is 30.
    sky : float, optional
        Sky level (electrons per pixel). Default is 500.
    gain : float, optional
        Gain (e-/ADU). Default is 2.
    readnoise : float, optional
        Read noise (electrons). Default is 5.
    sky_subtracted : bool, optional
        Subtract the sky level from the frame. Default is `False`.
    n_stars : int, optional
        Number of stars; their peaks are log-uniform from 3 to 3000 sigma of
        the sky. Default is 1500.
    n_galaxies : int, optional
        Number of Sérsic galaxies, with effective radii log-uniform from 1.5
        to 25 pixels (5 to 100 pixels across). Default is 0.
    sersic : tuple of float, optional
        Sérsic indices to draw the galaxies' from. Default is ``(1, 4)``.
    rays : {"sharp", "diffused", "blurred"}, optional
        How the rays' charge spreads: not at all, or by a Gaussian of 0.4 or
        0.8 pixels (``RAY_SPREAD``). Default is ``"sharp"``.
    n_rays : int, optional
        Number of rays; 60 % are short (exponential lengths, mean 1.5 px), 40 %
        tracks 3 to 60 pixels long; charge log-normal around 400 e- per pixel
        of path. Default is 300.
    rays_on_galaxies : float, optional
        Fraction of the rays placed within two effective radii of a galaxy's
        centre (when there are galaxies). Default is 0.3.

    Returns
    -------
    field : `Field`
        The frame and its truth.

    Examples
    --------
    >>> from stdpipe_ccd import validation
    >>> field = validation.make_field((256, 256), seed=1, n_stars=50, n_rays=20)
    >>> field.ccd.meta["GAIN"], len(field.rays) <= 20
    (2.0, True)
    """
    if rays not in RAY_SPREAD:
        msg = f"rays must be one of {tuple(RAY_SPREAD)}, not {rays!r}"
        raise ValueError(msg)
    if psf not in ("moffat", "gaussian"):
        msg = f"psf must be 'moffat' or 'gaussian', not {psf!r}"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    ny, nx = shape
    sky_sigma = np.sqrt(sky + readnoise**2)
    electrons = np.full(shape, float(sky))
    stretch = {"elongation": elongation, "angle": angle}
    radius = _stamp_radius(psf, fwhm * np.sqrt(elongation), beta)
    kernel = _psf_stamp(psf, fwhm, beta, 0.0, 0.0, radius, **stretch)
    peak_fraction = kernel.max()

    stars = Table()
    stars["x"] = rng.uniform(-5, nx + 5, n_stars)
    stars["y"] = rng.uniform(-5, ny + 5, n_stars)
    stars["peak_snr"] = np.exp(rng.uniform(np.log(3), np.log(3000), n_stars))
    stars["flux"] = stars["peak_snr"] * sky_sigma / peak_fraction
    for x, y, flux in zip(stars["x"], stars["y"], stars["flux"], strict=True):
        _add_stamp(
            electrons,
            x,
            y,
            flux,
            lambda dx, dy, r: _psf_stamp(psf, fwhm, beta, dx, dy, r, **stretch),
            radius,
        )

    galaxies = _galaxies(rng, electrons, n_galaxies, sersic, kernel, sky_sigma)
    model_e = electrons.copy()

    deposit, label, table = _rays(rng, shape, n_rays, rays, galaxies, rays_on_galaxies)
    sigma_e = np.sqrt(model_e + readnoise**2)
    table = _ray_truth(table, deposit, label, sigma_e)
    label = np.where(deposit >= RAY_PIXEL_SIGMA * sigma_e, label, 0)

    counts = rng.poisson(model_e).astype(np.float64) + deposit
    counts += rng.normal(0.0, readnoise, shape)
    pedestal = sky if sky_subtracted else 0.0
    data = ((counts - pedestal) / gain).astype(np.float32)
    meta = {"GAIN": gain, "RDNOISE": readnoise, "EXPTIME": 1.0, "SKYSUB": pedestal / gain}
    return Field(
        ccd=CCDData(data, unit="adu", meta=meta),
        model=((model_e - pedestal) / gain).astype(np.float32),
        sigma=(sigma_e / gain).astype(np.float32),
        deposit=(deposit / gain).astype(np.float32),
        rays=table,
        ray_label=label,
        stars=stars,
        galaxies=galaxies,
    )


def _stamp_radius(psf, fwhm, beta):
    """Half-size (pixels) of a star's stamp: out to 1e-4 of its peak."""
    if psf == "gaussian":
        return int(np.ceil(1.8 * fwhm)) + 1
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    return int(min(np.ceil(alpha * np.sqrt(1e-4 ** (-1 / beta) - 1)), 6 * fwhm + 4)) + 1


def _psf_stamp(psf, fwhm, beta, dx, dy, radius, *, elongation=1.0, angle=0.0):
    """Unit-flux star centred ``(dx, dy)`` off the stamp centre, integrated over the pixels.

    A round Gaussian exactly; otherwise on 5 x 5 samples in each pixel, the
    star stretched by ``elongation`` along ``angle`` (degrees), its area kept.
    """
    if psf == "gaussian" and elongation == 1.0:
        edges = np.arange(-radius - 0.5, radius + 1.0)
        s = fwhm / (2 * np.sqrt(2 * np.log(2)))
        gx = np.diff(special.ndtr((edges - dx) / s))
        gy = np.diff(special.ndtr((edges - dy) / s))
        return np.outer(gy, gx)
    sub = (np.arange(5) + 0.5) / 5 - 0.5
    centres = (np.arange(-radius, radius + 1)[:, None] + sub).ravel()
    x, y = centres - dx, centres - dy
    if elongation == 1.0:
        r2 = y[:, None] ** 2 + x[None, :] ** 2
    else:
        x, y = np.meshgrid(x, y)
        cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
        along = (cos * x + sin * y) / np.sqrt(elongation)
        across = (cos * y - sin * x) * np.sqrt(elongation)
        r2 = along**2 + across**2
    values = _surface_brightness(psf, fwhm, beta, r2) / 25
    n = centres.size // 5
    return values.reshape(n, 5, n, 5).sum(axis=(1, 3))


def _surface_brightness(psf, fwhm, beta, r2):
    """Light per unit area of a unit-flux star at squared distances ``r2`` from its centre."""
    if psf == "gaussian":
        s = fwhm / (2 * np.sqrt(2 * np.log(2)))
        return np.exp(-r2 / (2 * s**2)) / (2 * np.pi * s**2)
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    return (1 + r2 / alpha**2) ** (-beta) * (beta - 1) / (np.pi * alpha**2)


def _add_stamp(image, x, y, flux, make, radius):
    """Add ``flux`` times the stamp ``make(dx, dy, radius)`` centred at ``(x, y)``."""
    ix, iy = round(x), round(y)
    stamp = make(x - ix, y - iy, radius)
    ny, nx = image.shape
    y0, x0 = iy - radius, ix - radius
    sy = slice(max(y0, 0), min(y0 + stamp.shape[0], ny))
    sx = slice(max(x0, 0), min(x0 + stamp.shape[1], nx))
    if sy.start >= sy.stop or sx.start >= sx.stop:
        return
    image[sy, sx] += flux * stamp[sy.start - y0 : sy.stop - y0, sx.start - x0 : sx.stop - x0]


def _galaxies(rng, electrons, count, sersic, kernel, sky_sigma):
    """Add Sérsic galaxies convolved with the PSF; return their table."""
    ny, nx = electrons.shape
    table = Table(names=("x", "y", "flux", "re", "n", "peak_snr"))
    for _ in range(count):
        n = float(rng.choice(sersic))
        re = float(np.exp(rng.uniform(np.log(1.5), np.log(25))))
        q, angle = rng.uniform(0.3, 1.0), rng.uniform(0, np.pi)
        x, y = rng.uniform(0, nx), rng.uniform(0, ny)
        radius = int(min(6 * re, 150)) + kernel.shape[0]
        # surface brightness at re between 0.3 and 10 sigma of the sky
        ie = np.exp(rng.uniform(np.log(0.3), np.log(10))) * sky_sigma
        profile = _sersic_stamp(x - round(x), y - round(y), radius, re, n, q, angle)
        profile = signal.fftconvolve(profile, kernel, mode="same") * ie
        _add_stamp(electrons, x, y, 1.0, lambda *_, p=profile: p, radius)
        table.add_row((x, y, profile.sum(), re, n, profile.max() / sky_sigma))
    return table


def _sersic_stamp(dx, dy, radius, re, n, q, angle):
    """Sérsic profile of unit surface brightness at ``re``, 3 x 3 samples per pixel."""
    b = 2 * n - 1 / 3 + 4 / (405 * n)
    sub = (np.arange(3) + 0.5) / 3 - 0.5
    centres = np.arange(-radius, radius + 1)
    px = (centres[:, None] + sub[None, :]).ravel() - dx
    py = (centres[:, None] + sub[None, :]).ravel() - dy
    c, s = np.cos(angle), np.sin(angle)
    u = px[None, :] * c + py[:, None] * s
    v = -px[None, :] * s + py[:, None] * c
    r = np.sqrt(u**2 + (v / q) ** 2)
    values = np.exp(-b * ((r / re) ** (1 / n) - 1))
    size = centres.size
    return values.reshape(size, 3, size, 3).mean(axis=(1, 3))


def _rays(rng, shape, count, kind, galaxies, on_galaxies):
    """Deposit the rays' charge (electrons); return it, the owner of each pixel and the table."""
    ny, nx = shape
    short = rng.random(count) < 0.6
    length = np.where(short, rng.exponential(1.5, count), rng.uniform(3, 60, count))
    x, y = rng.uniform(0, nx, count), rng.uniform(0, ny, count)
    if len(galaxies) and on_galaxies > 0:
        on = np.flatnonzero(rng.random(count) < on_galaxies)
        host = rng.integers(0, len(galaxies), on.size)
        offset = rng.uniform(0, 2, on.size) * np.asarray(galaxies["re"])[host]
        turn = rng.uniform(0, 2 * np.pi, on.size)
        x[on] = np.asarray(galaxies["x"])[host] + offset * np.cos(turn)
        y[on] = np.asarray(galaxies["y"])[host] + offset * np.sin(turn)
    angle = rng.uniform(0, np.pi, count)
    per_pixel = rng.lognormal(np.log(400.0), 0.9, count)  # electrons per pixel of path
    spread = RAY_SPREAD[kind]
    deposit = np.zeros(shape)
    best = np.zeros(shape)
    label = np.zeros(shape, dtype=np.int32)
    step = 0.05
    for k in range(count):
        samples = max(int(np.ceil(length[k] / step)), 1)
        t = (np.arange(samples) + 0.5) / samples - 0.5
        sy = y[k] + t * length[k] * np.sin(angle[k])
        sx = x[k] + t * length[k] * np.cos(angle[k])
        charge = per_pixel[k] * max(length[k], 1.0) / samples
        iy, ix, values = _spread_charge(sy, sx, charge, spread)
        inside = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
        own = np.zeros(shape)
        np.add.at(own, (iy[inside], ix[inside]), values[inside])
        deposit += own
        mine = own > best
        label[mine] = k + 1
        best[mine] = own[mine]
    table = Table()
    table["id"] = np.arange(1, count + 1)
    table["y"], table["x"], table["length"] = y, x, length
    return deposit, label, table


def _spread_charge(sy, sx, charge, spread):
    """Pixels and charges of points of charge ``charge`` at ``(sy, sx)``, Gaussian-spread."""
    cy, cx = np.rint(sy).astype(int), np.rint(sx).astype(int)
    if spread == 0:
        return cy, cx, np.full(cy.size, charge)
    reach = int(np.ceil(3 * spread))
    offsets = np.arange(-reach, reach + 1)

    def weights(s, c):
        edges = (c[:, None] + offsets[None, :] - s[:, None])[..., None] + np.array([-0.5, 0.5])
        return np.diff(special.ndtr(edges / spread), axis=-1)[..., 0]

    wy, wx = weights(sy, cy), weights(sx, cx)
    values = charge * wy[:, :, None] * wx[:, None, :]
    iy = np.broadcast_to((cy[:, None] + offsets)[:, :, None], values.shape)
    ix = np.broadcast_to((cx[:, None] + offsets)[:, None, :], values.shape)
    return iy.ravel(), ix.ravel(), values.ravel()


def _ray_truth(table, deposit, label, sigma_e):
    """Add each ray's peak significance and its number of significant pixels."""
    snr = deposit / sigma_e
    on = label > 0
    count = len(table) + 1
    peak = np.zeros(count)
    np.maximum.at(peak, label[on], snr[on])
    npix = np.bincount(label[on & (snr >= RAY_PIXEL_SIGMA)], minlength=count)
    table["peak_snr"] = peak[1:]
    table["npix"] = npix[1:]
    return table


def score_cosmic_mask(field, cosmic_mask, *, masked=None, sigclip=4.5):
    """Score a cosmic-ray mask against the truth of a `Field`.

    Parameters
    ----------
    field : `Field`
        The field with its truth.
    cosmic_mask : array-like of bool
        Pixels flagged as cosmic rays.
    masked : array-like of bool, optional
        Pixels masked for other reasons; a ray pixel there counts as caught.
    sigclip : float, optional
        Detection threshold (sigma) whose Gaussian tail sets the expected
        number of noise pixels. Default is 4.5.

    Returns
    -------
    scores : dict
        ``recall`` (fraction of rays with at least half of their pixels
        caught), ``recall_5sigma`` (rays peaking at 5 sigma or more),
        ``precision`` (flagged pixels within a pixel of a ray's charge),
        ``star_cores`` and ``galaxy_cores`` (fraction of isolated sources
        peaking at 5 sigma or more with a flagged pixel in their 3 x 3 core
        and no ray near), ``noise_ratio`` (isolated flagged pixels away from
        rays and below 5 sigma, over the number of Gaussian noise pixels
        expected above ``sigclip``) and the counts ``n_rays``, ``n_stars``,
        ``n_galaxies``, ``n_flagged``.
    """
    cosmic_mask = np.asarray(cosmic_mask, dtype=bool)
    caught = cosmic_mask if masked is None else cosmic_mask | np.asarray(masked, dtype=bool)
    rays = field.rays[field.rays["npix"] > 0]
    label = field.ray_label
    on = label > 0
    hit = np.bincount(label[on & caught], minlength=len(field.rays) + 1)
    found = hit[rays["id"]] >= 0.5 * np.asarray(rays["npix"])
    bright = np.asarray(rays["peak_snr"]) >= 5
    charged = field.deposit >= RAY_NEAR_SIGMA * field.sigma
    near_ray = ndimage.binary_dilation(charged, np.ones((3, 3), bool))
    n_flagged = int(cosmic_mask.sum())
    far_from_rays = ~ndimage.binary_dilation(charged, np.ones((7, 7), bool))
    stars = _isolated(field, field.stars, far_from_rays)
    galaxies = _isolated(field, field.galaxies, far_from_rays)
    # noise: flagged pixels alone, far from rays, less than 5 sigma above the model
    alone = cosmic_mask & ~(ndimage.convolve(cosmic_mask.astype(np.uint8), np.ones((3, 3))) > 1)
    z = (field.ccd.data - field.model) / field.sigma
    noise = int(np.count_nonzero(alone & ~near_ray & (z < 5)))
    expected = cosmic_mask.size * special.ndtr(-sigclip)
    return {
        "recall": float(found.mean()) if found.size else float("nan"),
        "recall_5sigma": float(found[bright].mean()) if bright.any() else float("nan"),
        "precision": float((cosmic_mask & near_ray).sum() / n_flagged) if n_flagged else 1.0,
        "star_cores": _core_fraction(cosmic_mask, stars),
        "galaxy_cores": _core_fraction(cosmic_mask, galaxies),
        "noise_ratio": float(noise / expected),
        "n_rays": len(rays),
        "n_stars": len(stars),
        "n_galaxies": len(galaxies),
        "n_flagged": n_flagged,
    }


def _isolated(field, sources, far_from_rays):
    """Integer centres of sources at 5 sigma or more, inside, away from rays and other stars."""
    ny, nx = field.model.shape
    if not len(sources):
        return np.zeros((0, 2), dtype=int)
    x, y = np.asarray(sources["x"]), np.asarray(sources["y"])
    stars = cKDTree(np.column_stack([field.stars["x"], field.stars["y"]]))
    keep = np.asarray(sources["peak_snr"]) >= 5
    keep &= (x >= 2) & (x < nx - 2) & (y >= 2) & (y < ny - 2)
    ix, iy = np.rint(x).astype(int).clip(0, nx - 1), np.rint(y).astype(int).clip(0, ny - 1)
    keep &= far_from_rays[iy, ix]
    # no star within 8 pixels (but itself, for a star)
    near = stars.query_ball_point(np.column_stack([x, y]), 8 - 1e-9, return_length=True)
    keep &= near <= (sources is field.stars)
    return np.column_stack([iy[keep], ix[keep]])


def _core_fraction(mask, centres):
    """Fraction of ``centres`` with a flagged pixel in their 3 x 3 core (NaN for none)."""
    if not len(centres):
        return float("nan")
    hit = [mask[y - 1 : y + 2, x - 1 : x + 2].any() for y, x in centres]
    return float(np.mean(hit))
