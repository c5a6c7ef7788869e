"""Cosmic rays over a validation matrix: make_mask against bare astroscrappy, cell by cell.

The frames come from `stdpipe_ccd.validation.make_field`, a generator the
masking steps were not built on. Each cell changes one thing from a base
field (Moffat beta 4.765, FWHM 3 px, sky 500 e-, gain 2, read noise 5 e-,
1,500 stars and 300 rays per 1024 x 1024, sharp rays) or a few together;
each runs over several seeds and reports the mean of each score and, for
make_mask, how it compares with the bare call on the same frames (the two
run five times on each frame, alternately; each frame counts the fastest
run of each, and the time ratio is that of their medians over the frames).
The bare call is
``astroscrappy.detect_cosmics(data, gain=, readnoise=)`` with its
defaults, as a user would make it (ccdproc's ``cosmicray_lacosmic`` is the
same call), given the frame with any subtracted sky level added back, as
astroscrappy's documentation asks; STDPipe's ``make_mask`` runs too where it is installed.

    python benchmarks/bench_cosmics_matrix.py             # 1024 x 1024, 5 seeds
    python benchmarks/bench_cosmics_matrix.py --quick     # 512 x 512, 2 seeds
    python benchmarks/bench_cosmics_matrix.py --steps     # each step switched off in turn

``--steps`` runs make_mask over the same cells with each of its steps after
LACosmic switched off in turn (``CosmicRayTuning``), to show what each step
brings; it writes ``cosmics-steps.json``.
"""

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import astroscrappy
import ccdproc
import numpy as np
from astropy import units as u
from bench_masking import peer_stdpipe  # the benchmarks' folder is on the path

from stdpipe_ccd import CosmicRayTuning, MaskFlag, make_mask, validation

RESULTS = Path(__file__).parent / "results"

#: (name, options of make_field beyond the base); densities are per 1024 x 1024
CELLS = [
    ("base", {}),
    ("FWHM 1.6", {"fwhm": 1.6}),
    ("FWHM 2.0", {"fwhm": 2.0}),
    ("FWHM 2.5", {"fwhm": 2.5}),
    ("FWHM 4", {"fwhm": 4.0}),
    ("FWHM 6", {"fwhm": 6.0}),
    ("Gaussian FWHM 2.5", {"psf": "gaussian", "fwhm": 2.5}),
    ("Gaussian FWHM 4", {"psf": "gaussian", "fwhm": 4.0}),
    ("Moffat beta 2.5", {"beta": 2.5}),
    ("sky 20 e-", {"sky": 20.0}),
    ("sky 20000 e-", {"sky": 20000.0}),
    ("gain 0.5", {"gain": 0.5}),
    ("gain 10", {"gain": 10.0}),
    ("read noise 2 e-", {"readnoise": 2.0}),
    ("read noise 20 e-", {"readnoise": 20.0}),
    ("sky subtracted", {"sky_subtracted": True}),
    ("crowded", {"n_stars": 8000}),
    ("crowded FWHM 1.6", {"n_stars": 8000, "fwhm": 1.6}),
    ("galaxies", {"n_galaxies": 40}),
    ("galaxies, sky subtracted", {"n_galaxies": 40, "sky_subtracted": True}),
    ("rays diffused", {"rays": "diffused"}),
    ("rays blurred", {"rays": "blurred"}),
]
#: make_mask may take this many times the bare call's time
MAX_TIME_RATIO = 1.10
#: runs of make_mask and of the bare call on each frame, for their time ratio
TIMING_REPEATS = 5
SCORES = ["recall", "recall_5sigma", "precision", "star_cores", "galaxy_cores", "noise_ratio"]
#: make_mask with all its steps, and with each switched off in turn
STEPS = {
    "all steps": {},
    "without the star veto": {"star_veto": False},
    "with the test beside brighter stars": {"star_beside_brighter": True},
    "without the fainter stars beside brighter ones": {"star_fainter_beside": False},
    "without the wing-group test": {"star_wing_slack": 0.0},
    "without the edge margin for tracks": {"track_edge_margin": 0},
    "without the fainter tops inside a star's group": {"star_inner_tops": False},
    "without the slopes of stars at the edge": {"star_edge_band": 0},
    "without the fit of blended stars": {"star_blends": False},
    "without the sharp peaks": {"sharp_peaks": False},
    "without the star light in rays' groups": {"star_light_slack": 0.0},
    "without the rays on stars' slopes": {"star_slope_ray_light": 0.0},
    "without growth": {"grow": False},
    "without track completion": {"complete_tracks": False},
    "without the weak-groups check": {"weak_groups": False},
    "with the check of lone flags only": {"weak_group_size": 1},
    "without the fit of faint stars": {"faint_stars": False},
    "without the faint star tops of crowded undersampled frames": {"undersampled_top_sigma": 20.0},
    "none (LACosmic with the noise model)": {
        "star_veto": False,
        "sharp_peaks": False,
        "grow": False,
        "complete_tracks": False,
        "weak_groups": False,
        "faint_stars": False,
    },
}


