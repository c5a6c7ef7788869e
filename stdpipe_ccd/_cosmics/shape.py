"""The frame's star shape: a radial profile integrated over each pixel, and stars fitted with it.

The veto's median profile (`.stars.star_profile`) gives a pixel's light
from the distance of its centre to the star's centroid; on an undersampled
star the light also depends on where the centroid falls within the pixel.
In the 3 x 3 boxes of the stars 50 sigma bright or more, 23 % of the
pixels are more than 3 sigma off that profile in the FWHM 1.6 cell of the
validation matrix (13 % at FWHM 3), and about 3 % off the shape here,
integrated over the pixel and scaled to each star's 8 neighbours (its top
predicted from them). With it the steps after the veto tell a star's light
from a ray's charge on it (`explained_by_stars`).
"""

import functools
from typing import NamedTuple

import numpy as np

from . import geometry as geo

#: knots of the radial shape, this far apart (pixels) ...
SHAPE_STEP = 0.5
#: ... out to this radius (pixels)
SHAPE_RADIUS = 6
SHAPE_KNOTS = int(SHAPE_RADIUS / SHAPE_STEP) + 1
#: a pixel's offsets from a star's centre are tabulated in steps of 1 / SHAPE_GRID pixel
SHAPE_GRID = 8
_SIDE = (SHAPE_RADIUS + 1) * SHAPE_GRID + 1
#: sub-pixels per side over which a pixel integrates the shape
SHAPE_SUB = 5
#: about this many bright stars are fitted for the shape
SHAPE_STARS = 60
#: the pixels of a star fitted for the shape: within SHAPE_RADIUS of its top
SHAPE_DISK = [(dy, dx) for dy, dx in geo.box(SHAPE_RADIUS) if dy * dy + dx * dx <= SHAPE_RADIUS**2]
#: a pixel this many sigma above a fit is left out of it (a neighbour, a ray) ...
CLIP_SIGMA = 3
#: ... plus this fraction of its fitted light: the shape is 1-3 % off on bright stars
CLIP_FRACTION = 0.1
#: the shape's roundness is read at this many phases each way, -0.5 to 0.5 pixel
CORNER_PHASES = 9


#: a frame's stars count as elongated above this ratio of their axes
ELONGATION_MIN = 1.15
#: their second moments are measured within this radius (pixels) of their centroids, once
#: the stars are made round by the metric measured so far ...
MOMENT_APERTURE = 4.5
#: ... in a box this far (pixels) round their tops, which holds the aperture's ellipse
#: up to an axis ratio of (7 / 4.5) ** 2 = 2.4 ...
MOMENT_BOX = np.array(geo.box(7))
#: ... at most this many times, until the axes found in the round stars agree this closely
MOMENT_ROUNDS = 6
MOMENT_SETTLED = 1.005


class Profile(NamedTuple):
    """The frame's median star profile (`.stars.star_profile`).

    The ``light`` at distances ``radii`` from a star's centroid, as a
    fraction of its 3 x 3 sum; distances are measured after the ``metric``
    (`psf_metric`) has made the stars round.
    """

    radii: np.ndarray
    light: np.ndarray
    metric: np.ndarray = None

    def at(self, cy, cx, iy, ix):
        """Fraction of a star's 3 x 3 sum at pixels ``iy, ix`` for stars centred at ``cy, cx``."""
        distance = geo.distance_to(cy, cx, iy, ix, self.metric)
        return np.interp(distance, self.radii, self.light, right=0.0)


