"""Mosaics larger than memory: one coadd per tile of the target grid, written into one file."""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from astropy import log
from astropy.io import fits
from astropy.nddata import CCDData, InverseVariance

from ._product import COUNT_EXTENSION, EXPOSURE_EXTENSION, add_combine_keywords
from ._provenance import add_history_lines
from ._wcs import celestial_wcs
from .io import publish

__all__ = ["coadd_tiles"]

#: target pixels beyond an input's edge that its resampling kernel can still reach
KERNEL_MARGIN = 4


def coadd_tiles(items, target, tiles, output, *, run_tasks, tile_task, options, overwrite):
    """Coadd ``items`` onto ``target`` tile by tile; write ``output``; return it memory-mapped.

    ``run_tasks(function, arguments)`` runs the tile tasks (on dask);
    ``tile_task(items, header, path, options)`` coadds the items that overlap
    one tile into ``path`` and returns its record; ``options`` go to it for
    each tile (``weights`` cut to those items). The caller has checked that
    ``output`` may be written.
    """
    from . import __version__

    output = Path(output)
    shape = (target["NAXIS2"], target["NAXIS1"])
    target_wcs = celestial_wcs(target, "target")
    boxes = [_footprint(item, target_wcs) for item in items]
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.tiles.", dir=output.parent))
    try:
        arguments = []
        for index, (rows, cols) in enumerate(_tile_slices(shape, tiles)):
            used = [i for i, box in enumerate(boxes) if _overlaps(box, rows, cols)]
            header = _tile_header(target, rows, cols)
            path = work / f"tile{index:05d}.fits"
            tile_options = options
            if options.get("weights") is not None:
                tile_options = {**options, "weights": [options["weights"][i] for i in used]}
            arguments.append(([items[i] for i in used], header, str(path), tile_options))
        records = run_tasks(tile_task, arguments)
        meta = _mosaic_meta(target, records, items, options["combine"])
        add_history_lines(
            meta,
            [f"stdpipe_ccd {__version__} coadd in {len(arguments)} tiles of {tiles}"]
            + [f"input {i + 1}: {item.name}" for i, item in enumerate(items)],
        )
        partial = work / "mosaic.fits"
        planes = _allocate(partial, meta, shape)
        with open(partial, "r+b") as stream:
            for (rows, cols), record in zip(_tile_slices(shape, tiles), records, strict=True):
                _write_tile(stream, planes, shape, record, rows, cols)
        publish(partial, output, overwrite=overwrite)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.debug("wrote a %d x %d mosaic in %d tiles to %s", *shape[::-1], len(records), output)
    return open_mosaic(output)


def open_mosaic(path):
    """Open a mosaic file as a `~astropy.nddata.CCDData` with memory-mapped arrays."""
    with fits.open(path, memmap=True) as hdul:
        header = hdul[0].header.copy()
        data = hdul[0].data
        weight = hdul["UNCERT"].data
        mask = hdul["MASK"].data.view(bool)
        exposure, count = hdul[EXPOSURE_EXTENSION].data, hdul[COUNT_EXTENSION].data
    result = CCDData(
        data,
        unit=header.get("BUNIT", "adu"),
        wcs=celestial_wcs(header, str(path)),
        meta=header,
        mask=mask,
        uncertainty=InverseVariance(weight, copy=False),
    )
    result.exposure_map, result.count_map = exposure, count
    return result


def _tile_slices(shape, tiles):
    """Row and column slices of the tiles, row by row."""
    ty, tx = (tiles, tiles) if np.isscalar(tiles) else tiles
    if int(ty) < 1 or int(tx) < 1:
        msg = f"tiles must be positive, not {tiles}"
        raise ValueError(msg)
    return [
        (slice(y, min(y + int(ty), shape[0])), slice(x, min(x + int(tx), shape[1])))
        for y in range(0, shape[0], int(ty))
        for x in range(0, shape[1], int(tx))
    ]


def _footprint(item, target_wcs):
    """Bounding box (x0, x1, y0, y1) of an input in target pixels, with the kernel margin."""
    ny, nx = item.shape
    t = np.linspace(0, 1, 33)
    xs = np.concatenate([t * (nx - 1), np.full_like(t, nx - 1), t * (nx - 1), np.zeros_like(t)])
    ys = np.concatenate([np.zeros_like(t), t * (ny - 1), np.full_like(t, ny - 1), t * (ny - 1)])
    world = item.wcs.celestial.pixel_to_world(xs, ys)
    px, py = target_wcs.world_to_pixel(world)
    # an input pixel may cover several target pixels: widen the margin by the scale ratio
    scale = max(np.ptp(px) / max(nx - 1, 1), np.ptp(py) / max(ny - 1, 1), 1.0)
    margin = KERNEL_MARGIN * scale + 1
    return (px.min() - margin, px.max() + margin, py.min() - margin, py.max() + margin)


