"""The SWarp back end: the binary, one run in a private directory, its products as arrays.

Each run happens in a private temporary directory, with an empty
configuration file and every output redirected there, so no file in the
current directory can change SWarp's behaviour and nothing is left behind.
Known traps of SWarp (NaN read as data, silently ignored SIP distortion,
unknown parameters accepted, dropped variance-weighted images, its own gain of
a median) are handled here; see the stacking guide.
"""

import re
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from astropy import log
from astropy.io import fits

from ._conf import conf
from ._product import Stack, order_inverse_variance
from ._signals import signals_unwind
from ._sky import inverse_variance_map
from ._swarp_binary import StageLine, find_swarp, run_swarp, swarp_info, tail
from ._wcs import celestial_wcs, has_sip
from .exceptions import SwarpError

__all__ = ["SwarpBackend", "find_swarp", "swarp_info"]

COMBINE_TYPES = ("weighted", "average", "median", "sum", "clipped", "min", "max")
FLAG_COMBINE_TYPES = ("and", "or")
RESAMPLING_TYPES = ("lanczos3", "lanczos2", "lanczos4", "bilinear", "nearest")
CONSERVE = {"flux": "FIXED", "surface_brightness": "NONE"}
#: keywords copied from each input's meta into the file SWarp reads
COPIED_KEYWORDS = ("GAIN", "SATURATE", "EXPTIME")
#: keyword of the flux scale this package computes (a user's FLXSCALE is not applied unasked)
SCALE_KEYWORD = "SCCDFSCL"
#: parameters set by this module; `extra` may not set them
OWN_PARAMETERS = frozenset(
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
        "FSCALE_KEYWORD",
        # set from the options, which the product's keywords and gain follow
        "COMBINE_TYPE",
        "RESAMPLING_TYPE",
        "SUBTRACT_BACK",
        "FSCALASTRO_TYPE",
        "GAIN_KEYWORD",
        "SATLEV_KEYWORD",
        "BLANK_BADPIXELS",
    }
)
#: parameters of the output grid, which SWarp ignores when given a target header
GRID_PARAMETERS = frozenset(
    {
        "PIXEL_SCALE",
        "PIXELSCALE_TYPE",
        "CENTER",
        "CENTER_TYPE",
        "IMAGE_SIZE",
        "PROJECTION_TYPE",
        "PROJECTION_ERR",
        "CELESTIAL_TYPE",
    }
)


