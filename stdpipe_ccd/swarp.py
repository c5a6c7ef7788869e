"""Reprojection and coaddition with the SWarp binary, returning `~astropy.nddata.CCDData`.

Each run happens in a private temporary directory, with an empty
configuration file and every output redirected there, so no file in the
current directory can change SWarp's behaviour and nothing is left behind.
Known traps of SWarp (NaN read as data, silently ignored SIP distortion,
unknown parameters accepted, dropped variance-weighted images, its own gain of
a median) are handled here; see the stacking guide.
"""

import functools
import logging
import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, InverseVariance
from astropy.wcs import WCS

from ._conf import conf
from ._provenance import add_custom_keyword, add_history_lines
from ._sky import inverse_variance_map
from ._wcs import celestial_wcs, covering_grid, has_sip, sip_to_tpv
from .exceptions import SwarpError, SwarpNotFoundError
from .io import read_fits

__all__ = ["find_swarp", "reproject_swarp", "resample_swarp"]

logger = logging.getLogger(__name__)

SWARP_NAMES = ("swarp", "SWarp")
COMBINE_TYPES = ("weighted", "average", "median", "sum", "clipped", "min", "max")
FLAG_COMBINE_TYPES = ("and", "or")
RESAMPLING_TYPES = ("lanczos3", "lanczos2", "lanczos4", "bilinear", "nearest")
CONSERVE = {"flux": "FIXED", "surface_brightness": "NONE"}
#: keywords copied from each input's meta into the file SWarp reads
_COPIED_KEYWORDS = ("GAIN", "SATURATE", "EXPTIME")
#: parameters set by this module; `extra` may not set them
_OWN_PARAMETERS = frozenset(
    {
        "IMAGEOUT_NAME",
        "WEIGHTOUT_NAME",
        "XML_NAME",
        "WRITE_XML",
        "RESAMPLE_DIR",
        "VMEM_DIR",
        "WEIGHT_TYPE",
        "WEIGHT_IMAGE",
        "WEIGHT_THRESH",
        "RESCALE_WEIGHTS",
        "RESAMPLE",
        "COMBINE",
        "DELETE_TMPFILES",
        "HEADER_SUFFIX",
        "NTHREADS",
    }
)


# --- the binary ----------------------------------------------------------------------


def find_swarp(path=None):
    """Find the SWarp binary.

    Parameters
    ----------
    path : str or path-like, optional
        An explicit binary. Without it, ``stdpipe_ccd.conf.swarp_path`` is
        used, then the ``PATH`` is searched for ``swarp`` (conda-forge, source
        builds) and ``SWarp`` (Debian and Ubuntu).

    Returns
    -------
    path : `pathlib.Path`

    Raises
    ------
    stdpipe_ccd.SwarpNotFoundError
        No executable SWarp was found, or the one named is not executable.
    """
    for explicit, origin in ((path, "path"), (conf.swarp_path or None, "conf.swarp_path")):
        if explicit is None:
            continue
        found = shutil.which(str(explicit))
        if found is None:
            msg = f"{origin}={str(explicit)!r} is not an executable SWarp binary"
            raise SwarpNotFoundError(msg)
        return Path(found)
    for name in SWARP_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    msg = (
        "SWarp was not found on the PATH as 'swarp' or 'SWarp'. Install it with "
        "'apt-get install swarp' (Debian, Ubuntu) or 'conda install -c conda-forge "
        "astromatic-swarp', or set stdpipe_ccd.conf.swarp_path."
    )
    raise SwarpNotFoundError(msg)


@functools.lru_cache(maxsize=8)
def swarp_info(executable):
    """Version string and the set of valid parameter names of a SWarp binary."""
    version_text = _run([executable, "-v"], cwd=None, timeout=60)
    match = re.search(r"version\s+(\S+)", version_text)
    defaults = _run([executable, "-dd"], cwd=None, timeout=60)
    names = {
        line.split()[0]
        for line in defaults.splitlines()
        if line.strip() and not line.startswith("#") and line.split()[0].isupper()
    }
    return (match.group(1) if match else "unknown"), frozenset(names)


