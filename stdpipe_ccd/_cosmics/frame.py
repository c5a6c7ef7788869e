"""The frame the cosmic-ray steps work on, and its noise model."""

import numpy as np

from .._sky import SkyModel
from . import geometry as geo

#: the offsets of a pixel's 3 x 3 box, and the code of its centre, for `Frame.climb`
_BOX1_OFFSETS = np.array(geo.BOX1)
_CENTRE = geo.BOX1.index((0, 0))
_UNKNOWN = 255


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
    """

    def __init__(self, data, known, sky, variance):
        # the steps gather by flat index: a view of the user's array in another order would
        # be copied at every gather
        self.data, self.known, self.sky = np.ascontiguousarray(data), known, sky
        self.sigma = np.sqrt(variance, out=variance)
        #: the frame's stars (`.stars.StarLight`), once the star veto has measured them
        self.stars = None
        self._uphill = None  # where each pixel's 3 x 3 box peaks (a BOX1 code), once known

    def climb(self, iy, ix, steps):
        """`.geometry.climb` in 3 x 3 boxes, each pixel's step uphill looked at once per frame.

        Climbs from the pixels of a group run into each other's paths, and
        the steps run over the same pixels again and again.
        """
        ny, nx = self.data.shape
        if self._uphill is None:
            self._uphill = np.full(self.data.size, _UNKNOWN, np.uint8)
        iy, ix = iy.copy(), ix.copy()
        moving = np.arange(len(iy))
        for _ in range(steps):
            here = iy[moving] * nx + ix[moving]
            code = self._uphill[here]
            unknown = np.flatnonzero(code == _UNKNOWN)
            if unknown.size:
                box = geo.around(self.data, iy[moving[unknown]], ix[moving[unknown]], geo.BOX1)
                code[unknown] = np.argmax(box, axis=1)
                self._uphill[here[unknown]] = code[unknown]
            step = code != _CENTRE
            moving, code = moving[step], code[step]
            if not moving.size:
                break
            iy[moving] = np.clip(iy[moving] + _BOX1_OFFSETS[code, 0], 0, ny - 1)
            ix[moving] = np.clip(ix[moving] + _BOX1_OFFSETS[code, 1], 0, nx - 1)
        return iy, ix

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
    sky's variance, measured on the lower half of the pixels in boxes, is
    more than ``pedestal_ratio`` times what its level predicts, the sky was
    subtracted and its variance is added back as a pedestal. Without a gain,
    the sky's variance is the one measured in boxes, plus the Poisson
    variance of the sources above it.
    """
    sky = SkyModel(data, known, response)
    if not gain_known:
        return sky, sky.variance(data, known, gain=gain, readnoise=readnoise)
    level = max(float(np.median(sky.level_grid)), 0.0)
    predicted = level / gain + (readnoise / gain) ** 2
    measured = float(np.median(sky.variance_grid))
    pedestal = 0.0
    if measured > pedestal_ratio * predicted:
        pedestal = measured * gain - level - readnoise**2 / gain
    counts = np.add(data, np.float32(pedestal), dtype=np.float32)
    counts[known] = level + pedestal  # NaN or saturated: the sky's noise
    np.clip(counts, 0.0, None, out=counts)
    scale = np.float32(gain) if response is None else gain * sky.response.astype(np.float32)
    variance = counts / scale
    variance += (readnoise / scale) ** 2
    return sky, variance
