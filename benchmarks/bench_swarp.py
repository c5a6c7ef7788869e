"""Reprojection and coaddition: reproject_swarp against raw SWarp and the reproject package.

Eight dithered frames (2048 x 2048 by default) with weight maps are written
to a scratch directory. Each method then runs in a fresh Python process, which
reports its wall time, the time of the call itself, and the peak memory of
the process and of its largest child (SWarp), so imports and memory are
counted as a user would see them. (A child forked from a large process starts
with that process's peak, so the SWarp figure of the CCDData row includes
the images held in Python.)

    python benchmarks/bench_swarp.py            # 8 x 2048 x 2048
    python benchmarks/bench_swarp.py --quick    # 3 x 512 x 512
"""

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"

#: each method as Python code run in a fresh process; ``files``, ``weights`` and
#: ``head`` (the target header file) are defined before it
METHODS = {
    "raw SWarp, files": """
import subprocess
from stdpipe_ccd import find_swarp
start = time.perf_counter()
subprocess.run([str(find_swarp()), *files, "-c", "/dev/null", "-IMAGEOUT_NAME", out + "/raw.fits",
                "-WEIGHTOUT_NAME", out + "/raw.weight.fits", "-COMBINE_TYPE", "WEIGHTED",
                "-RESAMPLE_DIR", out, "-VMEM_DIR", out, "-WRITE_XML", "N", "-SUBTRACT_BACK", "N"],
               check=True, capture_output=True)
call = time.perf_counter() - start
""",
    "raw SWarp, files + weight maps": """
import subprocess
from stdpipe_ccd import find_swarp
start = time.perf_counter()
subprocess.run([str(find_swarp()), *files, "-c", "/dev/null", "-IMAGEOUT_NAME", out + "/raw.fits",
                "-WEIGHTOUT_NAME", out + "/raw.weight.fits", "-COMBINE_TYPE", "WEIGHTED",
                "-WEIGHT_TYPE", "MAP_WEIGHT", "-WEIGHT_IMAGE", ",".join(weights),
                "-RESCALE_WEIGHTS", "N", "-WEIGHT_THRESH", ",".join("0" for _ in files),
                "-RESAMPLE_DIR", out, "-VMEM_DIR", out, "-WRITE_XML", "N", "-SUBTRACT_BACK", "N"],
               check=True, capture_output=True)
call = time.perf_counter() - start
""",
    "stdpipe_ccd reproject_swarp, files": """
from stdpipe_ccd import reproject_swarp
start = time.perf_counter()
result = reproject_swarp(files, header=header)
call = time.perf_counter() - start
""",
    "stdpipe_ccd reproject_swarp, CCDData with uncertainty": """
from stdpipe_ccd import reproject_swarp
ccds = load_ccds()
start = time.perf_counter()
result = reproject_swarp(ccds, header=header)
call = time.perf_counter() - start
""",
    "reproject_and_coadd + reproject_interp": """
from reproject import reproject_interp
from reproject.mosaicking import reproject_and_coadd
ccds = load_ccds()
start = time.perf_counter()
result = reproject_and_coadd([(c.data, c.wcs) for c in ccds], WCS(header),
                             shape_out=(header["NAXIS2"], header["NAXIS1"]),
                             input_weights=[c.uncertainty.array for c in ccds],
                             reproject_function=reproject_interp, combine_function="mean")
call = time.perf_counter() - start
""",
    "reproject_and_coadd + reproject_exact (2 frames)": """
from reproject import reproject_exact
from reproject.mosaicking import reproject_and_coadd
ccds = load_ccds()[:2]
start = time.perf_counter()
result = reproject_and_coadd([(c.data, c.wcs) for c in ccds], WCS(header),
                             shape_out=(header["NAXIS2"], header["NAXIS1"]),
                             input_weights=[c.uncertainty.array for c in ccds],
                             reproject_function=reproject_exact, combine_function="mean")
call = time.perf_counter() - start
""",
    "raw SWarp, files + weight maps (2 frames)": """
import subprocess
from stdpipe_ccd import find_swarp
start = time.perf_counter()
subprocess.run([str(find_swarp()), *files[:2], "-c", "/dev/null", "-IMAGEOUT_NAME",
                out + "/raw.fits", "-WEIGHTOUT_NAME", out + "/raw.weight.fits",
                "-COMBINE_TYPE", "WEIGHTED", "-WEIGHT_TYPE", "MAP_WEIGHT", "-WEIGHT_IMAGE",
                ",".join(weights[:2]), "-RESCALE_WEIGHTS", "N", "-WEIGHT_THRESH", "0,0",
                "-RESAMPLE_DIR", out, "-VMEM_DIR", out, "-WRITE_XML", "N", "-SUBTRACT_BACK", "N"],
               check=True, capture_output=True)
call = time.perf_counter() - start
""",
}

