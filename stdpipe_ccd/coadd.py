"""Coaddition with SWarp or, without it, with the ``reproject`` package: one product either way."""

import functools
import logging
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, InverseVariance
from astropy.wcs.utils import proj_plane_pixel_area

from ._provenance import add_custom_keyword, add_history_lines
from ._sky import inverse_variance_map
from ._tasks import run_tasks
from ._tiles import coadd_tiles
from ._wcs import celestial_wcs
from .exceptions import StdpipeCCDWarning, SwarpNotFoundError
from .io import read_fits, write_fits
from .swarp import (
    _as_entries,
    _as_items,
    _check_choice,
    _common_unit,
    _effective_gain,
    _item,
    _target_header,
    find_swarp,
    reproject_swarp,
)

__all__ = ["coadd"]

logger = logging.getLogger(__name__)

METHODS = ("auto", "swarp", "interp", "adaptive", "exact")
#: combine types the reproject methods support
REPROJECT_COMBINE = ("weighted", "average", "median", "sum")


def coadd(
    input,  # noqa: A002 (as reproject_swarp)
    *,
    method="auto",
    wcs=None,
    shape=None,
    header=None,
    combine="weighted",
    conserve="flux",
    use_nans=True,
    add_keyword=True,
    output=None,
    overwrite=False,
    tiles=None,
    scheduler="threads",
    client=None,
    jobs=None,
    progress=False,
    **method_options,
):
    """Reproject and coadd images, with SWarp or with the ``reproject`` package.

    Both give the same product: the coadd, its inverse-variance uncertainty,
    the mask of uncovered pixels, the target WCS and the effective gain.

    Parameters
    ----------
    input : path-like, `~astropy.nddata.CCDData`, tuple, list or `~ccdproc.ImageFileCollection`
        As for `~stdpipe_ccd.reproject_swarp`.
    method : {"auto", "swarp", "interp", "adaptive", "exact"}, optional
        ``"swarp"`` runs `~stdpipe_ccd.reproject_swarp` (fast, Lanczos
        resampling, the most accurate on well-sampled images); ``"interp"``,
        ``"adaptive"`` and ``"exact"`` use `reproject.reproject_interp`
        (bilinear), `reproject.reproject_adaptive` (anti-aliased, smooths the
        noise) and `reproject.reproject_exact` (spherical-polygon overlap, flux
        exact, slowest). ``"auto"`` (the default) is ``"swarp"`` when the binary
        is found, else ``"interp"`` with a warning.
    wcs, shape, header : optional
        The target grid, as for `~stdpipe_ccd.reproject_swarp`; by default one
        that covers all inputs.
    combine : str, optional
        ``"weighted"`` (default), ``"average"``, ``"median"`` or ``"sum"``
        (SWarp also takes ``"clipped"``, ``"min"`` and ``"max"``).
    conserve : {"flux", "surface_brightness"}, optional
        As for `~stdpipe_ccd.reproject_swarp`.
    use_nans : bool, optional
        NaN where nothing contributed. Default is `True`.
    add_keyword : bool, str, dict or `~ccdproc.Keyword`, optional
        Provenance in ``.meta``.
    output : str or path-like, optional
        Also write the coadd to this FITS file with `~stdpipe_ccd.io.write_fits`
        (under a temporary name, renamed when complete). Needed with ``tiles``.
    overwrite : bool, optional
        Replace an existing ``output``. Default is `False`.
    tiles : int or tuple of int, optional
        Cut the target grid into tiles of this size (``n`` or ``(ny, nx)``
        pixels) and coadd each, from only the inputs that overlap it, as a
        dask task; the tiles are written into ``output`` one at a time, so
        memory is bounded by a tile, not by the mosaic. The result is then
        memory-mapped from ``output``; its ``GAIN`` and ``SATURATE`` are the
        smallest of the tiles (the shallowest part of the mosaic).
    scheduler : {"threads", "processes", "synchronous"}, optional
        Local dask scheduler for the tiles. Default is ``"threads"``.
    client : `dask.distributed.Client`, optional
        Run the tiles on this cluster; its workers must see the inputs and
        the folder of ``output``.
    jobs : int, optional
        Workers of the local scheduler; default is one per core.
    progress : bool, optional
        Show dask's progress bar over the tiles. Default is `False`.
    **method_options
        Further options of `~stdpipe_ccd.reproject_swarp`, or of the
        ``reproject`` function.

    Returns
    -------
    coadd : `~astropy.nddata.CCDData`

    Raises
    ------
    ImportError
        A ``reproject`` method without the ``reproject`` package.
    stdpipe_ccd.SwarpNotFoundError
        ``method="swarp"`` without the binary.
    FileExistsError
        ``output`` exists and ``overwrite`` is `False`.
    """
    _check_choice("method", method, METHODS)
    if method == "auto":
        method = _available_method(method_options)
    if output is not None and Path(output).exists() and not overwrite:
        msg = f"{output} exists; pass overwrite=True to replace it"
        raise FileExistsError(msg)
    if tiles is not None:
        if output is None:
            msg = "tiles need output=, the FITS file the mosaic is written to"
            raise ValueError(msg)
        entries = _as_entries(input)
        items = [_item(entry, i) for i, entry in enumerate(entries)]
        target = _target_header(items, wcs=wcs, shape=shape, width=None, height=None, header=header)
        runner = functools.partial(
            run_tasks, scheduler=scheduler, client=client, jobs=jobs, progress=progress
        )
        options = {"method": method, "combine": combine, "conserve": conserve, "use_nans": use_nans}
        return coadd_tiles(
            entries,
            items,
            target,
            tiles,
            output,
            run_tasks=runner,
            tile_task=coadd_tile,
            options={**options, **method_options},
        )
    common = {
        "wcs": wcs,
        "shape": shape,
        "header": header,
        "combine": combine,
        "conserve": conserve,
        "use_nans": use_nans,
        "add_keyword": add_keyword,
    }
    if method == "swarp":
        result = reproject_swarp(input, **common, **method_options)
    else:
        _check_choice("combine", combine, REPROJECT_COMBINE)
        _check_choice("conserve", conserve, ("flux", "surface_brightness"))
        result = _coadd_reproject(input, method, **common, options=method_options)
    if output is not None:
        write_fits(result, output, overwrite=overwrite)
    return result


