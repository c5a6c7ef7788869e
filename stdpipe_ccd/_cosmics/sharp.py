"""Sharp peaks LACosmic missed: rays of a pixel or two that stand out of the noise alone."""

import numpy as np

from . import geometry as geo
from .sources import sharp_off_sources
from .stars import neighbour_light

#: of a pixel's 8 neighbours, this many of the dimmest are the dark ones round a ray
DARK_NEIGHBOURS = 6


def add_sharp_peaks(cosmics, frame, tuning):
    """Flag the local maxima that stand out of the noise with dark neighbours round them.

    LACosmic tests a ray on a Laplacian of the image subsampled twice, with
    a median-filtered noise and a fine-structure test: a ray of one or two
    pixels a few sigma up often fails all three. Such a ray is a local
    maximum `~CosmicRayTuning.sharp_sigma` above the sky and above its 5 x 5
    median, in the noise of its neighbours (the pixel's own is raised by
    its charge), whose 6 dimmest neighbours are dark: their light adds up
    to at most `~CosmicRayTuning.sharp_dark_sigma` times its noise (a masked
    neighbour is never dark). A star's top has light all round, at any
    pixel phase and any FWHM. Peaks on a smooth source
    (`.sources.on_smooth_source`) are left alone. Growth and the weak-groups
    check then treat the peaks as any flagged ray.
    """
    nsigma = tuning.sharp_sigma
    iy, ix = frame.peaks(nsigma)
    unflagged = ~geo.at(cosmics, iy, ix)
    iy, ix = iy[unflagged], ix[unflagged]
    light, excess = neighbour_light(frame, iy, ix)
    light[geo.around(frame.known, iy, ix, geo.NEIGHBOURS)] = np.inf
    sigma = geo.row_median(geo.around(frame.sigma, iy, ix, geo.NEIGHBOURS))
    dark = np.partition(light, DARK_NEIGHBOURS - 1, axis=1)[:, :DARK_NEIGHBOURS].sum(axis=1)
    sharp = np.flatnonzero(
        (excess >= nsigma * sigma)
        & (dark <= tuning.sharp_dark_sigma * np.sqrt(DARK_NEIGHBOURS) * sigma)
    )
    iy, ix, sigma = iy[sharp], ix[sharp], sigma[sharp]
    keep = sharp_off_sources(frame, None, iy, ix, tuning.smooth_fraction, nsigma * sigma)
    cosmics[iy[keep], ix[keep]] = True