PRELUDE = """
import json, resource, sys, time
t0 = time.perf_counter()
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.wcs import WCS
files, weights, out = {files!r}, {weights!r}, {out!r}
header = fits.Header.fromtextfile({head!r})
def load_ccds():
    from astropy.nddata import InverseVariance
    return [CCDData.read(f, unit="adu") for f in files] and [
        CCDData(fits.getdata(f).astype("float32"), unit="adu", wcs=WCS(fits.getheader(f)),
                uncertainty=InverseVariance(fits.getdata(w).astype("float32")))
        for f, w in zip(files, weights)]
"""

POSTLUDE = """
wall = time.perf_counter() - t0
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"call": call, "wall": wall, "peak_mb": own, "child_peak_mb": children}))
"""


def make_inputs(directory, n_frames, size, nan_patch=True):
    """Write the dithered frames, their weight maps and the target header."""
    from stdpipe_ccd import datasets
    from stdpipe_ccd._wcs import covering_grid

    frames = datasets.make_dither_set(
        n_frames, (size, size), seed=11, overscan=0, nan_patch=nan_patch
    )
    files, weights = [], []
    for i, frame in enumerate(frames):
        path, weight = directory / f"frame{i}.fits", directory / f"frame{i}.weight.fits"
        frame.ccd.write(path)
        from astropy.io import fits

        inverse = np.where(np.isfinite(frame.ccd.data), 1 / frame.noise**2, 0).astype(np.float32)
        fits.PrimaryHDU(inverse).writeto(weight)
        files.append(str(path))
        weights.append(str(weight))
    header = covering_grid([f.ccd.wcs for f in frames], [f.ccd.shape for f in frames])
    head = directory / "target.hdr"
    header.totextfile(head)
    return files, weights, str(head)


def run_method(code, files, weights, head, out):
    script = PRELUDE.format(files=files, weights=weights, out=str(out), head=str(head))
    script += code + POSTLUDE
    done = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 frames of 512 x 512")
    parser.add_argument("--rounds", type=int, default=2, help="paired rounds (medians reported)")
    parser.add_argument(
        "--no-nan",
        action="store_true",
        help="frames without NaN pixels (no weight maps needed for files)",
    )
    parser.add_argument("--make-inputs", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.make_inputs:
        directory, n_frames, size, nan_patch = args.make_inputs
        made = make_inputs(Path(directory), int(n_frames), int(size), nan_patch == "1")
        print(json.dumps(made))
        return
    n_frames, size = (3, 512) if args.quick else (8, 2048)
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        # in a process of their own: Linux keeps a process's peak memory across fork and
        # exec, so a large parent would inflate every measurement below
        made = subprocess.run(
            [
                sys.executable,
                __file__,
                "--make-inputs",
                name,
                str(n_frames),
                str(size),
                "0" if args.no_nan else "1",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        files, weights, head = json.loads(made.stdout.strip().splitlines()[-1])
        runs = {method: [] for method in METHODS}
        for _ in range(args.rounds):
            for method, code in METHODS.items():
                out = directory / "out"
                out.mkdir(exist_ok=True)
                runs[method].append(run_method(code, files, weights, head, out))
    rows = []
    for method, records in runs.items():
        rows.append(
            {
                "method": method,
                "call_s": float(np.median([r["call"] for r in records])),
                "process_s": float(np.median([r["wall"] for r in records])),
                "peak_mb": float(np.median([r["peak_mb"] for r in records])),
                "swarp_peak_mb": float(np.median([r["child_peak_mb"] for r in records])),
            }
        )
    by_name = {row["method"]: row for row in rows}
    raw = by_name["raw SWarp, files"]
    raw_weights = by_name["raw SWarp, files + weight maps"]
    raw_two = by_name["raw SWarp, files + weight maps (2 frames)"]
    for row in rows:
        base = raw_two if "2 frames" in row["method"] else raw_weights
        if row["method"] == "stdpipe_ccd reproject_swarp, files":
            base = raw
        row["call_ratio"] = row["call_s"] / base["call_s"]
        row["process_ratio"] = row["process_s"] / base["process_s"]
    print(
        f"\n{n_frames} frames of {size} x {size}{' without NaN' if args.no_nan else ''}, "
        f"{args.rounds} rounds (medians); "
        "ratios to raw SWarp on the same files (with weight maps for the in-memory and "
        "reproject rows; 2 frames for reproject_exact)"
    )
    columns = [
        "method",
        "call_s",
        "call_ratio",
        "process_s",
        "process_ratio",
        "peak_mb",
        "swarp_peak_mb",
    ]
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print(
            "| "
            + " | ".join(f"{row[c]:.3g}" if isinstance(row[c], float) else row[c] for c in columns)
            + " |"
        )
    RESULTS.mkdir(exist_ok=True)
    report = {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "frames": n_frames,
        "size": size,
        "rows": rows,
    }
    name = (
        "swarp-quick.json" if args.quick else "swarp-no-nan.json" if args.no_nan else "swarp.json"
    )
    (RESULTS / name).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
