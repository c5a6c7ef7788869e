"""Masking of whole collections of frames, on one machine or on a dask cluster."""

import hashlib
import os
import time
from pathlib import Path

import numpy as np
from astropy import log
from astropy.io import fits
from astropy.table import MaskedColumn, Table

from ._cosmics import check_options
from ._headers import fits_layout
from ._inputs import image_hdus, warn_unused
from ._provenance import COUNT_KEYWORDS
from ._tasks import SCHEDULERS, run_tasks
from .flags import MaskFlag, flag_counts
from .io import read_fits, write_fits
from .masking import make_mask

__all__ = ["mask_collection"]

#: what happened to each frame
STATUSES = ("written", "redone", "skipped", "failed")
#: make_mask options that may be given as FITS paths, read by each task
PATH_OPTIONS = ("dark", "flat", "external_mask")


def mask_collection(
    collection,
    output_dir,
    *,
    overwrite=False,
    redo_changed=True,
    scheduler="threads",
    client=None,
    jobs=None,
    progress=True,
    unit="adu",
    **make_mask_options,
):
    """Mask every frame of a collection and write each with its mask and flags.

    Each frame is read, masked with `~stdpipe_ccd.make_mask` and written to
    ``output_dir`` under its own file name with `~stdpipe_ccd.io.write_fits`
    (``MASK`` and ``FLAGS`` extensions). Frames are independent tasks: one
    that fails is reported in the table and the others still complete.
    Outputs are written under a temporary name and renamed when complete.
    Each output records (``MSKHASH``) a hash of its input file's bytes and of
    the options; a rerun skips the frames whose output opens, is complete and
    has the same hash, so an interrupted run resumes where it stopped, and
    redoes the others (an output of other options or another input, or a
    truncated or unrelated file).

    Parameters
    ----------
    collection : `~ccdproc.ImageFileCollection` or list of path-like
        The frames: a collection gives its currently filtered files.
    output_dir : str or path-like
        Folder for the masked frames; created if needed.
    overwrite : bool, optional
        Redo every frame, even those whose output is up to date, and allow
        ``output_dir`` to be the folder of the inputs (which are then
        replaced). Default is `False`.
    redo_changed : bool, optional
        Redo frames whose output exists but does not match (other options,
        another input, incomplete). With `False` they fail with a message
        instead and their outputs are kept. Default is `True`.
    scheduler : {"threads", "processes", "synchronous"}, optional
        Local dask scheduler. Default is ``"threads"``; ``"synchronous"``
        runs one frame after the other without dask.
    client : `dask.distributed.Client <distributed.Client>`, optional
        Run the frames on this cluster instead (``scheduler`` is ignored). The
        workers must see the input and output paths.
    jobs : int, optional
        Workers of the local scheduler; default is one per core.
    progress : bool, optional
        Show dask's progress bar. Default is `True`.
    unit : `~astropy.units.Unit` or str, optional
        Unit of frames without ``BUNIT``. Default is ``"adu"``.
    **make_mask_options
        Options of `~stdpipe_ccd.make_mask`. ``dark``, ``flat`` and
        ``external_mask`` may also be FITS paths, read by each task.

    Returns
    -------
    table : `~astropy.table.Table`
        One row per frame: ``input``, ``output``, ``status`` (``"written"``,
        ``"redone"``, ``"skipped"`` or ``"failed"``), ``error``, ``seconds``, and the number
        of masked pixels per `~stdpipe_ccd.MaskFlag` reason (a column per
        name: ``NONFINITE``, ..., ``INPUT``) and in total (``TOTAL``); the
        counts of failed frames are masked.

    Raises
    ------
    ValueError
        ``output_dir`` would replace inputs without ``overwrite=True``, two
        inputs have the same file name, or a bad ``scheduler``.
    TypeError
        An unknown ``make_mask`` option, or astroscrappy option in
        ``cosmics_options``.
    FileNotFoundError
        ``dark``, ``flat`` or ``external_mask`` names no file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from stdpipe_ccd import datasets, mask_collection
    >>> night = Path(tempfile.mkdtemp())
    >>> for i in range(2):
    ...     datasets.make_frame((128, 128), seed=i).ccd.write(night / f"light{i}.fits")
    >>> table = mask_collection(sorted(night.glob("*.fits")), night / "masked",
    ...                         scheduler="synchronous", progress=False)
    >>> table["status"].tolist(), table["OUTSIDE_DATASEC"].tolist()
    (['written', 'written'], [4096, 4096])
    """
    if scheduler not in SCHEDULERS:
        msg = f"scheduler={scheduler!r} is not one of {SCHEDULERS}"
        raise ValueError(msg)
    _check_options(make_mask_options)
    inputs = _input_paths(collection)
    output_dir = Path(output_dir)
    outputs = _output_paths(inputs, output_dir, overwrite=overwrite)
    output_dir.mkdir(parents=True, exist_ok=True)
    options_hash = _options_hash(make_mask_options, unit)
    arguments = [
        (str(source), str(target), (overwrite, redo_changed, options_hash), unit, make_mask_options)
        for source, target in zip(inputs, outputs, strict=True)
    ]
    records = run_tasks(
        mask_file, arguments, scheduler=scheduler, client=client, jobs=jobs, progress=progress
    )
    table = _records_table(records)
    log.debug(
        "masked %d frames: %d written, %d redone, %d skipped, %d failed",
        len(table),
        *(np.sum(table["status"] == status) for status in STATUSES),
    )
    return table


