"""Rays found in part: their weak edges grown, their tracks completed along their line."""

import numpy as np

from . import geometry as geo
from .sources import MEDIAN_SCATTER, sharp_off_sources


def grow(cosmics, frame, tuning, seeds=None):
    """Add neighbours of flagged pixels that stand out of their own 5 x 5 median (track edges).

    Each step tests only the neighbours of the pixels added by the step before,
    the first those of ``seeds`` (a boolean image; all flagged pixels if None).
    A ray that is certain (`certain_rays`) is no source for the pixels beside
    it; a lone faint detection may be a noise peak on a star, so it counts.
    The star pixels the veto unflagged in a ray's group (`.frame.Frame.star_light`)
    are not flagged again.
    """
    flat_cosmics = cosmics.ravel()
    frontier = np.flatnonzero(flat_cosmics if seeds is None else seeds)
    if not frontier.size:
        return
    certain = certain_rays(cosmics, frame, tuning)
    for _ in range(tuning.grow_steps):
        iy, ix = geo.free_neighbours(frontier, cosmics, frame.known)
        # the costly median only for the pixels that may stand out of it
        sigma = geo.at(frame.sigma, iy, ix)
        above = frame.excess(iy, ix) > (tuning.grow_sigma - MEDIAN_SCATTER) * sigma
        above[above] = ~frame.is_star_light(iy[above], ix[above])
        iy, ix = iy[above], ix[above]
        keep = sharp_off_sources(frame, certain, iy, ix, tuning.smooth_fraction, tuning.grow_sigma)
        frontier = np.ravel_multi_index((iy[keep], ix[keep]), cosmics.shape)
        if not frontier.size:
            break
        flat_cosmics[frontier] = True


def standing_out(seeds, frame, nsigma):
    """Keep the ``seeds`` (a boolean image, changed in place) ``nsigma`` out of their median.

    The test `grow` puts to the pixels it adds, here put to the pixels added
    along a track's line and round a faint ray's core before growth runs
    from them again: a line pixel in a gap of the track, or a rim pixel
    with no charge, leads growth into the noise beside the track (3 seeds
    of the 22 cells of the validation matrix: 3,728 of the 5,123 pixels
    that growth from all of them added were more than a pixel from any
    ray's charge).
    """
    iy, ix = np.nonzero(seeds)
    sigma = geo.at(frame.sigma, iy, ix)
    # as in `grow`, the costly median only for the pixels that may stand out of it
    dark = frame.excess(iy, ix) <= (nsigma - MEDIAN_SCATTER) * sigma
    lit = np.flatnonzero(~dark)
    height = geo.at(frame.data, iy[lit], ix[lit]) - geo.box_median(frame.data, iy[lit], ix[lit])
    dark[lit] = height <= nsigma * sigma[lit]
    seeds[iy[dark], ix[dark]] = False
    return seeds


def group_significance(cosmics, frame):
    """Return flagged pixels, their group and significance, and each group's size and sum.

    Groups are 8-connected; a group's sum is the significance of its pixels
    added up, over the square root of their number.
    """
    iy, ix, group, count = geo.groups(cosmics)
    z = frame.excess(iy, ix) / geo.at(frame.sigma, iy, ix)
    size = np.bincount(group, minlength=count)
    total = np.bincount(group, z, count) / np.sqrt(size)
    return iy, ix, group, z, size, total


def certain_rays(cosmics, frame, tuning):
    """Image of the flagged pixels that are rays for sure.

    They are bright (``certain_sigma``), or in a group of pixels whose summed
    significance reaches ``certain_total``; a lone faint pixel may be a noise
    peak on a star.
    """
    iy, ix, group, z, size, total = group_significance(cosmics, frame)
    certain = (z >= tuning.certain_sigma) | ((size >= 2) & (total >= tuning.certain_total))[group]
    rays = np.zeros_like(cosmics)
    rays[iy[certain], ix[certain]] = True
    return rays


def complete_tracks(cosmics, frame, tuning):
    """Flag the whole line of each track found in part.

    The charge of a faint track is shared between the pixels along it, so
    LACosmic and `grow` find it in pieces. Each elongated group is followed
    along its axis past its ends (over gaps shorter than ``track_window``) and
    the pixels within ``track_half_width`` of its line are flagged, unless they
    belong to a smooth source the track crosses.
    """
    data, known = frame.data, frame.known
    centre, axis, start, end = track_lines(cosmics, frame, tuning)
    if not len(centre):
        return
    start -= follow(frame, tuning, centre, -axis, -start)
    end += follow(frame, tuning, centre, axis, end)
    iy, ix = segment_pixels(centre, axis, start, end, tuning.track_half_width)
    ny, nx = data.shape
    inside = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    index = np.unique(iy[inside] * nx + ix[inside])
    index = index[~known.ravel()[index] & ~cosmics.ravel()[index]]
    iy, ix = np.divmod(index, nx)
    # the track lifts the 5 x 5 median of its own pixels; the ring around it, less
    on_source = on_lit_ring(geo.ring_median(data, iy, ix), frame, tuning, iy, ix)
    cosmics[iy[~on_source], ix[~on_source]] = True


def on_lit_ring(ring, frame, tuning, iy, ix):
    """Whether the ring median ``ring`` around pixels on a track's line shows a source there."""
    lift = ring - geo.at(frame.sky, iy, ix)
    return (lift > tuning.track_source_sigma * geo.at(frame.sigma, iy, ix)) & (
        lift > tuning.track_ring_fraction * frame.excess(iy, ix)
    )