def _available_method(method_options):
    """``"swarp"`` when the binary is found, else ``"interp"`` with a warning."""
    try:
        find_swarp(method_options.get("swarp_path"))
    except SwarpNotFoundError:
        warnings.warn(
            "SWarp was not found; coadding with reproject_interp instead",
            StdpipeCCDWarning,
            stacklevel=3,
        )
        method_options.pop("swarp_path", None)
        return "interp"
    return "swarp"


def _reproject_function(method):
    try:
        import reproject
    except ImportError as err:
        msg = (
            f"method={method!r} needs the reproject package: "
            "pip install 'stdpipe_ccd[all]' (or pip install reproject)"
        )
        raise ImportError(msg) from err
    return {
        "interp": reproject.reproject_interp,
        "adaptive": reproject.reproject_adaptive,
        "exact": reproject.reproject_exact,
    }[method]


def _coadd_reproject(
    input,  # noqa: A002
    method,
    *,
    wcs,
    shape,
    header,
    combine,
    conserve,
    use_nans,
    add_keyword,
    options,
):
    """Resample each input with ``reproject`` and combine them here."""
    function = _reproject_function(method)
    items = _as_items(input)
    unit = _common_unit(items)
    target = _target_header(items, wcs=wcs, shape=shape, width=None, height=None, header=header)
    out_wcs = celestial_wcs(target, "target")
    out_shape = (target["NAXIS2"], target["NAXIS1"])

    total_w = np.zeros(out_shape)  # sum of weights (or of variances for average/sum)
    total = np.zeros(out_shape)
    count = np.zeros(out_shape, dtype=np.int32)
    stack, noise = [], []
    for item in items:
        ccd = item.ccd if item.ccd is not None else read_fits(item.path, hdu=item.hdu, unit=unit)
        data = np.asarray(ccd.data, dtype=np.float64)
        weight = inverse_variance_map(ccd, data).astype(np.float64)
        noise.append(1 / np.sqrt(np.median(weight[weight > 0])))
        scale = 1.0
        if conserve == "flux":
            scale = proj_plane_pixel_area(out_wcs) / proj_plane_pixel_area(item.wcs.celestial)
        valid = weight > 0
        # data and variance in one call (reproject broadcasts over the leading axis), so
        # the coordinate transformation is computed once; NaN spreads from masked pixels,
        # which then drop out
        planes = np.stack(
            [np.where(valid, data, np.nan), np.where(valid, 1 / np.where(valid, weight, 1), np.nan)]
        )
        (values, variance), _ = function(
            (planes, item.wcs.celestial), out_wcs, shape_out=out_shape, **options
        )
        good = np.isfinite(values) & np.isfinite(variance) & (variance > 0)
        values, variance = values * scale, variance * scale**2
        count += good
        if combine == "weighted":
            w = np.where(good, 1 / np.where(good, variance, 1), 0)
            total += np.where(good, w * values, 0)
            total_w += w
        elif combine in ("average", "sum"):
            total += np.where(good, values, 0)
            total_w += np.where(good, variance, 0)
        else:
            stack.append(np.where(good, values, np.nan))
            total_w += np.where(good, variance, 0)
    covered = count > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        if combine == "weighted":
            data, inverse = total / total_w, total_w
        elif combine == "average":
            data, inverse = total / count, count**2 / total_w
        elif combine == "sum":
            data, inverse = total, 1 / total_w
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
                data = np.nanmedian(np.array(stack), axis=0)
            # the median of n normal values is noisier than their mean by pi/2 in variance
            inverse = count**2 / total_w / (np.pi / 2 if len(items) > 2 else 1)
    inverse = np.where(covered & np.isfinite(inverse), inverse, 0.0)
    data = np.where(covered, data, np.nan if use_nans else 0.0)

    meta = fits.Header(target)
    statistics = [{"Background_StDev": str(n)} for n in noise]
    gain, saturation = _effective_gain(items, combine, statistics)
    meta["GAIN"] = (gain, "[e-/unit] effective gain of the coadd")
    if saturation is not None:
        meta["SATURATE"] = (saturation, "effective saturation of the coadd")
    meta["NCOMBINE"] = (len(items), "number of images combined")
    meta["COMBINET"] = (combine.upper(), "how the images were combined")
    if add_keyword is not None and add_keyword is not False:
        from . import __version__

        lines = [f"stdpipe_ccd {__version__} coadd method={method} conserve={conserve}"]
        lines += [f"input {i + 1}: {item.name}" for i, item in enumerate(items)]
        add_history_lines(meta, lines)
        if add_keyword is not True:
            add_custom_keyword(meta, add_keyword, "coadd")
    logger.info("coadded %d images with reproject_%s", len(items), method)
    return CCDData(
        data.astype(np.float32),
        unit=unit or u.adu,
        wcs=out_wcs,
        meta=meta,
        mask=~covered,
        uncertainty=InverseVariance(inverse.astype(np.float32), copy=False),
    )


def coadd_tile(entries, header, path, options):
    """Coadd the inputs of one tile into ``path``; the task of `coadd_tiles`."""
    if not entries:
        return {"path": None, "ncombine": 0}
    result = coadd(entries, header=header, add_keyword=False, **options)
    write_fits(result, path)
    return {
        "path": path,
        "ncombine": len(entries),
        "gain": result.meta.get("GAIN"),
        "saturate": result.meta.get("SATURATE"),
        "unit": result.unit.to_string(),
    }
