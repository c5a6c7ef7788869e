"""The coadd as a `~astropy.nddata.CCDData`, built in one place for every back end.

A back end returns a `Stack` of plain arrays; `build_coadd` turns it into the
product: data, inverse-variance uncertainty, mask, WCS, the maps of exposure
time and of the number of images, and the meta (effective gain and saturation,
``NCOMBINE``, ``EXPTIME``, provenance).
"""

import os
import shutil
import warnings
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData, InverseVariance

from ._conf import conf
from ._inputs import common_unit, flux_scales, frame_weights, parse_inputs, target_grid
from ._provenance import record_provenance
from ._wcs import celestial_wcs
from .exceptions import StdpipeCCDWarning

__all__ = [
    "COUNT_EXTENSION",
    "EXPOSURE_EXTENSION",
    "Stack",
    "add_combine_keywords",
    "build_coadd",
    "check_room",
    "effective_gain",
    "median_excess",
    "order_inverse_variance",
    "stack_inputs",
]

#: FITS extensions (and ``.meta`` keywords naming them) of the two maps of a coadd
EXPOSURE_EXTENSION = "EXPMAP"
COUNT_EXTENSION = "NIMAGES"


@dataclass
class Stack:
    """What a back end returns for one product, on the full target grid.

    Attributes
    ----------
    data : numpy.ndarray
        The combined (or resampled) image.
    weight : numpy.ndarray
        Its inverse variance; 0 where nothing contributed.
    count : numpy.ndarray
        Number of images with weight at each pixel.
    exposure : numpy.ndarray
        Sum of their exposure times (s) at each pixel.
    noise : numpy.ndarray
        Background noise of each input, in its own unit (NaN where unknown).
    scales : numpy.ndarray
        Factor each input was multiplied by (flux scale times pixel-area ratio).
    history : list of str
        Lines of provenance particular to the back end.
    meta : dict
        Keywords particular to the back end.
    unused : list of int
        Inputs that reached no pixel (outside the grid, or zero weight everywhere).
    """

    data: np.ndarray
    weight: np.ndarray
    count: np.ndarray
    exposure: np.ndarray
    noise: np.ndarray
    scales: np.ndarray
    history: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    unused: list = field(default_factory=list)


def stack_inputs(
    input,  # noqa: A002 (as the public functions)
    backend,
    *,
    grid,
    flux_scale_keyword=None,
    zeropoint_keyword=None,
    zeropoint=None,
    weights=None,
    header_suffix=".head",
    use_nans=True,
    add_keyword=True,
    function,
    call,
    resample_only=False,
):
    """Parse ``input``, run ``backend`` on the target grid, return the product(s).

    ``grid`` holds the target-grid options (``wcs``, ``shape``, ``width``,
    ``height``, ``header``). With ``resample_only``, a list of one product
    per input.
    """
    items = parse_inputs(input, read=backend.read, header_suffix=header_suffix)
    try:
        unit = common_unit(items)
        target = target_grid(items, **grid)
        check_room(target, len(items) if resample_only else 1)
        scales, zeropoint = flux_scales(
            items,
            flux_scale_keyword=flux_scale_keyword,
            zeropoint_keyword=zeropoint_keyword,
            zeropoint=zeropoint,
        )
        factors = frame_weights(weights, len(items))
        if resample_only:
            stacks = backend.resample_stacks(items, target, scales, factors)
            groups = [[item] for item in items]
        else:
            stacks = [backend.combine_stack(items, target, scales, factors)]
            groups = [items]
    finally:
        for item in items:
            item.release()  # files not read yet (an error came first) are closed
    options = {"unit": unit, "use_nans": use_nans, "add_keyword": add_keyword}
    options.update(function=function, call=call)
    meta = dict(backend.meta)  # after the run, which tells the version of the binary
    if zeropoint_keyword:
        meta[zeropoint_keyword] = (zeropoint, "zero point of the coadd")
    products = []
    for stack, group in zip(stacks, groups, strict=True):
        stack.meta = {**meta, **stack.meta}
        stack.history = backend.history
        products.append(build_coadd(stack, group, target, combine=backend.combine, **options))
    return products if resample_only else products[0]


