"""Reprojection and coaddition with the SWarp binary, returning `~astropy.nddata.CCDData`.

The functions here are fronts: the inputs are parsed once (``_inputs``), SWarp
runs in a private directory (``_swarp_backend``) and the product is built in
one place (``_product``), as for `~stdpipe_ccd.coadd` with the reproject
package.
"""

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData

from ._inputs import parse_inputs, target_grid
from ._product import format_call, stack_inputs
from ._provenance import record_provenance
from ._swarp_backend import SwarpBackend
from ._swarp_binary import find_swarp
from ._wcs import celestial_wcs

__all__ = ["find_swarp", "reproject_swarp", "resample_swarp"]


# --- public functions -------------------------------------------------------------------


def reproject_swarp(
    input,  # noqa: A002 (the name STDPipe users know)
    wcs=None,
    shape=None,
    width=None,
    height=None,
    header=None,
    extra=None,
    is_flags=False,
    use_nans=True,
    *,
    combine=None,
    resampling="lanczos3",
    subtract_background=False,
    flux_scale_keyword=None,
    zeropoint_keyword=None,
    zeropoint=None,
    weights=None,
    header_suffix=".head",
    conserve="flux",
    swarp_path=None,
    nthreads=None,
    keep_workdir=False,
    timeout=None,
    add_keyword=True,
):
    """Reproject and coadd images onto one grid with SWarp.

    The positional names follow ``stdpipe.reproject.reproject_swarp``.

    Parameters
    ----------
    input : path-like, `~astropy.nddata.CCDData`, tuple, list or `~ccdproc.ImageFileCollection`
        One image or a list of them. A FITS path is given to SWarp as a file
        (its pixels are not loaded); every image HDU of a multi-extension
        file is an input, and a ``(path, hdu)`` tuple picks one (by index or
        name); a `~astropy.nddata.CCDData` gives its
        ``.mask`` as zero weight and its ``.uncertainty`` as weight
        (1/variance); an ``(array, Header)`` or ``(array, WCS)`` tuple is an
        image without mask; a collection gives its currently filtered files.
    wcs : `~astropy.wcs.WCS`, optional
        WCS of the target grid, with ``shape`` or ``width``/``height``.
    shape : tuple of int, optional
        ``(ny, nx)`` of the target grid.
    width, height : int, optional
        Size of the target grid, as STDPipe takes it.
    header : `~astropy.io.fits.Header`, optional
        Target grid as a header with WCS and ``NAXIS1``/``NAXIS2``. Without
        ``header`` or ``wcs``, the grid covers all inputs at their median pixel
        scale, north up.
    extra : dict, optional
        Further SWarp parameters by name; names SWarp does not know raise
        `ValueError` (SWarp itself would ignore them).
    is_flags : bool, optional
        The inputs are integer or boolean flag images (such as the ``.flags``
        of `~stdpipe_ccd.make_mask`): resample with ``RESAMPLING_TYPE FLAGS``.
    use_nans : bool, optional
        Set pixels where nothing contributed to NaN. Default is `True`.
    combine : str, optional
        ``"weighted"`` (default; inverse-variance weighted mean), ``"average"``,
        ``"median"``, ``"sum"``, ``"clipped"``, ``"min"`` or ``"max"``; for
        flags ``"and"`` (default: only flags common to all overlapping frames
        survive) or ``"or"`` (any frame's flag survives).
    resampling : str, optional
        ``"lanczos3"`` (default), ``"lanczos2"``, ``"lanczos4"``,
        ``"bilinear"`` or ``"nearest"``.
    subtract_background : bool, optional
        Let SWarp subtract a background map from each input. Default is `False`.
    flux_scale_keyword : str, optional
        Header keyword with a factor each input is multiplied by (as SWarp's
        ``FSCALE_KEYWORD``). Without it no input is scaled, whatever its
        ``FLXSCALE`` says.
    zeropoint_keyword : str, optional
        Header keyword with each input's magnitude zero point: every input is
        scaled to the common ``zeropoint`` by ``10**(0.4 * (zeropoint - ZP))``
        (times its ``flux_scale_keyword`` factor), and the coadd's ``.meta``
        gets the keyword with the common value.
    zeropoint : float, optional
        The common zero point; default is the first input's.
    weights : sequence of float, optional
        A factor for the weight of each input (with ``combine="weighted"`` or
        ``"clipped"``), in input order. The uncertainty of the coadd stays the
        true one of the weighted mean, sum(w_i^2 var_i) / (sum w_i)^2.
    header_suffix : str or None, optional
        A SCAMP header file beside a file input, named as the file with this
        suffix (``frame.fits`` and ``frame.head``), replaces the header cards
        it holds (its astrometry, mostly), one block per image HDU, as SWarp
        does; the product's ``HISTORY`` names the files used. `None` ignores
        them. Default is ``".head"``.
    conserve : {"flux", "surface_brightness"}, optional
        Where pixel areas change, ``"flux"`` scales pixel values by the ratio
        of pixel areas so that the total flux of a star is kept (and a flat sky
        changes its level per pixel); ``"surface_brightness"`` keeps pixel
        values (a flat sky keeps its level, a star's flux changes with the
        area ratio). Default is ``"flux"``.
    swarp_path : str or path-like, optional
        The SWarp binary; see `find_swarp`.
    nthreads : int, optional
        Threads for SWarp; default is ``stdpipe_ccd.conf.nthreads`` (0: all cores).
    keep_workdir : bool, optional
        Keep the temporary directory (its path is logged) for debugging.
    timeout : float, optional
        Seconds after which SWarp is stopped and `~stdpipe_ccd.SwarpError` raised.
    add_keyword : bool, str, dict or `~ccdproc.Keyword`, optional
        Provenance in ``.meta``, as in `~stdpipe_ccd.make_mask`.

    Returns
    -------
    coadd : `~astropy.nddata.CCDData`
        ``.data`` is the coadd, ``.uncertainty`` an
        `~astropy.nddata.InverseVariance` from SWarp's output weight map,
        ``.mask`` is `True` where nothing contributed, ``.wcs`` the target WCS,
        ``.unit`` the inputs' unit. ``.exposure_map`` holds the exposure time
        (s) summed over the images at each pixel and ``.count_map`` their
        number (`~stdpipe_ccd.io.write_fits` writes them as the ``EXPMAP``
        and ``NIMAGES`` extensions; they do not survive slicing or
        arithmetic). ``.meta`` is the target header with ``GAIN`` and
        ``SATURATE`` of the coadd (effective values for the combine type),
        ``EXPTIME`` (the sum of the inputs' for ``"sum"``, else their mean),
        ``TEXPTIME`` (their sum), ``NCOMBINE``, and the call, inputs, SWarp
        version and configuration as ``HISTORY``. For flags, ``.data`` has
        the inputs' dtype, and there is no uncertainty and no maps.

    Raises
    ------
    stdpipe_ccd.SwarpNotFoundError
        No SWarp binary.
    stdpipe_ccd.SwarpError
        SWarp failed or timed out; the error carries the command and the end of
        SWarp's output.
    ValueError
        Bad options, an unknown name in ``extra``, an input without celestial WCS.
    astropy.units.UnitsError
        The inputs have different units.
    """
    options = dict(locals())  # every argument, for the one implementation below
    options["combine"] = ("and" if is_flags else "weighted") if combine is None else combine
    return _swarp_product("reproject_swarp", options, resample_only=False)