def _overlaps(box, rows, cols):
    x0, x1, y0, y1 = box
    return x1 >= cols.start and x0 <= cols.stop - 1 and y1 >= rows.start and y0 <= rows.stop - 1


def _tile_header(target, rows, cols):
    header = target.copy()
    header["NAXIS1"] = cols.stop - cols.start
    header["NAXIS2"] = rows.stop - rows.start
    header["CRPIX1"] = target["CRPIX1"] - cols.start
    header["CRPIX2"] = target["CRPIX2"] - rows.start
    return header


def _mosaic_meta(target, records, items, combine):
    done = [r for r in records if r["path"]]
    meta = fits.Header(target)
    for key in ("NAXIS", "NAXIS1", "NAXIS2"):
        meta.remove(key, ignore_missing=True)
    if done:
        meta["BUNIT"] = done[0]["unit"]
        gains = [r["gain"] for r in done if r.get("gain") is not None]
        if gains:
            meta["GAIN"] = (min(gains), "[e-/unit] smallest effective gain of the tiles")
        levels = [r["saturate"] for r in done if r.get("saturate") is not None]
        if levels:
            meta["SATURATE"] = (min(levels), "smallest effective saturation of the tiles")
    add_combine_keywords(meta, items, combine)
    return meta


def _allocate(path, meta, shape):
    """Write the headers of the data, UNCERT, MASK and map HDUs, with room for their pixels.

    Returns the byte offset and the FITS dtype of each HDU's pixels.
    """
    ny, nx = shape
    layout = [
        (fits.PrimaryHDU, np.dtype(">f4"), {"EXTEND": True}, meta),
        (fits.ImageHDU, np.dtype(">f4"), {"EXTNAME": "UNCERT", "UTYPE": "InverseVariance"}, None),
        (fits.ImageHDU, np.dtype("u1"), {"EXTNAME": "MASK"}, None),
        (fits.ImageHDU, np.dtype(">f4"), {"EXTNAME": EXPOSURE_EXTENSION, "BUNIT": "s"}, None),
        (fits.ImageHDU, np.dtype(">i2"), {"EXTNAME": COUNT_EXTENSION}, None),
    ]
    planes = []
    with open(path, "wb") as stream:
        for kind, dtype, cards, extra in layout:
            header = kind(data=np.zeros((1, 1), dtype=dtype.newbyteorder("="))).header
            header["NAXIS1"], header["NAXIS2"] = nx, ny
            for key, value in cards.items():
                header[key] = value
            if extra is not None:
                header.extend(extra, unique=True)
            stream.write(header.tostring().encode("ascii"))
            planes.append((stream.tell(), dtype))
            stream.seek(-(-dtype.itemsize * nx * ny // 2880) * 2880, os.SEEK_CUR)
        stream.truncate()  # the pixels read as zeros until written
    return planes


def _write_tile(stream, planes, shape, record, rows, cols):
    """Write one tile's pixels (or an empty tile) into the mosaic file, row by row.

    Plain writes rather than a memory map: the mosaic's pages never become part of
    this process's resident memory.
    """
    height, width = rows.stop - rows.start, cols.stop - cols.start
    if record["path"] is None:
        fills = (np.nan, 0, 1, 0, 0)
        for (offset, dtype), fill in zip(planes, fills, strict=True):
            _write_rows(stream, offset, dtype, shape, np.full((height, width), fill), rows, cols)
    else:
        with fits.open(record["path"], memmap=True) as tile:
            names = (0, "UNCERT", "MASK", EXPOSURE_EXTENSION, COUNT_EXTENSION)
            for (offset, dtype), name in zip(planes, names, strict=True):
                _write_rows(stream, offset, dtype, shape, tile[name].data, rows, cols)
    if record["path"] is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(record["path"])


def _write_rows(stream, offset, dtype, shape, values, rows, cols):
    """Write ``values`` into rows ``rows``, columns ``cols`` of a plane of the mosaic file."""
    for i, y in enumerate(range(rows.start, rows.stop)):
        stream.seek(offset + (y * shape[1] + cols.start) * dtype.itemsize)
        stream.write(np.asarray(values[i], dtype=dtype).tobytes())
