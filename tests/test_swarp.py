import functools
import os
import stat
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.wcs import WCS
from ccdproc import ImageFileCollection

from stdpipe_ccd import (
    SwarpError,
    SwarpNotFoundError,
    conf,
    datasets,
    find_swarp,
    make_mask,
    reproject_swarp,
    resample_swarp,
)

pytestmark = pytest.mark.requires_swarp

SHAPE = (512, 512)
SPARSE = {"star_density": 250.0, "cosmic_density": 0, "n_hot": 0, "nan_patch": False, "overscan": 0}


@pytest.fixture(scope="module")
def frame():
    return datasets.make_frame(SHAPE, seed=3, **SPARSE)


def noiseless(frame, *, sip=False):
    """The frame's stars alone (no sky, no noise), with its WCS."""
    return CCDData(frame.model - frame.sky, unit="adu", wcs=frame.ccd.wcs)


def isolated(frame, *, margin=30, flux=(1e4, 1e6)):
    stars = frame.stars
    keep = []
    for i, star in enumerate(stars):
        if not (flux[0] < star["flux"] < flux[1]):
            continue
        if not (margin < star["x"] < SHAPE[1] - margin and margin < star["y"] < SHAPE[0] - margin):
            continue
        distance = np.hypot(stars["x"] - star["x"], stars["y"] - star["y"])
        bright = stars["flux"] > 0.005 * star["flux"]
        if np.sort(distance[bright])[1] > 30:
            keep.append(i)
    assert len(keep) >= 5
    return stars[keep]


def measure(image, x, y, radius):
    """Aperture sum and first-moment centroid (iterated) around (x, y)."""
    ny, nx = image.shape
    yy, xx = np.mgrid[:ny, :nx]
    for _ in range(5):
        inside = np.hypot(xx - x, yy - y) <= radius
        values = np.where(inside, np.nan_to_num(image), 0.0)
        total = values.sum()
        x, y = (values * xx).sum() / total, (values * yy).sum() / total
    return total, x, y


def grid(frame, *, shift=(0.0, 0.0), rotation=0.0, scale=1.0):
    """A target grid: the frame's own, shifted, rotated and/or rescaled about its centre."""
    wcs = frame.ccd.wcs.deepcopy()
    angle = np.deg2rad(rotation)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    wcs.wcs.cd = wcs.wcs.cd @ turn * scale
    wcs.wcs.crpix = (np.array(SHAPE[::-1]) / 2 + 0.5) / scale + np.array(shift)
    size = int(np.ceil(SHAPE[0] / scale))
    return wcs, (size, size)


# --- science ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "options"),
    [
        ("identity", {}),
        ("subpixel shift", {"shift": (0.37, -0.61)}),
        ("rotation 15 deg", {"rotation": 15.0}),
        ("pixels 2x larger", {"scale": 2.0}),
    ],
)
def test_flux_and_centroids(frame, case, options):
    """Isolated stars keep their flux within 0.5 % and land within 0.03 pixels of truth."""
    wcs, shape = grid(frame, **options)
    out = reproject_swarp(noiseless(frame), wcs=wcs, shape=shape)
    assert out.shape == shape
    scale = options.get("scale", 1.0)
    ratios, offsets = [], []
    for star in isolated(frame):
        x, y = wcs.all_world2pix(star["ra"], star["dec"], 0)
        total, _, _ = measure(out.data, x, y, radius=15 / scale)
        _, cx, cy = measure(out.data, x, y, radius=5 / scale)
        ratios.append(total / star["flux"])
        offsets.append(np.hypot(cx - x, cy - y))
    assert np.median(np.abs(np.array(ratios) - 1)) < 0.005, ratios
    assert np.max(offsets) < 0.03, offsets


def test_surface_brightness_keeps_sky_level(frame):
    """conserve='surface_brightness' keeps a flat sky's level when pixels get larger."""
    flat = CCDData(np.full(SHAPE, 100.0, dtype=np.float32), unit="adu", wcs=frame.ccd.wcs)
    wcs, shape = grid(frame, scale=2.0)
    keep = reproject_swarp(flat, wcs=wcs, shape=shape, conserve="surface_brightness")
    flux = reproject_swarp(flat, wcs=wcs, shape=shape, conserve="flux")
    centre = np.s_[40:60, 40:60]
    assert np.median(keep.data[centre]) == pytest.approx(100.0, rel=1e-3)
    assert np.median(flux.data[centre]) == pytest.approx(400.0, rel=1e-3)


