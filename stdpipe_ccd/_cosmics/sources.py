"""Whether flagged pixels sit on a smooth source: a star, a galaxy, a blend.

A ray's pixel stands out of its 5 x 5 median; a pixel on a source lifts
that median, or is the light of a star the frame's star shape explains
(`.shape.explained_by_stars`).
"""

import numpy as np

from . import geometry as geo
from .shape import explained_by_stars

#: the scatter of a 5 x 5 median (a quarter of one pixel's sigma) three times over, in sigma:
#: a median lifted less is no source, and a pixel stands n sigma out of its median only if
#: it is n less this above the sky
MEDIAN_SCATTER = 0.75


def drop_on_sources(cosmics, frame, iy, ix, fraction):
    """Unflag the pixels ``iy, ix`` that sit on a smooth source."""
    if not iy.size:
        return
    on_source = on_smooth_source(frame, None, iy, ix, fraction)
    cosmics[iy[on_source], ix[on_source]] = False


def sharp_off_sources(frame, rays, iy, ix, fraction, needed):
    """Whether each pixel stands more than ``needed`` out of its 5 x 5 median, on no source.

    ``needed`` is a number of sigma (a number) or each pixel's height (an
    array). Only the pixels that stand out are tested for sitting on a
    smooth source (`on_smooth_source`), the costly part.
    """
    local = geo.box_median(frame.data, iy, ix)
    if not np.ndim(needed):
        needed = needed * geo.at(frame.sigma, iy, ix)
    sharp = np.flatnonzero(geo.at(frame.data, iy, ix) - local > needed)
    keep = np.zeros(iy.size, bool)
    keep[sharp] = ~on_smooth_source(frame, rays, iy[sharp], ix[sharp], fraction, local[sharp])
    return keep


def on_smooth_source(frame, rays, iy, ix, fraction, local=None):
    """Whether each pixel sits on a smooth source.

    On a source, the 5 x 5 median (``local``, if known) exceeds the sky by
    more than ``fraction`` of the pixel's own excess. The pixels flagged as
    ``rays`` (if given) are left out of that median: a ray beside another
    does not sit on a source. Once the veto has measured the frame's stars,
    a pixel a star explains (`explained_by_stars`, with
    `StarLight.grow_sigma`) is on a source too: a sharp star's core stands
    out of its 5 x 5 median.
    """
    data, sky, sigma = frame.data, frame.sky, frame.sigma
    local = geo.box_median(data, iy, ix) if local is None else local
    excess = frame.excess(iy, ix)

    def lifted(median, i):
        smooth = median - geo.at(sky, iy[i], ix[i])
        lift = MEDIAN_SCATTER * geo.at(sigma, iy[i], ix[i])
        return (smooth > fraction * excess[i]) & (smooth > lift)

    on_source = lifted(local, slice(None))
    if rays is not None:
        again = np.flatnonzero(on_source)
        on_source[again] = lifted(geo.box_median_without(data, rays, iy[again], ix[again]), again)
    if frame.stars is not None:
        rest = np.flatnonzero(~on_source)
        on_source[rest] = explained_by_stars(frame, iy[rest], ix[rest], frame.stars.grow_sigma)
    return on_source