def psf_metric(frame, iy, ix, cy, cx):
    """Return the 2 x 2 map that makes the frame's stars round, keeping their area; None if round.

    From the median second moments of the light of the stars whose tops are
    ``iy, ix`` (centroids ``cy, cx``). A radial profile misses where an
    elongated star (trailed, or off the optical axis) puts its light, and
    LACosmic's flags on its core stay (stars of axes 1.6 x 0.8 sigma, 3
    seeds: precision 0.92; 0.97 with distances mapped). A round aperture
    cuts the long axis shorter than the short one: the moments are measured
    within `MOMENT_APERTURE` of the stars as the metric found so far makes
    them, until they come out round. Stars of axis ratio 1.5 (2) measure
    1.48 (1.95) in 4 rounds, against 1.34 (1.63) within a 7 x 7 box; in a
    crowded field of them (3 seeds), precision is 0.943 (0.850), against
    0.894 (0.754) with the box and 0.955 (0.873) with the true map.
    """
    dy, dx = MOMENT_BOX.T
    light = geo.around(frame.data, iy, ix, MOMENT_BOX) - geo.at(frame.sky, iy, ix)[:, None]
    light = np.maximum(light, 0)
    dy, dx = (iy - cy)[:, None] + dy, (ix - cx)[:, None] + dx
    metric = np.eye(2)
    for _ in range(MOMENT_ROUNDS):
        my, mx = geo.mapped(dy, dx, metric)
        weight = light * (my * my + mx * mx <= MOMENT_APERTURE**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            weight /= weight.sum(axis=1, keepdims=True)
        moments = [
            np.nanmedian((weight * a * b).sum(axis=1)) for a, b in ((my, my), (my, mx), (mx, mx))
        ]
        covariance = np.array([[moments[0], moments[1]], [moments[1], moments[2]]])
        if not np.isfinite(covariance).all():
            return None
        axes, vectors = np.linalg.eigh(covariance)
        if not axes[0] > 0:
            return None
        metric = vectors @ np.diag(np.sqrt(np.sqrt(axes.prod()) / axes)) @ vectors.T @ metric
        if np.sqrt(axes[1] / axes[0]) <= MOMENT_SETTLED:
            break
    axes = np.linalg.svd(metric, compute_uv=False)
    return metric if axes[0] / axes[1] > ELONGATION_MIN else None


@functools.cache
def _knot_table():
    """Weights of the knots in a pixel at each tabulated offset (rows: dy * _SIDE + dx)."""
    sub = (np.arange(SHAPE_SUB) + 0.5) / SHAPE_SUB - 0.5
    offset = np.arange(_SIDE) / SHAPE_GRID
    dy = offset[:, None, None, None] + sub[:, None]
    dx = offset[None, :, None, None] + sub
    radius = np.sqrt(dy * dy + dx * dx) / SHAPE_STEP  # in knots
    hat = np.maximum(1 - np.abs(radius[..., None] - np.arange(SHAPE_KNOTS)), 0)
    return hat.mean(axis=(2, 3)).reshape(_SIDE * _SIDE, SHAPE_KNOTS).astype(np.float32)


def _interpolate(table, dy, dx, metric=None):
    """Bilinear interpolation of ``table`` (rows as in `_knot_table`) at offsets ``dy, dx``.

    The offsets are first mapped by the ``metric`` (`psf_metric`), if any.
    """
    dy, dx = geo.mapped(dy, dx, metric)
    qy = np.minimum(np.abs(dy) * SHAPE_GRID, _SIDE - 1.001)
    qx = np.minimum(np.abs(dx) * SHAPE_GRID, _SIDE - 1.001)
    y0, x0 = qy.astype(np.intp), qx.astype(np.intp)
    ty, tx = qy - y0, qx - x0
    at = y0 * _SIDE + x0
    if table.ndim > 1:
        ty, tx = ty[..., None], tx[..., None]
    below = table[at] * (1 - tx) + table[at + 1] * tx
    above = table[at + _SIDE] * (1 - tx) + table[at + _SIDE + 1] * tx
    return below * (1 - ty) + above * ty


class StarShape:
    """The frame's star shape, fitted on its bright ``peaks``, and the stars fitted with it.

    The shape's knots are fitted by least squares to the light of the
    peaks' `SHAPE_DISK` around their centroids, as a fraction of their 3 x 3
    sums; pixels `CLIP_SIGMA` above the first fit (neighbours, rays) are
    left out of a second. `tops` tests and fits each top once per frame:
    ``is_star(frame, iy, ix)`` (an attribute, which may be set once the
    shape is fitted) says which are stars' tops, ``centroids``
    where their stars are centred (`.stars.centroids`); ``slack`` is how
    many times its fitted light a star's pixel may hold; ``metric`` makes
    elongated stars round (`psf_metric`).
    """

    def __init__(self, frame, peaks, *, centroids, is_star, slack=1.0, metric=None):
        self._centroids, self.is_star, self._slack = centroids, is_star, slack
        self._metric = metric
        iy, ix = peaks
        inside = geo.edge_distance(frame.data.shape, iy, ix) >= SHAPE_RADIUS
        if inside.any():  # the disks of the others are cut by the edge
            iy, ix = iy[inside], ix[inside]
        step = max(len(iy) // SHAPE_STARS, 1)
        iy, ix = iy[::step], ix[::step]
        cy, cx, total = centroids(frame, iy, ix)
        dy, dx = np.array(SHAPE_DISK).T
        light, sigma = geo.gather_around([frame.data, frame.sigma], iy, ix, SHAPE_DISK)
        light -= geo.at(frame.sky, iy, ix)[:, None]
        weights = _interpolate(
            _knot_table(),
            iy[:, None] + dy - cy[:, None],
            ix[:, None] + dx - cx[:, None],
            metric,
        )
        design = (weights * (total[:, None] / sigma)[..., None]).reshape(-1, SHAPE_KNOTS)
        target = (light / sigma).ravel()
        fitted = np.isfinite(target) & np.isfinite(design).all(axis=1)
        for _ in range(2):
            part = design[fitted]
            knots = np.linalg.lstsq(part.T @ part, part.T @ target[fitted], rcond=None)[0]
            fitted &= target - design @ knots < CLIP_SIGMA
        self.table = _knot_table() @ knots  # the shape at each tabulated offset
        self._index = np.zeros(0, np.intp)  # the tops seen so far, by flat index
        self._tops = np.zeros((5, 0))

    def tops(self, frame, iy, ix):
        """Whether pixels ``iy, ix`` are stars' tops, and those stars' fits.

        Returns rows: star (1 or 0), centroid (rows, columns), amplitude,
        and whether the shape fits (1 or 0; NaN for no star). The amplitude
        is fitted on the top's 8 neighbours (a ray on the top does not lift
        it), less those `CLIP_SIGMA` sigma and `CLIP_FRACTION` of their light
        above a first fit; the shape fits when none is: on a galaxy, or on a
        ray that passes the star test, the neighbours do not follow it.
        """
        index = iy * frame.data.shape[1] + ix
        where = np.searchsorted(self._index, index)
        known = np.zeros(index.size, bool)
        if self._index.size:
            known = self._index[np.minimum(where, self._index.size - 1)] == index
        if not known.all():
            new = np.unique(index[~known])
            keys = np.concatenate([self._index, new])
            found = self._test_and_fit(frame, *np.divmod(new, frame.data.shape[1]))
            order = np.argsort(keys)
            self._index, self._tops = keys[order], np.concatenate([self._tops, found], 1)[:, order]
            where = np.searchsorted(self._index, index)
        return self._tops[:, where]

    def _test_and_fit(self, frame, iy, ix):
        found = np.full((5, iy.size), np.nan)
        star = self.is_star(frame, iy, ix)
        found[0] = star
        found[1:, star] = self.fit(frame, iy[star], ix[star])
        return found

    def fit(self, frame, iy, ix):
        """Fit the stars topping at ``iy, ix``: rows 1 to 4 of `tops`, without the star test."""
        cy, cx, _ = self._centroids(frame, iy, ix)
        dy, dx = np.array(geo.NEIGHBOURS).T
        model = _interpolate(
            self.table,
            iy[:, None] + dy - cy[:, None],
            ix[:, None] + dx - cx[:, None],
            self._metric,
        )
        light, sigma = geo.gather_around([frame.data, frame.sigma], iy, ix, geo.NEIGHBOURS)
        light -= geo.at(frame.sky, iy, ix)[:, None]
        weight = 1.0 / (sigma * sigma)
        used = np.ones(light.shape, bool)
        for _ in range(2):
            w = used * weight * model
            amplitude = (w * light).sum(axis=1) / np.maximum((w * model).sum(axis=1), 1e-30)
            fitted = self._slack * amplitude[:, None] * model
            used &= light - fitted < CLIP_SIGMA * sigma + CLIP_FRACTION * fitted
        return cy, cx, amplitude, used.all(axis=1)

    @property
    def top_fraction(self):
        """The fraction of a star's 3 x 3 light in its top pixel, the star centred on it."""
        return float(_interpolate(self.table, np.zeros(1), np.zeros(1), self._metric)[0])

    @property
    def corner_roundness(self):
        """The least `.geometry.roundness` of a star of this shape over its pixel phases.

        It is least with the star centred near a pixel's corner: 0.32 for a
        Gaussian of FWHM 1.6 pixels, 0.85 for a Moffat of FWHM 3.
        """
        return float(geo.roundness(self.at_phases(geo.NEIGHBOURS, CORNER_PHASES)).min())

    def at_phases(self, offsets, steps):
        """Return the shape's light at ``offsets`` (dy, dx) round stars centred at each phase.

        The phases are ``steps`` x ``steps`` centres from -0.5 to 0.5 pixel
        each way, one per row, rows first. Light is a fraction of the 3 x 3
        sum, as `light`.
        """
        dy, dx = np.array(offsets, dtype=float).T
        shift = np.linspace(-0.5, 0.5, steps)
        cy, cx = np.repeat(shift, steps)[:, None], np.tile(shift, steps)[:, None]
        return _interpolate(self.table, dy - cy, dx - cx, self._metric)

    def light(self, fits, iy, ix):
        """Light of stars (rows 1 to 3 of `tops`: centroid, amplitude) in pixels ``iy, ix``."""
        _, cy, cx, amplitude = fits[:4]
        return amplitude * _interpolate(self.table, iy - cy, ix - cx, self._metric)


class StarLight(NamedTuple):
    """The frame's stars, as the steps after the veto tell their light (`explained_by_stars`).

    Their shape and tops (tops `.faint_stars.star_top_sigma` above the sky that
    pass the star test), the `~CosmicRayTuning.star_light_slack`
    and the `~CosmicRayTuning.star_light_grow_sigma`.
    """

    shape: StarShape
    slack: float
    grow_sigma: float


def explained_by_stars(frame, iy, ix, nsigma, tops=None, slack=None):
    """Whether the light of a star explains pixels ``iy, ix`` (`StarLight` in ``frame.stars``).

    The star is the one whose top a pixel's climb reaches, a top
    `.faint_stars.star_top_sigma` above the sky that passes the star test. Its
    light, from the frame's star shape (`StarShape`) scaled to the top's
    neighbours, explains a pixel that is at most ``slack`` times
    that plus ``nsigma`` sigma above the sky, and that the star adds a
    sigma to at least (the climb from a faint ray on the sky may end on a
    distant star). A top explains itself only when its neighbours follow
    the shape: a ray on a galaxy passes the star test. ``tops``: where the
    pixels' climbs end, if known; ``slack``: in place of `StarLight.slack`.
    """
    stars = frame.stars
    explained = np.zeros(iy.size, bool)
    if stars is None or not iy.size:
        return explained
    ty, tx = frame.climb(iy, ix, geo.CLIMB_STEPS) if tops is None else tops
    # many pixels climb to one top: each is tested and measured once
    index, which = np.unique(ty * frame.data.shape[1] + tx, return_inverse=True)
    fits = stars.shape.tops(frame, *np.divmod(index, frame.data.shape[1]))[:, which]
    top = np.flatnonzero(fits[0] == 1)
    fits, iy, ix, sigma = fits[:, top], iy[top], ix[top], geo.at(frame.sigma, iy[top], ix[top])
    light = stars.shape.light(fits, iy, ix)
    # a top is a star's own light only when its neighbours follow the star's shape
    light[(ty[top] == iy) & (tx[top] == ix) & (fits[4] == 0)] = 0.0
    excess = frame.excess(iy, ix)
    slack = stars.slack if slack is None else slack
    explained[top] = (light >= sigma) & (excess <= slack * light + nsigma * sigma)
    return explained