#: bytes per pixel of a product in memory: data, inverse variance, mask and the two maps
PRODUCT_BYTES = 4 + 4 + 1 + 4 + 2


def check_room(target, products=1, *, folder=None):
    """Refuse a target grid that is empty, or too large for memory or for ``folder``'s disk.

    Raises `ValueError` naming the size, before anything is read or run.
    """
    ny, nx = int(target["NAXIS2"]), int(target["NAXIS1"])
    if ny < 1 or nx < 1:
        msg = f"the target grid of {nx} x {ny} pixels is empty"
        raise ValueError(msg)
    needed = ny * nx * PRODUCT_BYTES * products
    if folder is not None:
        free = shutil.disk_usage(folder).free
        if needed > free:
            msg = f"a {nx} x {ny} mosaic needs {needed / 1e9:.3g} GB; {folder} has {free / 1e9:.3g}"
            raise ValueError(msg)
        return
    if ny * nx > conf.max_output_pixels:
        msg = (
            f"the target grid of {nx} x {ny} pixels is larger than conf.max_output_pixels "
            f"({conf.max_output_pixels}); coadd it in tiles (tiles=, output=) or raise the limit"
        )
        raise ValueError(msg)
    memory = _physical_memory()
    if memory is not None and needed > memory:
        msg = (
            f"the product of a {nx} x {ny} grid needs {needed / 1e9:.3g} GB of memory and "
            f"the machine has {memory / 1e9:.3g} GB; coadd it in tiles (tiles=, output=)"
        )
        raise ValueError(msg)


def _physical_memory():
    """Bytes of physical memory, where the system says (`None` elsewhere).

    All of it, not what is free now: free memory excludes the page cache, which
    the system gives back, so it would refuse grids that fit.
    """
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def build_coadd(stack, items, target, *, unit, combine, use_nans, add_keyword, function, call):
    """Return the `~astropy.nddata.CCDData` of a stack of ``items`` on the ``target`` grid.

    ``function`` and ``call`` (its options as text) go into the provenance.
    """
    covered = stack.weight > 0
    if not covered.any():
        warnings.warn(
            f"{function}: no input reaches the target grid; the result is empty",
            StdpipeCCDWarning,
            stacklevel=4,
        )
    elif stack.unused:
        names = ", ".join(items[i].name for i in stack.unused)
        warnings.warn(
            f"{function}: inputs {names} reach no pixel of the target grid (outside it, or "
            "zero weight everywhere)",
            StdpipeCCDWarning,
            stacklevel=4,
        )
    data = stack.data.astype(np.float32, copy=False)  # the back end's own array
    if use_nans:
        data[~covered] = np.nan
    meta = fits.Header(target)
    gains = np.array([item.gain for item in items])
    meta["GAIN"] = (
        effective_gain(gains, stack.scales, stack.noise, combine),
        "[e-/unit] effective gain of the coadd",
    )
    levels = [item.header.get("SATURATE") for item in items]
    if all(level is not None for level in levels):
        first = float(np.min(np.array(levels, dtype=float) * stack.scales))
        level = len(items) * first if combine == "sum" else first
        meta["SATURATE"] = (level, "effective saturation of the coadd")
    add_combine_keywords(meta, items, combine)
    for key, value in stack.meta.items():
        meta[key] = value
    lines = [f"{function}({call})"]
    lines += [f"input {i + 1}: {item.description}" for i, item in enumerate(items)]
    record_provenance(meta, add_keyword, function, lines + stack.history)
    result = CCDData(
        data,
        unit=unit,
        wcs=celestial_wcs(target, "target"),
        meta=meta,
        mask=~covered,
        uncertainty=InverseVariance(stack.weight.astype(np.float32, copy=False), copy=False),
    )
    result.exposure_map = stack.exposure.astype(np.float32, copy=False)
    result.count_map = stack.count.astype(np.int16, copy=False)
    return result