def check_choice(name, value, allowed):
    """Raise `ValueError` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        msg = f"{name}={value!r} is not one of {allowed}"
        raise ValueError(msg)


# --- the back end ------------------------------------------------------------------------


class SwarpBackend:
    """Resample and combine parsed inputs with SWarp; options are checked on creation.

    Parameters are those of `~stdpipe_ccd.reproject_swarp`, and ``progress``: show
    the seconds elapsed and SWarp's stage on standard error while it runs.
    """

    name = "swarp"

    def __init__(
        self,
        *,
        combine,
        conserve="flux",
        subtract_background=False,
        weights=False,
        is_flags=False,
        resampling="lanczos3",
        extra=None,
        swarp_path=None,
        nthreads=None,
        timeout=None,
        keep_workdir=False,
        progress=False,
    ):
        check_choice("combine", combine, FLAG_COMBINE_TYPES if is_flags else COMBINE_TYPES)
        check_choice("resampling", resampling, RESAMPLING_TYPES)
        check_choice("conserve", conserve, tuple(CONSERVE))
        if weights and combine not in ("weighted", "clipped"):
            msg = f"weights need combine='weighted' or 'clipped', not {combine!r}"
            raise ValueError(msg)
        self.executable = find_swarp(swarp_path)
        # the parameter names are asked of the binary only to check extra; the version
        # comes from the run's own banner: one SWarp process per call
        self.extra = _check_extra(extra, swarp_info(str(self.executable))[1] if extra else set())
        self.version = "unknown"
        self.is_flags, self.combine = is_flags, combine
        #: how much of each file `parse_inputs` reads for this back end
        self.read = "pixels" if is_flags else "noise" if weights else "finite"
        self.config = {
            "COMBINE_TYPE": combine.upper(),
            "RESAMPLING_TYPE": "FLAGS" if is_flags else resampling.upper(),
            "SUBTRACT_BACK": "Y" if subtract_background else "N",
            "FSCALASTRO_TYPE": "NONE" if is_flags else CONSERVE[conserve],
            "FSCALE_KEYWORD": SCALE_KEYWORD,
            "GAIN_KEYWORD": "GAIN",
            "SATLEV_KEYWORD": "SATURATE",
            "BLANK_BADPIXELS": "N",
            "VERBOSE_TYPE": "NORMAL",
            **self.extra,
        }
        self.nthreads = conf.nthreads if nthreads is None else int(nthreads)
        self.timeout, self.keep_workdir = timeout, keep_workdir
        self.progress = progress

    @property
    def meta(self):
        """Keywords of the product particular to this back end."""
        return {"SWARPVER": (self.version, "SWarp version")}

    @property
    def history(self):
        """Provenance lines of a run: the SWarp version and its configuration."""
        lines = [f"SWarp {self.version}"]
        return lines + [f"SWarp {key} {value}" for key, value in self.config.items()]

    def combine_stack(self, items, target, scales, weights=None):
        """Resample and combine ``items`` onto ``target``: one `Stack`."""
        return self._execute(items, target, scales, weights, resample_only=False)[0]

    def resample_stacks(self, items, target, scales, weights=None):
        """Resample each of ``items`` onto ``target``: one `Stack` each."""
        return self._execute(items, target, scales, weights, resample_only=True)

    def flag_frames(self, items, target):
        """Resample integer flag images onto ``target``: (flags, covered) of each, in order."""
        flag_dtype = np.result_type(*[_flag_dtype(item) for item in items])
        return self._execute(items, target, np.ones(len(items)), None, True, flag_dtype)

    # --- one run ---

    def _execute(self, items, target, scales, weights, resample_only, flag_dtype=None):
        with signals_unwind():
            return self._execute_here(items, target, scales, weights, resample_only, flag_dtype)

    def _execute_here(self, items, target, scales, weights, resample_only, flag_dtype):
        parent = conf.tmpdir or None
        if self.keep_workdir:
            workdir = Path(tempfile.mkdtemp(prefix="stdpipe_ccd_swarp_", dir=parent))
            log.warning("SWarp working directory kept: %s", workdir)
            return self._run_in(workdir, items, target, scales, weights, resample_only, flag_dtype)
        with tempfile.TemporaryDirectory(prefix="stdpipe_ccd_swarp_", dir=parent) as name:
            args = (items, target, scales, weights, resample_only, flag_dtype)
            return self._run_in(Path(name), *args)

    def _run_in(self, workdir, items, target, scales, weights, resample_only, flag_dtype):
        factors = np.ones(len(items)) if weights is None else weights
        prepared = []
        for index, item in enumerate(items):
            item.load()
            weighted = weights is not None
            prepared.append(
                self._prepare(index, item, workdir, scales[index], factors[index], weighted)
            )
            if flag_dtype is None:
                item.release()  # written for SWarp: one input's pixels in memory at a time
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
            # the resampled frames are kept for the maps of exposure time and image count
            "DELETE_TMPFILES": "N",
        }
        parameters.update(self._weight_parameters(prepared))
        command = [self.executable, *images, "-c", "empty.swarp"]
        for key, value in parameters.items():
            command += [f"-{key}", value]
        stage_line = StageLine(sys.stderr) if self.progress else None
        output = run_swarp(command, cwd=workdir, timeout=self.timeout, progress=stage_line)
        banner = re.search(r"SWarp\s+(\d\S*)\s+started", output)
        self.version = banner.group(1) if banner else self.version
        for line in output.splitlines():
            if "WARNING" in line.upper():
                # reading the .head files this module writes is how the grid gets to SWarp
                routine = "FITS header data read in" in line
                (log.debug if routine else log.warning)("SWarp: %s", line.strip())
        resampled = [
            (
                workdir / f"{Path(image).stem}.resamp.fits",
                workdir / f"{Path(image).stem}.resamp.weight.fits",
            )
            for image in images
        ]
        expected = (
            resampled
            if resample_only
            else [(workdir / "coadd.fits", workdir / "coadd.weight.fits")]
        )
        missing = [path.name for pair in expected for path in pair if not path.exists()]
        if missing:
            msg = f"SWarp wrote no {', '.join(missing)}"
            raise SwarpError(
                msg, command=[str(c) for c in command], returncode=0, output_tail=tail(output)
            )
        noise, scales = _xml_statistics(workdir / "swarp.xml", len(items))
        reader = _ProductReader(target, flag_dtype, self.combine)
        if flag_dtype is not None:
            return [
                reader.flags(image, weight, item)
                for (image, weight), item in zip(resampled, items, strict=True)
            ]
        if resample_only:
            return [
                reader.stack([pair], [pair], [item], noise[i : i + 1], scales[i : i + 1], None)
                for i, (pair, item) in enumerate(zip(resampled, items, strict=True))
            ]
        return [reader.stack(expected, resampled, items, noise, scales, weights)]

    # --- writing the inputs ---

    def _prepare(self, index, item, workdir, scale, factor, weighted):
        """Put input ``index`` in ``workdir``: (image name, weight name or None, weight type)."""
        image = workdir / f"in{index:04d}.fits"
        keywords = {SCALE_KEYWORD: float(scale)} if scale != 1 else {}
        if self.is_flags:
            if item.path is None or _scaled_integers(item.header) or item.hdu or item.extensions:
                # BZERO-scaled flags come back offset; SWarp would coadd every extension
                return self._write_memory_input(item, image, keywords, factor)
            image.symlink_to(item.path)
            return image.name, None, "NONE"
        if item.ccd is not None:
            return self._write_memory_input(item, image, keywords, factor)
        # the file itself, under a name of ours, with a .head of the cards SWarp must see
        image.symlink_to(item.path)
        head = fits.Header(keywords)
        if item.head is not None:
            head.update(item.head)  # the user's SCAMP .head, under our file's name
        if has_sip(item.wcs):
            head.update(item.tpv_cards())
        if len(head):
            image.with_suffix(".head").write_text(
                head.tostring(sep="\n", endcard=True, padding=False)
            )
        if item.finite is None and not weighted:
            # NONE: SWarp measures the background variance itself
            return image.name, None, "NONE"
        weight = _constant_weight_file(
            image.with_suffix(".weight.fits"),
            item.finite,
            item.shape,
            factor / (item.noise or 1.0) ** 2,
        )
        return image.name, weight, "MAP_WEIGHT"

    def _write_memory_input(self, item, image, keywords, factor):
        ccd = item.ccd
        data = np.asarray(ccd.data)
        header = item.swarp_header(COPIED_KEYWORDS)
        header.update(keywords)
        if self.is_flags:
            fits.PrimaryHDU(data.astype(np.int32), header=header).writeto(image)
            return image.name, None, "NONE"
        weight = inverse_variance_map(ccd, data)
        if factor != 1:
            weight *= np.float32(factor)
        # big-endian arrays, as FITS stores them: astropy writes them without swapping
        # bytes twice (there and back) in memory
        pixels = np.zeros(data.shape, dtype=">f4")
        np.copyto(pixels, data, casting="unsafe", where=weight > 0)
        fits.PrimaryHDU(pixels, header=header).writeto(image)
        weight_path = image.with_suffix(".weight.fits")
        fits.PrimaryHDU(weight.astype(">f4")).writeto(weight_path)
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


class _ProductReader:
    """Read SWarp's (possibly cropped) products onto the full target grid."""

    def __init__(self, target, flag_dtype, combine):
        self.target, self.combine = target, combine
        self.shape = (target["NAXIS2"], target["NAXIS1"])
        self.flag_dtype = flag_dtype

    def read(self, path, dtype=np.float32, meta=None):
        """Return a product on the full grid; put SWarp's GAIN, EXPTIME, SATURATE in ``meta``."""
        with fits.open(path) as hdul:
            header = hdul[0].header
            if meta is not None:
                for key in ("EXPTIME", "GAIN", "SATURATE"):
                    if key in header:
                        meta[f"SW{key[:6]}"] = (header[key], f"{key} as SWarp wrote it")
            return _embed(hdul[0].data, header, self.target, self.shape, np.dtype(dtype))

    def stack(self, product, resampled, items, noise, scales, weights):
        """Return a `Stack` of the product, with the maps counted on the resampled frames."""
        ((image, weight_path),) = product
        meta = {}
        data, weight = self.read(image, meta=meta), self.read(weight_path)
        count = np.zeros(self.shape, dtype=np.int16)
        exposure = np.zeros(self.shape, dtype=np.float32)
        squares = np.zeros(self.shape, dtype=np.float64) if weights is not None else None
        # SWarp's weight of a median is not an inverse variance, of a minimum or maximum 1
        order = self.combine in ("median", "min", "max") and len(items) > 1
        unused = []
        variance_sum = np.zeros(self.shape, dtype=np.float64) if order else None
        for index, ((_, frame_weight), item) in enumerate(zip(resampled, items, strict=True)):
            covered = self.read(frame_weight) if len(items) > 1 else weight
            if squares is not None:
                squares += weights[index] * covered  # sum of w_i^2 / variance_i
            if order:
                with np.errstate(divide="ignore"):
                    variance_sum += np.where(covered > 0, 1 / covered.astype(np.float64), 0)
            covered = covered > 0
            if not covered.any():
                unused.append(index)
            count += covered
            if item.exptime is not None:
                exposure += np.float32(item.exptime) * covered
        if order:
            weight = order_inverse_variance(self.combine, count, variance_sum)
        if squares is not None:
            # weights change the mean: its variance is sum(w_i^2 var_i) / (sum w_i)^2
            with np.errstate(divide="ignore", invalid="ignore"):
                weight = np.where(squares > 0, weight.astype(np.float64) ** 2 / squares, 0)
        weight = weight.astype(np.float32)
        return Stack(data, weight, count, exposure, noise, scales, meta=meta, unused=unused)

    def flags(self, image, weight_path, item):
        data = self.read(image, self.flag_dtype.newbyteorder("="))
        covered = self.read(weight_path) > 0
        covered |= _add_forward_flags(data, item, celestial_wcs(self.target, "target"))
        return data, covered