def mask_file(input_path, output_path, policy, unit, options):
    """Mask one FITS file into another; the task of `mask_collection`.

    ``policy`` is ``(overwrite, redo_changed, options_hash)``. Returns a
    record (a dict) of what happened; errors are caught and recorded.
    """
    overwrite, redo_changed, options_hash = policy
    start = time.perf_counter()
    record = {"input": input_path, "output": output_path, "status": "failed", "error": ""}
    try:
        key = _file_hash(input_path, options_hash)
        existing = os.path.exists(output_path)
        found = _output_hash(output_path) if existing and not overwrite else None
        if found == key:
            record["counts"] = _header_counts(output_path)
            record["status"] = "skipped"
        elif existing and not overwrite and not redo_changed:
            msg = (
                f"{output_path} exists but was made from another input or other options, or is "
                "incomplete; remove it, or allow redoing it (redo_changed=True)"
            )
            raise FileExistsError(msg)
        else:
            options = {
                key: _read_option(value) if key in PATH_OPTIONS else value
                for key, value in options.items()
            }
            record["counts"] = _mask_and_write(input_path, output_path, key, unit, options)
            record["status"] = "redone" if existing and not overwrite else "written"
    except Exception as err:  # one bad frame must not stop the night
        record["error"] = f"{type(err).__name__}: {err}"
        log.warning("%s failed: %s", input_path, record["error"])
    record["seconds"] = time.perf_counter() - start
    return record


def _mask_and_write(input_path, output_path, key, unit, options):
    """Mask every image of a file (each CCD of a multi-extension file) and write them.

    Returns the pixel counts per reason, summed over the images.
    """
    with fits.open(input_path) as hdul:
        images = image_hdus(hdul)
        primary = hdul[0].header.copy()
        warn_unused(hdul, input_path, stacklevel=2)
    hash_card = (key, "hash of the input file and the options")
    if len(images) <= 1:
        masked = [make_mask(read_fits(input_path, unit=unit), **options)]
        masked[0].meta["MSKHASH"] = hash_card
        write_fits(masked[0], output_path, overwrite=os.path.exists(output_path))
    else:
        masked = [
            make_mask(read_fits(input_path, unit=unit, hdu=index), **options) for index in images
        ]
        counts = _sum_counts(masked)
        primary["MSKHASH"] = hash_card
        primary["NCCD"] = (len(masked), "images masked, one SCI/MASK/FLAGS set each")
        for flag, keyword in COUNT_KEYWORDS.items():
            primary[keyword] = (counts[flag.name], f"pixels masked in all images: {flag.name}")
        primary["MSKTOTAL"] = (counts["TOTAL"], "pixels masked for any reason, all images")
        write_fits(masked, output_path, overwrite=os.path.exists(output_path), primary=primary)
    return _sum_counts(masked)


def _sum_counts(masked):
    counts = {"TOTAL": 0}
    for ccd in masked:
        for name, value in flag_counts(ccd.flags).items():
            counts[name] = counts.get(name, 0) + value
        counts["TOTAL"] += int(ccd.mask.sum())
    return counts


