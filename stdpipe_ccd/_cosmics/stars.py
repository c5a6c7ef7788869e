"""The star veto: LACosmic's flags on star cores are dropped, the test calibrated on the frame."""

import numpy as np

from . import geometry as geo


def star_thresholds(cosmics, frame, tuning):
    """Neighbour-sum and dimmest-neighbour thresholds of the star test for this frame.

    A star's 8 neighbours hold a set multiple of its excess that depends on
    the PSF: about 5 for FWHM 3, 2.7 for an undersampled FWHM of 1.6 pixels,
    against about 0 for a one-pixel ray. The bright unflagged local maxima
    are nearly all stars, so the thresholds are fractions of their medians.
    """
    iy, ix = geo.pixels_above(
        frame.data, frame.sky, frame.sigma, tuning.star_shape_sigma, frame.known | cosmics
    )
    excess = frame.excess(iy, ix)
    light = geo.around(frame.data, iy, ix, geo.NEIGHBOURS) - frame.sky[iy, ix, None]
    peak = (light < excess[:, None]).all(axis=1)
    if np.count_nonzero(peak) < tuning.star_shape_min:
        return tuning.star_neighbours, tuning.star_dimmest
    light, excess = light[peak], excess[peak]
    return (
        tuning.star_neighbours_fraction * float(np.median(light.sum(axis=1) / excess)),
        tuning.star_dimmest_fraction * float(np.median(light.min(axis=1) / excess)),
    )


def drop_star_cores(cosmics, frame, tuning):
    """Unflag the cores of the flagged groups whose brightest pixel is a star's.

    Pixels beyond `~CosmicRayTuning.star_core_radius` keep their flags (a
    ray that leaves the star), unless the whole group lies within
    `~CosmicRayTuning.star_group_reach`; those left over are tested for
    sitting on the star's light (`drop_on_sources`).
    """
    iy, ix, group, count = geo.groups(cosmics)
    if not count:
        return
    neighbours, dimmest = star_thresholds(cosmics, frame, tuning)
    py, px = geo.group_peaks(frame.data, iy, ix, group)
    light = geo.around(frame.data, py, px, geo.NEIGHBOURS) - frame.sky[py, px, None]
    excess = frame.excess(py, px)
    star = (light.sum(axis=1) >= neighbours * excess) & (light.min(axis=1) >= dimmest * excess)
    star &= ~is_track(group, iy, ix, count, tuning.track_extent)
    distance2 = (iy - py[group]) ** 2 + (ix - px[group]) ** 2
    reach = np.zeros(count)
    np.maximum.at(reach, group, distance2)
    whole = reach <= tuning.star_group_reach**2
    drop = star[group] & ((distance2 <= tuning.star_core_radius**2) | whole[group])
    cosmics[iy[drop], ix[drop]] = False
    left = np.flatnonzero(star[group] & ~drop)
    drop_on_sources(cosmics, frame, iy[left], ix[left], tuning.smooth_fraction)


def is_track(group, iy, ix, count, extent):
    """Whether each group (0 to count - 1, of pixels ``iy, ix``) is shaped like a track.

    A star core keeps its flags within a compact blob; a track, even one that
    crosses another track or a star, stretches out of it: longer than
    ``extent``, and thin or sparse.
    """
    sizes = []
    for coordinate in (iy, ix):
        low, high = np.full(count, coordinate.max()), np.zeros(count, dtype=coordinate.dtype)
        np.minimum.at(low, group, coordinate)
        np.maximum.at(high, group, coordinate)
        sizes.append(high - low + 1)
    longest, shortest = np.maximum(*sizes), np.minimum(*sizes)
    fill = np.bincount(group, minlength=count) / (longest * shortest)
    return (longest > extent) & ((longest >= 3 * shortest) | (fill < 0.4))


def drop_on_sources(cosmics, frame, iy, ix, fraction):
    """Unflag the pixels ``iy, ix`` that sit on a smooth source."""
    if not iy.size:
        return
    on_source, _ = on_smooth_source(frame, None, iy, ix, fraction)
    cosmics[iy[on_source], ix[on_source]] = False


def on_smooth_source(frame, rays, iy, ix, fraction):
    """Whether each pixel sits on a smooth source, and its excess over its 5 x 5 median.

    On a source, the 5 x 5 median exceeds the sky by more than ``fraction``
    of the pixel's own excess. The pixels flagged as ``rays`` (if given) are
    left out of that median: a ray beside another does not sit on a source.
    """
    data, sky, sigma = frame.data, frame.sky, frame.sigma
    local = geo.box_median(data, iy, ix)
    excess = frame.excess(iy, ix)

    def lifted(median, i):
        smooth = median - sky[iy[i], ix[i]]
        # the median of 25 pixels scatters by about a quarter of one pixel's sigma
        return (smooth > fraction * excess[i]) & (smooth > 0.75 * sigma[iy[i], ix[i]])

    on_source = lifted(local, slice(None))
    if rays is not None:
        again = np.flatnonzero(on_source)
        on_source[again] = lifted(geo.box_median_without(data, rays, iy[again], ix[again]), again)
    return on_source, data[iy, ix] - local