def _run(command, *, cwd, timeout):
    """Run a command; return what it printed, or raise `SwarpError`."""
    command = [str(part) for part in command]
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as err:
        msg = f"SWarp did not finish within {timeout} s"
        raise SwarpError(msg, command=command, output_tail=_tail(err.stderr)) from err
    except OSError as err:
        msg = f"SWarp could not be started: {err}"
        raise SwarpError(msg, command=command) from err
    output = (done.stdout or "") + (done.stderr or "")
    if done.returncode != 0 or "*Error*" in output:
        errors = [line for line in output.splitlines() if "Error" in line]
        reason = errors[-1].strip() if errors else f"exit code {done.returncode}"
        msg = f"SWarp failed ({reason})"
        raise SwarpError(
            msg, command=command, returncode=done.returncode, output_tail=_tail(output)
        )
    return output


def _tail(text, lines=15):
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").splitlines()[-lines:])


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
        (its pixels are not loaded); a `~astropy.nddata.CCDData` gives its
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
        Header keyword with a flux scale factor for each input (SWarp's
        ``FSCALE_KEYWORD``).
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
        ``.unit`` the inputs' unit, and ``.meta`` the target header with
        ``GAIN`` and ``SATURATE`` of the coadd (effective values for the
        combine type), ``NCOMBINE``, and the inputs, SWarp version and
        configuration as ``HISTORY``. For flags, ``.data`` has the inputs'
        dtype and there is no uncertainty.

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
    combine = ("and" if is_flags else "weighted") if combine is None else combine
    run = _SwarpRun(
        input,
        is_flags=is_flags,
        combine=combine,
        resampling=resampling,
        subtract_background=subtract_background,
        flux_scale_keyword=flux_scale_keyword,
        conserve=conserve,
        extra=extra,
        swarp_path=swarp_path,
        nthreads=nthreads,
        timeout=timeout,
    )
    target = _target_header(
        run.items, wcs=wcs, shape=shape, width=width, height=height, header=header
    )
    if is_flags:
        # each frame on its own, then combined here: SWarp's FLAGS resampling
        # drops isolated bits under rotation, and AND/OR need each frame's coverage
        frames = run.execute(
            target,
            use_nans=use_nans,
            keep_workdir=keep_workdir,
            add_keyword=add_keyword,
            resample_only=True,
        )
        return _combine_flags(frames, combine)
    return run.execute(
        target,
        use_nans=use_nans,
        keep_workdir=keep_workdir,
        add_keyword=add_keyword,
        resample_only=False,
    )[0]


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
    run = _SwarpRun(
        input,
        is_flags=is_flags,
        combine="or" if is_flags else "weighted",
        resampling=resampling,
        subtract_background=subtract_background,
        flux_scale_keyword=flux_scale_keyword,
        conserve=conserve,
        extra=extra,
        swarp_path=swarp_path,
        nthreads=nthreads,
        timeout=timeout,
    )
    target = _target_header(
        run.items, wcs=wcs, shape=shape, width=width, height=height, header=header
    )
    return run.execute(
        target,
        use_nans=use_nans,
        keep_workdir=keep_workdir,
        add_keyword=add_keyword,
        resample_only=True,
    )


# --- inputs -----------------------------------------------------------------------------


class _Item:
    """One input: a FITS file on disk, or an image in memory."""

    def __init__(self, *, name, path=None, ccd=None):
        self.name, self.path, self.ccd = name, path, ccd
        if path is not None:
            self.header, self.hdu, self.extensions = _image_header(path)
            self.shape = (self.header["NAXIS2"], self.header["NAXIS1"])
            self.unit = _header_unit(self.header)
        else:
            if ccd.data.ndim != 2:
                msg = f"input {name} must be 2D, not {ccd.data.ndim}D"
                raise ValueError(msg)
            self.header = (
                fits.Header(ccd.meta) if not isinstance(ccd.meta, fits.Header) else ccd.meta.copy()
            )
            if ccd.wcs is not None:
                for key in list(self.header):
                    if key[:5] in ("CTYPE", "CRPIX", "CRVAL", "CDELT", "CUNIT") or key.startswith(
                        ("CD1_", "CD2_", "PC1_", "PC2_", "A_", "B_", "AP_", "BP_", "PV1_", "PV2_")
                    ):
                        del self.header[key]
                self.header.update(ccd.wcs.to_header(relax=True))
            self.shape = ccd.data.shape
            self.unit = ccd.unit
        self.wcs = celestial_wcs(self.header, name)

    @property
    def gain(self):
        """Gain in e- per unit of the image: 1 for electrons, else ``GAIN`` or 1."""
        if self.unit == u.electron:
            return 1.0
        return float(self.header.get("GAIN", 1.0))