def resample_swarp(
    input,  # noqa: A002 (as reproject_swarp)
    wcs=None,
    shape=None,
    *,
    width=None,
    height=None,
    header=None,
    extra=None,
    is_flags=False,
    use_nans=True,
    resampling="lanczos3",
    subtract_background=False,
    flux_scale_keyword=None,
    zeropoint_keyword=None,
    zeropoint=None,
    weights=None,
    header_suffix=".head",
    conserve="flux",
    swarp_path=None,
    nthreads=None,
    keep_workdir=False,
    timeout=None,
    add_keyword=True,
):
    """Resample each image onto one grid with SWarp, without combining them.

    This is what image subtraction needs: every input on the science frame's
    grid, each with its own inverse-variance map. Parameters are those of
    `reproject_swarp`.

    Returns
    -------
    frames : list of `~astropy.nddata.CCDData`
        One per input, in input order, each on the full target grid.
    """
    options = dict(locals())  # every argument, for the one implementation below
    options["combine"] = "or" if is_flags else "weighted"
    return _swarp_product("resample_swarp", options, resample_only=True)


#: options of the fronts that go to the back end, to the grid, and to the product
_BACKEND_OPTIONS = (
    "combine",
    "conserve",
    "subtract_background",
    "is_flags",
    "resampling",
    "extra",
    "swarp_path",
    "nthreads",
    "timeout",
    "keep_workdir",
)
_GRID_OPTIONS = ("wcs", "shape", "width", "height", "header")
_PRODUCT_OPTIONS = (
    "flux_scale_keyword",
    "zeropoint_keyword",
    "zeropoint",
    "weights",
    "header_suffix",
    "use_nans",
    "add_keyword",
)


