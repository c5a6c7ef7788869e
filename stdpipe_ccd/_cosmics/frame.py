"""The frame the cosmic-ray steps work on, and its noise model."""

from typing import NamedTuple

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


#: the sky's measured sigma must span this many steps between the data's values before it can
#: tell an offset in the level: the quantiles of integer data of sigma 1.6 put their variance
#: anywhere from 0.4 to 1.6 times the truth
OFFSET_MIN_STEPS = 4
#: pixels sampled for the step between the data's values
STEP_SAMPLE = 10_000


class NoiseModel(NamedTuple):
    """The sky model and the variance of every pixel (`noise_model`).

    With them, the gain the sources' Poisson noise went through, the read
    noise, the value of a pixel that got no light, and the lines of the
    frame that got none (`unexposed_lines`; None unless the sky's level
    holds an offset).
    """

    sky: SkyModel
    variance: np.ndarray
    gain: float
    readnoise: float
    zero: float = 0.0
    unexposed: np.ndarray = None


def noise_model(
    data, known, *, gain, readnoise, gain_known, response, pedestal_ratio, offset_ratio
):
    """Model the sky and the variance of every pixel (image unit squared, float32).

    With a known gain, the variance is that of LACosmic's own model: the
    Poisson noise of the data through the gain plus the read noise (shaped
    by the flat's ``response``). It sees no structure of the sources as
    noise, and astroscrappy median-filters it as it does its own. The sky's
    variance is also measured, on the lower tail of the pixels in boxes
    (`.SkyModel`'s ``tail_variance_grid``). When it is more than
    ``pedestal_ratio`` times what the sky's level predicts, the sky was
    subtracted; when what the level predicts is more than ``offset_ratio``
    times it, the level holds an offset that has no noise of its own (a bias
    left in a raw frame, a camera's pedestal). Either way the counts are
    set so that the sky's are those of its measured variance, and ``zero``
    is the value of a pixel that got no light; with an offset, the rows and
    columns at it are found too (`unexposed_lines`). Without a gain, the
    sky's variance is the one measured in boxes, plus the Poisson variance
    of the sources above it through the gain the sky implies (`sky_gain`).
    A read noise of None is measured on the sky (`sky_readnoise`).
    """
    sky = SkyModel(data, known, response)
    if not gain_known:
        sky.without_gradient(data, known)  # its noise is the model's
        gain, readnoise = sky_gain(sky, gain), readnoise or 0.0
        variance = sky.variance(data, known, gain=gain, readnoise=readnoise)
        return NoiseModel(sky, variance, gain, readnoise)
    if readnoise is None:
        sky.without_gradient(data, known)
        readnoise = sky_readnoise(sky, gain)
    ratios = pedestal_ratio, offset_ratio
    zero, offset, level = zero_level(sky, data, known, gain, readnoise, ratios)
    if zero and sky.without_gradient(data, known):
        # a gradient across the boxes (a twilight or moonlit sky) looks like the noise of a
        # subtracted sky: from 500 to 3,500 e- across 384 pixels, it lost two thirds of the rays
        zero, offset, level = zero_level(sky, data, known, gain, readnoise, ratios)
    unexposed = None
    if offset:
        unexposed = unexposed_lines(data, known, level, zero, sky)
        if unexposed.any():  # their pixels lowered the sky's tail: measured again without them
            sky = SkyModel(data, known | unexposed, response)
            sky.without_gradient(data, known | unexposed)
            zero, _, level = zero_level(sky, data, known, gain, readnoise, ratios)
    counts = np.subtract(data, np.float32(zero), dtype=np.float32)
    counts[known] = level - zero  # NaN or saturated: the sky's noise
    np.maximum(counts, 0.0, out=counts)
    scale = np.float32(gain) if response is None else gain * sky.response.astype(np.float32)
    variance = counts / scale
    variance += (readnoise / scale) ** 2
    return NoiseModel(sky, variance, gain, readnoise, zero, unexposed)


def sky_gain(sky, default):
    """Return the gain under which the sky's measured variance is its Poisson noise.

    Its level over its variance, where the sky stands 5 sigma above zero;
    ``default`` where it does not (a subtracted sky). The read noise makes
    it a lower bound of the true gain, so the sources' noise through it is
    an upper bound of theirs. Unlike a fixed gain, it holds for data in any unit: with 1
    e-/ADU, a frame scaled by 0.001 had the sky's own noise as 0.01 e-
    and lost every ray.
    """
    level, measured = sky.medians()
    if not (measured > 0 and level >= 5 * np.sqrt(measured)):
        return default
    return level / measured


def sky_readnoise(sky, gain):
    """Return the read noise (e-) the sky's measured variance holds beyond its Poisson noise.

    For a frame whose read noise is not known: without it, a faint sky of
    20 e- (read noise 5 e-) had half its variance, and LACosmic flagged its
    noise (precision 0.78, 1.00 with it).
    """
    level, measured = sky.medians()
    return float(np.sqrt(max(measured * gain**2 - max(level, 0.0) * gain, 0.0)))


def zero_level(sky, data, known, gain, readnoise, ratios):
    """Return the value of a pixel that got no light, whether it is an offset, the sky's level.

    `noise_model`'s test of the sky's measured variance against what its
    level predicts, with ``ratios`` its ``pedestal_ratio`` and ``offset_ratio``.
    """
    pedestal_ratio, offset_ratio = ratios
    level, measured = sky.medians()  # the level is below 0 where too much sky was subtracted
    predicted = max(level, 0.0) / gain + (readnoise / gain) ** 2
    offset = 0 < measured * offset_ratio < predicted
    if offset:  # or is it the rounding of coarse data?
        offset = np.sqrt(measured) >= OFFSET_MIN_STEPS * value_step(data, known)
    if not (offset or measured > pedestal_ratio * predicted):
        return 0.0, False, level
    # the sky's counts, whatever its level, are those of its measured variance
    return level - (measured * gain - readnoise**2 / gain), offset, level


def value_step(data, known):
    """Return the smallest step between the values of the data (1 for integers), on a sample."""
    step = max(data.size // STEP_SAMPLE, 1)
    sample = data.ravel()[::step][~known.ravel()[::step]]
    values = np.unique(sample[np.isfinite(sample)])
    return float(np.diff(values).min()) if values.size > 1 else 0.0


def unexposed_lines(data, known, sky_level, zero, sky):
    """Boolean image of the rows and columns that got no light, with the sky well above ``zero``.

    A raw frame's overscan left inside its data section (rows read past the
    CCD's) lies at the bias level, a step below the sky, and LACosmic takes
    the sky's edge along it for a track (ccdproc's raw SAAO frame, its 8 top
    rows: 14 groups along them). A line got no light when most of its pixels
    lie nearer ``zero`` than the sky; only when the sky stands 5 sigma (of
    the ``sky`` model's measured variance) above ``zero``, for the two to
    be told apart.
    """
    lines = np.zeros(data.shape, bool)
    if sky_level - zero < 5 * np.sqrt(sky.medians()[1]):
        return lines
    valid = ~known
    dark = valid & (data < 0.5 * (zero + sky_level))
    lines[np.sum(dark, axis=1) > 0.5 * np.sum(valid, axis=1)] = True
    lines[:, np.sum(dark, axis=0) > 0.5 * np.sum(valid, axis=0)] = True
    return lines