def _image_header(path):
    """Header and index of the first 2D image HDU of a FITS file, and its other HDU names."""
    with fits.open(path) as hdul:
        for index, hdu in enumerate(hdul):
            if hdu.is_image and hdu.header.get("NAXIS") == 2:
                others = {h.name for h in hdul if h is not hdu and h.header.get("NAXIS")}
                return hdu.header.copy(), index, others
    msg = f"{path} has no 2D image"
    raise ValueError(msg)


def _header_unit(header):
    try:
        return u.Unit(header["BUNIT"]) if "BUNIT" in header else None
    except ValueError:
        return None


def _as_items(input):  # noqa: A002
    """Turn every kind of input into a list of `_Item`."""
    return [_item(entry, i) for i, entry in enumerate(_as_entries(input))]


def _as_entries(input):  # noqa: A002
    """List the inputs: paths, CCDData or (array, Header|WCS) tuples."""
    from ccdproc import ImageFileCollection

    if isinstance(input, ImageFileCollection):
        files = input.files_filtered(include_path=True)
        if not len(files):
            msg = "the ImageFileCollection has no files (after its filters)"
            raise ValueError(msg)
        return list(files)
    if _is_single(input):
        return [input]
    entries = list(input)
    if not entries:
        msg = "no input images"
        raise ValueError(msg)
    return entries


def _is_single(entry):
    return isinstance(entry, (str, os.PathLike, CCDData)) or (
        isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], (fits.Header, WCS))
    )


def _item(entry, index):
    if isinstance(entry, (str, os.PathLike)):
        path = Path(entry)
        if not path.is_file():
            msg = f"input file {path} does not exist"
            raise FileNotFoundError(msg)
        return _Item(name=str(path), path=path.resolve())
    if isinstance(entry, CCDData):
        return _Item(name=f"CCDData #{index}", ccd=entry)
    if isinstance(entry, tuple) and len(entry) == 2:
        data, meta = entry
        if isinstance(meta, WCS):
            ccd = CCDData(np.asarray(data), unit=u.adu, wcs=meta)
        else:
            unit = _header_unit(meta) or u.adu
            ccd = CCDData(np.asarray(data), unit=unit, meta=meta.copy())
        return _Item(name=f"array #{index}", ccd=ccd)
    msg = (
        f"input #{index} is a {type(entry).__name__}; expected a FITS path, a CCDData, "
        "an (array, Header) or (array, WCS) tuple"
    )
    raise TypeError(msg)


def _common_unit(items):
    units = {item.unit for item in items if item.unit is not None}
    if len(units) > 1:
        msg = f"the inputs have different units: {sorted(map(str, units))}"
        raise u.UnitsError(msg)
    return units.pop() if units else u.adu


