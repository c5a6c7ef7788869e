"""Flags on blends of stars: the profiles of several stars, fitted together, explain them."""

import numpy as np
from scipy.optimize import nnls

from . import geometry as geo
from . import stars as st

#: the fit's residual is searched this many times for fainter stars on brighter ones' slopes
BLEND_ROUNDS = 3
#: where, in the 3 x 3 box, the centre and the 8 neighbours (`.geometry.NEIGHBOURS` order) are
CENTRE_IN_BOX = geo.BOX1.index((0, 0))
NEIGHBOURS_IN_BOX = [geo.BOX1.index(offset) for offset in geo.NEIGHBOURS]


def drop_blends(cosmics, frame, stars, tuning):
    """Unflag the groups that the light of two or more blended stars explains.

    In a crowded field LACosmic flags the saddle between blended stars, or a
    fainter star on a brighter one's slope; the star veto, which weighs one
    star at a time, leaves such a group whole. Round each group that is no
    track and lies on a source (its peak's 5 x 5 median
    `~CosmicRayTuning.blend_lift` sigma above the sky), the stars within
    `~CosmicRayTuning.blend_reach` pixels are fitted together
    (`fit_stars`). The group goes when the fit holds two stars or more and
    explains each of its pixels: the pixel's excess is at most
    `~CosmicRayTuning.blend_slack` times the fitted light plus
    `~CosmicRayTuning.star_profile_sigma` sigma. A ray stands out of the
    stars' light and keeps its flags. ``stars`` holds the star test and the
    frame's star profile (`.stars.drop_star_cores`).
    """
    iy, ix, group, count = geo.groups(cosmics)
    if not count:
        return
    py, px = geo.group_peaks(frame.data, iy, ix, group)
    lift = geo.box_median(frame.data, py, px) - frame.sky[py, px]
    picked = lift >= tuning.blend_lift * frame.sigma[py, px]
    picked &= ~geo.is_track(group, iy, ix, count, tuning.track_extent)
    order = np.argsort(group, kind="stable")
    starts = np.searchsorted(group[order], np.arange(count + 1))
    drop = []
    for g in np.flatnonzero(picked):
        pixels = order[starts[g] : starts[g + 1]]
        if is_blend(cosmics, frame, (iy[pixels], ix[pixels]), stars, tuning):
            drop.append(pixels)
    if drop:
        drop = np.concatenate(drop)
        cosmics[iy[drop], ix[drop]] = False


def is_blend(cosmics, frame, pixels, stars, tuning):
    """Whether two or more stars fitted round a group's ``pixels`` explain every one of them."""
    gy, gx = pixels
    boxes = Boxes(frame, gy, gx, tuning.blend_reach, tuning.blend_min_peak)
    fit = fit_stars(cosmics, frame, boxes, stars, tuning.blend_min_peak)
    if fit is None or np.count_nonzero(fit[2]) < 2:
        return False
    light = tuning.blend_slack * star_sum(*fit, gy, gx, stars[1])
    noise = tuning.star_profile_sigma * frame.sigma[gy, gx]
    return bool(np.all(frame.excess(gy, gx) <= light + noise))


class Boxes:
    """The 3 x 3 boxes of the pixels ``min_peak`` sigma above the sky, ``reach`` round a group.

    Each row holds a box (`.geometry.BOX1` order): its ``rows``, ``cols``,
    ``excess`` and ``sigma``. The stars' tops are among their centres, which
    stay a pixel in from the frame's edge so that their boxes fit.
    """

    def __init__(self, frame, gy, gx, reach, min_peak):
        ny, nx = frame.data.shape
        low_y, high_y = max(gy.min() - reach, 1), min(gy.max() + reach, ny - 2)
        low_x, high_x = max(gx.min() - reach, 1), min(gx.max() + reach, nx - 2)
        area = np.s_[low_y : high_y + 1, low_x : high_x + 1]
        wy, wx = np.nonzero(frame.data[area] - frame.sky[area] >= min_peak * frame.sigma[area])
        index = geo.indices_around(frame.data.shape, wy + low_y, wx + low_x, geo.BOX1)
        self.rows, self.cols = np.divmod(index, nx)
        self.excess = frame.data.ravel()[index] - frame.sky.ravel()[index]
        self.sigma = frame.sigma.ravel()[index]