def _add_forward_flags(data, item, wcs):
    """OR every set pixel of a flag image into the nearest pixel of ``data`` (in place).

    Returns the pixels that received a flag, which count as covered.
    """
    flags = np.asarray(item.ccd.data)
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


def _xml_statistics(path, count):
    """Background noise and total flux scale of each input, from SWarp's XML report.

    Parsed with ElementTree: `astropy.io.votable` rejects SWarp's XML.
    """
    noise, scales = np.full(count, np.nan), np.ones(count)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return noise, scales

    def local(element):
        return element.tag.rsplit("}", 1)[-1]

    for table in root.iter():
        if local(table) == "TABLE" and table.get("name") == "Input_Image_Data":
            names = [f.get("name") for f in table.iter() if local(f) == "FIELD"]
            rows = [
                dict(zip(names, [td.text for td in row if local(td) == "TD"], strict=False))
                for row in table.iter()
                if local(row) == "TR"
            ]
            if len(rows) == count:
                noise = np.array([_float(r.get("Background_StDev"), np.nan) for r in rows])
                scales = np.array(
                    [
                        _float(r.get("Photometric_Flux_Scaling"), 1.0)
                        * _float(r.get("Astrometric_Flux_Scaling"), 1.0)
                        for r in rows
                    ]
                )
    return noise, scales