def _target_header(items, *, wcs, shape, width, height, header):
    """Return the target grid as a header with NAXIS1/2, TPV instead of SIP."""
    if header is not None:
        target = fits.Header(header).copy()
        if "NAXIS1" not in target or "NAXIS2" not in target:
            msg = "header must have NAXIS1 and NAXIS2 for the target grid"
            raise ValueError(msg)
        shape = (target["NAXIS2"], target["NAXIS1"])
        wcs = celestial_wcs(target, "header")
    elif wcs is not None:
        if shape is None:
            if width is None or height is None:
                msg = "wcs needs shape=(ny, nx), or width and height"
                raise ValueError(msg)
            shape = (int(height), int(width))
        target = None
    else:
        if shape is not None or width is not None or height is not None:
            msg = "shape, width and height need wcs"
            raise ValueError(msg)
        return covering_grid([item.wcs.celestial for item in items], [i.shape for i in items])
    celestial = wcs.celestial
    cards = sip_to_tpv(celestial, shape) if has_sip(celestial) else celestial.to_header()
    result = fits.Header([("NAXIS", 2), ("NAXIS1", int(shape[1])), ("NAXIS2", int(shape[0]))])
    result.update(cards)
    if target is not None:
        for key in ("EQUINOX", "RADESYS"):
            if key in target:
                result[key] = target[key]
    return result


# --- the run ------------------------------------------------------------------------------