def test_sip_frame_agrees_with_tpv(frame):
    """SIP is converted to TPV: stars of a SIP frame land where its WCS puts them."""
    sip_frame = datasets.make_frame(SHAPE, seed=3, sip=True, **SPARSE)
    ccd = CCDData(sip_frame.model - sip_frame.sky, unit="adu", wcs=sip_frame.ccd.wcs)
    target, shape = grid(frame)  # a plain TAN grid
    out = reproject_swarp(ccd, wcs=target, shape=shape)
    offsets = []
    for star in isolated(sip_frame):
        x, y = target.all_world2pix(star["ra"], star["dec"], 0)
        _, cx, cy = measure(out.data, x, y, radius=5)
        offsets.append(np.hypot(cx - x, cy - y))
    assert np.median(offsets) < 0.02
    assert np.max(offsets) < 0.05


def test_sip_to_tpv_agreement(frame):
    """The TPV fit agrees with the SIP WCS to better than 0.01 pixels over the frame."""
    from stdpipe_ccd._wcs import sip_to_tpv

    sip_frame = datasets.make_frame(SHAPE, seed=3, sip=True, overscan=0)
    wcs = sip_frame.ccd.wcs
    tpv = WCS(sip_to_tpv(wcs, SHAPE))
    x, y = np.meshgrid(np.linspace(0, SHAPE[1] - 1, 50), np.linspace(0, SHAPE[0] - 1, 50))
    ra, dec = wcs.all_pix2world(x, y, 0)
    bx, by = tpv.all_world2pix(ra, dec, 0)
    assert np.max(np.hypot(bx - x, by - y)) < 0.01
    # and the distortion was worth converting: SIP moves stars by pixels at the corners
    lx, ly = tpv.wcs_world2pix(*wcs.wcs_pix2world(x, y, 0), 0)
    assert np.max(np.hypot(lx - x, ly - y)) > 1.0


# --- weights and noise ---------------------------------------------------------------------


def noisy(frame):
    """The frame masked by make_mask, sky subtracted, with its noise as uncertainty."""
    masked = make_mask(frame.ccd, mask_bleed=True)
    ccd = CCDData(
        masked.data - frame.sky,
        unit="adu",
        meta=masked.meta,
        wcs=masked.wcs,
        mask=masked.mask,
        uncertainty=StdDevUncertainty(frame.noise),
    )
    return ccd


def test_nan_pixels_get_zero_weight():
    """SWarp reads NaN as 0 at full weight; masked as zero weight, no hole appears."""
    frame = datasets.make_frame(SHAPE, seed=4, cosmic_density=0, n_hot=0, overscan=0)
    ccd = noisy(frame)
    wcs, shape = grid(frame, shift=(0.5, 0.5))
    out = reproject_swarp(ccd, wcs=wcs, shape=shape)
    ys, xs = np.nonzero(frame.nonfinite_mask)
    around = np.s_[ys.min() - 8 : ys.max() + 9, xs.min() - 8 : xs.max() + 9]
    covered = ~out.mask[around]
    pulls = out.data[around][covered] * np.sqrt(out.uncertainty.array[around][covered])
    assert covered.sum() > 200
    assert np.abs(pulls).max() < 5  # a hole at 0 would sit 40 sigma below the sky
    assert out.mask[around].sum() >= frame.nonfinite_mask.sum()


def test_several_variance_maps_all_contribute():
    """Without explicit WEIGHT_THRESH, SWarp drops every variance-weighted image after the first."""
    frames = datasets.make_dither_set(
        3, SHAPE, seed=5, cosmic_density=0, n_hot=0, overscan=0, max_offset=2.0, max_rotation=0.0
    )
    inputs = [noisy(f) for f in frames]
    target, shape = grid(frames[0])
    one = reproject_swarp(inputs[0], wcs=target, shape=shape)
    three = reproject_swarp(inputs, wcs=target, shape=shape)
    centre = np.s_[200:300, 200:300]
    expected = sum(np.median(1 / f.noise[centre] ** 2) for f in frames)
    assert np.median(three.uncertainty.array[centre]) == pytest.approx(expected, rel=0.05)
    assert np.median(three.uncertainty.array[centre]) > 2.5 * np.median(
        one.uncertainty.array[centre]
    )


