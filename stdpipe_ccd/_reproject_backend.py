"""The ``reproject`` back end: each input resampled with the reproject package, combined here."""

import inspect

import numpy as np
from astropy.stats import sigma_clip
from astropy.wcs.utils import proj_plane_pixel_area

from ._product import Stack, order_inverse_variance
from ._sky import background_level, inverse_variance_map
from ._swarp_backend import COMBINE_TYPES, check_choice
from ._wcs import celestial_wcs

__all__ = ["METHODS", "ReprojectBackend"]

#: the reproject functions, by method name
METHODS = {
    "interp": "reproject_interp",
    "adaptive": "reproject_adaptive",
    "exact": "reproject_exact",
}
#: rejection of ``combine="clipped"``: SWarp's default CLIP_SIGMA
CLIP_SIGMA = 4.0


class ReprojectBackend:
    """Resample parsed inputs with `reproject` and combine them; options checked on creation.

    Parameters
    ----------
    method : {"interp", "adaptive", "exact"}
        The reproject function.
    combine : str
        As for `~stdpipe_ccd.coadd`.
    conserve : {"flux", "surface_brightness"}
        As for `~stdpipe_ccd.coadd`.
    subtract_background : bool
        Subtract each input's sky level, measured in 64-pixel boxes.
    weights : bool
        Per-frame weights will be given.
    **options
        Further options of the reproject function; names it does not take raise
        `ValueError`.
    """

    name = "reproject"
    #: every file is read into memory: reproject needs the pixels
    read = "pixels"

    def __init__(
        self,
        method,
        *,
        combine,
        conserve="flux",
        subtract_background=False,
        weights=False,
        **options,
    ):
        check_choice("method", method, tuple(METHODS))
        check_choice("combine", combine, COMBINE_TYPES)
        check_choice("conserve", conserve, ("flux", "surface_brightness"))
        if weights and combine not in ("weighted", "clipped"):
            msg = f"weights need combine='weighted' or 'clipped', not {combine!r}"
            raise ValueError(msg)
        self.function = _reproject_function(method)
        taken = set(inspect.signature(self.function).parameters)
        unknown = sorted(set(options) - taken)
        if unknown:
            msg = (
                f"{unknown} are not options of reproject.{METHODS[method]} (options such as "
                "resampling, extra or swarp_path are for method='swarp')"
            )
            raise ValueError(msg)
        self.method, self.combine, self.conserve = method, combine, conserve
        self.subtract_background, self.options = subtract_background, options

    meta = {}  # noqa: RUF012 (read only)

    @property
    def history(self):
        """Provenance lines of a run: the reproject function and version."""
        import reproject

        return [f"reproject {reproject.__version__} {METHODS[self.method]}"]

    def combine_stack(self, items, target, scales, weights=None):
        """Resample and combine ``items`` onto ``target``: one `Stack`."""
        out_wcs = celestial_wcs(target, "target")
        shape = (target["NAXIS2"], target["NAXIS1"])
        factors = np.ones(len(items)) if weights is None else weights
        accumulator = _Accumulator(self.combine, shape, len(items))
        noise, total_scales, unused = [], [], []
        for index, (item, scale, factor) in enumerate(zip(items, scales, factors, strict=True)):
            values, variance, frame_noise, area = self._resample(item.load(), out_wcs, shape)
            item.release()  # one input's pixels in memory at a time
            if not np.isfinite(values).any():
                unused.append(index)
            scale = scale * area
            noise.append(frame_noise)
            total_scales.append(scale)
            accumulator.add(values * scale, variance * scale**2, factor, item.exptime)
        data, weight = accumulator.result()
        return Stack(
            data.astype(np.float32),
            weight.astype(np.float32),
            accumulator.count,
            accumulator.exposure,
            np.array(noise),
            np.array(total_scales),
            unused=unused,
        )

    def _resample(self, item, out_wcs, shape):
        """One input on the target grid: values, variance (NaN outside), its noise, area ratio."""
        ccd = item.ccd
        data = np.asarray(ccd.data, dtype=np.float64)
        weight = inverse_variance_map(ccd, data).astype(np.float64)
        valid = weight > 0
        if self.subtract_background:
            data = data - background_level(data, valid)
        noise = 1 / np.sqrt(np.median(weight[valid])) if valid.any() else np.nan
        area = 1.0
        if self.conserve == "flux":
            area = proj_plane_pixel_area(out_wcs) / proj_plane_pixel_area(item.wcs.celestial)
        # data and variance in one call (reproject broadcasts over the leading axis), so
        # the coordinate transformation is computed once; NaN spreads from masked pixels,
        # which then drop out
        planes = np.stack(
            [np.where(valid, data, np.nan), np.where(valid, 1 / np.where(valid, weight, 1), np.nan)]
        )
        (values, variance), _ = self.function(
            (planes, item.wcs.celestial), out_wcs, shape_out=shape, **self.options
        )
        good = np.isfinite(values) & np.isfinite(variance) & (variance > 0)
        return np.where(good, values, np.nan), np.where(good, variance, np.nan), noise, area