def field(size, seed, options):
    scale = (size / 1024) ** 2
    options = dict(options)
    for key, default in (("n_stars", 1500), ("n_rays", 300), ("n_galaxies", 0)):
        options[key] = round(options.get(key, default) * scale)
    return validation.make_field((size, size), seed=seed, **options)


def methods(stdpipe):
    def ours(ccd):
        masked = make_mask(ccd, mask_cosmics=True)
        return (masked.flags & MaskFlag.COSMIC_RAY) != 0

    def bare(ccd):
        gain, readnoise = ccd.meta["GAIN"], ccd.meta["RDNOISE"]
        # as astroscrappy asks: a subtracted sky level is added back
        data = ccd.data + ccd.meta["SKYSUB"]
        return astroscrappy.detect_cosmics(data, gain=gain, readnoise=readnoise)[0]

    def lacosmic(ccd):
        gain, readnoise = ccd.meta["GAIN"], ccd.meta["RDNOISE"]
        with_sky = ccd.add(ccd.meta["SKYSUB"] * u.adu)
        return ccdproc.cosmicray_lacosmic(
            with_sky,
            gain=gain * u.electron / u.adu,
            readnoise=readnoise * u.electron,
            gain_apply=False,
        ).mask

    found = {"stdpipe_ccd": ours, "astroscrappy": bare, "ccdproc": lacosmic}
    if stdpipe is not None:

        def theirs(ccd):
            data = ccd.data + ccd.meta["SKYSUB"]
            return stdpipe.make_mask(
                data, dict(ccd.meta), mask_cosmics=True, gain=ccd.meta["GAIN"], verbose=False
            )

        found["stdpipe"] = theirs
    return found


def step_runners():
    """make_mask with each set of steps of `STEPS`."""

    def runner(tuning):
        def run(ccd):
            masked = make_mask(ccd, mask_cosmics=True, cosmics_tuning=tuning)
            return (masked.flags & MaskFlag.COSMIC_RAY) != 0

        return run

    return {name: runner(CosmicRayTuning(**switches)) for name, switches in STEPS.items()}


