import sys
import tracemalloc

import numpy as np
import pytest
from astropy.nddata import CCDData, StdDevUncertainty

from stdpipe_ccd import StdpipeCCDWarning, coadd, datasets, make_mask
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
