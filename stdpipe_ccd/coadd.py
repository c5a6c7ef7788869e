"""Coaddition with SWarp or, without it, with the ``reproject`` package: one product either way."""

import functools
import warnings
from pathlib import Path

from astropy import log

from ._conf import conf
from ._inputs import parse_inputs, target_grid
from ._product import check_room, format_call, stack_inputs
from ._reproject_backend import METHODS as REPROJECT_METHODS
from ._reproject_backend import ReprojectBackend
from ._swarp_backend import SwarpBackend, check_choice
from ._swarp_binary import find_swarp
from ._tasks import run_tasks
from ._tiles import coadd_tiles
from .exceptions import StdpipeCCDWarning, SwarpNotFoundError
from .io import write_fits

__all__ = ["coadd"]

METHODS = ("auto", "swarp", *REPROJECT_METHODS)
#: options of the SWarp back end that `coadd` passes on
SWARP_OPTIONS = ("resampling", "extra", "swarp_path", "nthreads", "timeout", "keep_workdir")


def coadd(
    input,  # noqa: A002 (as reproject_swarp)
    *,
    method="auto",
    wcs=None,
    shape=None,
    header=None,
    combine="weighted",
    conserve="flux",
    subtract_background=False,
    flux_scale_keyword=None,
    zeropoint_keyword=None,
    zeropoint=None,
    weights=None,
    header_suffix=".head",
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

    Both back ends take the same options and give the same product: the
    coadd, its inverse-variance uncertainty, the mask of uncovered pixels,
    the target WCS, the maps of exposure time and number of images, and the
    effective gain (see `~stdpipe_ccd.reproject_swarp` for all of it).

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
        ``"weighted"`` (default), ``"average"``, ``"median"``, ``"sum"``,
        ``"clipped"``, ``"min"`` or ``"max"``. With reproject, ``"clipped"``
        is the weighted mean of the values within 4 robust standard
        deviations (`~astropy.stats.mad_std`) of each pixel's median, as
        `~astropy.stats.sigma_clip` selects them; SWarp's own clipping also
        allows for a 30 % amplitude difference.
    conserve : {"flux", "surface_brightness"}, optional
        As for `~stdpipe_ccd.reproject_swarp`.
    subtract_background : bool, optional
        Subtract each input's background first: SWarp's background map, or
        with reproject the sky level measured in 64-pixel boxes. Default is
        `False`.
    flux_scale_keyword, zeropoint_keyword, zeropoint, weights : optional
        Scaling and weighting of each input, as for
        `~stdpipe_ccd.reproject_swarp`.
    header_suffix : str or None, optional
        SCAMP header files beside file inputs, as for
        `~stdpipe_ccd.reproject_swarp`. Default is ``".head"``.
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
    client : `dask.distributed.Client <distributed.Client>`, optional
        Run the tiles on this cluster; its workers must see the inputs and
        the folder of ``output``.
    jobs : int, optional
        Workers of the local scheduler; default is one per core.
    progress : bool, optional
        Show dask's progress bar over the tiles or, for one SWarp run, a line
        on standard error with the seconds elapsed and the stage SWarp
        reports. Default is `False`.
    **method_options
        Further options of the back end: ``resampling``, ``extra``,
        ``swarp_path``, ``nthreads``, ``timeout``, ``keep_workdir`` for
        SWarp; those of the ``reproject`` function (``order``, ``kernel``,
        ...) for the others. An option the back end does not take raises
        `ValueError`.

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
    check_choice("method", method, METHODS)
    if method == "auto":
        method = _available_method(method_options)
    if output is not None and Path(output).exists() and not overwrite:
        msg = f"{output} exists; pass overwrite=True to replace it"
        raise FileExistsError(msg)
    backend = make_backend(
        method,
        combine,
        conserve,
        subtract_background,
        weights,
        method_options,
        progress=progress and tiles is None,  # tiles show dask's bar instead
    )
    grid = {"wcs": wcs, "shape": shape, "header": header}
    scaling = {
        "flux_scale_keyword": flux_scale_keyword,
        "zeropoint_keyword": zeropoint_keyword,
        "zeropoint": zeropoint,
        "weights": weights,
        "header_suffix": header_suffix,
    }
    if tiles is not None:
        if output is None:
            msg = "tiles need output=, the FITS file the mosaic is written to"
            raise ValueError(msg)
        items = parse_inputs(input, header_suffix=header_suffix)
        target = target_grid(items, **grid)
        check_room(target, folder=Path(output).absolute().parent)
        if zeropoint_keyword and zeropoint is None and zeropoint_keyword in items[0].header:
            scaling["zeropoint"] = float(
                items[0].header[zeropoint_keyword]
            )  # the same in each tile
        runner = functools.partial(
            run_tasks, scheduler=scheduler, client=client, jobs=jobs, progress=progress
        )
        options = {"method": method, "combine": combine, "conserve": conserve, "use_nans": use_nans}
        options.update(subtract_background=subtract_background, **scaling, **method_options)
        return coadd_tiles(
            items,
            target,
            tiles,
            output,
            run_tasks=runner,
            tile_task=coadd_tile,
            options=options,
            overwrite=overwrite,
        )
    call = format_call({"method": method, "combine": combine, "conserve": conserve})
    result = stack_inputs(
        input,
        backend,
        grid=grid,
        **scaling,
        use_nans=use_nans,
        add_keyword=add_keyword,
        function="coadd",
        call=call,
    )
    if output is not None:
        write_fits(result, output, overwrite=overwrite)
    log.debug("coadded %d images with %s", result.meta["NCOMBINE"], method)
    return result


def make_backend(
    method, combine, conserve, subtract_background, weights, method_options, *, progress=False
):
    """Return the back end of ``method``, with its options checked before anything is read.

    ``progress`` shows SWarp's stages as it runs (reproject reports none).
    """
    common = {
        "combine": combine,
        "conserve": conserve,
        "subtract_background": subtract_background,
        "weights": weights is not None,
    }
    if method == "swarp":
        unknown = sorted(set(method_options) - set(SWARP_OPTIONS))
        if unknown:
            msg = f"{unknown} are not options of method='swarp' (it takes {SWARP_OPTIONS})"
            raise ValueError(msg)
        return SwarpBackend(**common, **method_options, progress=progress)
    return ReprojectBackend(method, **common, **method_options)


def _available_method(method_options):
    """``"swarp"`` when the binary is found, else ``"interp"`` with a warning.

    A binary named (``swarp_path`` or ``conf.swarp_path``) must exist: a
    missing one raises rather than falls back.
    """
    if method_options.get("swarp_path") or conf.swarp_path:
        return "swarp"
    try:
        find_swarp()
    except SwarpNotFoundError:
        warnings.warn(
            "SWarp was not found; coadding with reproject_interp instead",
            StdpipeCCDWarning,
            stacklevel=3,
        )
        return "interp"
    return "swarp"


def coadd_tile(items, header, path, options):
    """Coadd the inputs of one tile into ``path``; the task of `coadd_tiles`."""
    if not items:
        return {"path": None, "ncombine": 0}
    result = coadd([item.source for item in items], header=header, add_keyword=False, **options)
    write_fits(result, path)
    return {
        "path": path,
        "ncombine": len(items),
        "gain": result.meta.get("GAIN"),
        "saturate": result.meta.get("SATURATE"),
        "exptime": result.meta.get("EXPTIME"),
        "unit": result.unit.to_string(),
    }
