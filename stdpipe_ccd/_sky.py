"""The sky level and its noise, measured in boxes over an image."""

import numpy as np
from astropy.nddata import InverseVariance, VarianceUncertainty
from astropy.stats import sigma_clip
from scipy import ndimage

__all__ = ["SkyModel", "background_level", "inverse_variance_map"]

#: side of the boxes (pixels) in which the sky and its noise are measured
BACKGROUND_BOX = 64
#: on every this-many-th pixel along each axis
SAMPLE_STEP = 2
#: a level changing by this many sigma from box to box spreads a box's pixels by 1 % of sigma
GRADIENT_SIGMA = 0.5


class SkyModel:
    """Sky level and sky variance measured in boxes, kept on the coarse grid of boxes.

    They are measured on every other pixel of each 64 x 64 box, from the
    median and the spread of the lower half of the pixels not masked yet, so
    the model holds whether or not the sky was subtracted. A gradient across
    a box spreads its pixels too: `without_gradient` measures the noise again
    on the residuals from the level. With a flat, the sky of the
    flat-fielded frame is still flat but its noise goes as 1/sqrt(response):
    the noise is measured on the residuals whitened by the response, so
    vignetted corners get their higher noise without a steep level to
    follow. ``tail_variance_grid`` is the variance from the lower tail
    alone (`_box_statistics`), for the sky's noise over a whole frame.
    """

    def __init__(self, data, known, response):
        self.shape = data.shape
        self.response = None if response is None else np.clip(response, 1e-3, None)
        sample = _sample(data, known)
        grids = _box_statistics(sample, BACKGROUND_BOX // SAMPLE_STEP)
        self.level_grid = grids[0]
        #: whether the noise was measured on the residuals from the level
        self.residuals = self.response is not None
        if self.residuals:
            sample -= _upsample(self.level_grid, sample.shape)
            sample *= np.sqrt(self.response[::SAMPLE_STEP, ::SAMPLE_STEP])
            grids = _box_statistics(sample, BACKGROUND_BOX // SAMPLE_STEP)
        self.variance_grid, self.tail_variance_grid = grids[1:]

    def without_gradient(self, data, known):
        """Measure the noise again on the residuals from the level, where the level has a gradient.

        Returns whether it did: where the level changes from box to box by
        `GRADIENT_SIGMA` sigma or more, once (a flat's residuals are measured
        from the start).
        """
        if self.residuals or not _has_gradient(self.level_grid, self.tail_variance_grid):
            return False
        sample = _sample(data, known)
        sample -= _upsample(self.level_grid, sample.shape)
        grids = _box_statistics(sample, BACKGROUND_BOX // SAMPLE_STEP)
        self.variance_grid, self.tail_variance_grid = grids[1:]
        self.residuals = True
        return True

    def medians(self):
        """Return the sky's level and its variance (lower tail) over the frame: box medians."""
        return float(np.median(self.level_grid)), float(np.median(self.tail_variance_grid))

    def level(self):
        """Full-size sky level (image unit, float32)."""
        return _upsample(self.level_grid, self.shape)

    def sky_variance(self):
        """Full-size variance of the sky alone (image unit squared, float32)."""
        variance = _upsample(self.variance_grid, self.shape)
        if self.response is not None:
            variance /= self.response
        return variance

    def variance(self, data, known, *, gain, readnoise):
        """Full-size variance of every pixel: the sky's, or the read noise at least, plus the
        Poisson variance of the sources (image unit squared, float32).
        """
        variance = _upsample(self.variance_grid, self.shape)
        floor = (readnoise / gain) ** 2
        signal = np.subtract(data, self.level(), dtype=np.float32)
        signal[known] = 0.0
        np.clip(signal, 0.0, None, out=signal)
        signal /= gain
        if self.response is not None:
            variance /= self.response
            np.maximum(variance, floor / self.response**2, out=variance)
            signal /= self.response
        else:
            np.maximum(variance, floor, out=variance)
        variance += signal
        return variance


def _sample(data, known):
    """Every `SAMPLE_STEP`-th pixel along each axis (float32), NaN where ``known``."""
    sample = data[::SAMPLE_STEP, ::SAMPLE_STEP].astype(np.float32)
    sample[known[::SAMPLE_STEP, ::SAMPLE_STEP]] = np.nan
    return sample


def _has_gradient(level, tail_variance):
    """Whether the sky's ``level`` changes by `GRADIENT_SIGMA` sigma or more between boxes."""
    sigma = np.sqrt(np.median(tail_variance))
    steps = [np.abs(np.diff(level, axis=axis)) for axis in (0, 1) if level.shape[axis] > 1]
    return any(step.size and step.max() >= GRADIENT_SIGMA * sigma for step in steps)


def _box_statistics(sample, box):
    """Median and variance (from the lower half of the distribution) of the finite pixels in boxes.

    Returns three grids of boxes, with empty boxes filled from their
    neighbours and a 3 x 3 median filter over the boxes against bright
    stars: the median, the variance from the median down to the 15.9 %
    quantile (-1 sigma), and that from the 30.9 % to the 6.7 % quantile (-0.5
    to -1.5 sigma). The faint light of unresolved stars lifts the median,
    and so the first variance, more than the lower tail's: the second is
    the sky's own, for a whole frame; the first, steadier in one box.
    """
    ny, nx = sample.shape
    nby, nbx = max(ny // box, 1), max(nx // box, 1)
    by, bx = ny // nby, nx // nbx
    blocks = sample[: nby * by, : nbx * bx].reshape(nby, by, nbx, bx).swapaxes(1, 2)
    blocks = np.sort(blocks.reshape(nby * nbx, by * bx), axis=1)  # NaN (masked) sort last
    count = np.sum(np.isfinite(blocks), axis=1)

    def quantile(q):
        index = np.clip((q * (count - 1)).astype(int), 0, blocks.shape[1] - 1)
        return np.take_along_axis(blocks, index[:, None], axis=1)[:, 0]

    median = quantile(0.5)
    # one-sided: stars and cosmic rays only add light, so the lower half is clean
    variance = (median - quantile(0.158655)) ** 2
    tail_variance = (quantile(0.308538) - quantile(0.066807)) ** 2
    good = count >= 0.25 * blocks.shape[1]
    if not good.any():
        good = count > 0
    return [
        _fill_boxes(np.where(good, values, np.nan).reshape(nby, nbx))
        for values in (median, variance, tail_variance)
    ]


def _fill_boxes(grid):
    """Fill empty boxes from the nearest good ones and median-smooth the grid."""
    empty = ~np.isfinite(grid)
    if empty.all():
        return np.zeros_like(grid)
    if empty.any():
        index = ndimage.distance_transform_edt(empty, return_distances=False, return_indices=True)
        grid = grid[tuple(index)]
    return ndimage.median_filter(grid, size=3, mode="nearest")


def _upsample(grid, shape):
    """Bilinear interpolation of a grid of box values (at box centres) to ``shape``.

    Written as two small matrix products: cheaper than a general zoom.
    """
    rows = _interpolation_matrix(shape[0], grid.shape[0])
    cols = _interpolation_matrix(shape[1], grid.shape[1])
    return rows @ (grid.astype(np.float32) @ cols.T)


def _interpolation_matrix(size, boxes):
    """``(size, boxes)`` weights of linear interpolation between box centres, flat beyond."""
    step = size / boxes
    t = np.clip((np.arange(size) + 0.5) / step - 0.5, 0, boxes - 1)
    low = np.floor(t).astype(int)
    high = np.minimum(low + 1, boxes - 1)
    weights = np.zeros((size, boxes), dtype=np.float32)
    np.add.at(weights, (np.arange(size), low), 1 - (t - low))
    np.add.at(weights, (np.arange(size), high), t - low)
    return weights


def inverse_variance_map(ccd, data):
    """Inverse variance of each pixel (0 where masked or not finite), float32.

    From ``ccd.uncertainty`` when there is one, else from the sky noise
    measured in boxes (as SWarp would measure it).
    """
    valid = np.isfinite(data)
    if ccd.mask is not None:
        valid &= ~np.asarray(ccd.mask, dtype=bool)
    if isinstance(ccd.uncertainty, InverseVariance):
        # already a weight: one scale for the unit, no array of variances in between
        weight = np.asarray(ccd.uncertainty.array, dtype=np.float32)
        scale = _unit_scale(ccd.uncertainty.unit, ccd.unit, -2)
        good = valid & np.isfinite(weight) & (weight > 0)
        return np.where(good, weight * np.float32(scale), np.float32(0)).astype(np.float32)
    if ccd.uncertainty is not None:
        variance = ccd.uncertainty.represent_as(VarianceUncertainty)
        array = np.broadcast_to(np.asarray(variance.array, dtype=np.float64), data.shape)
        array = array * _unit_scale(variance.unit, ccd.unit, 2)
    else:
        array = SkyModel(data, ~valid, None).sky_variance()
        positive = array > 0
        # a noiseless (model) image has no measurable noise: weigh its pixels equally
        array[~positive] = np.median(array[positive]) if positive.any() else 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(valid & (array > 0) & np.isfinite(array), 1.0 / array, 0.0)
    return weight.astype(np.float32)


def _unit_scale(unit, image_unit, power):
    """Factor from ``unit`` to ``image_unit ** power`` (1 when either is unknown)."""
    if unit is None or image_unit is None:
        return 1.0
    return float((1 * unit).to_value(image_unit**power))


def background_level(data, valid, *, box=128):
    """Full-size background level, as SExtractor and SWarp estimate it (float32).

    In each box (128 pixels, SWarp's ``BACK_SIZE``) the pixels are clipped at
    3 sigma about their median, and the mode is estimated as 2.5 median - 1.5
    mean (the median where the clipped distribution is too skewed for that);
    the boxes are median-filtered 3 x 3 and interpolated bilinearly.
    """
    ny, nx = data.shape
    nby, nbx = max(ny // box, 1), max(nx // box, 1)
    by, bx = ny // nby, nx // nbx
    sample = np.where(valid, data, np.nan)[: nby * by, : nbx * bx]
    blocks = sample.reshape(nby, by, nbx, bx).swapaxes(1, 2).reshape(nby * nbx, by * bx)
    # the boxes with too few pixels are filled from their neighbours (and would make
    # numpy warn of empty slices)
    good = np.sum(np.isfinite(blocks), axis=1) >= 0.25 * blocks.shape[1]
    clipped = sigma_clip(np.ma.masked_invalid(blocks[good]), sigma=3, maxiters=5, axis=1)
    clipped = clipped.filled(np.nan)
    mean, median = np.nanmean(clipped, axis=1), np.nanmedian(clipped, axis=1)
    skewed = np.abs(mean - median) >= 0.3 * np.nanstd(clipped, axis=1)
    level = np.full(good.size, np.nan)
    level[good] = np.where(skewed, median, 2.5 * median - 1.5 * mean)
    grid = _fill_boxes(level.reshape(nby, nbx))
    return _upsample(grid, data.shape)
