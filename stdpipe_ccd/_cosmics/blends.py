"""Flags on blends of stars: the profiles of several stars, fitted together, explain them.

The groups are fitted in lockstep: each round finds the star tops round
every group still looking for stars at once, and only the least-squares
fits run one group at a time.
"""

from typing import NamedTuple

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
    lift = geo.box_median(frame.data, py, px) - geo.at(frame.sky, py, px)
    picked = lift >= tuning.blend_lift * geo.at(frame.sigma, py, px)
    picked &= ~geo.is_track(group, iy, ix, count, tuning.track_extent)
    if not picked.any():
        return
    # the picked groups are numbered 0 to n - 1 (their "owner"), their pixels in that order
    owner = np.cumsum(picked) - 1
    pixels = np.flatnonzero(picked[group])
    order = pixels[np.argsort(owner[group[pixels]], kind="stable")]
    gy, gx, gowner = iy[order], ix[order], owner[group[order]]
    boxes = Boxes(frame, (gy, gx, gowner), tuning.blend_reach, tuning.blend_min_peak)
    fitted = fit_stars(cosmics, frame, boxes, stars, tuning.blend_min_peak)
    light = tuning.blend_slack * fitted.light(gowner, gy, gx, stars[1])
    noise = tuning.star_profile_sigma * geo.at(frame.sigma, gy, gx)
    unexplained = ~(frame.excess(gy, gx) <= light + noise)
    explained = np.bincount(gowner, unexplained, boxes.groups) == 0
    several = np.bincount(fitted.owner, fitted.amplitude != 0, boxes.groups) >= 2
    blend = explained & several
    drop = blend[gowner]
    cosmics[gy[drop], gx[drop]] = False


class Boxes:
    """The 3 x 3 boxes of the pixels ``min_peak`` sigma above the sky, ``reach`` round each group.

    ``pixels`` holds the groups' rows, columns and owners (0 to n - 1, in
    order). Each row holds a box (`.geometry.BOX1` order): its ``owner``,
    ``rows``, ``cols``, ``excess`` and ``sigma``. The stars' tops are among
    their centres, which stay a pixel in from the frame's edge so that
    their boxes fit.
    """

    def __init__(self, frame, pixels, reach, min_peak):
        gy, gx, owner = pixels
        ny, nx = frame.data.shape
        self.groups = int(owner[-1]) + 1
        bounds = []
        for rows, limit in ((gy, ny), (gx, nx)):
            low, high = np.full(self.groups, limit), np.zeros(self.groups, np.intp)
            np.minimum.at(low, owner, rows)
            np.maximum.at(high, owner, rows)
            bounds.append((np.maximum(low - reach, 1), np.minimum(high + reach, limit - 2)))
        (low_y, high_y), (low_x, high_x) = bounds
        found = []
        for g in range(self.groups):
            area = np.s_[low_y[g] : high_y[g] + 1, low_x[g] : high_x[g] + 1]
            bright = frame.data[area] - frame.sky[area] >= min_peak * frame.sigma[area]
            wy, wx = np.nonzero(bright)
            found.append((wy + low_y[g]) * nx + wx + low_x[g])
        self.owner = np.repeat(np.arange(self.groups), [len(f) for f in found])
        centres = np.concatenate(found)
        index = geo.indices_around(frame.data.shape, *np.divmod(centres, nx), geo.BOX1)
        self.rows, self.cols = np.divmod(index, nx)
        self.excess = frame.data.ravel()[index] - frame.sky.ravel()[index]
        self.sigma = frame.sigma.ravel()[index]


class Fitted(NamedTuple):
    """The stars fitted round the groups, in order of their ``owner`` group.

    Their ``tops`` (rows, columns), centres ``cy, cx`` and 3 x 3 sums ``amplitude``.
    """

    owner: np.ndarray
    tops: np.ndarray
    cy: np.ndarray
    cx: np.ndarray
    amplitude: np.ndarray

    def light(self, owner, iy, ix, profile):
        """Light at pixels ``iy, ix`` of the stars fitted round their ``owner`` groups."""
        shape = np.shape(iy)
        owner = np.broadcast_to(owner, shape).ravel()
        first = np.searchsorted(self.owner, owner)
        count = np.searchsorted(self.owner, owner, side="right") - first
        pixel = np.repeat(np.arange(owner.size), count)
        star = np.repeat(first - (np.cumsum(count) - count), count) + np.arange(pixel.size)
        light = st.star_light(
            self.cy[star],
            self.cx[star],
            self.amplitude[star],
            np.ravel(iy)[pixel],
            np.ravel(ix)[pixel],
            profile,
        )
        return np.bincount(pixel, light, owner.size).reshape(shape)