@functools.lru_cache(maxsize=2)
def dithered_stack(cosmic_density):
    """Eight dithered frames with their rays masked, stacked: (frames, target WCS, coadd)."""
    frames = datasets.make_dither_set(
        8, SHAPE, seed=6, n_hot=0, overscan=0, cosmic_density=cosmic_density, star_density=60.0
    )
    inputs = []
    for f in frames:
        ccd = noisy(f)
        ccd.mask = ccd.mask | (f.cosmic_label > 0)  # the rays, masked
        inputs.append(ccd)
    target, shape = grid(frames[0])
    return frames, target, reproject_swarp(inputs, wcs=target, shape=shape)


@pytest.mark.parametrize("cosmic_density", [0.0, 150.0])
def test_uncertainty_is_honest_on_apertures(cosmic_density):
    """Aperture sums of (coadd - truth) scatter as the inverse-variance map predicts."""
    frames, target, out = dithered_stack(cosmic_density)
    stars_x, stars_y = target.all_world2pix(frames[0].stars["ra"], frames[0].stars["dec"], 0)
    radius = 5
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = np.hypot(xx, yy) <= radius
    pulls = []
    rng = np.random.default_rng(0)
    for x, y in rng.uniform(30, SHAPE[0] - 30, (4000, 2)):
        if np.min(np.hypot(stars_x - x, stars_y - y)) < 25:
            continue
        ix, iy = int(x), int(y)
        cut = np.s_[iy - radius : iy + radius + 1, ix - radius : ix + radius + 1]
        if out.mask[cut][disk].any():
            continue
        total = out.data[cut][disk].sum()
        predicted = np.sqrt((1 / out.uncertainty.array[cut][disk]).sum())
        pulls.append(total / predicted)
    assert len(pulls) > 150
    assert np.std(pulls) == pytest.approx(1.0, abs=0.1)


def test_masked_rays_leave_no_trace():
    """No pixel a masked ray fell on stands above 4.5 sigma in the stack, few above 3."""
    frames, target, out = dithered_stack(150.0)
    shape = out.shape
    stars_x, stars_y = target.all_world2pix(frames[0].stars["ra"], frames[0].stars["dec"], 0)
    residual = np.where(out.mask, 0, np.nan_to_num(out.data) * np.sqrt(out.uncertainty.array))
    ray_pixels = np.zeros(shape, bool)
    for f in frames:
        ys, xs = np.nonzero(f.cosmic_label)
        ra, dec = f.ccd.wcs.all_pix2world(xs, ys, 0)
        px, py = target.all_world2pix(ra, dec, 0)
        keep = (px > 0) & (py > 0) & (px < shape[1] - 1) & (py < shape[0] - 1)
        ray_pixels[np.round(py[keep]).astype(int), np.round(px[keep]).astype(int)] = True
    far_from_stars = np.ones(shape, bool)
    for x, y in zip(stars_x, stars_y):
        if 0 <= x < shape[1] and 0 <= y < shape[0]:
            box = np.s_[max(int(y) - 12, 0) : int(y) + 13, max(int(x) - 12, 0) : int(x) + 13]
            far_from_stars[box] = False
    checked = residual[ray_pixels & far_from_stars]
    assert checked.size > 500
    assert np.abs(checked).max() < 4.5
    assert (checked > 3).mean() < 0.005


# --- effective gain ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("combine", "factor"),
    # the median of 3 normal values has 1.346 times the variance of their mean
    [("sum", 1.0), ("average", 3.0), ("median", 3 / 1.346), ("weighted", 3.0)],
)
def test_effective_gain(combine, factor):
    frames = datasets.make_dither_set(
        3,
        (128, 128),
        seed=7,
        cosmic_density=0,
        n_hot=0,
        overscan=0,
        sky=1000.0,
        max_offset=1.0,
        max_rotation=0.0,
    )
    out = reproject_swarp([f.ccd for f in frames], combine=combine)
    gain = datasets.GAIN * factor
    assert out.meta["GAIN"] == pytest.approx(gain, rel=0.02)
    assert out.meta["NCOMBINE"] == 3
    level = datasets.SATURATE * (3 if combine == "sum" else 1)
    assert out.meta["SATURATE"] == pytest.approx(level)
    if combine == "median":
        assert out.meta["SWGAIN"] != pytest.approx(gain, rel=0.02)  # SWarp's own is not it