class _SwarpRun:
    """Inputs, options and binary of one SWarp call, checked before anything is written."""

    def __init__(
        self,
        input,  # noqa: A002 (as reproject_swarp)
        *,
        is_flags,
        combine,
        resampling,
        subtract_background,
        flux_scale_keyword,
        conserve,
        extra,
        swarp_path,
        nthreads,
        timeout,
    ):
        allowed = FLAG_COMBINE_TYPES if is_flags else COMBINE_TYPES
        _check_choice("combine", combine, allowed)
        _check_choice("resampling", resampling, RESAMPLING_TYPES)
        _check_choice("conserve", conserve, tuple(CONSERVE))
        self.executable = find_swarp(swarp_path)
        self.version, parameters = swarp_info(str(self.executable))
        self.extra = _check_extra(extra, parameters)
        self.items = _as_items(input)
        self.unit = _common_unit(self.items)
        self.is_flags, self.combine = is_flags, combine
        self.flag_dtype = None
        if is_flags:
            self.flag_dtype = np.result_type(*[_flag_dtype(item) for item in self.items])
        self.config = {
            "COMBINE_TYPE": combine.upper(),
            "RESAMPLING_TYPE": "FLAGS" if is_flags else resampling.upper(),
            "SUBTRACT_BACK": "Y" if subtract_background else "N",
            "FSCALASTRO_TYPE": "NONE" if is_flags else CONSERVE[conserve],
            "GAIN_KEYWORD": "GAIN",
            "SATLEV_KEYWORD": "SATURATE",
            "BLANK_BADPIXELS": "N",
            "VERBOSE_TYPE": "NORMAL",
        }
        self.copied_keywords = _COPIED_KEYWORDS
        if flux_scale_keyword:
            self.config["FSCALE_KEYWORD"] = flux_scale_keyword
            self.copied_keywords = (*_COPIED_KEYWORDS, flux_scale_keyword)
        self.config.update(self.extra)
        self.nthreads = conf.nthreads if nthreads is None else int(nthreads)
        self.timeout = timeout

    def execute(self, target, *, use_nans, keep_workdir, add_keyword, resample_only):
        """Write the inputs, run SWarp in a private directory and read the products."""
        parent = conf.tmpdir or None
        if keep_workdir:
            workdir = Path(tempfile.mkdtemp(prefix="stdpipe_ccd_swarp_", dir=parent))
            logger.warning("SWarp working directory kept: %s", workdir)
            return self._execute_in(workdir, target, use_nans, add_keyword, resample_only)
        with tempfile.TemporaryDirectory(prefix="stdpipe_ccd_swarp_", dir=parent) as name:
            return self._execute_in(Path(name), target, use_nans, add_keyword, resample_only)

    def _execute_in(self, workdir, target, use_nans, add_keyword, resample_only):
        prepared = [self._prepare(index, item, workdir) for index, item in enumerate(self.items)]
        images = [image for image, _, _ in prepared]
        (workdir / "coadd.head").write_text(target.tostring(sep="\n", endcard=True, padding=False))
        (workdir / "empty.swarp").write_text("")
        parameters = {
            **self.config,
            "IMAGEOUT_NAME": "coadd.fits",
            "WEIGHTOUT_NAME": "coadd.weight.fits",
            "XML_NAME": "swarp.xml",
            "WRITE_XML": "Y",
            "RESAMPLE_DIR": ".",
            "VMEM_DIR": ".",
            "HEADER_SUFFIX": ".head",
            "NTHREADS": str(self.nthreads),
            "RESAMPLE": "Y",
            "COMBINE": "N" if resample_only else "Y",
            "DELETE_TMPFILES": "N" if resample_only else "Y",
        }
        parameters.update(self._weight_parameters(prepared))
        command = [self.executable, *images, "-c", "empty.swarp"]
        for key, value in parameters.items():
            command += [f"-{key}", value]
        output = _run(command, cwd=workdir, timeout=self.timeout)
        for line in output.splitlines():
            if "WARNING" in line.upper():
                logger.info("SWarp: %s", line.strip())
        statistics = _xml_statistics(workdir / "swarp.xml")
        if resample_only:
            products = [
                (
                    workdir / f"{Path(image).stem}.resamp.fits",
                    workdir / f"{Path(image).stem}.resamp.weight.fits",
                    [item],
                    statistics[i : i + 1],
                )
                for i, (image, item) in enumerate(zip(images, self.items, strict=True))
            ]
        else:
            products = [
                (workdir / "coadd.fits", workdir / "coadd.weight.fits", self.items, statistics)
            ]
        missing = [
            path.name
            for image, weight, _, _ in products
            for path in (image, weight)
            if not path.exists()
        ]
        if missing:
            msg = f"SWarp wrote no {', '.join(missing)}"
            raise SwarpError(
                msg, command=[str(c) for c in command], returncode=0, output_tail=_tail(output)
            )
        return [
            self._frame(image, weight, target, items, rows, use_nans, add_keyword)
            for image, weight, items, rows in products
        ]

    # --- writing the inputs ---

    def _prepare(self, index, item, workdir):
        """Put input ``index`` in ``workdir``: (image path, weight path or None, weight type)."""
        image = workdir / f"in{index:04d}.fits"
        if item.ccd is not None:
            return self._write_memory_input(item, image)
        if not self.is_flags and item.extensions & {"MASK", "UNCERT"}:
            # a file from write_fits or CCDData.write: its mask and uncertainty become weights
            item = _Item(name=item.name, ccd=read_fits(item.path, unit=item.unit or u.adu))
            return self._write_memory_input(item, image)
        needs_rewrite = self.is_flags and _scaled_integers(item.header)
        if needs_rewrite or item.hdu != 0 or item.extensions:
            # BZERO-scaled flags come back offset; SWarp would coadd every extension
            data = fits.getdata(item.path, item.hdu)
            header = _swarp_header(item, self.copied_keywords)
            dtype = np.int32 if self.is_flags else np.float32
            fits.PrimaryHDU(data.astype(dtype), header=header).writeto(image)
        else:
            # the file itself, under a name of ours, with a .head beside it where needed
            image.symlink_to(item.path)
            if has_sip(item.wcs):
                _write_head(image, _tpv_cards(item))
        if self.is_flags:
            return image.name, None, "NONE"
        weight = _nan_weight_file(image, workdir / f"in{index:04d}.weight.fits")
        # NONE: SWarp measures the background variance (its BACKGROUND type gives 1/sigma)
        return image.name, weight, "MAP_WEIGHT" if weight else "NONE"

    def _write_memory_input(self, item, image):
        data = np.asarray(item.ccd.data)
        header = _swarp_header(item, self.copied_keywords)
        if self.is_flags:
            fits.PrimaryHDU(data.astype(np.int32), header=header).writeto(image)
            return image.name, None, "NONE"
        weight = inverse_variance_map(item.ccd, data)
        data = np.where(weight > 0, data, 0).astype(np.float32)
        fits.PrimaryHDU(data, header=header).writeto(image)
        weight_path = image.with_suffix(".weight.fits")
        fits.PrimaryHDU(weight).writeto(weight_path)
        return image.name, weight_path.name, "MAP_WEIGHT"

    def _weight_parameters(self, prepared):
        types = [kind for _, _, kind in prepared]
        if self.is_flags:
            return {"WEIGHT_TYPE": "NONE"}
        parameters = {
            "WEIGHT_TYPE": ",".join(types),
            # explicit thresholds: without them SWarp drops every variance-weighted image
            # after the first; weights are absolute (1/variance), so no rescaling
            "WEIGHT_THRESH": ",".join("0" for _ in types),
            "RESCALE_WEIGHTS": "N",
        }
        weights = [weight for _, weight, _ in prepared]
        if any(weights):
            # SWarp pairs weight images with the images that have a MAP_* type
            parameters["WEIGHT_IMAGE"] = ",".join(w for w in weights if w)
        return parameters

    # --- reading the products ---

    def _frame(self, image_path, weight_path, target, items, statistics, use_nans, add_keyword):
        """Read one product of SWarp onto the full target grid as a CCDData."""
        shape = (target["NAXIS2"], target["NAXIS1"])
        with fits.open(image_path) as hdul:
            header = hdul[0].header.copy()
            part = hdul[0].data
            data = _embed(
                part,
                header,
                target,
                shape,
                np.dtype(self.flag_dtype or np.float32).newbyteorder("="),
            )
        weight = _embed(fits.getdata(weight_path), header, target, shape, np.dtype(np.float32))
        covered = weight > 0
        meta = fits.Header(target)
        for key in ("EXPTIME", "GAIN", "SATURATE"):
            if key in header:
                meta[f"SW{key[:6]}"] = (header[key], f"{key} as SWarp wrote it")
        wcs = celestial_wcs(target, "target")
        if self.is_flags:
            covered |= _add_forward_flags(data, items[0], wcs)
            result = CCDData(data, unit=u.dimensionless_unscaled, wcs=wcs, meta=meta, mask=~covered)
        else:
            if use_nans:
                data[~covered] = np.nan
            result = CCDData(
                data,
                unit=self.unit,
                wcs=wcs,
                meta=meta,
                mask=~covered,
                uncertainty=InverseVariance(weight, copy=False),
            )
            gain, saturation = _effective_gain(items, self.combine, statistics)
            result.meta["GAIN"] = (gain, "[e-/unit] effective gain of the coadd")
            if saturation is not None:
                result.meta["SATURATE"] = (saturation, "effective saturation of the coadd")
        result.meta["NCOMBINE"] = (len(items), "number of images combined")
        result.meta["SWARPVER"] = (self.version, "SWarp version")
        result.meta["COMBINET"] = (self.combine.upper(), "SWarp COMBINE_TYPE")
        if add_keyword is not None and add_keyword is not False:
            from . import __version__

            lines = [f"stdpipe_ccd {__version__} SWarp {self.version}"]
            lines += [f"input {i + 1}: {item.name}" for i, item in enumerate(items)]
            lines += [f"SWarp {key} {value}" for key, value in self.config.items()]
            add_history_lines(result.meta, lines)
            if add_keyword is not True:
                add_custom_keyword(result.meta, add_keyword, "reproject_swarp")
        return result