def fit_stars(cosmics, frame, boxes, stars, min_peak):
    """Fit the stars round each group in its `Boxes`; return them (`Fitted`).

    The stars' tops are the local maxima ``min_peak`` sigma above the sky
    that pass the star test; their light, from the frame's star profile, is
    fitted to the unflagged pixels of their 3 x 3 boxes (`fit_amplitudes`).
    The tops of fainter stars on the slopes of brighter ones are then looked
    for in the light left after the fit, `BLEND_ROUNDS` times, round the
    groups where the round before found new ones.
    """
    profile = stars[1]
    nx = frame.data.shape[1]
    fitted = Fitted(np.empty(0, np.intp), np.empty((0, 2), np.intp), *np.empty((3, 0)))
    looking = np.ones(boxes.groups, bool)
    for _ in range(BLEND_ROUNDS + 1):
        rows = np.flatnonzero(looking[boxes.owner])
        owner, found, shift = star_tops(boxes, rows, fitted, stars, min_peak)
        known = fitted.owner * frame.data.size + fitted.tops @ [nx, 1]
        new = ~np.isin(owner * frame.data.size + found @ [nx, 1], known)
        looking = np.zeros(boxes.groups, bool)
        looking[owner[new]] = True
        if not looking.any():
            break
        # the new tops follow the group's earlier ones
        order = np.argsort(np.concatenate([fitted.owner, owner[new]]), kind="stable")
        centres = found[new] + shift[new]
        fitted = Fitted(
            np.concatenate([fitted.owner, owner[new]])[order],
            np.concatenate([fitted.tops, found[new]])[order],
            np.concatenate([fitted.cy, centres[:, 0]])[order],
            np.concatenate([fitted.cx, centres[:, 1]])[order],
            np.concatenate([fitted.amplitude, np.zeros(new.sum())])[order],
        )
        refit = np.flatnonzero(looking[fitted.owner])
        fitted.amplitude[refit] = fit_amplitudes(
            cosmics,
            frame,
            fitted.owner[refit],
            fitted.tops[refit],
            (fitted.cy[refit], fitted.cx[refit]),
            profile,
        )
    return fitted


def star_tops(boxes, rows, fitted, stars, min_peak):
    """Find the star tops among the centres of the `Boxes` ``rows``.

    A top is a local maximum ``min_peak`` sigma above the sky that passes
    the star test, in the light left after that of the ``fitted`` stars.
    Returns the tops' owner groups, their rows and columns, and their
    centroids' shifts (`.stars.centroid_shift`).
    """
    test, profile = stars

    def light_left(pick, columns):
        light = boxes.excess[pick][:, columns]
        if not fitted.owner.size:  # the first round
            return light
        rows, cols = boxes.rows[pick][:, columns], boxes.cols[pick][:, columns]
        owner = boxes.owner[pick] if np.ndim(columns) == 0 else boxes.owner[pick, None]
        return light - fitted.light(owner, rows, cols, profile)

    centre = light_left(rows, CENTRE_IN_BOX)
    keep = centre >= min_peak * boxes.sigma[rows, CENTRE_IN_BOX]
    pick, centre = rows[keep], centre[keep]
    light = light_left(pick, NEIGHBOURS_IN_BOX)
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
    tops = np.column_stack([boxes.rows[pick, CENTRE_IN_BOX], boxes.cols[pick, CENTRE_IN_BOX]])
    return boxes.owner[pick], tops, shift


def fit_amplitudes(cosmics, frame, owner, tops, centres, profile):
    """3 x 3 sums of the stars at ``centres`` fitted to the unflagged pixels round their ``tops``.

    The stars of each ``owner`` group (given in order of it) are fitted
    together by non-negative least squares, each pixel weighted by its noise.
    """
    cy, cx = centres
    size, nx = frame.data.size, frame.data.shape[1]
    boxes = geo.indices_around(frame.data.shape, tops[:, 0], tops[:, 1], geo.BOX1)
    key = np.unique(owner[:, None] * size + boxes)  # each group's pixels, in order
    at, index = np.divmod(key, size)
    fy, fx = np.divmod(index, nx)
    free = (
        ~geo.at(cosmics, fy, fx) & ~geo.at(frame.known, fy, fx) & (geo.at(frame.sigma, fy, fx) > 0)
    )
    at, fy, fx = at[free], fy[free], fx[free]
    weight = 1 / geo.at(frame.sigma, fy, fx)
    excess = frame.excess(fy, fx) * weight
    groups = np.unique(owner)
    star_edges = np.searchsorted(owner, np.append(groups, groups[-1] + 1))
    pixel_edges = np.searchsorted(at, np.append(groups, groups[-1] + 1))
    amplitude = np.zeros(cy.size)
    for k in range(groups.size):
        stars = slice(star_edges[k], star_edges[k + 1])
        pixels = slice(pixel_edges[k], pixel_edges[k + 1])
        if pixels.stop - pixels.start < stars.stop - stars.start:
            continue  # fewer pixels than stars: nothing to fit
        design = st.star_light(
            cy[stars], cx[stars], 1.0, fy[pixels, None], fx[pixels, None], profile
        )
        amplitude[stars], _ = nnls(design * weight[pixels, None], excess[pixels])
    return amplitude