# --- inputs -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_frame():
    return datasets.make_frame((128, 160), seed=8, n_hot=0, overscan=0)


@pytest.fixture
def frame_file(small_frame, tmp_path):
    path = tmp_path / "light.fits"
    small_frame.ccd.write(path)
    return path


@pytest.mark.parametrize(
    "kind",
    ["CCDData", "str", "Path", "array+Header", "array+WCS", "collection", "big-endian CCDData"],
)
def test_input_kinds_agree(small_frame, frame_file, kind):
    ccd = small_frame.ccd
    wcs, shape = ccd.wcs, ccd.shape
    inputs = {
        "CCDData": ccd,
        "str": str(frame_file),
        "Path": frame_file,
        "array+Header": (ccd.data, fits.Header(ccd.meta)),
        "array+WCS": (ccd.data, ccd.wcs),
        "collection": ImageFileCollection(frame_file.parent),
        "big-endian CCDData": CCDData.read(frame_file),
    }
    reference = reproject_swarp(ccd, wcs=wcs, shape=shape)
    out = reproject_swarp(inputs[kind], wcs=wcs, shape=shape)
    assert out.data.dtype.isnative
    both = ~out.mask & ~reference.mask
    assert both.mean() > 0.9
    np.testing.assert_allclose(out.data[both], reference.data[both], rtol=1e-5, atol=1e-3)
    assert out.unit == u.adu


def test_file_input_is_not_copied(frame_file, tmp_path):
    """A FITS path goes to SWarp as the file itself (no pixel copy in the work directory)."""
    with conf.set_temp("tmpdir", str(tmp_path / "work")):
        (tmp_path / "work").mkdir()
        reproject_swarp(frame_file, keep_workdir=True)
    (workdir,) = (tmp_path / "work").iterdir()
    image = workdir / "in0000.fits"
    assert image.is_symlink()
    assert image.resolve() == frame_file.resolve()


def test_units_must_agree(small_frame):
    other = small_frame.ccd.copy()
    other.unit = u.electron
    with pytest.raises(u.UnitsError, match="different units"):
        reproject_swarp([small_frame.ccd, other])


def test_input_without_wcs():
    with pytest.raises(ValueError, match="has no celestial WCS"):
        reproject_swarp(CCDData(np.zeros((10, 10)), unit="adu"))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"combine": "mean"}, "combine='mean' is not one of"),
        ({"resampling": "cubic"}, "resampling='cubic' is not one of"),
        ({"conserve": "energy"}, "conserve='energy' is not one of"),
        ({"extra": {"GAIN": 2.0}}, "SWarp does not know: \\['GAIN'\\]"),
        ({"extra": {"imageout_name": "x.fits"}}, "may not set \\['IMAGEOUT_NAME'\\]"),
        ({"combine": "and"}, "combine='and' is not one of"),
    ],
)
def test_bad_options(small_frame, options, match):
    with pytest.raises(ValueError, match=match):
        reproject_swarp(small_frame.ccd, **options)


def test_extra_parameters_reach_swarp(small_frame):
    frames = [small_frame.ccd, small_frame.ccd]
    out = reproject_swarp(frames, combine="clipped", extra={"clip_sigma": 2.5})
    assert "SWarp CLIP_SIGMA 2.5" in "".join(out.meta["HISTORY"])
    # the version, from the banner of the run itself
    version = subprocess.run([str(find_swarp()), "-v"], capture_output=True, text=True).stdout
    assert out.meta["SWARPVER"] in version
    assert f"SWarp {out.meta['SWARPVER']}" in "".join(out.meta["HISTORY"])


