import os
import sys
import tracemalloc

import astroscrappy
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

from stdpipe_ccd import MaskFlag, StdpipeCCDWarning, coadd, datasets, make_mask
from stdpipe_ccd._sky import background_level
from stdpipe_ccd.io import read_fits, write_fits

SHAPE = (384, 384)


@pytest.fixture(scope="module")
def frames():
    return datasets.make_dither_set(
        4,
        SHAPE,
        seed=12,
        overscan=0,
        n_hot=0,
        cosmic_density=0,
        star_density=300.0,
        max_offset=20.0,
    )


@pytest.fixture(scope="module")
def inputs(frames):
    result = []
    for frame in frames:
        masked = make_mask(frame.ccd, mask_bleed=True)
        result.append(
            CCDData(
                masked.data - frame.sky,
                unit="adu",
                wcs=masked.wcs,
                meta=masked.meta,
                mask=masked.mask,
                uncertainty=StdDevUncertainty(frame.noise),
            )
        )
    return result


def star_fluxes(frames, out):
    stars = frames[0].stars
    x, y = out.wcs.all_world2pix(stars["ra"], stars["dec"], 0)
    yy, xx = np.mgrid[: out.shape[0], : out.shape[1]]
    fluxes = []
    for i in np.argsort(stars["flux"])[::-1]:
        if not (20 < x[i] < out.shape[1] - 20 and 20 < y[i] < out.shape[0] - 20):
            continue
        if stars["flux"][i] > 1e6 or stars["flux"][i] < 1e4:
            continue
        others = np.hypot(x - x[i], y - y[i])
        if np.sort(others[stars["flux"] > 0.01 * stars["flux"][i]])[1] < 20:
            continue
        disk = np.hypot(xx - x[i], yy - y[i]) <= 10
        if out.mask[disk].any():
            continue
        fluxes.append((stars["flux"][i], out.data[disk].sum()))
    return np.array(fluxes)


@pytest.mark.requires_swarp
@pytest.mark.parametrize("method", ["interp", "exact"])
def test_reproject_methods_agree_with_swarp(frames, inputs, method):
    reference = coadd(inputs, method="swarp")
    out = coadd(
        inputs,
        method=method,
        wcs=reference.wcs,
        shape=reference.shape,
    )
    assert out.shape == reference.shape
    ours, theirs = star_fluxes(frames, out), star_fluxes(frames, reference)
    assert len(ours) >= 3
    np.testing.assert_allclose(ours[:, 1], theirs[:, 1], rtol=0.01)
    both = ~out.mask & ~reference.mask
    ratio = np.median(out.uncertainty.array[both]) / np.median(reference.uncertainty.array[both])
    assert ratio == pytest.approx(1.0, abs=0.1)
    assert out.meta["GAIN"] == pytest.approx(reference.meta["GAIN"], rel=0.05)


def test_interp_uncertainty_is_honest_on_apertures(frames, inputs):
    out = coadd(inputs, method="interp", combine="weighted")
    stars = frames[0].stars
    sx, sy = out.wcs.all_world2pix(stars["ra"], stars["dec"], 0)
    radius = 5
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = np.hypot(xx, yy) <= radius
    pulls = []
    reach = np.where(stars["flux"] > 2e5, 60, 20)  # bright stars' wings reach far
    for x, y in np.random.default_rng(1).uniform(15, out.shape[0] - 15, (3000, 2)):
        if np.any(np.hypot(sx - x, sy - y) < reach):
            continue
        cut = np.s_[int(y) - radius : int(y) + radius + 1, int(x) - radius : int(x) + radius + 1]
        if out.mask[cut][disk].any():
            continue
        pulls.append(
            out.data[cut][disk].sum() / np.sqrt((1 / out.uncertainty.array[cut][disk]).sum())
        )
    assert len(pulls) > 100
    assert np.std(pulls) == pytest.approx(1.0, abs=0.15)


@pytest.mark.parametrize(
    # the median of 4 normal values (the mean of the middle two) has 1.192 times the
    # variance of their mean
    ("combine", "factor"),
    [("sum", 1), ("average", 4), ("median", 4 / 1.192)],
)
def test_effective_gain_without_swarp(inputs, combine, factor):
    out = coadd(inputs, method="interp", combine=combine)
    assert out.meta["GAIN"] == pytest.approx(datasets.GAIN * factor, rel=0.02)
    assert out.meta["NCOMBINE"] == 4


