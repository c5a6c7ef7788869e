"""Whole nights and mosaics: mask_collection and tiled coadds against the peers' loops.

Part 1 masks a night of frames on disk (cosmic rays, bleed trails, hot pixels
from a dark) and writes each: a ccdproc loop (``ImageFileCollection.ccds``,
``cosmicray_lacosmic``, ``write``), an STDPipe loop (``make_mask`` per frame),
and ``mask_collection`` on the synchronous, threaded and process schedulers.

Part 2 coadds widely dithered frames into a mosaic several frames wide: raw
SWarp, ``coadd`` in one run, and ``coadd(tiles=...)`` with two tile sizes. It
reports the time and the peak memory of the calling process, and how far the
tiled mosaics are from the single run.

Each method runs in a fresh Python process, which reports its wall time, the
time of the call and its peak memory (and that of its largest child, which
for a child forked from a large process includes what that process held).

    python benchmarks/bench_scaling.py            # 8 x 2048^2 frames
    python benchmarks/bench_scaling.py --quick    # 3 x 512^2 frames
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"

#: part 1: ``lights`` (paths), ``dark`` (path) and ``out`` (a folder) are defined before
MASKING = {
    "ccdproc loop (cosmicray_lacosmic)": """
from astropy.nddata import CCDData
from ccdproc import ImageFileCollection, cosmicray_lacosmic
collection = ImageFileCollection(filenames=lights)
start = time.perf_counter()
for ccd, name in collection.ccds(return_fname=True):
    cleaned = cosmicray_lacosmic(ccd, gain=ccd.header["GAIN"], readnoise=ccd.header["RDNOISE"],
                                 gain_apply=False)
    cleaned.write(out + "/" + os.path.basename(name), overwrite=True)
call = time.perf_counter() - start
""",
    "stdpipe loop (make_mask)": """
from astropy.io import fits
from stdpipe.pipeline import make_mask
start = time.perf_counter()
for name in lights:
    image, header = fits.getdata(name, header=True)
    image = image.astype(image.dtype.newbyteorder("="))  # sep takes native byte order only
    mask = make_mask(image, header, mask_cosmics=True, gain=header["GAIN"], verbose=False)
    fits.HDUList([fits.PrimaryHDU(image, header), fits.ImageHDU(mask.astype("uint8"))]).writeto(
        out + "/" + os.path.basename(name), overwrite=True)
call = time.perf_counter() - start
""",
    "mask_collection, synchronous": """
from stdpipe_ccd import mask_collection
start = time.perf_counter()
table = mask_collection(lights, out, scheduler="synchronous", progress=False, overwrite=True,
                        mask_cosmics=True, mask_bleed=True, dark=dark)
call = time.perf_counter() - start
""",
    "mask_collection, threads": """
from stdpipe_ccd import mask_collection
start = time.perf_counter()
table = mask_collection(lights, out, scheduler="threads", progress=False, overwrite=True,
                        mask_cosmics=True, mask_bleed=True, dark=dark)
call = time.perf_counter() - start
""",
    "mask_collection, processes": """
from stdpipe_ccd import mask_collection
if __name__ == "__main__":
    start = time.perf_counter()
    table = mask_collection(lights, out, scheduler="processes", progress=False, overwrite=True,
                            mask_cosmics=True, mask_bleed=True, dark=dark)
    call = time.perf_counter() - start
""",
}

#: part 2: ``frames`` (paths), ``head`` (target header file) and ``out`` are defined before
MOSAIC = {
    "raw SWarp": """
from stdpipe_ccd import find_swarp
start = time.perf_counter()
subprocess.run([str(find_swarp()), *frames, "-c", "/dev/null", "-IMAGEOUT_NAME",
                out + "/raw.fits", "-WEIGHTOUT_NAME", out + "/raw.weight.fits",
                "-COMBINE_TYPE", "WEIGHTED", "-RESAMPLE_DIR", out, "-VMEM_DIR", out,
                "-WRITE_XML", "N", "-SUBTRACT_BACK", "N"], check=True, capture_output=True)
call = time.perf_counter() - start
""",
    "coadd, one run": """
from stdpipe_ccd import coadd
start = time.perf_counter()
result = coadd(frames, method="swarp", header=header, output=out + "/single.fits", overwrite=True)
call = time.perf_counter() - start
""",
    "coadd, tiles of a half frame": """
from stdpipe_ccd import coadd
start = time.perf_counter()
result = coadd(frames, method="swarp", header=header, tiles=size // 2,
               output=out + "/tiles-half.fits", overwrite=True)
call = time.perf_counter() - start
""",
    "coadd, tiles of a frame": """
from stdpipe_ccd import coadd
start = time.perf_counter()
result = coadd(frames, method="swarp", header=header, tiles=size,
               output=out + "/tiles-frame.fits", overwrite=True)
call = time.perf_counter() - start
""",
}

PRELUDE = """
import json, os, resource, subprocess, sys, time
t0 = time.perf_counter()
from astropy.io import fits
globals().update(json.loads({values!r}))
if "head" in globals():
    header = fits.Header.fromtextfile(head)
"""

POSTLUDE = """
if "call" in globals():
    wall = time.perf_counter() - t0
    # VmHWM starts afresh at exec; ru_maxrss would keep the parent's peak
    own = next(int(line.split()[1]) for line in open("/proc/self/status")
               if line.startswith("VmHWM")) / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"call": call, "wall": wall, "peak_mb": own, "child_peak_mb": children}))