def _add_forward_flags(data, item, wcs):
    """OR every set pixel of a flag image into the nearest pixel of ``data`` (in place).

    Returns the pixels that received a flag, which count as covered.
    """
    flags = np.asarray(item.ccd.data if item.ccd is not None else fits.getdata(item.path, item.hdu))
    ys, xs = np.nonzero(flags)
    received = np.zeros(data.shape, dtype=bool)
    if not ys.size:
        return received
    ra, dec = item.wcs.celestial.all_pix2world(xs, ys, 0)
    px, py = wcs.all_world2pix(ra, dec, 0)
    ix, iy = np.round(px).astype(int), np.round(py).astype(int)
    inside = (ix >= 0) & (iy >= 0) & (ix < data.shape[1]) & (iy < data.shape[0])
    values = flags[ys[inside], xs[inside]].astype(data.dtype)
    np.bitwise_or.at(data, (iy[inside], ix[inside]), values)
    received[iy[inside], ix[inside]] = True
    return received


def _combine_flags(frames, combine):
    """Combine resampled flag frames: ``and`` keeps flags common to every covering frame."""
    first = frames[0]
    data = np.zeros(first.shape, dtype=first.data.dtype)
    coverage = np.zeros(first.shape, dtype=np.int32)
    for frame in frames:
        covered = ~frame.mask
        coverage += covered
        if combine == "or":
            data[covered] |= frame.data[covered]
        else:
            data = np.where(covered, np.where(coverage == 1, frame.data, data & frame.data), data)
    meta = first.meta.copy()
    meta["NCOMBINE"] = (len(frames), "number of images combined")
    meta["COMBINET"] = (combine.upper(), "how flags of overlapping frames combine")
    return CCDData(data, unit=first.unit, wcs=first.wcs, meta=meta, mask=coverage == 0)


