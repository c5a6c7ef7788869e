"""Lone flagged pixels and small groups that do not stand out of the noise are unflagged."""

import numpy as np

from . import geometry as geo


def drop_weak_groups(cosmics, frame, sigclip, tuning):
    """Unflag the small groups whose brightest pixel stands too little above its 5 x 5 median.

    LACosmic's threshold applies to its Laplacian over a median-filtered
    noise; a one-pixel ray must also stand ``sigclip`` sigma of the noise
    model above its own 5 x 5 median, and a group of up to
    `~CosmicRayTuning.weak_group_size` pixels
    `~CosmicRayTuning.weak_group_fraction` of that. On the validation
    matrix the lone flags below 4.5 sigma of the truth are noise (1 of 160
    in 18 frames of 6 cells is a ray's), and so are most of the groups of
    2 to 4 pixels peaking below 4.3 sigma: noise pixels that LACosmic grew
    into their neighbours (dropping them loses 23 rays of about 26,000 over
    the matrix).
    """
    iy, ix, group, count = geo.groups(cosmics)
    if not count:
        return
    size = np.bincount(group, minlength=count)
    small = np.flatnonzero(size[group] <= tuning.weak_group_size)
    iy, ix, group = iy[small], ix[small], group[small]
    needed = np.where(size == 1, 1.0, tuning.weak_group_fraction) * sigclip
    height = geo.at(frame.data, iy, ix) - geo.box_median(frame.data, iy, ix)
    margin = np.full(count, -np.inf)
    np.maximum.at(margin, group, height - needed[group] * geo.at(frame.sigma, iy, ix))
    weak = margin[group] < 0
    cosmics[iy[weak], ix[weak]] = False