def timed(runner, ccd):
    """The runner's mask of ``ccd`` and its seconds."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mask = runner(ccd)
    return mask, time.perf_counter() - start


def run_cell(size, seeds, options, runners, repeats=1):
    """Mean scores over ``seeds``, and median seconds of each runner over the frames.

    With ``repeats`` above 1, the first two runners (make_mask and the bare
    call) run that many times on each frame, alternately, and each frame
    counts its fastest run: a single run of about a second scatters by
    several percent, and a busy machine only ever slows a run down. The
    time ratio is the median over the frames of each frame's ratio (as in
    ``bench_masking.py``): the two calls on a frame ran side by side, while
    the medians of the two columns may come from different frames.
    """
    scores = {name: [] for name in runners}
    seconds = {name: [] for name in runners}
    timed_pair = list(runners)[:2]
    for seed in seeds:
        frame = field(size, seed, options)
        for name, runner in runners.items():
            mask, spent = timed(runner, frame.ccd)
            seconds[name].append(spent)
            scores[name].append(validation.score_cosmic_mask(frame, mask))
        for _ in range(repeats - 1):
            for name in timed_pair:
                spent = timed(runners[name], frame.ccd)[1]
                seconds[name][-1] = min(seconds[name][-1], spent)
    rows = []
    for name in runners:
        row = {"method": name}
        for key in SCORES:
            values = [s[key] for s in scores[name]]
            row[key] = float(np.nanmean(values)) if np.isfinite(values).any() else None
        row["seconds"] = float(np.median(seconds[name]))
        rows.append(row)
    if len(rows) > 1 and rows[1]["method"] == "astroscrappy":
        ours, bare = (np.array(seconds[row["method"]]) for row in rows[:2])
        rows[0]["time_ratio"] = float(np.median(ours / bare))
    return rows


def verdict(ours, bare):
    """Where make_mask does worse than the bare call (beyond the scatter of a few frames).

    Time counts as worse above `MAX_TIME_RATIO`.
    """
    worse = []
    if ours["recall"] < bare["recall"] - 0.005:
        worse.append("recall")
    if ours["precision"] < bare["precision"] - 0.005:
        worse.append("precision")
    for key in ("star_cores", "galaxy_cores"):
        if ours[key] is not None and ours[key] > bare[key] + 0.001:
            worse.append(key)
    if ours["noise_ratio"] > max(2.0, bare["noise_ratio"]):
        worse.append("noise")
    if ours.get("time_ratio", 0.0) > MAX_TIME_RATIO:
        worse.append("time")
    return worse


def summary(record):
    """Mean of each score over the cells, for each method."""
    rows = {}
    for cell in record["cells"]:
        for row in cell["rows"]:
            rows.setdefault(row["method"], []).append(row)
    means = []
    for method, cells in rows.items():
        line = {"method": method}
        for key in SCORES:
            values = [c[key] for c in cells if c[key] is not None]
            line[key] = float(np.mean(values)) if values else None
        means.append(line)
    return means


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512 x 512 frames, 2 seeds")
    parser.add_argument("--cells", nargs="*", help="only these cells (by name)")
    parser.add_argument("--steps", action="store_true", help="each step switched off in turn")
    args = parser.parse_args(argv)
    size, seeds = (512, range(2)) if args.quick else (1024, range(5))
    runners = step_runners() if args.steps else methods(peer_stdpipe())
    record = {
        "size": size,
        "seeds": len(seeds),
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "astroscrappy": astroscrappy.__version__,
        },
        "cells": [],
    }
    print(f"| cell | method | {' | '.join(SCORES)} | time ratio | worse than bare |")
    print("|" + "---|" * (len(SCORES) + 4))
    for name, options in CELLS:
        if args.cells and name not in args.cells:
            continue
        rows = run_cell(size, seeds, options, runners, repeats=1 if args.steps else TIMING_REPEATS)
        if not args.steps:
            rows[0]["worse_than_bare"] = verdict(rows[0], rows[1])
        record["cells"].append({"cell": name, "options": options, "rows": rows})
        for row in rows:
            values = " | ".join("" if row[k] is None else f"{row[k]:.3f}" for k in SCORES)
            ratio = f"{row['time_ratio']:.2f}" if "time_ratio" in row else ""
            worse = ", ".join(row.get("worse_than_bare", []))
            print(f"| {name} | {row['method']} | {values} | {ratio} | {worse} |", flush=True)
    record["mean"] = summary(record)
    suffix = "-quick" if args.quick else ""
    if not args.cells:
        path = RESULTS / f"cosmics-{'steps' if args.steps else 'matrix'}{suffix}.json"
        path.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