def fit_stars(cosmics, frame, boxes, stars, min_peak):
    """Centres (rows, columns) and 3 x 3 sums of the stars fitted in their `Boxes`, or None.

    The stars' tops are the local maxima ``min_peak`` sigma above the sky
    that pass the star test; their light, from the frame's star profile, is
    fitted to the unflagged pixels of their 3 x 3 boxes (`fit_amplitudes`).
    The tops of fainter stars on the slopes of brighter ones are then looked
    for in the light left after the fit, `BLEND_ROUNDS` times.
    """
    profile = stars[1]
    tops = np.empty((0, 2), np.intp)
    centres = np.empty((0, 2))
    fitted = None
    for _ in range(BLEND_ROUNDS + 1):
        found, shift = star_tops(boxes, fitted, stars, min_peak)
        new = ~(found[:, None, :] == tops[None, :, :]).all(axis=2).any(axis=1)  # not fitted yet
        if not new.any():
            break
        tops = np.concatenate([tops, found[new]])
        centres = np.concatenate([centres, found[new] + shift[new]])
        amplitude = fit_amplitudes(cosmics, frame, tops, centres.T, profile)
        fitted = (*centres.T, amplitude)
    return None if not tops.size else fitted


def star_tops(boxes, fitted, stars, min_peak):
    """Find the star tops (rows, columns) among the centres of `Boxes`, and their centroids.

    A top is a local maximum ``min_peak`` sigma above the sky that passes
    the star test, in the light left after that of the ``fitted`` stars
    (centres and 3 x 3 sums; None for none). The centroids are the tops'
    `.stars.centroid_shift`.
    """
    test, profile = stars

    def light_left(pick, columns):
        light = boxes.excess[pick][:, columns]
        if fitted is not None:
            rows, cols = boxes.rows[pick][:, columns], boxes.cols[pick][:, columns]
            light = light - star_sum(*fitted, rows, cols, profile)
        return light

    centre = light_left(slice(None), CENTRE_IN_BOX)
    pick = np.flatnonzero(centre >= min_peak * boxes.sigma[:, CENTRE_IN_BOX])
    centre, light = centre[pick], light_left(pick, NEIGHBOURS_IN_BOX)
    top = (light < centre[:, None]).all(axis=1)
    pick, centre, light = pick[top], centre[top], light[top]
    sigma = boxes.sigma[pick]
    star = st.passes_star_test(
        light, centre, (sigma[:, NEIGHBOURS_IN_BOX], sigma[:, CENTRE_IN_BOX]), test
    )
    pick, centre, light = pick[star], centre[star], light[star]
    box = np.empty((pick.size, len(geo.BOX1)))
    box[:, CENTRE_IN_BOX], box[:, NEIGHBOURS_IN_BOX] = centre, light
    shift, _ = st.centroid_shift(box)
    rows, cols = boxes.rows[pick, CENTRE_IN_BOX], boxes.cols[pick, CENTRE_IN_BOX]
    return np.column_stack([rows, cols]), shift


def fit_amplitudes(cosmics, frame, tops, centres, profile):
    """3 x 3 sums of the stars at ``centres`` fitted to the unflagged pixels round their ``tops``.

    Non-negative least squares, each pixel weighted by its noise.
    """
    cy, cx = centres
    boxes = geo.indices_around(frame.data.shape, tops[:, 0], tops[:, 1], geo.BOX1)
    fy, fx = np.divmod(np.unique(boxes), frame.data.shape[1])
    free = ~cosmics[fy, fx] & ~frame.known[fy, fx] & (frame.sigma[fy, fx] > 0)
    fy, fx = fy[free], fx[free]
    if fy.size < cy.size:  # fewer pixels than stars: nothing to fit
        return np.zeros(cy.size)
    design = st.star_light(cy, cx, 1.0, fy[:, None], fx[:, None], *profile)
    weight = 1 / frame.sigma[fy, fx]
    amplitude, _ = nnls(design * weight[:, None], frame.excess(fy, fx) * weight)
    return amplitude


def star_sum(cy, cx, amplitude, iy, ix, profile):
    """Light of the stars at ``cy, cx`` with 3 x 3 sums ``amplitude`` at pixels ``iy, ix``."""
    light = st.star_light(cy, cx, amplitude, np.ravel(iy)[:, None], np.ravel(ix)[:, None], *profile)
    return light.sum(axis=1).reshape(np.shape(iy))