class _Accumulator:
    """Combine resampled frames one at a time (or keep them, for the order statistics)."""

    def __init__(self, combine, shape, n):
        self.combine, self.n = combine, n
        self.count = np.zeros(shape, dtype=np.int16)
        self.exposure = np.zeros(shape, dtype=np.float32)
        self.total = np.zeros(shape)
        self.total_w = np.zeros(shape)  # sum of weights (of variances for average, sum)
        self.squares = np.zeros(shape)  # sum of w_i^2 variance_i, with frame weights
        self.values, self.variances, self.factors = [], [], []

    def add(self, values, variance, factor, exptime):
        good = np.isfinite(values)
        self.count += good
        if exptime is not None:
            self.exposure += np.float32(exptime) * good
        if self.combine == "weighted":
            w = np.where(good, factor / np.where(good, variance, 1), 0)
            self.total += np.where(good, w * values, 0)
            self.total_w += w
            self.squares += np.where(good, w**2 * np.where(good, variance, 0), 0)
        elif self.combine in ("average", "sum"):
            self.total += np.where(good, values, 0)
            self.total_w += np.where(good, variance, 0)
        else:
            self.values.append(values.astype(np.float32))
            self.variances.append(variance.astype(np.float32))
            self.factors.append(factor)

    def result(self):
        """Return the combined data and its inverse variance (0 where nothing contributed)."""
        covered = self.count > 0
        count = self.count.astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.combine == "weighted":
                data, inverse = self.total / self.total_w, self.total_w**2 / self.squares
            elif self.combine == "average":
                data, inverse = self.total / count, count**2 / self.total_w
            elif self.combine == "sum":
                data, inverse = self.total, 1 / self.total_w
            else:
                data, inverse = self._order_statistic()
        inverse = np.where(covered & np.isfinite(inverse), inverse, 0.0)
        return np.where(covered, data, 0.0), inverse

    def _order_statistic(self):
        values, variances = np.array(self.values), np.array(self.variances)
        # nothing fell on the uncovered pixels: a value there keeps numpy from warning
        # of all-NaN slices (and the result there is dropped)
        uncovered = self.count == 0
        values[:, uncovered], variances[:, uncovered] = 0.0, 1.0
        if self.combine in ("median", "min", "max"):
            function = {"median": np.nanmedian, "min": np.nanmin, "max": np.nanmax}[self.combine]
            inverse = order_inverse_variance(self.combine, self.count, np.nansum(variances, axis=0))
            return function(values, axis=0), inverse
        # clipped: a weighted mean of the values within CLIP_SIGMA robust sigmas of the median
        kept = ~sigma_clip(
            np.ma.masked_invalid(values),
            sigma=CLIP_SIGMA,
            axis=0,
            cenfunc="median",
            stdfunc="mad_std",
        ).mask
        factors = np.array(self.factors)[:, None, None]
        w = np.where(kept, factors / np.where(kept, variances, 1), 0)
        total_w = w.sum(axis=0)
        data = np.where(kept, w * np.where(kept, values, 0), 0).sum(axis=0) / total_w
        squares = np.where(kept, w**2 * np.where(kept, variances, 0), 0).sum(axis=0)
        return data, total_w**2 / squares


def _reproject_function(method):
    try:
        import reproject
    except ImportError as err:
        msg = (
            f"method={method!r} needs the reproject package: "
            "pip install 'stdpipe_ccd[all]' (or pip install reproject)"
        )
        raise ImportError(msg) from err
    return getattr(reproject, METHODS[method])
