"""The two back ends of ``coadd`` on the benchmark frames: star fluxes for every option.

Dithered frames (2048 x 2048 by default, with their sky, a zero point and a
flux scale each, masked for saturation and bleed trails) are stacked with
``method="swarp"`` and with ``method="interp"`` on the same grid, for every
combine type and scaling option. For isolated stars of known position the
aperture sums (radius 10 px) of the two are compared, and the median inverse
variance, the gain and the image-count maps.

    python benchmarks/bench_parity.py            # 4 x 2048 x 2048
    python benchmarks/bench_parity.py --quick    # 4 x 512 x 512
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from astropy.nddata import CCDData, StdDevUncertainty

from stdpipe_ccd import coadd, datasets, make_mask

RESULTS = Path(__file__).parent / "results"

#: the options compared; the sky is subtracted first except for "background"
CASES = {
    "weighted": {},
    "average": {"combine": "average"},
    "sum": {"combine": "sum"},
    "median": {"combine": "median"},
    "clipped": {"combine": "clipped"},
    "min": {"combine": "min"},
    "max": {"combine": "max"},
    "flux scale": {"flux_scale_keyword": "FLXSCALE"},
    "zero point": {"zeropoint_keyword": "ZP", "zeropoint": 26.0},
    "weights": {"weights": [1.0, 2.0, 3.0, 4.0]},
    "background": {"subtract_background": True},
    "surface brightness": {"conserve": "surface_brightness"},
}


def make_inputs(n_frames, size):
    """Masked frames with sky (for "background") and without it (the other cases)."""
    # no cosmic rays or hot pixels: SWarp's kernel spreads each masked pixel over 6 x 6,
    # and near a mask the two back ends mix frames of different seeing over other areas
    frames = datasets.make_dither_set(
        n_frames, (size, size), seed=21, overscan=0, cosmic_density=0, n_hot=0
    )
    with_sky, without = [], []
    for k, frame in enumerate(frames):
        masked = make_mask(frame.ccd, mask_bleed=True)
        meta = masked.meta.copy()
        meta["ZP"], meta["FLXSCALE"] = 25.0 + 0.1 * k, 1.0 + 0.2 * k
        for data, result in ((masked.data, with_sky), (masked.data - frame.sky, without)):
            result.append(
                CCDData(
                    data,
                    unit="adu",
                    wcs=masked.wcs,
                    meta=meta,
                    mask=masked.mask,
                    uncertainty=StdDevUncertainty(frame.noise),
                )
            )
    return frames, with_sky, without


def isolated_stars(frames, out, radius=10):
    """Positions in ``out`` and fluxes of stars with no bright neighbour within reach."""
    stars = frames[0].stars
    x, y = out.wcs.all_world2pix(stars["ra"], stars["dec"], 0)
    keep = []
    for i in np.flatnonzero((stars["flux"] > 1e4) & (stars["flux"] < 1e6)):
        if not (3 * radius < x[i] < out.shape[1] - 3 * radius):
            continue
        if not (3 * radius < y[i] < out.shape[0] - 3 * radius):
            continue
        near = np.hypot(x - x[i], y - y[i]) < 3 * radius
        if np.any(near & (stars["flux"] > 0.01 * stars["flux"][i]) & (np.arange(len(x)) != i)):
            continue
        keep.append(i)
    return x[keep], y[keep], np.asarray(stars["flux"][keep])


def every_frame_sees(out, reference, xs, ys, n_frames, reach=12):
    """Whether every frame has weight on every pixel within ``reach`` of each star."""
    full = (out.count_map == n_frames) & (reference.count_map == n_frames)
    return np.array(
        [
            full[
                round(y) - reach : round(y) + reach + 1, round(x) - reach : round(x) + reach + 1
            ].all()
            for x, y in zip(xs, ys, strict=True)
        ]
    )


def aperture_sums(image, mask, xs, ys, radius=10):
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = np.hypot(xx, yy) <= radius
    sums = []
    for x, y in zip(xs, ys, strict=True):
        cut = np.s_[
            round(y) - radius : round(y) + radius + 1, round(x) - radius : round(x) + radius + 1
        ]
        sums.append(np.nan if mask[cut][disk].any() else float(image[cut][disk].sum()))
    return np.array(sums)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 frames of 512 x 512")
    args = parser.parse_args(argv)
    n_frames, size = (4, 512) if args.quick else (4, 2048)
    frames, with_sky, without = make_inputs(n_frames, size)
    rows = []
    for name, options in CASES.items():
        inputs = with_sky if name == "background" else without
        start = time.perf_counter()
        reference = coadd(inputs, method="swarp", **options)
        swarp_s = time.perf_counter() - start
        start = time.perf_counter()
        out = coadd(inputs, method="interp", wcs=reference.wcs, shape=reference.shape, **options)
        interp_s = time.perf_counter() - start
        xs, ys, fluxes = isolated_stars(frames, reference)
        ours = aperture_sums(out.data, out.mask, xs, ys)
        theirs = aperture_sums(reference.data, reference.mask, xs, ys)
        good = np.isfinite(ours) & np.isfinite(theirs)
        ratio = ours[good] / theirs[good]
        # faint stars differ by the noise the two kernels leave (1 % of 1e4 ADU is about
        # the noise of a 10 px aperture); stars of 1e5 ADU and more, seen whole by every
        # frame (no masked pixel within reach), show the systematics
        whole = every_frame_sees(out, reference, xs, ys, n_frames)
        bright = ratio[(fluxes[good] >= 1e5) & whole[good]]
        both = ~out.mask & ~reference.mask
        rows.append(
            {
                "option": name,
                "stars": int(good.sum()),
                "flux_ratio_median": float(np.median(ratio)),
                "flux_ratio_worst": float(ratio[np.argmax(np.abs(ratio - 1))]),
                "within_1pc": float(np.mean(np.abs(ratio - 1) <= 0.01)),
                "bright_whole_stars": int(bright.size),
                "bright_worst": float(bright[np.argmax(np.abs(bright - 1))])
                if bright.size
                else None,
                "bright_within_1pc": float(np.mean(np.abs(bright - 1) <= 0.01))
                if bright.size
                else None,
                "inverse_variance_ratio": float(
                    np.median(out.uncertainty.array[both])
                    / np.median(reference.uncertainty.array[both])
                ),
                "gain_ratio": out.meta["GAIN"] / reference.meta["GAIN"],
                "count_map_agreement": float(
                    np.mean(out.count_map[both] == reference.count_map[both])
                ),
                "swarp_s": swarp_s,
                "interp_s": interp_s,
            }
        )
        row = rows[-1]
        print(
            f"{name:20s} stars {row['stars']:4d} flux ratio median {row['flux_ratio_median']:.4f}"
            f" worst {row['flux_ratio_worst']:.4f} within 1 % {row['within_1pc']:.3f}"
            f" bright {row['bright_whole_stars']} worst {row['bright_worst']}"
            f" within 1 % {row['bright_within_1pc']}"
            f" ivar {row['inverse_variance_ratio']:.3f} gain {row['gain_ratio']:.3f}"
            f" counts {row['count_map_agreement']:.3f}",
            flush=True,
        )
    RESULTS.mkdir(exist_ok=True)
    report = {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "frames": n_frames,
        "size": size,
        "rows": rows,
    }
    name = "parity-quick.json" if args.quick else "parity.json"
    (RESULTS / name).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
