"""Lone flagged pixels that do not stand out of the noise are unflagged."""

import numpy as np

from . import geometry as geo


def drop_weak_singles(cosmics, frame, sigclip):
    """Unflag the flagged pixels with no flagged neighbour less than ``sigclip`` sigma up.

    LACosmic's threshold applies to its Laplacian over a median-filtered
    noise; a one-pixel ray must also stand ``sigclip`` sigma of the noise
    model above its own 5 x 5 median. On the validation matrix, the lone
    flags below 4.5 sigma of the truth are noise (1 of 160 in 18 frames of
    6 cells is a ray's): twice the Gaussian rate of noise pixels above
    LACosmic's threshold.
    """
    iy, ix = np.nonzero(cosmics)
    alone = ~geo.around(cosmics, iy, ix, geo.NEIGHBOURS).any(axis=1)
    iy, ix = iy[alone], ix[alone]
    weak = frame.data[iy, ix] - geo.box_median(frame.data, iy, ix) < sigclip * frame.sigma[iy, ix]
    cosmics[iy[weak], ix[weak]] = False
