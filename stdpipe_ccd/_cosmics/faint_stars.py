"""Faint undersampled stars flagged whole: small faint groups the frame's star shape fits.

The star test of the veto (`.stars.is_star_top`) reads a top's 8
neighbours, which hold a sigma or two each round a star of 5 to 10 sigma:
the noise decides, and at FWHM 1.6 such stars are flagged whole, then grown
and widened. Their whole 5 x 5 box still tells them from a ray: a star's
light follows the frame's star shape all round, a ray's stays in its
pixels.
"""

import numpy as np

from . import geometry as geo

#: the box fitted round a group's peak (its centre is the peak) ...
FIT_BOX = geo.BOX2
#: ... with stars centred at this many phases each way, -0.5 to 0.5 pixel
FIT_PHASES = 9
_CENTRE = FIT_BOX.index((0, 0))
#: the 4 edge neighbours of the peak in the box, one of which a two-pixel ray may hold
_EDGES = [FIT_BOX.index(offset) for offset in ((-1, 0), (0, -1), (0, 1), (1, 0))]


def drop_faint_stars(cosmics, frame, tuning):
    """Unflag the small faint groups that the frame's star shape fits better than a ray.

    A group of up to `~CosmicRayTuning.faint_star_pixels` pixels peaking
    below `~CosmicRayTuning.certain_sigma` is fitted over the 5 x 5 box round
    its peak twice, each time with a constant level: as a star of the
    frame's shape (`.shape.StarShape`; its amplitude, its centre the best of
    `FIT_PHASES` x `FIT_PHASES` phases), and as a ray in two pixels, the
    peak and its brightest edge neighbour, each free. It goes when the star
    fits within `~CosmicRayTuning.faint_star_chi2` per pixel and better than
    the two pixels by `~CosmicRayTuning.faint_star_margin` in chi-square.
    It runs on crowded (`is_crowded`) undersampled frames
    (`~CosmicRayTuning.faint_star_top`) once the veto has measured the
    frame's stars (`.frame.Frame.stars`); masked pixels are left out of the
    fits.
    """
    if frame.stars is None or frame.stars.shape.top_fraction < tuning.faint_star_top:
        return
    if not is_crowded(cosmics, frame, tuning):
        return
    iy, ix, group, count = geo.groups(cosmics)
    if not count:
        return
    py, px = geo.group_peaks(frame.data, iy, ix, group)
    size = np.bincount(group, minlength=count)
    faint = frame.excess(py, px) < tuning.certain_sigma * geo.at(frame.sigma, py, px)
    inside = geo.edge_distance(frame.data.shape, py, px) >= 2
    tested = np.flatnonzero(faint & inside & (size <= tuning.faint_star_pixels))
    if not tested.size:
        return
    star_chi2, pair_chi2, used = fit_chi2(frame, py[tested], px[tested])
    star = (star_chi2 <= tuning.faint_star_chi2 * used) & (
        star_chi2 + tuning.faint_star_margin <= pair_chi2
    )
    drop = np.zeros(count, bool)
    drop[tested[star]] = True
    drop = drop[group]
    cosmics[iy[drop], ix[drop]] = False


def is_crowded(cosmics, frame, tuning):
    """Whether the frame holds `~CosmicRayTuning.faint_star_density` stars or more.

    The stars counted are the unflagged local maxima
    `~CosmicRayTuning.star_shape_sigma` above the sky, per 1024 x 1024
    pixels not masked.
    """
    iy, ix = frame.peaks(tuning.star_shape_sigma)
    stars = np.count_nonzero(~geo.at(cosmics, iy, ix))
    return stars * 1024**2 >= tuning.faint_star_density * np.count_nonzero(~frame.known)


def fit_chi2(frame, iy, ix):
    """Chi-square of the star and two-pixel fits of the 5 x 5 boxes round ``iy, ix``.

    Returns the two and the number of pixels fitted in each box.
    """
    data, sky, sigma, known = geo.gather_around(
        [frame.data, frame.sky, frame.sigma, frame.known], iy, ix, FIT_BOX
    )
    used = ~known
    # in sigma: each pixel's excess, and the light a unit level puts in it
    excess = np.where(used, (data - sky) / sigma, 0.0)
    level = np.where(used, 1.0 / sigma, 0.0)
    shape = frame.stars.shape.at_phases(FIT_BOX, FIT_PHASES)  # (phases, pixels)
    star = shape[None, :, :] * level[:, None, :]  # (boxes, phases, pixels)
    star_chi2 = _level_fit_chi2(excess[:, None, :], star, level[:, None, :]).min(axis=1)
    # the ray: the peak and its brightest edge neighbour take their own value
    rest = used.copy()
    rest[:, _CENTRE] = False
    edges = np.where(used[:, _EDGES], excess[:, _EDGES], -np.inf)
    rest[np.arange(len(rest)), np.array(_EDGES)[np.argmax(edges, axis=1)]] = False
    level_only = np.where(rest, level, 0.0)
    pair_chi2 = _level_fit_chi2(np.where(rest, excess, 0.0), None, level_only)
    return star_chi2, pair_chi2, used.sum(axis=1)


def _level_fit_chi2(excess, model, level):
    """Chi-square of the least-squares fit of ``model`` (if any) plus a constant ``level``.

    All in sigma, pixels along the last axis; pixels left out are 0 in all three.
    """
    ll = (level * level).sum(axis=-1)
    le = (level * excess).sum(axis=-1)
    if model is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            base = np.where(ll > 0, le / ll, 0.0)
        return ((excess - base[..., None] * level) ** 2).sum(axis=-1)
    mm = (model * model).sum(axis=-1)
    ml = (model * level).sum(axis=-1)
    me = (model * excess).sum(axis=-1)
    det = mm * ll - ml * ml
    with np.errstate(divide="ignore", invalid="ignore"):
        amplitude = np.where(det > 0, (me * ll - ml * le) / det, 0.0)
        base = np.where(det > 0, (mm * le - ml * me) / det, 0.0)
    fitted = amplitude[..., None] * model + base[..., None] * level
    return ((excess - fitted) ** 2).sum(axis=-1)


def star_top_sigma(cosmics, on_stars, frame, shape, tuning):
    """How far above the sky a star's top must be for its light to explain flagged pixels.

    `~CosmicRayTuning.undersampled_top_sigma` on undersampled frames (the
    ``shape`` puts `~CosmicRayTuning.faint_star_top` or more of a star's 3
    x 3 light in its top) that are crowded (`is_crowded`, with
    the flags ``cosmics`` less the pixels ``on_stars`` the veto unflags),
    `~CosmicRayTuning.star_shape_sigma` on the others.
    """
    if shape.top_fraction < tuning.faint_star_top:
        return tuning.star_shape_sigma
    vetoed = cosmics.copy()
    vetoed[on_stars] = False
    if not is_crowded(vetoed, frame, tuning):
        return tuning.star_shape_sigma
    return min(tuning.undersampled_top_sigma, tuning.star_shape_sigma)
