"""The sample night of ``stdpipe-ccd demo``: write it, mask it, coadd it, draw it."""

import warnings
from pathlib import Path

import numpy as np
from astropy import log

from . import datasets
from ._tasks import run_tasks
from .coadd import coadd
from .collection import mask_collection
from .exceptions import StdpipeCCDWarning, SwarpNotFoundError
from .flags import MaskFlag
from .io import read_fits, write_fits
from .swarp import find_swarp

__all__ = ["run_demo"]


def run_demo(
    folder, *, size=1024, n_frames=4, seed=1, scheduler="threads", jobs=None, progress=False
):
    """Make, mask and coadd a synthetic night in ``folder``; return lines that summarise it."""
    folder = Path(folder)
    raw, calib, masked, pictures = (folder / name for name in ("raw", "calib", "masked", "png"))
    for path in (raw, calib, masked, pictures):
        path.mkdir(parents=True, exist_ok=True)
    shape = (size, size)
    frames = datasets.make_dither_set(n_frames, shape, seed=seed)
    lights = []
    for i, frame in enumerate(frames):
        lights.append(raw / f"light_{i:02d}.fits")
        frame.ccd.write(lights[-1], overwrite=True)
    write_fits(datasets.make_dark(shape), calib / "dark.fits", overwrite=True)
    write_fits(datasets.make_flat(shape), calib / "flat.fits", overwrite=True)
    log.info("wrote %d light frames, a dark and a flat of %d x %d", n_frames, size, size)

    table = mask_collection(
        lights,
        masked,
        overwrite=True,
        scheduler=scheduler,
        jobs=jobs,
        progress=progress,
        mask_bleed=True,
        mask_cosmics=True,
        dark=str(calib / "dark.fits"),
        flat=str(calib / "flat.fits"),
    )
    table.write(masked / "masked.ecsv", overwrite=True)
    lines = [f"masked {len(table)} frames into {masked}"]
    lines += _truth_lines(frames, table["output"])

    try:
        find_swarp()
        options, how = {"method": "swarp", "subtract_background": True}, "SWarp"
    except SwarpNotFoundError:
        options, how = {"method": "interp"}, "reproject_interp (SWarp was not found)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StdpipeCCDWarning)
        stack = coadd(
            list(table["output"]), output=folder / "coadd.fits", overwrite=True, **options
        )
    lines.append(
        f"coadded them with {how} into {folder / 'coadd.fits'}: "
        f"{stack.shape[1]} x {stack.shape[0]} pixels, effective GAIN {stack.meta['GAIN']:.2f}"
    )

    from .plot import write_coadd_png, write_mask_png

    arguments = [(path, True) for path in table["output"]]
    run_tasks(
        write_mask_png, arguments, scheduler=scheduler, client=None, jobs=jobs, progress=False
    )
    for path in masked.glob("*.png"):
        path.replace(pictures / path.name)
    write_coadd_png(stack, pictures / "coadd.png")
    lines.append(f"pictures: {pictures}")
    return lines


def _truth_lines(frames, outputs):
    """How the masks compare with the truth the frames were made with."""
    recall, recall5, precision, bleed = [], [], [], []
    for frame, path in zip(frames, outputs, strict=True):
        ccd = read_fits(path)
        scores = datasets.score_cosmic_rays(frame, ccd.flags & MaskFlag.COSMIC_RAY, masked=ccd.mask)
        recall.append(scores["recall"])
        recall5.append(scores["recall_5sigma"])
        precision.append(scores["precision"])
        bleed.append(datasets.score_bleed(frame, ccd.flags & MaskFlag.BLEED)["recall"])
    return [
        f"  cosmic rays found: {np.mean(recall):.1%} ({np.mean(recall5):.1%} of those "
        f"above 5 sigma); flagged pixels on a ray: {np.mean(precision):.1%}",
        f"  bleed-trail pixels found: {np.mean(bleed):.1%}",
    ]