def _file_hash(path, salt):
    """SHA-256 (16 hex digits) of a file's bytes and ``salt``, read in 1 MiB blocks."""
    digest = hashlib.sha256(salt.encode())
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _options_hash(options, unit):
    """Return a hash that changes with any option of the masking, files by path included."""
    parts = [f"unit={unit}"]
    for key in sorted(options):
        value = options[key]
        if key in PATH_OPTIONS and isinstance(value, (str, os.PathLike)):
            value = "file:" + _file_hash(value, "")
        elif hasattr(value, "data") and hasattr(value, "shape"):  # CCDData, arrays
            value = "array:" + hashlib.sha256(np.ascontiguousarray(value.data)).hexdigest()
        parts.append(f"{key}={value!r}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _output_hash(path):
    """Return the ``MSKHASH`` of a complete output, or None (unreadable, truncated, other)."""
    try:
        with open(path, "rb") as stream:
            headers, complete = fits_layout(stream)
    except OSError:
        return None
    names = {(h.get("EXTNAME"), h.get("EXTVER", 1)) for h in headers[1:]}
    images = [h.get("EXTVER", 1) for h in headers[1:] if h.get("EXTNAME") == "SCI"] or [1]
    # every image has its MASK and FLAGS (one set per EXTVER in multi-extension outputs)
    complete = complete and all(("MASK", v) in names and ("FLAGS", v) in names for v in images)
    return headers[0].get("MSKHASH") if complete else None


def _check_options(options):
    import inspect

    allowed = set(inspect.signature(make_mask).parameters) - {"ccd"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        msg = f"make_mask has no options {unknown}"
        raise TypeError(msg)
    # what would fail every frame fails once, before the first
    if options.get("mask_cosmics") is True:
        check_options(options.get("cosmics_options"))
    for name in PATH_OPTIONS:
        value = options.get(name)
        if isinstance(value, (str, os.PathLike)) and not Path(value).is_file():
            msg = f"{name}={str(value)!r} is not a file"
            raise FileNotFoundError(msg)


def _input_paths(collection):
    from ccdproc import ImageFileCollection

    if isinstance(collection, ImageFileCollection):
        return [Path(p) for p in collection.files_filtered(include_path=True)]
    if isinstance(collection, (str, os.PathLike)):
        return [Path(collection)]
    return [Path(p) for p in collection]


def _output_paths(inputs, output_dir, *, overwrite):
    # outputs are plain FITS: a compressed input's output does not keep the .fz
    outputs = [output_dir / path.name.removesuffix(".fz") for path in inputs]
    names = [path.name for path in inputs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        msg = f"inputs share file names, so their outputs would collide: {repeated}"
        raise ValueError(msg)
    if not overwrite:
        replaced = [
            str(source)
            for source, target in zip(inputs, outputs, strict=True)
            if target.exists() and source.exists() and os.path.samefile(source, target)
        ]
        if replaced:
            msg = (
                f"output_dir {output_dir} holds the inputs ({replaced[0]}, ...); "
                "choose another folder or pass overwrite=True to replace them"
            )
            raise ValueError(msg)
    return outputs


def _read_option(value):
    if isinstance(value, (str, os.PathLike)):
        return read_fits(value, unit="adu")
    return value


def _header_counts(path):
    """Pixel counts per reason from the keywords make_mask wrote in a finished output."""
    header = fits.getheader(path)
    counts = {flag.name: header.get(keyword) for flag, keyword in COUNT_KEYWORDS.items()}
    counts["TOTAL"] = header.get("MSKTOTAL")
    return counts


def _records_table(records):
    names = [flag.name for flag in MaskFlag] + ["TOTAL"]
    table = Table()
    for key in ("input", "output", "status", "error"):
        table[key] = [record[key] for record in records]
    table["seconds"] = np.array([record["seconds"] for record in records])
    table["seconds"].format = ".2f"
    for name in names:
        values = [record.get("counts", {}).get(name) for record in records]
        table[name] = MaskedColumn(
            [0 if v is None else v for v in values], mask=[v is None for v in values], dtype=int
        )
    return table