def segment_pixels(centre, axis, start, end, half_width):
    """Rows and columns of the pixels whose centres lie within ``half_width`` of each segment.

    Segment k runs from ``centre + start * axis`` to ``centre + end * axis``;
    it is sampled every half pixel along and across.
    """
    count = np.ceil((end - start + 0.25) / 0.5).astype(np.intp)
    track = np.repeat(np.arange(len(centre)), count)
    t = start[track] + 0.5 * (np.arange(track.size) - np.repeat(np.cumsum(count) - count, count))
    c, a = centre[track, None, :], axis[track, None, :]
    n = a[..., ::-1] * [-1, 1]
    s = np.arange(-2, 3)[None, :, None] * 0.5 * (half_width + 0.5)
    points = np.rint(c + t[:, None, None] * a + s * n)
    dy, dx = points[..., 0] - c[..., 0], points[..., 1] - c[..., 1]
    across, along = dy * n[..., 0] + dx * n[..., 1], dy * a[..., 0] + dx * a[..., 1]
    near = (
        (np.abs(across) <= half_width)
        & (along >= start[track, None] - 0.5)
        & (along <= end[track, None] + 0.5)
    )
    return points[near].astype(np.intp).T


def track_lines(cosmics, frame, tuning):
    """Centre, unit axis (dy, dx) and extent along it of each elongated flagged group."""
    iy, ix, group, z, pixels, total = group_significance(cosmics, frame)
    count = pixels.size
    # weighted by significance: the weak rim added around a track does not tilt its line
    centre, axis, along_spread, across_spread = geo.group_axes(
        iy, ix, group, np.clip(z, 1, None), count
    )
    along = (iy - centre[group, 0]) * axis[group, 0] + (ix - centre[group, 1]) * axis[group, 1]
    start, end = np.full(count, np.inf), np.full(count, -np.inf)
    np.minimum.at(start, group, along)
    np.maximum.at(end, group, along)
    # the shortest lines must be rays for sure (a star's edge can look like one)
    certain = total >= tuning.certain_total
    length = end - start + 1
    shortest = tuning.track_min_length
    # a one-pixel-wide line still spreads 1/12 pixel^2 across
    line = (
        ((length >= shortest + 1) | ((length >= shortest) & certain))
        & (across_spread <= tuning.track_spread)
        & (along_spread >= tuning.track_elongation**2 * np.maximum(across_spread, 1 / 12))
    )
    return centre[line], axis[line], start[line], end[line]


def follow(frame, tuning, centre, axis, end):
    """How far (pixels) each track goes on past ``centre + end * axis`` along ``axis``.

    Most tracks stop at once, so the steps are scored a few at a time, and
    only for the tracks still going.
    """
    window_size, most = tuning.track_window, tuning.track_follow_max
    reach = np.full(len(centre), float(most))
    going = np.arange(len(centre))
    for first in range(1, most + 1, window_size):
        steps = np.arange(first, first + 2 * window_size - 1)
        score = line_score(frame, tuning, centre[going], axis[going], end[going], steps)
        # the mean of the window's steps from each step on
        window = np.lib.stride_tricks.sliding_window_view(score, window_size, axis=1).mean(axis=2)
        stop = window < tuning.track_follow_sigma
        stopped = stop.any(axis=1)
        reach[going[stopped]] = first - 1 + np.argmax(stop[stopped], axis=1)
        going = going[~stopped]
        if not going.size:
            break
    return np.minimum(reach, most)


def line_score(frame, tuning, centre, axis, end, steps):
    """Excess over the ring two pixels out, in sigma, of the pixels ``steps`` past each end."""
    data = frame.data
    points = centre[:, None, :] + (end[:, None] + steps[None, :])[..., None] * axis[:, None, :]
    iy, ix = np.rint(points).astype(np.intp).transpose(2, 0, 1)
    ny, nx = data.shape
    inside = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    iy, ix = np.clip(iy, 0, ny - 1), np.clip(ix, 0, nx - 1)
    local = geo.ring_median(data, iy.ravel(), ix.ravel()).reshape(iy.shape)
    score = (geo.at(data, iy, ix) - local) / geo.at(frame.sigma, iy, ix)
    # a track is not followed off the image, into masked pixels or into a source
    on_source = on_lit_ring(local, frame, tuning, iy, ix)
    score[~inside | geo.at(frame.known, iy, ix) | on_source] = -np.inf
    return score


def widen_faint_groups(cosmics, frame, tuning):
    """Flag the weak rim of faint rays that are certain.

    A faint short track is two pixels wide and its charge is shared out, so
    its rim is only a sigma or two above the sky: too little for `grow`
    from any seed, but enough beside the core of a group that is a ray for sure.
    """
    iy, ix, group, z, size, total = group_significance(cosmics, frame)
    peak = np.full(size.size, -np.inf, z.dtype)  # ufunc.at is many times slower across dtypes
    np.maximum.at(peak, group, z)
    certain = (size >= 2) & (peak < tuning.certain_sigma) & (total >= tuning.certain_total)
    core = certain[group] & (z > tuning.widen_core_sigma)
    index = np.ravel_multi_index((iy[core], ix[core]), cosmics.shape)
    ry, rx = geo.free_neighbours(index, cosmics, frame.known)
    add = sharp_off_sources(frame, cosmics, ry, rx, tuning.smooth_fraction, tuning.widen_sigma)
    cosmics[ry[add], rx[add]] = True