#: variance of the median of n normal values over that of their mean, n = 1..11
#: (simulated; even n average the middle two); pi/2 beyond
_MEDIAN_EXCESS = np.array([1.0, 1.0, 1.346, 1.192, 1.434, 1.283, 1.478, 1.347, 1.497, 1.382, 1.502])


def median_excess(count):
    """Variance of the median of ``count`` normal values over that of their mean."""
    count = np.asarray(count)
    table = np.append(_MEDIAN_EXCESS, np.pi / 2)
    return table[np.clip(count, 1, table.size) - 1]


def order_inverse_variance(combine, count, variance_sum):
    """Inverse variance of a median, minimum or maximum of ``count`` frames.

    ``variance_sum`` is the sum of the frames' variances at each pixel. The
    median has the variance of the mean times `median_excess`; a minimum or
    maximum is given the mean variance of one frame (its bias is not noise).
    """
    count = np.asarray(count, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if combine == "median":
            inverse = count**2 / variance_sum / median_excess(count.astype(int))
        else:
            inverse = count / variance_sum
    return np.where((count > 0) & np.isfinite(inverse), inverse, 0.0)


def add_combine_keywords(meta, items, combine):
    """Set ``EXPTIME``, ``TEXPTIME``, ``NCOMBINE``, ``COMBINET`` and the names of the maps."""
    times = [item.exptime for item in items]
    if all(time is not None for time in times):
        total = float(np.sum(times))
        mean = total if combine == "sum" else total / len(items)
        meta["EXPTIME"] = (mean, "[s] exposure time of one coadd value")
        meta["TEXPTIME"] = (total, "[s] total exposure time of the inputs")
    meta["NCOMBINE"] = (len(items), "number of images combined")
    meta["COMBINET"] = (combine.upper(), "how the images were combined")
    meta[EXPOSURE_EXTENSION] = (EXPOSURE_EXTENSION, "extension: exposure time (s) per pixel")
    meta[COUNT_EXTENSION] = (COUNT_EXTENSION, "extension: number of images per pixel")


def effective_gain(gains, scales, noise, combine):
    """Gain of a coadd, for its combine type.

    Frame i, scaled by s_i, has gain g_i / s_i in the coadd's units. A sum of
    n frames keeps the gain, n / sum(s_i / g_i); an average multiplies it by
    n, n^2 / sum(s_i / g_i); a median of more than two frames by about 2n/pi;
    a weighted (or clipped) mean by the effective number of frames,
    (sum w)^2 / sum(w_i^2 s_i / g_i), with w_i the inverse variance of each
    scaled frame (from its background ``noise``); the smallest or largest
    value of the frames has the smallest gain of the frames.
    """
    gains, scales, noise = (np.asarray(x, dtype=float) for x in (gains, scales, noise))
    n = len(gains)
    inverse = np.sum(scales / gains)  # sum of 1 / (frame gain in coadd units)
    if combine == "sum":
        gain = n / inverse
    elif combine in ("min", "max"):
        gain = np.min(gains / scales)
    elif combine == "median":
        gain = n**2 / inverse / median_excess(n)
    elif combine in ("weighted", "clipped") and np.all(noise > 0):
        w = 1.0 / (noise * scales) ** 2
        gain = np.sum(w) ** 2 / np.sum(w**2 * scales / gains)
    else:  # average, or weighted without the noise of each frame
        gain = n**2 / inverse
    return float(gain)


def format_call(options):
    """Options as ``name=value, ...`` for the provenance, leaving out those not given."""
    return ", ".join(f"{key}={value}" for key, value in options.items() if value is not None)
