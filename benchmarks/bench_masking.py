"""Masking: speed, memory and cosmic-ray quality of make_mask against its peers.

Peers, run in the same process on the same frames: numpy alone,
``stdpipe.pipeline.make_mask``, ``ccdproc.cosmicray_lacosmic`` and bare
``astroscrappy.detect_cosmics``. Times are medians of ``--repeat`` calls;
extra memory is the tracemalloc peak of numpy allocations during a call.
Without cosmic rays, each method runs its calls one after another, as a loop
over frames does, after one untimed call; run in turn with the others, its
calls would pay for the page faults that the large allocations of the others
(192 MB with mask_bleed=True) leave behind. The astroscrappy call varies by
10 % from call to call here, so the methods with cosmic rays run in turn,
round by round, and each ratio is the median of the ratios within a round;
make_mask's own share is also timed inside each call, around the astroscrappy
call it makes.

    python benchmarks/bench_masking.py            # 4096 x 4096 speed, 2048 + 4096 quality
    python benchmarks/bench_masking.py --quick    # 1024 x 1024, for a smoke test
"""

import argparse
import json
import platform
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import ccdproc
import numpy as np
from astropy import units as u

from stdpipe_ccd import CosmicRayTuning, MaskFlag, datasets, make_mask
from stdpipe_ccd import masking as _masking
from stdpipe_ccd._cosmics import COSMICS_DEFAULTS
from stdpipe_ccd._cosmics.frame import noise_model

RESULTS = Path(__file__).parent / "results"