def test_auto_falls_back_without_swarp(inputs, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.warns(StdpipeCCDWarning, match="SWarp was not found; coadding with reproject"):
        out = coadd(inputs[:2])
    assert "method=interp" in "".join(out.meta["HISTORY"])


def test_reproject_missing_names_the_extra(inputs, monkeypatch):
    monkeypatch.setitem(sys.modules, "reproject", None)
    with pytest.raises(ImportError, match=r"stdpipe_ccd\[all\]"):
        coadd(inputs[:1], method="interp")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"method": "drizzle"}, "method='drizzle'"),
        ({"method": "interp", "combine": "mode"}, "combine='mode'"),
        ({"method": "interp", "resampling": "lanczos3"}, "method='swarp'"),
        ({"method": "swarp", "order": "bilinear"}, "not options of method='swarp'"),
        ({"method": "interp", "combine": "median", "weights": [1]}, "weights need"),
        ({"method": "interp", "weights": [1, -1]}, "weights must be 1 positive"),
        ({"method": "interp", "zeropoint": 25}, "zeropoint needs zeropoint_keyword"),
        ({"method": "interp", "zeropoint_keyword": "NOSUCHZP"}, "has no NOSUCHZP keyword"),
    ],
)
def test_bad_options(inputs, options, match):
    with pytest.raises(ValueError, match=match):
        coadd(inputs[:1], **options)


# --- tiles and files ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def wide_field(tmp_path_factory):
    """Six 384 x 384 masked frames spread over a field about four times their size, on disk."""
    folder = tmp_path_factory.mktemp("wide")
    frames = datasets.make_dither_set(
        6, SHAPE, seed=31, max_offset=450.0, cosmic_density=0, n_hot=0, overscan=0
    )
    paths = []
    for i, frame in enumerate(frames):
        paths.append(folder / f"frame{i}.fits")
        write_fits(make_mask(frame.ccd, mask_bleed=True), paths[-1])
    return paths


@pytest.mark.requires_swarp
def test_tiles_equal_a_single_run_in_bounded_memory(wide_field, tmp_path):
    # a grid with a wide empty border: 40 tiles, of which only those near the frames run
    wcs = coadd(wide_field, method="swarp").wcs.deepcopy()
    wcs.wcs.crpix += 1500
    shape = (4000, 4000)
    single = coadd(wide_field, method="swarp", wcs=wcs, shape=shape)
    output = tmp_path / "mosaic.fits"
    options = {"method": "swarp", "wcs": wcs, "shape": shape, "tiles": (600, 512), "jobs": 2}
    coadd(wide_field, output=output, **options)  # a first run imports what dask needs
    tracemalloc.start()
    try:
        tiled = coadd(wide_field, output=output, overwrite=True, **options)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the calling process holds a few frames and tiles at a time, never a mosaic plane
    tile = 600 * 512 * 4
    assert peak < 7 * 2 * tile  # 2 tiles at a time: data, weight, mask and the two maps
    assert peak < 0.25 * single.data.nbytes
    assert not tiled.data.flags.owndata  # memory-mapped from the file
    np.testing.assert_array_equal(tiled.mask, single.mask)
    both = ~single.mask
    assert both.sum() > 4 * SHAPE[0] * SHAPE[1]
    scale = np.maximum(np.abs(single.data[both]), 1.0)
    assert np.max(np.abs(tiled.data[both] - single.data[both]) / scale) < 1e-5
    np.testing.assert_allclose(
        tiled.uncertainty.array[both], single.uncertainty.array[both], rtol=1e-5
    )
    assert np.isnan(tiled.data[~both]).all()
    np.testing.assert_array_equal(tiled.count_map, single.count_map)
    np.testing.assert_array_equal(tiled.exposure_map, single.exposure_map)
    assert tiled.count_map.max() >= 2
    assert tiled.meta["NCOMBINE"] == 6
    assert tiled.meta["GAIN"] <= single.meta["GAIN"]
    # one complete file, nothing else left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mosaic.fits"]
    back = read_fits(output)
    np.testing.assert_array_equal(back.mask, single.mask)