"""


def make_night(directory, n_frames, size):
    """Write a night of light frames and a dark; return their paths."""
    from stdpipe_ccd import datasets
    from stdpipe_ccd.io import write_fits

    lights = []
    for i, frame in enumerate(datasets.make_dither_set(n_frames, (size, size), seed=5)):
        lights.append(str(directory / f"light{i:02d}.fits"))
        frame.ccd.write(lights[-1])
    write_fits(datasets.make_dark((size, size)), directory / "dark.fits")
    return {"lights": lights, "dark": str(directory / "dark.fits")}


def make_field(directory, n_frames, size):
    """Write frames dithered over a field about twice their size, and the target grid."""
    from stdpipe_ccd import datasets
    from stdpipe_ccd._wcs import covering_grid

    frames = datasets.make_dither_set(
        n_frames,
        (size, size),
        seed=7,
        overscan=0,
        nan_patch=False,
        cosmic_density=0,
        max_offset=0.6 * size,
    )
    paths = []
    for i, frame in enumerate(frames):
        paths.append(str(directory / f"field{i:02d}.fits"))
        frame.ccd.write(paths[-1])
    header = covering_grid([f.ccd.wcs for f in frames], [f.ccd.shape for f in frames])
    header.totextfile(directory / "target.hdr")
    return {"frames": paths, "head": str(directory / "target.hdr"), "size": size}


def run_method(code, values, out):
    """Run ``code`` in a fresh process (as a script file, which processes need)."""
    script = Path(out) / "method.py"
    script.write_text(
        PRELUDE.format(values=json.dumps({**values, "out": str(out)})) + code + POSTLUDE
    )
    done = subprocess.run(
        [sys.executable, str(script)], check=False, capture_output=True, text=True, cwd=out
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows, reference, title):
    base = next(row for row in rows if row["method"] == reference)
    for row in rows:
        row["call_ratio"] = row["call_s"] / base["call_s"]
        row["peak_ratio"] = row["peak_mb"] / base["peak_mb"]
    print(f"\n{title}; ratios to {reference}")
    columns = ["method", "call_s", "call_ratio", "peak_mb", "peak_ratio", "child_peak_mb"]
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print(
            "| "
            + " | ".join(
                f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c]) for c in columns
            )
            + " |"
        )


def measure(methods, values, out):
    rows = []
    for method, code in methods.items():
        record = run_method(code, values, out)
        rows.append(
            {
                "method": method,
                "call_s": record["call"],
                "process_s": record["wall"],
                "peak_mb": record["peak_mb"],
                "child_peak_mb": record["child_peak_mb"],
            }
        )
    return rows


def tile_agreement(out):
    """How far the tiled mosaics are from the single run, where it covers.

    Relative differences are to the largest absolute value in the 3 x 3
    neighbourhood (at least 1): a pixel where Lanczos ringing beside an
    unmasked saturated star crosses zero has no scale of its own. The plain
    per-pixel ratio is reported too, as its 99.99th percentile.
    """
    from scipy.ndimage import maximum_filter

    from stdpipe_ccd.io import read_fits

    single = read_fits(out / "single.fits")
    covered = ~single.mask
    local = maximum_filter(np.abs(np.nan_to_num(single.data)), size=3)[covered]
    result = {}
    for name in ("tiles-half", "tiles-frame"):
        tiled = read_fits(out / f"{name}.fits")
        diff = np.abs(tiled.data[covered] - single.data[covered])
        plain = diff / np.maximum(np.abs(single.data[covered]), 1.0)
        result[name] = {
            "max_relative_to_local_scale": float((diff / np.maximum(local, 1.0)).max()),
            "relative_99.99_percentile": float(np.percentile(plain, 99.99)),
            "same_mask": bool(np.array_equal(tiled.mask, single.mask)),
        }
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 frames of 512 x 512")
    args = parser.parse_args(argv)
    n_frames, size = (3, 512) if args.quick else (8, 2048)
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        out = directory / "out"
        out.mkdir()
        night = make_night(directory, n_frames, size)
        masking = measure(MASKING, night, out)
        table(
            masking,
            "ccdproc loop (cosmicray_lacosmic)",
            f"Masking {n_frames} frames of {size} x {size} on {os.cpu_count()} cores",
        )
        field = make_field(directory, n_frames, size)
        header = Path(field["head"]).read_text()
        mosaic = measure(MOSAIC, field, out)
        agreement = tile_agreement(out)
        shape = [
            int(line.split("=")[1].split("/")[0])
            for line in header.splitlines()
            if line.startswith(("NAXIS1", "NAXIS2"))
        ]
        table(
            mosaic,
            "coadd, one run",
            f"Mosaic of {n_frames} frames of {size} x {size}: {shape[0]} x {shape[1]} pixels",
        )
        print(json.dumps(agreement, indent=1))
    RESULTS.mkdir(exist_ok=True)
    report = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
        },
        "frames": n_frames,
        "size": size,
        "mosaic_shape": shape[::-1],
        "masking": masking,
        "mosaic": mosaic,
        "tile_agreement": agreement,
    }
    name = "scaling-quick.json" if args.quick else "scaling.json"
    (RESULTS / name).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
