"""Bleeding-charge trails of saturated stars, for `~stdpipe_ccd.make_mask`."""

import numpy as np
from astropy.stats import mad_std
from scipy import ndimage

from .flags import MaskFlag

__all__ = ["flag_bleed_trails"]


#: the round core of a saturated star is this much (pixels) smaller than half the blob's width
CORE_SHRINK = 0.15


#: a trail goes on past its saturated run while its pixels stand this many
#: (robust) standard deviations of the sky above the star's own light ...
BLEED_CONTINUE_SIGMA = 5.0
#: ... and above it by this fraction of that light (its Poisson noise)
BLEED_CONTINUE_FRACTION = 0.1
#: ... or while they hold this fraction of the saturation level (a flat moves them)
BLEED_NEAR_FULL = 0.9
#: saturated pixels this close (rows, columns) belong to one star: a flat
#: scatters the pixels of a saturated core and trail around the level
BLEED_JOIN = (2, 1)
#: rows followed at a time along a trail
BLEED_STEPS = 64


def flag_bleed_trails(data, saturation, image):
    """Flag bleeding-charge trails: saturated column runs beyond each star's round core,
    and their unsaturated continuation along the columns.
    """
    saturated = image.has(MaskFlag.SATURATED)
    blobs, _ = ndimage.label(_widen(saturated, BLEED_JOIN))
    trail = np.zeros_like(saturated)
    sky, noise = _sky_level_noise(data, image.mask)
    for index, box in enumerate(ndimage.find_objects(blobs), start=1):
        box = _shrink(saturated, box)
        blob = (blobs[box] == index) & saturated[box]
        core, centre = _round_core(data, blob, box)
        bled = blob & ~core
        if bled.any():
            trail[box] |= bled
            _continue_trail(data, blob, box, centre, (sky, noise, saturation), trail)
    # the partly filled pixel past a saturated run, where the star's own light
    # near its core is too bright for the continuation to tell it apart
    ends = _widen(trail & saturated, (1, 0)) & ~image.mask
    image.add(MaskFlag.BLEED, trail | ends)


def _widen(mask, reach):
    """Return ``mask`` dilated by ``reach = (rows, columns)`` each way.

    Shifted ORs, each one pass over the image: cheaper than a general dilation.
    """
    wide = mask.copy()
    for axis, steps in enumerate(reach):
        grown = wide.copy()
        for step in range(1, steps + 1):
            ahead = [slice(None)] * 2
            behind = [slice(None)] * 2
            ahead[axis], behind[axis] = slice(step, None), slice(None, -step)
            grown[tuple(ahead)] |= wide[tuple(behind)]
            grown[tuple(behind)] |= wide[tuple(ahead)]
        wide = grown
    return wide


def _sky_level_noise(data, masked):
    """Median and robust standard deviation of the sky, from every 4th pixel of every 4th row."""
    sample = data[::4, ::4][~masked[::4, ::4]]
    sample = sample[np.isfinite(sample)]
    if not sample.size:
        return 0.0, 0.0
    return float(np.median(sample)), float(mad_std(sample))


def _continue_trail(data, blob, box, centre, sky, trail):
    """Flag the unsaturated continuation of a trail up and down the columns it bled along.

    Towards its tips a trail holds less than a full well (the last pixel is
    partly filled, and a flat can move saturated pixels below the level): it
    goes on while its pixels
    stand above the star's own light at their distance from its centre,
    read off the star's row, where no charge bled.
    """
    rows, cols = box
    ny, nx = data.shape
    level, noise, saturation = sky
    yc, xc = rows.start + centre[0], cols.start + centre[1]
    profile = _row_profile(data, round(yc), round(xc), ny + nx, level)
    # every column of a bleeding star: a flat may leave one without a saturated trail pixel
    columns = np.flatnonzero(blob.any(axis=0))
    has = blob[:, columns]
    ends = {
        -1: rows.start + np.argmax(has, axis=0),  # topmost blob pixel of each column
        1: rows.start + blob.shape[0] - 1 - np.argmax(has[::-1], axis=0),
    }
    for step, last in ends.items():
        x = cols.start + columns
        while x.size:  # a few steps at a time, for the columns still going
            y = last[None, :] + step * np.arange(1, BLEED_STEPS + 1)[:, None]
            inside = (y >= 0) & (y < ny)
            y = np.clip(y, 0, ny - 1)
            star = profile[np.hypot(y - yc, x - xc).astype(int)]
            margin = BLEED_CONTINUE_SIGMA * noise + BLEED_CONTINUE_FRACTION * (star - level)
            value = data[y, x]
            lit = inside & ((value - star > margin) | (value >= BLEED_NEAR_FULL * saturation))
            going = lit.all(axis=0)
            length = np.where(going, BLEED_STEPS, np.argmin(lit, axis=0))
            along = np.arange(BLEED_STEPS)[:, None] < length[None, :]
            trail[y[along], np.broadcast_to(x, y.shape)[along]] = True
            x, last = x[going], last[going] + step * BLEED_STEPS


def _shrink(mask, box):
    """Return the smallest box holding the True pixels of ``mask`` within ``box``."""
    rows, cols = np.nonzero(mask[box])
    y0, x0 = box[0].start, box[1].start
    return np.s_[y0 + rows.min() : y0 + rows.max() + 1, x0 + cols.min() : x0 + cols.max() + 1]


def _row_profile(data, row, col, size, level):
    """Return the brighter side of ``row`` at each distance from ``col`` (``level`` beyond)."""
    ny, nx = data.shape
    profile = np.full(size, level, dtype=float)
    if not 0 <= row < ny:
        return profile
    distance = np.arange(size)
    for side in (col - distance, col + distance):
        inside = (side >= 0) & (side < nx)
        values = np.where(inside, data[row, np.clip(side, 0, nx - 1)], -np.inf)
        profile = np.fmax(profile, np.where(np.isfinite(values), values, -np.inf))
    return profile


def _round_core(data, blob, box):
    """Return the disk of a saturated star inside its saturated blob, and its centre (in the box).

    Bleeding runs along columns, so the blob is as wide as the star's core:
    its radius is half the width. The centre row is where the unsaturated
    pixels just left and right of the blob are brightest, refined to a
    fraction of a pixel by a parabola through the logarithm of the brightest
    three (exact for a Gaussian profile).
    """
    rows, cols = box
    flanks = [c for c in (cols.start - 1, cols.stop) if 0 <= c < data.shape[1]]
    height, width = blob.shape
    yc = (height - 1) / 2
    if flanks:
        flank = np.nanmax(data[rows, flanks], axis=1)
        flank = np.where(np.isfinite(flank), flank, -np.inf)
        yc = int(np.argmax(flank))
        if 0 < yc < height - 1 and np.all(flank[yc - 1 : yc + 2] > 0):
            below, peak, above = np.log(flank[yc - 1 : yc + 2])
            curvature = below - 2 * peak + above
            if curvature < 0:
                yc += 0.5 * (below - above) / curvature
    radius = width / 2
    y, x = np.ogrid[:height, :width]
    xc = (width - 1) / 2
    # a little inside: the bled charge fills the rim of the disk first
    return (y - yc) ** 2 + (x - xc) ** 2 <= (radius - CORE_SHRINK) ** 2, (yc, xc)