def peak_memory(function):
    """Extra peak MB of numpy allocations during one call."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    function()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def peer_stdpipe():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from stdpipe import pipeline
        return pipeline
    except ImportError:
        print("stdpipe is not installed (pip install stdpipe sep): its rows are skipped")
        return None


def speed_without_cosmics(size, repeat, stdpipe):
    frame = datasets.make_frame((size, size), seed=1, cosmic_density=0)
    data, level = frame.ccd.data, frame.ccd.meta["SATURATE"]
    rows = {
        "np.isfinite (one pass)": lambda: np.isfinite(data),
        "numpy lower bound (~isfinite | d >= SAT)": lambda: ~np.isfinite(data) | (data >= level),
        "stdpipe_ccd make_mask (defaults)": lambda: make_mask(frame.ccd),
        "stdpipe_ccd make_mask(mask_bleed=True)": lambda: make_mask(frame.ccd, mask_bleed=True),
    }
    if stdpipe is not None:
        rows["stdpipe make_mask, no cosmics"] = lambda: stdpipe.make_mask(
            data, frame.ccd.meta, saturation=level, verbose=False
        )
    times = {}
    for name, function in rows.items():
        function()  # untimed: the heap grows to the size of the call
        times[name] = []
        for _ in range(repeat):
            start = time.perf_counter()
            value = function()
            times[name].append(time.perf_counter() - start)
            del value  # freeing the result is not part of the call
    base = np.median(times["np.isfinite (one pass)"])
    image_mb = data.nbytes / 2**20
    result = []
    for name, seconds in times.items():
        mb = peak_memory(rows[name])
        row = {
            "method": name,
            "seconds": float(np.median(seconds)),
            "ratio_to_isfinite": float(np.median(seconds) / base),
            "extra_mb": mb,
            "extra_in_images": mb / image_mb,
        }
        result.append(row)
    return result


def speed_with_cosmics(size, repeat, stdpipe):
    frame = datasets.make_frame((size, size), seed=1)
    ccd = frame.ccd
    gain, readnoise = ccd.meta["GAIN"], ccd.meta["RDNOISE"]
    # the astroscrappy call make_mask makes, with the same inputs
    image = _masking._FlagImage(ccd.shape)
    _masking._mask_nonfinite_and_saturated(ccd.data, ccd.meta["SATURATE"], image)
    _masking._mask_outside_datasec(ccd.meta, image)
    variance = noise_model(
        ccd.data,
        image.mask,
        gain=gain,
        readnoise=readnoise,
        gain_known=True,
        response=None,
        pedestal_ratio=CosmicRayTuning().pedestal_ratio,
        offset_ratio=CosmicRayTuning().offset_ratio,
    ).variance
    import astroscrappy

    def bare_call():
        astroscrappy.detect_cosmics(
            ccd.data,
            inmask=image.mask,
            invar=variance,
            gain=gain,
            readnoise=readnoise,
            satlevel=ccd.meta["SATURATE"] * gain,
            **COSMICS_DEFAULTS,
        )

    rows = {
        "astroscrappy.detect_cosmics (the call make_mask makes)": bare_call,
        "stdpipe_ccd make_mask(mask_cosmics=True)": lambda: make_mask(ccd, mask_cosmics=True),
        "ccdproc.cosmicray_lacosmic": lambda: ccdproc.cosmicray_lacosmic(
            ccd, gain=gain * u.electron / u.adu, readnoise=readnoise * u.electron, gain_apply=False
        ),
    }
    if stdpipe is not None:
        rows["stdpipe make_mask(mask_cosmics=True)"] = lambda: stdpipe.make_mask(
            ccd.data,
            ccd.meta,
            saturation=ccd.meta["SATURATE"],
            mask_cosmics=True,
            gain=gain,
            verbose=False,
        )
    detect, inner = astroscrappy.detect_cosmics, []  # seconds inside it, per make_mask call

    def timed_detect(*args, **kwargs):
        start = time.perf_counter()
        try:
            return detect(*args, **kwargs)
        finally:
            inner.append(time.perf_counter() - start)

    times = {name: [] for name in rows}
    for _ in range(repeat):  # in turn, so that drifts of the machine hit every method alike
        for name, function in rows.items():
            ours = name.startswith("stdpipe_ccd")
            astroscrappy.detect_cosmics = timed_detect if ours else detect
            start = time.perf_counter()
            try:
                function()
            finally:
                astroscrappy.detect_cosmics = detect
            times[name].append(time.perf_counter() - start)
    base = np.array(times["astroscrappy.detect_cosmics (the call make_mask makes)"])
    memory = {name: peak_memory(function) for name, function in rows.items()}
    base_mb = memory["astroscrappy.detect_cosmics (the call make_mask makes)"]
    result = []
    for name, seconds in times.items():
        row = {
            "method": name,
            "seconds": float(np.median(seconds)),
            "ratio_to_bare_call": float(np.median(np.array(seconds) / base)),
            "extra_mb": memory[name],
            "memory_ratio_to_bare_call": memory[name] / base_mb,
        }
        if name.startswith("stdpipe_ccd"):
            row["ratio_to_own_call"] = float(np.median(np.array(seconds) / np.array(inner)))
        result.append(row)
    return result


def cosmic_quality(size, seed, stdpipe, *, rays="sharp", **frame_options):
    """Scores of every method against the truth of one realistic frame."""
    frame = datasets.make_frame((size, size), seed=seed, **frame_options)
    dark, flat = datasets.make_dark((size, size)), datasets.make_flat((size, size))
    ccd = frame.ccd
    gain, readnoise = ccd.meta["GAIN"], ccd.meta["RDNOISE"]
    ours = make_mask(ccd, mask_bleed=True, mask_cosmics=True, dark=dark, flat=flat)
    cosmic = (ours.flags & MaskFlag.COSMIC_RAY) != 0
    other = ours.mask & ~cosmic  # known-bad pixels, counted as caught for every method
    import astroscrappy

    masks = {"stdpipe_ccd make_mask": cosmic}
    bare, _ = astroscrappy.detect_cosmics(
        ccd.data, gain=gain, readnoise=readnoise, satlevel=ccd.meta["SATURATE"] * gain
    )
    masks["bare astroscrappy"] = bare
    premasked, _ = astroscrappy.detect_cosmics(
        ccd.data, inmask=other, gain=gain, readnoise=readnoise, satlevel=ccd.meta["SATURATE"] * gain
    )
    masks["astroscrappy with DATASEC/saturation/bleed/hot in its inmask"] = premasked
    masks["ccdproc.cosmicray_lacosmic"] = ccdproc.cosmicray_lacosmic(
        ccd, gain=gain * u.electron / u.adu, readnoise=readnoise * u.electron, gain_apply=False
    ).mask & np.isfinite(ccd.data)
    if stdpipe is not None:
        base = stdpipe.make_mask(ccd.data, ccd.meta, saturation=ccd.meta["SATURATE"], verbose=False)
        full = stdpipe.make_mask(
            ccd.data,
            ccd.meta,
            saturation=ccd.meta["SATURATE"],
            mask_cosmics=True,
            gain=gain,
            verbose=False,
        )
        masks["stdpipe make_mask"] = full & ~base
    rows = []
    for name, mask in masks.items():
        scores = datasets.score_cosmic_rays(frame, mask & ~other, masked=other)
        rows.append({"method": name, "size": size, "rays": rays, **scores})
    bleed = datasets.score_bleed(frame, (ours.flags & MaskFlag.BLEED) != 0)
    return rows, {"size": size, **bleed}


def import_time(statement, repeat=5):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def table(rows, columns):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        values = [row.get(c, "") for c in columns]
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in values]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small frames, one repeat")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    speed_size = 1024 if args.quick else 4096
    # the reference population at two sizes, then rays diffused and blurred
    quality_frames = [(1024, "sharp", {})]
    if not args.quick:
        quality_frames = [
            (2048, "sharp", {}),
            (4096, "sharp", {}),
            (2048, "diffused", {"diffuse_cosmics": True}),
            (2048, "blurred 0.7 px", {"cosmic_blur": 0.7}),
        ]
    repeat = 1 if args.quick else args.repeat
    stdpipe = peer_stdpipe()

    report = {
        "machine": {
            "python": platform.python_version(),
            "cpu_count": __import__("os").cpu_count(),
            "platform": platform.platform(),
            "numpy": np.__version__,
            "ccdproc": ccdproc.__version__,
        }
    }
    report["import_seconds"] = {
        "import ccdproc": import_time("import ccdproc"),
        "import stdpipe_ccd": import_time("import stdpipe_ccd"),
    }
    report["without_cosmics"] = speed_without_cosmics(speed_size, repeat * 3, stdpipe)
    report["with_cosmics"] = speed_with_cosmics(speed_size, repeat, stdpipe)
    report["quality"], report["bleed"] = [], []
    for size, rays, options in quality_frames:
        rows, bleed = cosmic_quality(size, seed=2, stdpipe=stdpipe, rays=rays, **options)
        report["quality"] += rows
        if rays == "sharp":  # the others have the same trails
            report["bleed"].append(bleed)

    print(f"\nimport times (s): {report['import_seconds']}")
    print(f"\nmake_mask without cosmic rays, {speed_size} x {speed_size} float32")
    print(
        table(
            report["without_cosmics"],
            ["method", "seconds", "ratio_to_isfinite", "extra_mb", "extra_in_images"],
        )
    )
    print(f"\nwith cosmic rays, {speed_size} x {speed_size}")
    print(
        table(
            report["with_cosmics"],
            [
                "method",
                "seconds",
                "ratio_to_bare_call",
                "ratio_to_own_call",
                "extra_mb",
                "memory_ratio_to_bare_call",
            ],
        )
    )
    print("\ncosmic rays against truth")
    print(
        table(
            report["quality"],
            [
                "method",
                "size",
                "rays",
                "recall",
                "recall_5sigma",
                "recall_faint",
                "precision",
                "star_cores",
                "n_rays",
                "n_stars",
            ],
        )
    )
    print("\nbleed trails against truth")
    print(table(report["bleed"], ["size", "recall", "extra", "n_true"]))
    RESULTS.mkdir(exist_ok=True)
    name = "masking-quick.json" if args.quick else "masking.json"
    (RESULTS / name).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