def _swarp_product(function, options, *, resample_only):
    """Run SWarp on the inputs and build the product(s) of ``function``."""
    backend = SwarpBackend(
        weights=options["weights"] is not None, **{k: options[k] for k in _BACKEND_OPTIONS}
    )
    grid = {key: options[key] for key in _GRID_OPTIONS}
    shown = ("resampling", "conserve") if resample_only else ("combine", "resampling", "conserve")
    call = format_call({key: options[key] for key in shown})
    if options["is_flags"]:
        frames, items, target = _flag_frames(options["input"], backend, grid, options)
        if not resample_only:
            return _combine_flags(frames, items, target, options, function, call)
        return [
            _flag_product(data, covered, target, [item], "OR", options, function, call)
            for (data, covered), item in zip(frames, items, strict=True)
        ]
    return stack_inputs(
        options["input"],
        backend,
        grid=grid,
        **{key: options[key] for key in _PRODUCT_OPTIONS},
        function=function,
        call=call,
        resample_only=resample_only,
    )


def _flag_frames(input, backend, grid, options):  # noqa: A002
    """Resample flag images, each on its own: (flags, covered) of each, the items, the grid.

    SWarp's FLAGS resampling drops isolated bits under rotation, and AND/OR
    need each frame's coverage, so the frames are combined here.
    """
    items = parse_inputs(input, read=backend.read, header_suffix=options["header_suffix"])
    try:
        target = target_grid(items, **grid)
        return backend.flag_frames(items, target), items, target
    finally:
        for item in items:
            item.release()


def _combine_flags(frames, items, target, options, function, call):
    """Combine resampled flag frames: ``and`` keeps flags common to every covering frame."""
    combine = options["combine"]
    data = np.zeros(frames[0][0].shape, dtype=frames[0][0].dtype)
    coverage = np.zeros(data.shape, dtype=np.int32)
    for frame, covered in frames:
        coverage += covered
        if combine == "or":
            data[covered] |= frame[covered]
        else:
            data = np.where(covered, np.where(coverage == 1, frame, data & frame), data)
    return _flag_product(
        data, coverage > 0, target, items, combine.upper(), options, function, call
    )


def _flag_product(data, covered, target, items, combine, options, function, call):
    meta = fits.Header(target)
    meta["NCOMBINE"] = (len(items), "number of images combined")
    meta["COMBINET"] = (combine, "how flags of overlapping frames combine")
    lines = [f"{function}({call}, is_flags=True)"]
    lines += [f"input {i + 1}: {item.description}" for i, item in enumerate(items)]
    record_provenance(meta, options["add_keyword"], function, lines)
    wcs = celestial_wcs(target, "target")
    return CCDData(data, unit=u.dimensionless_unscaled, wcs=wcs, meta=meta, mask=~covered)