def _embed(part, header, target, shape, dtype):
    """Place a (possibly cropped) SWarp product into an array of the full target grid."""
    part = np.asarray(part)
    if (
        part.shape == tuple(shape)
        and header["CRPIX1"] == target["CRPIX1"]
        and header["CRPIX2"] == target["CRPIX2"]
    ):
        return part.astype(dtype)  # the full grid already: one copy, to native order
    full = np.zeros(shape, dtype=dtype)
    # cropped resampled frames keep the target projection with a shifted CRPIX
    dx = round(target["CRPIX1"] - header["CRPIX1"])
    dy = round(target["CRPIX2"] - header["CRPIX2"])
    ny, nx = part.shape
    ys, xs = slice(max(dy, 0), min(dy + ny, shape[0])), slice(max(dx, 0), min(dx + nx, shape[1]))
    full[ys, xs] = part[ys.start - dy : ys.stop - dy, xs.start - dx : xs.stop - dx]
    return full


def _xml_statistics(path):
    """Per-input rows of SWarp's XML report (background noise, flux scales, gain, ...)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return []

    def local(element):
        return element.tag.rsplit("}", 1)[-1]

    for table in root.iter():
        if local(table) == "TABLE" and table.get("name") == "Input_Image_Data":
            names = [f.get("name") for f in table.iter() if local(f) == "FIELD"]
            return [
                dict(zip(names, [td.text for td in row if local(td) == "TD"], strict=False))
                for row in table.iter()
                if local(row) == "TR"
            ]
    return []


def _effective_gain(items, combine, statistics):
    """Gain and saturation level of a coadd, for its combine type.

    Frame i, scaled by s_i (SWarp's flux scale), has gain g_i / s_i in the
    coadd's units. A sum of n frames keeps the gain, n / sum(s_i / g_i); an
    average multiplies it by n, n^2 / sum(s_i / g_i); a median of more than
    two frames by about 2n/pi; a weighted (or clipped) mean by the effective
    number of frames, (sum w)^2 / sum(w_i^2 s_i / g_i), with w_i the inverse
    variance of each scaled frame. The coadd saturates where its first frame
    does: the smallest scaled level (n times that for a sum).
    """
    n = len(items)
    gains = np.array([item.gain for item in items])
    scales = np.ones(n)
    noise = np.full(n, np.nan)
    if len(statistics) == n:
        scales = np.array(
            [
                _float(row.get("Photometric_Flux_Scaling"), 1.0)
                * _float(row.get("Astrometric_Flux_Scaling"), 1.0)
                for row in statistics
            ]
        )
        noise = np.array([_float(row.get("Background_StDev"), np.nan) for row in statistics])
    inverse = np.sum(scales / gains)  # sum of 1 / (frame gain in coadd units)
    if combine == "sum":
        gain = n / inverse
    elif combine in ("min", "max"):
        gain = float(np.min(gains / scales))
    elif combine == "median":
        gain = n**2 / inverse * (1.0 if n <= 2 else 2.0 / np.pi)
    elif combine in ("weighted", "clipped") and np.all(noise > 0):
        w = 1.0 / (noise * scales) ** 2
        gain = np.sum(w) ** 2 / np.sum(w**2 * scales / gains)
    else:  # average, or weighted without the noise of each frame
        gain = n**2 / inverse
    levels = [item.header.get("SATURATE") for item in items]
    saturation = None
    if all(level is not None for level in levels):
        first = float(np.min(np.array(levels, dtype=float) * scales))
        saturation = n * first if combine == "sum" else first
    return float(gain), saturation


def _float(text, default):
    try:
        return float(text)
    except (TypeError, ValueError):
        return default


# --- helpers -----------------------------------------------------------------------------


def _check_choice(name, value, allowed):
    if value not in allowed:
        msg = f"{name}={value!r} is not one of {allowed}"
        raise ValueError(msg)


def _check_extra(extra, parameters):
    """Upper-case the names of ``extra`` and reject those SWarp does not know."""
    extra = {
        str(key).upper(): (
            ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        )
        for key, value in (extra or {}).items()
    }
    unknown = sorted(set(extra) - parameters)
    if unknown:
        msg = f"extra has parameters SWarp does not know: {unknown}"
        raise ValueError(msg)
    own = sorted(set(extra) & _OWN_PARAMETERS)
    if own:
        msg = f"extra may not set {own}: stdpipe_ccd sets them itself"
        raise ValueError(msg)
    return extra


def _flag_dtype(item):
    if item.ccd is not None:
        dtype = np.asarray(item.ccd.data).dtype
    else:
        with fits.open(item.path) as hdul:
            dtype = hdul[item.hdu].data.dtype
    if dtype.kind not in "biu":
        msg = f"is_flags=True needs integer or boolean images, but {item.name} is {dtype}"
        raise ValueError(msg)
    return dtype.newbyteorder("=")


def _scaled_integers(header):
    return header.get("BITPIX", 0) > 0 and (
        header.get("BZERO", 0) != 0 or header.get("BSCALE", 1) != 1
    )


def _swarp_header(item, keywords=_COPIED_KEYWORDS):
    """Header of an input as SWarp reads it: its WCS (TPV for SIP) and a few keywords."""
    header = fits.Header()
    header.update(_tpv_cards(item) if has_sip(item.wcs) else item.wcs.celestial.to_header())
    for key in keywords:
        if key in item.header:
            header[key] = item.header[key]
    if item.unit == u.electron:
        header["GAIN"] = 1.0
    return header


def _tpv_cards(item):
    return sip_to_tpv(item.wcs.celestial, item.shape)


def _write_head(image, cards):
    """Write a SWarp ``.head`` file: header cards that replace those of the image."""
    image.with_suffix(".head").write_text(cards.tostring(sep="\n", endcard=True, padding=False))


def _nan_weight_file(image, weight_path, rows=256):
    """For a file with NaN pixels, write a weight map with 0 there; read the file once.

    Returns the weight file name, or None when the image has no NaN (SWarp
    then measures the background noise itself). The weight of finite pixels
    is the inverse of the image's robust variance (from the lower half of its
    distribution, as for in-memory images), so it matches their scale.
    """
    if fits.getheader(image).get("BITPIX", 0) > 0:
        return None  # integers hold no NaN
    with fits.open(image, memmap=True) as hdul:
        data = hdul[0].data
        weight = np.empty(data.shape, dtype=np.uint8)
        samples, has_nan = [], False
        for start in range(0, data.shape[0], rows):
            block = data[start : start + rows]
            finite = np.isfinite(block)
            has_nan = has_nan or not finite.all()
            weight[start : start + rows] = finite
            samples.append(block[::4, ::4][finite[::4, ::4]])
    if not has_nan:
        return None
    sample = np.concatenate(samples).astype(np.float64)
    median, low = np.percentile(sample, [50, 15.8655])
    # 0 or 1 in 8 bits, scaled by BSCALE to the inverse variance: a quarter of the I/O
    hdu = fits.PrimaryHDU(weight)
    hdu.header["BSCALE"] = 1.0 / (median - low) ** 2
    hdu.header["BZERO"] = 0.0
    hdu.writeto(weight_path)
    return weight_path.name