def test_input_never_modified(small_frame):
    ccd = small_frame.ccd.copy()
    ccd.mask = np.zeros(ccd.shape, bool)
    ccd.mask[5:8, 5:8] = True
    before = ccd.data.copy(), ccd.mask.copy(), ccd.meta.copy()
    reproject_swarp(ccd)
    np.testing.assert_array_equal(ccd.data, before[0])
    np.testing.assert_array_equal(ccd.mask, before[1])
    assert ccd.meta == before[2]


# --- the binary and its failures -----------------------------------------------------------------


def test_find_swarp_on_path():
    assert find_swarp().name in ("swarp", "SWarp")


def test_find_swarp_missing(monkeypatch):
    monkeypatch.setenv("PATH", "")
    with (
        conf.set_temp("swarp_path", ""),
        pytest.raises(SwarpNotFoundError, match="apt-get install swarp"),
    ):
        find_swarp()
    with pytest.raises(SwarpNotFoundError, match="not an executable SWarp"):
        find_swarp("/nonexistent/swarp")


def fake_swarp(tmp_path, run_body):
    """An executable that answers -v and -dd like SWarp, then runs ``run_body``."""
    path = tmp_path / "fake-swarp"
    path.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-v" ]; then echo "SWarp version 0.0-fake"; exit 0; fi\n'
        'if [ "$1" = "-dd" ]; then echo "IMAGEOUT_NAME coadd.fits"; exit 0; fi\n' + run_body + "\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.mark.parametrize(
    ("body", "options", "match"),
    [
        ('echo "*Error*: cannot open in0000.fits" >&2; exit 1', {}, "cannot open in0000.fits"),
        ("exit 0", {}, "SWarp wrote no"),
        ("sleep 30", {"timeout": 1}, "did not finish within 1 s"),
    ],
)
def test_failures_raise_and_clean_up(small_frame, tmp_path, body, options, match):
    workdir = tmp_path / "work"
    workdir.mkdir()
    binary = fake_swarp(tmp_path, body)
    with conf.set_temp("tmpdir", str(workdir)), pytest.raises(SwarpError, match=match) as info:
        reproject_swarp(small_frame.ccd, swarp_path=binary, **options)
    assert info.value.command[0] == str(binary)
    assert list(workdir.iterdir()) == []  # nothing left behind


def test_timeout_while_showing_progress(small_frame, tmp_path, capsys):
    """With progress shown, a hung SWarp is still killed at the timeout, its output kept."""
    from stdpipe_ccd import coadd

    workdir = tmp_path / "work"
    workdir.mkdir()
    binary = fake_swarp(tmp_path, 'printf "> Resampling in0000.fits ...\\n" >&2; sleep 30')
    with (
        conf.set_temp("tmpdir", str(workdir)),
        pytest.raises(SwarpError, match="within 1 s") as info,
    ):
        coadd(small_frame.ccd, method="swarp", swarp_path=binary, timeout=1, progress=True)
    assert "Resampling in0000.fits" in info.value.output_tail
    shown = capsys.readouterr().err
    assert "Resampling in0000.fits" in shown
    assert shown.endswith("killed after 1 s\x1b[K\n")  # the line is ended, not left open
    assert list(workdir.iterdir()) == []


def test_interrupt_cleans_up(small_frame, tmp_path, default_stop_signals):
    workdir = tmp_path / "work"
    workdir.mkdir()
    # Ctrl-C while SWarp runs; the pause lets Popen return first, since a signal
    # inside Popen's own start-up leaves a child that no caller can reach
    binary = fake_swarp(tmp_path, "sleep 0.5; kill -INT $PPID; sleep 10")
    with conf.set_temp("tmpdir", str(workdir)), pytest.raises(KeyboardInterrupt):
        reproject_swarp(small_frame.ccd, swarp_path=binary)
    assert list(workdir.iterdir()) == []


def test_keep_workdir(small_frame, tmp_path):
    with conf.set_temp("tmpdir", str(tmp_path)):
        reproject_swarp(small_frame.ccd, keep_workdir=True)
    kept = list(tmp_path.iterdir())
    assert len(kept) == 1
    assert (kept[0] / "coadd.fits").exists()


