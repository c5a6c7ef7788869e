"""The frame the cosmic-ray steps work on, and its noise model."""

import numpy as np

from .._sky import SkyModel
from . import geometry as geo

#: the offsets of a pixel's 3 x 3 box, for `Frame.climb`
_BOX1_OFFSETS = np.array(geo.BOX1)


class Frame:
    """Data, known bad pixels, sky level and noise of each pixel, shared by every step.

    The steps never change the data: the step uphill from each pixel
    (`climb`) is worked out once per frame.

    Parameters
    ----------
    data : `~numpy.ndarray`
        The image (float).
    known : `~numpy.ndarray`
        Pixels masked for other reasons.
    sky : `~numpy.ndarray`
        Sky level of each pixel (image unit).
    variance : `~numpy.ndarray`
        Variance of each pixel (image unit squared); its square root is kept
        as ``sigma`` (in place).
    peak_sigma : float, optional
        The lowest threshold (sigma) the steps will ask `peaks` for.
    """

    def __init__(self, data, known, sky, variance, peak_sigma=None):
        # the steps gather by flat index: a view of the user's array in another order would
        # be copied at every gather
        self.data, self.known, self.sky = (np.ascontiguousarray(a) for a in (data, known, sky))
        self.sigma = np.sqrt(variance, out=variance)
        #: the frame's stars (`.shape.StarLight`), once the star veto has measured them
        self.stars = None
        #: flat indices (sorted) of the star pixels the veto unflagged in the groups of rays
        self.star_light = np.zeros(0, np.intp)
        self._uphill = None  # the flat index of each pixel's step uphill, once known
        self._peak_sigma = peak_sigma
        self._peaks = None  # the local maxima above the lowest threshold, and that threshold

    def peaks(self, nsigma):
        """Rows and columns of the unmasked local maxima ``nsigma`` above the sky.

        Found once per frame, at `peak_sigma` (or ``nsigma`` if lower); the
        steps asking for more sigma pick from those.
        """
        if self._peaks is None or nsigma < self._peaks[1]:
            floor = nsigma if self._peak_sigma is None else min(nsigma, self._peak_sigma)
            self._peaks = geo.peaks_above(self.data, self.sky, self.sigma, floor, self.known), floor
        (iy, ix), floor = self._peaks
        if nsigma > floor:
            above = self.excess(iy, ix) > nsigma * geo.at(self.sigma, iy, ix)
            iy, ix = iy[above], ix[above]
        return iy, ix

    def climb(self, iy, ix, steps):
        """`.geometry.climb` in 3 x 3 boxes, each pixel's step uphill looked at once per frame.

        Climbs from the pixels of a group run into each other's paths, and
        the steps run over the same pixels again and again.
        """
        ny, nx = self.data.shape
        if self._uphill is None:
            self._uphill = np.full(
                self.data.size, -1, np.int32 if self.data.size < 2**31 else np.intp
            )
        here = iy * nx + ix
        moving = np.arange(here.size)
        for _ in range(steps):
            at = here[moving]
            to = self._uphill[at]
            unknown = np.flatnonzero(to < 0)
            if unknown.size:
                y, x = np.divmod(at[unknown], nx)
                best = np.argmax(geo.around(self.data, y, x, geo.BOX1), axis=1)
                y = geo.clip(y + _BOX1_OFFSETS[best, 0], ny)
                to[unknown] = y * nx + geo.clip(x + _BOX1_OFFSETS[best, 1], nx)
                self._uphill[at[unknown]] = to[unknown]
            step = to != at
            moving = moving[step]
            if not moving.size:
                break
            here[moving] = to[step]
        return np.divmod(here, nx)

    def is_star_light(self, iy, ix):
        """Whether pixels ``iy, ix`` are among the `star_light` the veto unflagged."""
        index = iy * self.data.shape[1] + ix
        if not self.star_light.size:
            return np.zeros(index.shape, bool)
        # sorted already: a search, without the sorts of numpy.isin
        found = np.searchsorted(self.star_light, index)
        return self.star_light.take(np.minimum(found, self.star_light.size - 1)) == index

    def excess(self, iy, ix):
        """Value above the sky of pixels ``iy, ix``."""
        index = np.multiply(iy, self.data.shape[1]) + ix  # flat: faster than rows and columns
        return self.data.ravel().take(index) - self.sky.ravel().take(index)


def noise_model(data, known, *, gain, readnoise, gain_known, response, pedestal_ratio):
    """Sky model and the variance of every pixel (image unit squared, float32).

    With a known gain, the variance is that of LACosmic's own model: the
    Poisson noise of the data through the gain plus the read noise (shaped
    by the flat's ``response``). It sees no structure of the sources as
    noise, and astroscrappy median-filters it as it does its own. When the
    sky's variance, measured on the lower tail of the pixels in boxes
    (`.SkyModel`'s ``tail_variance_grid``), is more than ``pedestal_ratio``
    times what its level predicts, the sky was subtracted and its variance
    is added back as a pedestal, above the level left (which is below zero
    when more than the sky was subtracted). Without a gain, the sky's variance is the
    one measured in boxes, plus the Poisson variance of the sources above
    it.
    """
    sky = SkyModel(data, known, response)
    if not gain_known:
        return sky, sky.variance(data, known, gain=gain, readnoise=readnoise)
    level = float(np.median(sky.level_grid))  # below 0 where more than the sky was subtracted
    predicted = max(level, 0.0) / gain + (readnoise / gain) ** 2
    measured = float(np.median(sky.tail_variance_grid))
    pedestal = 0.0
    if measured > pedestal_ratio * predicted:
        # the sky's counts, whatever its level, are those of its measured variance
        pedestal = measured * gain - level - readnoise**2 / gain
    counts = np.add(data, np.float32(pedestal), dtype=np.float32)
    counts[known] = level + pedestal  # NaN or saturated: the sky's noise
    np.maximum(counts, 0.0, out=counts)
    scale = np.float32(gain) if response is None else gain * sky.response.astype(np.float32)
    variance = counts / scale
    variance += (readnoise / scale) ** 2
    return sky, variance