def _float(text, default):
    try:
        return float(text)
    except (TypeError, ValueError):
        return default


def _check_extra(extra, parameters):
    """Upper-case the names of ``extra`` and reject those SWarp does not know."""
    extra = {
        str(key).upper(): (
            ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        )
        for key, value in (extra or {}).items()
    }
    own = sorted(set(extra) & OWN_PARAMETERS)
    if own:
        msg = (
            f"extra may not set {own}: stdpipe_ccd sets them itself (from combine, "
            "resampling, subtract_background, conserve and flux_scale_keyword)"
        )
        raise ValueError(msg)
    grid = sorted(set(extra) & GRID_PARAMETERS)
    if grid:
        msg = f"extra may not set {grid}: give the target grid as wcs and shape, or header"
        raise ValueError(msg)
    unknown = sorted(set(extra) - parameters)
    if unknown:
        msg = f"extra has parameters SWarp does not know: {unknown}"
        raise ValueError(msg)
    return extra


def _flag_dtype(item):
    if item.dtype.kind not in "biu":
        msg = f"is_flags=True needs integer or boolean images, but {item.name} is {item.dtype}"
        raise ValueError(msg)
    return item.dtype


def _scaled_integers(header):
    return header.get("BITPIX", 0) > 0 and (
        header.get("BZERO", 0) != 0 or header.get("BSCALE", 1) != 1
    )


def _constant_weight_file(path, finite, shape, value):
    """Write a weight map of ``value`` where ``finite`` (everywhere when None), 0 elsewhere.

    0 or 1 in 8 bits, scaled by ``BSCALE`` to the inverse variance: a quarter
    of the I/O of float32.
    """
    ones = np.ones(shape, dtype=np.uint8) if finite is None else finite.astype(np.uint8)
    hdu = fits.PrimaryHDU(ones)
    hdu.header["BSCALE"] = float(value)
    hdu.header["BZERO"] = 0.0
    hdu.writeto(path)
    return path.name