def test_current_directory_cannot_interfere(small_frame, tmp_path, monkeypatch):
    """A default.swarp in the current directory changes nothing, and nothing is written there."""
    reference = reproject_swarp([small_frame.ccd, small_frame.ccd], combine="average")
    monkeypatch.chdir(tmp_path)
    Path("default.swarp").write_text("COMBINE_TYPE SUM\nRESAMPLING_TYPE NEAREST\n")
    out = reproject_swarp([small_frame.ccd, small_frame.ccd], combine="average")
    np.testing.assert_array_equal(np.nan_to_num(out.data), np.nan_to_num(reference.data))
    assert sorted(os.listdir(tmp_path)) == ["default.swarp"]


def test_threads_do_not_interfere(small_frame):
    expected = reproject_swarp(small_frame.ccd)
    results = [None] * 4

    def work(i):
        results[i] = reproject_swarp(small_frame.ccd)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        np.testing.assert_array_equal(np.nan_to_num(result.data), np.nan_to_num(expected.data))


# --- flags ------------------------------------------------------------------------------------


def sparse_flags(seed=1, n=300, dtype=np.uint16):
    rng = np.random.default_rng(seed)
    flags = np.zeros(SHAPE, dtype)
    ys, xs = rng.integers(20, SHAPE[0] - 20, (2, n))
    bits = rng.choice([1, 2, 4, 8, 32, 256], n).astype(dtype)
    flags[ys, xs] |= bits
    return flags, ys, xs, bits


@pytest.mark.parametrize("rotation", [0.0, 15.0])
def test_flags_keep_every_bit(frame, rotation):
    """Reprojecting one flag image keeps every bit set inside the footprint."""
    flags, ys, xs, bits = sparse_flags()
    ccd = CCDData(flags, unit="", wcs=frame.ccd.wcs)
    wcs, shape = grid(frame, rotation=rotation, shift=(0.3, 0.2))
    out = reproject_swarp(ccd, wcs=wcs, shape=shape, is_flags=True)
    assert out.data.dtype == np.uint16
    assert out.uncertainty is None
    px, py = wcs.all_world2pix(*frame.ccd.wcs.all_pix2world(xs, ys, 0), 0)
    ix, iy = np.round(px).astype(int), np.round(py).astype(int)
    inside = (ix >= 0) & (iy >= 0) & (ix < shape[1]) & (iy < shape[0])
    assert inside.sum() > 250
    kept = out.data[iy[inside], ix[inside]] & bits[inside]
    np.testing.assert_array_equal(kept, bits[inside])


def test_flags_and_or(frame):
    """AND keeps only flags common to all overlapping frames; OR keeps any frame's."""
    wcs = frame.ccd.wcs
    shifted = wcs.deepcopy()
    shifted.wcs.crpix = shifted.wcs.crpix - [100, 0]  # frame two covers x >= 100 of frame one
    one = np.zeros(SHAPE, np.uint16)
    two = np.zeros(SHAPE, np.uint16)
    one[200, 300] = 1 | 4  # both frames cover it; only bit 4 is common
    two[200, 200] = 4 | 8  # the same sky pixel in frame two
    one[300, 50] = 2  # only frame one covers it
    inputs = [CCDData(one, unit="", wcs=wcs), CCDData(two, unit="", wcs=shifted)]
    both = reproject_swarp(inputs, wcs=wcs, shape=SHAPE, is_flags=True)
    union = reproject_swarp(inputs, wcs=wcs, shape=SHAPE, is_flags=True, combine="or")
    assert both.data[200, 300] == 4
    assert union.data[200, 300] == 1 | 4 | 8
    assert both.data[300, 50] == 2  # one frame only: its flags survive AND
    assert union.data[300, 50] == 2


def test_boolean_masks(frame):
    mask = np.zeros(SHAPE, bool)
    mask[100:110, 200:230] = True
    out = reproject_swarp(
        CCDData(mask, unit="", wcs=frame.ccd.wcs), wcs=frame.ccd.wcs, shape=SHAPE, is_flags=True
    )
    assert out.data.dtype == bool
    np.testing.assert_array_equal(out.data, mask)