@pytest.mark.requires_swarp
def test_masked_files_give_zero_weight(wide_field):
    ccds = [read_fits(path) for path in wide_field[:2]]
    from_files = coadd(wide_field[:2], method="swarp")
    from_memory = coadd(ccds, method="swarp")
    np.testing.assert_allclose(from_files.data, from_memory.data, rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(from_files.mask, from_memory.mask)
    # no saturated pixel of either frame reaches the coadd
    saturated = from_files.data > datasets.SATURATE
    assert not saturated.any()


def test_tiles_need_an_output_and_keep_existing_files(inputs, tmp_path):
    with pytest.raises(ValueError, match="tiles need output="):
        coadd(inputs, method="interp", tiles=128)
    existing = tmp_path / "mosaic.fits"
    existing.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        coadd(inputs, method="interp", tiles=128, output=existing)
    assert existing.read_bytes() == b"keep me"


def test_tiles_with_reproject(inputs, tmp_path):
    single = coadd(inputs, method="interp", output=tmp_path / "single.fits")
    tiled = coadd(inputs, method="interp", tiles=150, output=tmp_path / "tiled.fits")
    both = ~single.mask & ~tiled.mask
    assert both.mean() > 0.9
    np.testing.assert_allclose(tiled.data[both], single.data[both], rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(read_fits(tmp_path / "single.fits").data, single.data)


# --- both back ends: the same options, the same product ----------------------------------


@pytest.fixture(scope="module")
def scaled_inputs(frames):
    """The frames with their sky, a zero point, a flux scale and an exposure time each."""
    result = []
    for k, frame in enumerate(frames):
        masked = make_mask(frame.ccd, mask_bleed=True)
        meta = masked.meta.copy()
        meta["ZP"], meta["FLXSCALE"], meta["EXPTIME"] = 25.0 + 0.1 * k, 1.0 + 0.2 * k, 60.0 + k
        result.append(
            CCDData(
                masked.data,
                unit="adu",
                wcs=masked.wcs,
                meta=meta,
                mask=masked.mask,
                uncertainty=StdDevUncertainty(frame.noise),
            )
        )
    return result


PARITY_CASES = {
    "weighted": {},
    "average": {"combine": "average"},
    "sum": {"combine": "sum"},
    "median": {"combine": "median"},
    "clipped": {"combine": "clipped"},
    "flux scale": {"flux_scale_keyword": "FLXSCALE"},
    "zero point": {"zeropoint_keyword": "ZP", "zeropoint": 26.0},
    "weights": {"weights": [1, 2, 3, 4]},
    "surface brightness": {"conserve": "surface_brightness"},
}


@pytest.mark.requires_swarp
@pytest.mark.parametrize("case", [*PARITY_CASES, "background"])
def test_back_ends_give_the_same_product(frames, inputs, scaled_inputs, case):
    if case == "background":
        data, options = scaled_inputs, {"subtract_background": True}
    else:
        data = [
            CCDData(
                s.data - f.sky,
                unit=s.unit,
                wcs=s.wcs,
                meta=s.meta,
                mask=s.mask,
                uncertainty=s.uncertainty,
            )
            for s, f in zip(scaled_inputs, frames)
        ]
        options = PARITY_CASES[case]
    reference = coadd(data, method="swarp", **options)
    out = coadd(data, method="interp", wcs=reference.wcs, shape=reference.shape, **options)
    ours, theirs = star_fluxes(frames, out), star_fluxes(frames, reference)
    assert len(ours) >= 3
    np.testing.assert_allclose(ours[:, 1], theirs[:, 1], rtol=0.01)
    both = ~out.mask & ~reference.mask
    ratio = np.median(out.uncertainty.array[both]) / np.median(reference.uncertainty.array[both])
    assert ratio == pytest.approx(1.0, abs=0.05)
    assert out.meta["GAIN"] == pytest.approx(reference.meta["GAIN"], rel=0.02)
    for key in ("EXPTIME", "TEXPTIME", "NCOMBINE", "COMBINET", "SATURATE"):
        assert out.meta[key] == pytest.approx(reference.meta[key], rel=1e-6)
    # the maps differ only within the resampling kernels' reach of frame edges and masks
    assert np.mean(out.count_map[both] == reference.count_map[both]) > 0.85
    assert out.count_map.max() == reference.count_map.max() == 4


@pytest.mark.requires_swarp
@pytest.mark.parametrize("method", ["swarp", "interp"])
def test_zero_points_make_fluxes_agree(frames, inputs, method):
    """Frames scaled by their zero point come back to the fluxes of the first frame."""
    scaled = []
    for k, ccd in enumerate(inputs):
        meta = ccd.meta.copy()
        meta["MAGZP"] = 25.0 + 0.5 * k  # frame k is 10**(0.2 k) times more sensitive...
        factor = 10 ** (0.2 * k)  # ...so its counts are that much higher
        scaled.append(
            CCDData(
                ccd.data * factor,
                unit="adu",
                wcs=ccd.wcs,
                meta=meta,
                mask=ccd.mask,
                uncertainty=StdDevUncertainty(ccd.uncertainty.array * factor),
            )
        )
    out = coadd(scaled, method=method, zeropoint_keyword="MAGZP")
    fluxes = star_fluxes(frames, out)
    unscaled = star_fluxes(frames, coadd(inputs, method=method, wcs=out.wcs, shape=out.shape))
    np.testing.assert_allclose(fluxes[:, 1], unscaled[:, 1], rtol=0.01)
    assert out.meta["MAGZP"] == 25.0


@pytest.mark.requires_swarp
@pytest.mark.parametrize("method", ["swarp", "interp"])
def test_weights_keep_the_uncertainty_true(inputs, method):
    """With weights w_i the variance of the mean is sum(w_i^2 var_i) / (sum w_i)^2."""
    weights = np.array([1.0, 4.0, 1.0, 0.25])
    out = coadd(inputs, method=method, weights=weights)
    plain = coadd(inputs, method=method, wcs=out.wcs, shape=out.shape)
    inverse = np.array([np.median(1 / np.asarray(c.uncertainty.array) ** 2) for c in inputs])
    w = weights * inverse  # each frame's weight in the mean
    expected = w.sum() ** 2 / (w**2 / inverse).sum()
    everywhere = out.count_map == 4
    assert np.median(out.uncertainty.array[everywhere]) == pytest.approx(expected, rel=0.05)
    # unequal weights lose information against inverse-variance weights
    assert np.median(out.uncertainty.array[everywhere]) < np.median(
        plain.uncertainty.array[everywhere]
    )


@pytest.mark.requires_swarp
@pytest.mark.parametrize("method", ["swarp", "interp"])
def test_maps_count_the_frames(scaled_inputs, method, tmp_path):
    out = coadd(scaled_inputs, method=method, combine="sum")
    times = np.array([c.meta["EXPTIME"] for c in scaled_inputs])
    assert out.meta["EXPTIME"] == out.meta["TEXPTIME"] == pytest.approx(times.sum())
    # every pixel's exposure is the sum of the exposure times of the frames covering it
    for n in range(1, 5):
        at = out.count_map == n
        assert at.any()
        assert np.all(out.exposure_map[at] >= np.sort(times)[:n].sum() - 1e-3)
        assert np.all(out.exposure_map[at] <= np.sort(times)[-n:].sum() + 1e-3)
    assert np.all(out.count_map[out.mask] == 0)
    write_fits(out, tmp_path / "coadd.fits")
    back = read_fits(tmp_path / "coadd.fits")
    np.testing.assert_array_equal(back.count_map, out.count_map)
    np.testing.assert_array_equal(back.exposure_map, out.exposure_map)
    assert back.meta["EXPMAP"] == "EXPMAP"


@pytest.mark.requires_swarp
def test_min_and_max_agree_between_back_ends(inputs):
    """Minimum and maximum: the same pixels' values where the kernels do not matter."""
    flat = []
    for k, ccd in enumerate(inputs):
        flat.append(
            CCDData(
                np.full(ccd.shape, 10.0 * (k + 1), dtype=np.float32),
                unit="adu",
                wcs=ccd.wcs,
                uncertainty=StdDevUncertainty(np.full(ccd.shape, 1.0 + k)),
            )
        )
    for combine, value in (("min", 10.0), ("max", 40.0)):
        reference = coadd(flat, method="swarp", combine=combine)
        out = coadd(
            flat, method="interp", combine=combine, wcs=reference.wcs, shape=reference.shape
        )
        everywhere = (out.count_map == 4) & (reference.count_map == 4)
        assert np.median(out.data[everywhere]) == pytest.approx(value, rel=1e-4)
        assert np.median(reference.data[everywhere]) == pytest.approx(value, rel=1e-4)
        # the mean inverse variance of the frames, for both (SWarp's own weight is 1)
        expected = 4 / np.sum((1.0 + np.arange(4)) ** 2)
        for result in (out, reference):
            assert np.median(result.uncertainty.array[everywhere]) == pytest.approx(
                expected, rel=1e-3
            )


# --- each input file is opened once -------------------------------------------------------

_OPENED = []
_LISTENING = []


def _count_opens(event, args):
    if event == "open" and _LISTENING and isinstance(args[0], (str, bytes)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_count_opens)  # audit hooks stay for the process: it counts only when asked


@pytest.fixture(scope="module")
def three_kinds_of_file(frames, tmp_path_factory):
    """A float file with NaN, a file with MASK and UNCERT, and a raw integer file in HDU 1."""
    folder = tmp_path_factory.mktemp("kinds")
    with_nan = frames[0].ccd.copy()
    with_nan.data[100:110, 100:110] = np.nan
    with_nan.write(folder / "nan.fits")
    write_fits(make_mask(frames[1].ccd), folder / "masked.fits")
    counts = np.clip(np.nan_to_num(frames[2].ccd.data), 0, 65535).astype(np.uint16)
    raw = fits.ImageHDU(counts, header=frames[2].ccd.wcs.to_header())
    fits.HDUList([fits.PrimaryHDU(), raw]).writeto(folder / "raw.fits")
    return [folder / "nan.fits", folder / "masked.fits", (folder / "raw.fits", 1)]


@pytest.mark.requires_swarp
@pytest.mark.parametrize("method", ["swarp", "interp"])
def test_each_file_is_opened_once(three_kinds_of_file, method):
    paths = [str(p[0] if isinstance(p, tuple) else p) for p in three_kinds_of_file]
    _OPENED.clear()
    _LISTENING.append(True)
    try:
        out = coadd(three_kinds_of_file, method=method)
    finally:
        _LISTENING.clear()
    assert [_OPENED.count(path) for path in paths] == [1, 1, 1]
    assert out.meta["NCOMBINE"] == 3
    assert out.count_map.max() == 3
    assert "raw.fits[1]" in "".join(out.meta["HISTORY"])


def test_background_level_fills_boxes_without_data_from_their_neighbours():
    """A sky sloping along x, its left 300 columns masked (two boxes of 128 without a
    pixel): those boxes take their neighbours' level, and numpy warns of no empty box (the
    warning filters are process-wide: changing them in threads is not safe)."""
    rng = np.random.default_rng(3)
    x = np.arange(1024)
    data = (100.0 + 0.05 * x + rng.normal(0, 5, (1024, 1024))).astype(np.float32)
    valid = np.ones(data.shape, bool)
    valid[:, :300] = False
    level = background_level(data, valid)
    assert level.shape == data.shape
    assert np.isfinite(level).all()
    # between the centres of the boxes with data, the slope is followed (beyond the last
    # centre the level stays flat)
    assert np.abs(level[:, 400:960] - (100.0 + 0.05 * x[400:960])).max() < 1.0
    # the empty boxes are no lower than the first boxes with data start
    assert level[:, :256].min() >= 100.0 + 0.05 * 256 - 2.0


@pytest.mark.requires_swarp
@pytest.mark.parametrize("combine", ["weighted", "average"])
def test_cosmic_rays_on_a_coadd_follow_its_uncertainty(inputs, combine):
    """The frames hold no cosmic ray; where fewer of them cover the coadd its noise is higher,
    and make_mask takes the coadd's inverse variance for it: 2 pixels flagged. Without it, the
    boxes of its sky spread that noise over the coverage steps: 279 and 298 pixels of noise
    were flagged there (the bare call 24 and 29)."""
    stack = coadd(inputs, method="swarp", combine=combine)
    without = stack.copy()
    without.uncertainty = None
    flagged = {}
    for name, ccd in (("uncertainty", stack), ("without", without)):
        masked = make_mask(ccd, mask_cosmics=True)
        flagged[name] = np.count_nonzero(masked.flags & MaskFlag.COSMIC_RAY)
    data = np.where(stack.mask, 0, stack.data).astype(np.float32) + 1000.0
    bare = astroscrappy.detect_cosmics(data, inmask=stack.mask, gain=stack.meta["GAIN"])[0]
    assert flagged["uncertainty"] <= max(10, np.count_nonzero(bare)) < flagged["without"]
