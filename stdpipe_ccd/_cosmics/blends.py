"""Flags on blends of stars: the profiles of several stars, fitted together, explain them."""

import numpy as np
from scipy.optimize import nnls

from . import geometry as geo
from . import stars as st

#: the fit's residual is searched this many times for fainter stars on brighter ones' slopes
BLEND_ROUNDS = 3
BOX1_OFFSETS = np.array(geo.BOX1)
NEIGHBOUR_OFFSETS = np.array(geo.NEIGHBOURS)


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
    window = Window(frame, gy, gx, tuning.blend_reach)
    fit = fit_stars(cosmics, frame, window, stars, tuning.blend_min_peak)
    if fit is None or np.count_nonzero(fit[2]) < 2:
        return False
    light = tuning.blend_slack * star_sum(*fit, gy, gx, stars[1])
    noise = tuning.star_profile_sigma * frame.sigma[gy, gx]
    return bool(np.all(frame.excess(gy, gx) <= light + noise))


class Window:
    """The frame round a group, ``reach`` pixels beyond it and one more for the neighbours."""

    def __init__(self, frame, gy, gx, reach):
        ny, nx = frame.data.shape
        # the stars' tops stay a pixel in from the frame's edge, so that their 3 x 3 boxes fit
        low_y, high_y = max(gy.min() - reach, 1), min(gy.max() + reach, ny - 2)
        low_x, high_x = max(gx.min() - reach, 1), min(gx.max() + reach, nx - 2)
        self.origin = low_y - 1, low_x - 1
        self.slices = np.s_[low_y - 1 : high_y + 2, low_x - 1 : high_x + 2]
        self.excess = frame.data[self.slices] - frame.sky[self.slices]
        self.sigma = frame.sigma[self.slices]
        self.rows, self.cols = np.mgrid[self.slices]


def fit_stars(cosmics, frame, window, stars, min_peak):
    """Centres (rows, columns) and 3 x 3 sums of the stars fitted in a `Window`, or None.

    The stars' tops are the local maxima ``min_peak`` sigma above the sky
    that pass the star test; their light, from the frame's star profile, is
    fitted to the unflagged pixels of their 3 x 3 boxes (`fit_amplitudes`).
    The tops of fainter stars on the slopes of brighter ones are then looked
    for in the light left after the fit, `BLEND_ROUNDS` times.
    """
    test, profile = stars
    tops = np.empty((0, 2), np.intp)
    centres = np.empty((0, 2))
    left = window.excess
    for _ in range(BLEND_ROUNDS + 1):
        found, shift = star_tops(frame, window, left, test, min_peak)
        new = ~(found[:, None, :] == tops[None, :, :]).all(axis=2).any(axis=1)  # not fitted yet
        if not new.any():
            break
        tops = np.concatenate([tops, found[new]])
        centres = np.concatenate([centres, found[new] + shift[new]])
        amplitude = fit_amplitudes(cosmics, frame, tops, centres.T, profile)
        left = window.excess - star_sum(*centres.T, amplitude, window.rows, window.cols, profile)
    return None if not tops.size else (*centres.T, amplitude)


def star_tops(frame, window, light, test, min_peak):
    """Find the star tops (rows, columns) in ``light`` over a `Window`; with their centroids.

    The centroids are the tops' `.stars.centroid_shift`.
    """
    inner = light[1:-1, 1:-1]
    top = inner >= min_peak * window.sigma[1:-1, 1:-1]
    for dy, dx in geo.NEIGHBOURS:
        top &= inner > light[1 + dy : light.shape[0] - 1 + dy, 1 + dx : light.shape[1] - 1 + dx]
    wy, wx = np.nonzero(top)
    if not wy.size:
        return np.empty((0, 2), np.intp), np.empty((0, 2))
    wy, wx = wy + 1, wx + 1
    around = light[wy[:, None] + NEIGHBOUR_OFFSETS[:, 0], wx[:, None] + NEIGHBOUR_OFFSETS[:, 1]]
    ty, tx = wy + window.origin[0], wx + window.origin[1]
    star = st.passes_star_test(frame, ty, tx, around, light[wy, wx], test)
    wy, wx = wy[star], wx[star]
    box = light[wy[:, None] + BOX1_OFFSETS[:, 0], wx[:, None] + BOX1_OFFSETS[:, 1]]
    shift, _ = st.centroid_shift(box)
    return np.column_stack([ty[star], tx[star]]), shift


def fit_amplitudes(cosmics, frame, tops, centres, profile):
    """3 x 3 sums of the stars at ``centres`` fitted to the unflagged pixels round their ``tops``.

    Non-negative least squares, each pixel weighted by its noise.
    """
    cy, cx = centres
    nx = frame.data.shape[1]
    rows = tops[:, :1] + BOX1_OFFSETS[:, 0]  # the tops are a pixel in from the edge
    cols = tops[:, 1:] + BOX1_OFFSETS[:, 1]
    fy, fx = np.divmod(np.unique(rows * nx + cols), nx)
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