def test_bzero_scaled_flags_file(frame, tmp_path):
    """uint16 flags are stored with BZERO = 32768; they must come back with true values."""
    flags, *_ = sparse_flags(dtype=np.uint16)
    flags[10, 10] = 40000
    path = tmp_path / "flags.fits"
    CCDData(flags, unit="", wcs=frame.ccd.wcs).write(path)
    assert fits.getheader(path)["BZERO"] == 32768
    out = reproject_swarp(path, wcs=frame.ccd.wcs, shape=SHAPE, is_flags=True)
    np.testing.assert_array_equal(out.data, flags)
    assert out.data.dtype.isnative


def test_flags_need_integers(frame):
    with pytest.raises(ValueError, match="needs integer or boolean images"):
        reproject_swarp(frame.ccd, is_flags=True)


# --- per-frame resampling ---------------------------------------------------------------------


def test_resample_each_frame_on_the_full_grid(frame):
    frames = datasets.make_dither_set(
        2, SHAPE, seed=9, cosmic_density=0, n_hot=0, overscan=0, max_offset=40.0
    )
    target, shape = grid(frames[0])
    resampled = resample_swarp([f.ccd for f in frames], wcs=target, shape=shape)
    assert len(resampled) == 2
    for f, single in zip(frames, resampled):
        alone = reproject_swarp(f.ccd, wcs=target, shape=shape)
        assert single.shape == shape
        np.testing.assert_array_equal(single.mask, alone.mask)
        both = ~single.mask
        np.testing.assert_allclose(single.data[both], alone.data[both], rtol=1e-5, atol=1e-2)
        np.testing.assert_allclose(
            single.uncertainty.array[both], alone.uncertainty.array[both], rtol=1e-4
        )


# --- not degrading SWarp ----------------------------------------------------------------------


def test_noiseless_stack_accuracy():
    """A stack of noiseless dithered frames: flux within 2e-4 of the input's, centroids 0.005 px."""
    frames = datasets.make_dither_set(
        8, SHAPE, seed=10, overscan=0, **{k: v for k, v in SPARSE.items() if k != "overscan"}
    )
    inputs = [CCDData(f.model - f.sky, unit="adu", wcs=f.ccd.wcs) for f in frames]
    target, shape = grid(frames[0])
    out = reproject_swarp(inputs, wcs=target, shape=shape, combine="average")
    ratios, offsets = [], []
    for star in isolated(frames[0]):
        x, y = target.all_world2pix(star["ra"], star["dec"], 0)
        own, _, _ = measure(
            inputs[0].data, *frames[0].ccd.wcs.all_world2pix(star["ra"], star["dec"], 0), 20
        )
        total, _, _ = measure(out.data, x, y, 20)
        _, cx, cy = measure(out.data, x, y, 12)
        ratios.append(total / own)
        offsets.append(np.hypot(cx - x, cy - y))
    assert np.median(np.abs(np.array(ratios) - 1)) < 2e-4
    assert np.median(offsets) < 0.005


def test_same_as_raw_swarp_on_files(frame, tmp_path):
    """The wrapper gives what the SWarp command line gives on the same file."""
    path = tmp_path / "frame.fits"
    frame.ccd.write(path)
    wcs, shape = grid(frame, rotation=7.0, shift=(0.25, 0.4))
    header = fits.Header([("NAXIS", 2), ("NAXIS1", shape[1]), ("NAXIS2", shape[0])])
    header.update(wcs.to_header())
    ours = reproject_swarp(path, header=header, use_nans=False)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "coadd.head").write_text(header.tostring(sep="\n", endcard=True, padding=False))
    (raw / "empty.swarp").write_text("")
    subprocess.run(
        [
            str(find_swarp()),
            str(path),
            "-c",
            "empty.swarp",
            "-COMBINE_TYPE",
            "WEIGHTED",
            "-SUBTRACT_BACK",
            "N",
            "-WRITE_XML",
            "N",
            "-NTHREADS",
            "1",
            "-RESCALE_WEIGHTS",
            "N",
        ],
        cwd=raw,
        check=True,
        capture_output=True,
    )
    expected = fits.getdata(raw / "coadd.fits")
    np.testing.assert_allclose(ours.data, expected, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(
        ours.uncertainty.array, fits.getdata(raw / "coadd.weight.fits"), rtol=1e-5
    )


def test_file_and_memory_weights_agree(small_frame, frame_file):
    """Without uncertainties, weights are measured 1/variance (for files, by SWarp itself,
    which overestimates the noise of a crowded frame), and a mixed stack adds them.
    SWarp's BACKGROUND weight type would give 1/sigma instead."""
    ccd = small_frame.ccd
    from_file = reproject_swarp(frame_file, wcs=ccd.wcs, shape=ccd.shape)
    in_memory = reproject_swarp(ccd, wcs=ccd.wcs, shape=ccd.shape)
    mixed = reproject_swarp([frame_file, ccd], wcs=ccd.wcs, shape=ccd.shape)
    centre = np.s_[40:90, 50:110]
    sigma = np.median(small_frame.noise[centre])
    file_weight = np.median(from_file.uncertainty.array[centre])
    memory_weight = np.median(in_memory.uncertainty.array[centre])
    assert 1 / np.sqrt(memory_weight) == pytest.approx(sigma, rel=0.08)
    assert 1 / np.sqrt(file_weight) == pytest.approx(sigma, rel=0.25)
    assert np.median(mixed.uncertainty.array[centre]) == pytest.approx(
        file_weight + memory_weight, rel=0.02
    )


def test_flux_scale_keyword(small_frame):
    """FSCALE-like keywords scale each input before combining."""
    ccd = small_frame.ccd.copy()
    ccd.meta["FLXSCALE"] = 2.0
    plain = reproject_swarp(small_frame.ccd)
    scaled = reproject_swarp(ccd, flux_scale_keyword="FLXSCALE")
    both = ~plain.mask & ~scaled.mask
    np.testing.assert_allclose(scaled.data[both], 2 * plain.data[both], rtol=1e-5)
    np.testing.assert_allclose(
        scaled.uncertainty.array[both], plain.uncertainty.array[both] / 4, rtol=1e-4
    )


def test_bzero_scaled_image_file(small_frame, tmp_path):
    """A raw uint16 frame stored with BZERO comes back with its true values."""
    raw = np.clip(np.nan_to_num(small_frame.ccd.data), 0, 65535).astype(np.uint16)
    raw[5, 5] = 65000
    path = tmp_path / "raw.fits"
    CCDData(raw, unit="adu", wcs=small_frame.ccd.wcs).write(path)
    assert fits.getheader(path)["BZERO"] == 32768
    out = reproject_swarp(path, wcs=small_frame.ccd.wcs, shape=raw.shape)
    assert out.data.dtype == np.float32
    assert out.data[5, 5] == pytest.approx(65000, rel=1e-6)
    np.testing.assert_allclose(out.data[20:-20, 20:-20], raw[20:-20, 20:-20], rtol=1e-6, atol=1e-3)


def _run_in_process(seed):
    frame = datasets.make_frame((128, 160), seed=seed, n_hot=0, overscan=0)
    return np.nan_to_num(reproject_swarp(frame.ccd).data)


def test_processes_do_not_interfere():
    import concurrent.futures
    import multiprocessing

    expected = [_run_in_process(seed) for seed in (1, 2, 3)]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(3, mp_context=context) as pool:
        results = list(pool.map(_run_in_process, (1, 2, 3)))
    for result, reference in zip(results, expected):
        np.testing.assert_array_equal(result, reference)


def test_coadd_progress_shows_swarp_stages(capsys):
    """``progress=True`` rewrites one line of stderr with the time and SWarp's stage."""
    from stdpipe_ccd import coadd

    # frames large enough that SWarp runs for several reports (4 a second) on a fast machine
    frames = datasets.make_dither_set(3, (2048, 2048), seed=2, cosmic_density=0)
    coadd([f.ccd for f in frames], method="swarp", progress=True)
    err = capsys.readouterr().err
    updates = err.split("\r")[1:]
    assert updates[-1].endswith(" s  done\x1b[K\n")
    seconds = [float(update.split()[1]) for update in updates]
    assert seconds == sorted(seconds)
    stages = {update.split(" s  ", 1)[1].split("\x1b")[0] for update in updates[:-1]}
    # the stages SWarp prints as it goes, caught while it ran
    assert any(
        stage.startswith(("Resampling", "Co-adding", "Loading", "Reading")) for stage in stages
    )
    coadd([f.ccd for f in frames], method="swarp")
    assert capsys.readouterr().err == ""
