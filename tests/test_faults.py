"""Real instrument files and faults: each gives the right product or a clear, early error."""

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData

from stdpipe_ccd import (
    StdpipeCCDWarning,
    SwarpNotFoundError,
    coadd,
    conf,
    datasets,
    reproject_swarp,
)
from stdpipe_ccd.io import read_fits, write_fits

SHAPE = (256, 256)
SPARSE = {"cosmic_density": 0, "n_hot": 0, "nan_patch": False, "overscan": 0}


@pytest.fixture(scope="module")
def frames():
    return datasets.make_dither_set(2, SHAPE, seed=5, max_offset=5.0, **SPARSE)


def image_hdu(frame, name, **cards):
    header = frame.ccd.wcs.to_header()
    header.update(cards)
    return fits.ImageHDU(frame.ccd.data.astype(np.float32), header=header, name=name)


def offset(image, reference):
    """Whole-pixel shift (dx, dy) of ``image`` against ``reference``, by cross-correlation."""
    a, b = (np.nan_to_num(x - np.nanmedian(x)) for x in (reference, image))
    correlation = np.fft.irfft2(np.fft.rfft2(b) * np.conj(np.fft.rfft2(a)), s=a.shape)
    dy, dx = np.unravel_index(np.argmax(correlation), a.shape)
    ny, nx = a.shape
    return np.array([(dx + nx // 2) % nx - nx // 2, (dy + ny // 2) % ny - ny // 2])


# --- files as instruments write them ------------------------------------------------------


@pytest.mark.requires_swarp
@pytest.mark.parametrize("method", ["swarp", "interp"])
def test_every_ccd_of_a_multi_extension_file(frames, tmp_path, method):
    """Two CCDs 300 pixels apart in one file: both are stacked, or the one asked for."""
    other = frames[1].ccd.wcs.deepcopy()
    other.wcs.crpix[0] -= 300
    hdus = [fits.PrimaryHDU(header=fits.Header({"GAIN": 1.6, "EXPTIME": 30.0}))]
    hdus.append(image_hdu(frames[0], "CCD1"))
    header = other.to_header()
    hdus.append(fits.ImageHDU(frames[1].ccd.data.astype(np.float32), header=header, name="CCD2"))
    path = tmp_path / "mosaic.fits"
    fits.HDUList(hdus).writeto(path)
    both = coadd(path, method=method)
    assert both.meta["NCOMBINE"] == 2
    assert both.shape[1] > SHAPE[1] + 250  # the grid spans both CCDs
    assert both.meta["GAIN"] == pytest.approx(2 * 1.6, rel=0.05)  # inherited from the primary
    assert both.meta["EXPTIME"] == 30.0
    one = coadd((path, "CCD2"), method=method)
    assert one.meta["NCOMBINE"] == 1
    assert one.shape == pytest.approx(SHAPE, abs=2)
    assert f"{path}[2]" in "".join(one.meta["HISTORY"])


@pytest.mark.requires_swarp
def test_compressed_and_hst_style_files(frames, tmp_path):
    """A tile-compressed image, and an empty primary with SCI, ERR and DQ extensions."""
    packed = tmp_path / "frame.fits.fz"
    header = frames[0].ccd.wcs.to_header()
    fits.HDUList(
        [fits.PrimaryHDU(), fits.CompImageHDU(frames[0].ccd.data.astype(np.float32), header)]
    ).writeto(packed)
    out = reproject_swarp(packed)
    assert np.isfinite(out.data).mean() > 0.9
    hst = tmp_path / "hst.fits"
    electrons = frames[1].ccd.data.astype(np.float32) * datasets.GAIN
    fits.HDUList(
        [
            fits.PrimaryHDU(header=fits.Header({"EXPTIME": 100.0})),
            fits.ImageHDU(electrons, header=frames[1].ccd.wcs.to_header(), name="SCI"),
            fits.ImageHDU(np.ones(SHAPE, np.float32), name="ERR"),
            fits.ImageHDU(np.zeros(SHAPE, np.int16), name="DQ"),
        ]
    ).writeto(hst)
    hst_header = fits.getheader(hst, "SCI")
    hst_header["BUNIT"] = "electron"
    fits.update(hst, electrons, hst_header, "SCI")
    with pytest.warns(StdpipeCCDWarning, match="extensions DQ, ERR are not used"):
        out = coadd(hst, method="swarp")
    assert out.unit == u.electron
    assert out.meta["GAIN"] == 1.0
    assert out.meta["EXPTIME"] == 100.0


@pytest.mark.requires_swarp
@pytest.mark.parametrize("method", ["swarp", "interp"])
def test_scamp_head_files_are_applied(frames, tmp_path, method):
    path = tmp_path / "frame.fits"
    frames[0].ccd.write(path)
    wcs = frames[0].ccd.wcs
    head = wcs.to_header()
    head["CRVAL2"] = wcs.wcs.crval[1] + 10 / 3600  # a solution 10 arcsec to the north
    (tmp_path / "frame.head").write_text(head.tostring(sep="\n", endcard=True, padding=False))
    grid = {"wcs": wcs, "shape": SHAPE, "method": method}
    plain = coadd(path, header_suffix=None, **grid)
    solved = coadd(path, **grid)
    # every pixel 10 arcsec further north than thought: the stars move north (up) on the grid
    shift = offset(solved.data, plain.data)
    np.testing.assert_array_equal(shift, [0, round(10 / datasets.PIXEL_SCALE)])
    assert "with frame.head" in " ".join(solved.meta["HISTORY"])
    assert "frame.head" not in " ".join(plain.meta["HISTORY"])


@pytest.mark.requires_swarp
def test_non_ascii_path(frames, tmp_path):
    path = tmp_path / "ночь_données.fits"
    frames[0].ccd.write(path)
    out = coadd(path)
    history = "".join(out.meta["HISTORY"])
    assert "\\u043d\\u043e\\u0447\\u044c_donn\\xe9es.fits" in history
    write_fits(out, tmp_path / "coadd.fits")  # a FITS-valid header


@pytest.mark.requires_swarp
@pytest.mark.parametrize("method", ["swarp", "interp"])
def test_rates_have_the_gain_of_their_counts(frames, method):
    """ADU/s frames of 50 s with GAIN 1.6 e-/ADU hold 80 e- per unit."""
    rates = []
    for frame in frames:
        meta = fits.Header({"GAIN": 1.6, "EXPTIME": 50.0})
        data = frame.ccd.data / 50.0
        rates.append(CCDData(data, unit=u.adu / u.s, wcs=frame.ccd.wcs, meta=meta))
    out = coadd(rates, method=method, combine="sum")
    assert out.meta["GAIN"] == pytest.approx(80.0)
    electrons = [
        CCDData(r.data * 1.6, unit=u.electron / u.s, wcs=r.wcs, meta=r.meta) for r in rates
    ]
    assert coadd(electrons, method=method, combine="sum").meta["GAIN"] == pytest.approx(50.0)
    rates[0].meta.remove("EXPTIME")
    with pytest.raises(ValueError, match="no EXPTIME for its gain"):
        coadd(rates, method=method)


# --- options refused before any work ------------------------------------------------------


@pytest.fixture
def fake_swarp(tmp_path):
    """A SWarp that leaves a mark when it is run for a coadd."""
    mark = tmp_path / "ran"
    path = tmp_path / "fake-swarp"
    path.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-v" ]; then echo "SWarp version 0.0-fake"; exit 0; fi\n'
        'if [ "$1" = "-dd" ]; then echo "IMAGEOUT_NAME coadd.fits"; exit 0; fi\n'
        f"touch {mark}; exit 1\n"
    )
    path.chmod(0o755)
    return path, mark


@pytest.mark.parametrize(
    ("change", "options", "match"),
    [
        ({"GAIN": "abc"}, {}, r"GAIN = 'abc' is not a number"),
        ({"SATURATE": True}, {}, r"SATURATE = True is not a number"),
        ({}, {"extra": {"COMBINE_TYPE": "MEDIAN"}}, r"may not set \['COMBINE_TYPE'\]"),
        ({}, {"extra": {"PIXEL_SCALE": 0.3}}, r"give the target grid as wcs"),
        ({}, {"shape": (0, 0), "wcs": "frame"}, "is empty"),
        ({}, {"shape": (10**6, 10**6), "wcs": "frame"}, "max_output_pixels"),
        ({}, {"weights": [1.0, np.nan]}, "weights must be"),
    ],
)
def test_bad_input_is_refused_before_swarp_runs(frames, fake_swarp, change, options, match):
    binary, mark = fake_swarp
    inputs = [frame.ccd.copy() for frame in frames]
    inputs[1].meta.update(change)
    if options.get("wcs") == "frame":
        options = {**options, "wcs": frames[0].ccd.wcs}
    with pytest.raises(ValueError, match=match):
        reproject_swarp(inputs, swarp_path=binary, **options)
    assert not mark.exists()


def test_unreadable_files_are_named(frames, tmp_path):
    truncated = tmp_path / "truncated.fits"
    frames[0].ccd.write(truncated)
    truncated.write_bytes(truncated.read_bytes()[:10000])
    with pytest.raises(ValueError, match="cannot read .*truncated.fits"):
        coadd(truncated, method="interp")
    frames[0].ccd.write(tmp_path / "good.fits")
    with pytest.raises(ValueError, match=r"good.fits has no HDU 'SCI'"):
        coadd((tmp_path / "good.fits", "SCI"), method="interp")


def test_a_named_swarp_that_is_missing_does_not_fall_back(frames):
    with pytest.raises(SwarpNotFoundError, match="/nope/SWarp"):
        coadd(frames[0].ccd, swarp_path="/nope/SWarp")
    with conf.set_temp("swarp_path", "/nope/SWarp"), pytest.raises(SwarpNotFoundError):
        coadd(frames[0].ccd)


@pytest.mark.requires_swarp
@pytest.mark.parametrize("method", ["swarp", "interp"])
def test_empty_results_are_said(frames, method):
    far = frames[0].ccd.wcs.deepcopy()
    far.wcs.crval = [(far.wcs.crval[0] + 140) % 360, -far.wcs.crval[1]]
    with pytest.warns(StdpipeCCDWarning, match="no input reaches the target grid"):
        out = coadd(frames[0].ccd, method=method, wcs=far, shape=SHAPE)
    assert out.mask.all()
    flat = frames[1].ccd.copy()
    flat.data = np.zeros(SHAPE, np.float32)
    flat.uncertainty = None
    flat.mask = np.ones(SHAPE, bool)  # nothing usable
    with pytest.warns(StdpipeCCDWarning, match=r"CCDData #1 reach no pixel"):
        coadd([frames[0].ccd, flat], method=method)


# --- faults lose nothing ------------------------------------------------------------------


def _write_once(path, value, results):
    ccd = CCDData(np.full((64, 64), value, np.float32), unit="adu")
    try:
        write_fits(ccd, path)
        results.put(value)
    except FileExistsError:
        results.put(None)


def test_no_overwrite_holds_between_processes(tmp_path):
    context = multiprocessing.get_context("spawn")
    for trial in range(3):
        path = tmp_path / f"race{trial}.fits"
        results = context.Queue()
        workers = [
            context.Process(target=_write_once, args=(path, float(v), results)) for v in (1, 2)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        outcomes = [results.get(timeout=10) for _ in workers]
        winners = [v for v in outcomes if v is not None]
        assert len(winners) == 1  # exactly one wrote, the other was told
        assert read_fits(path).data[0, 0] == winners[0]
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.requires_swarp
@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_sigterm_kills_swarp_and_cleans_up(tmp_path, name, default_stop_signals):
    work = tmp_path / "work"
    work.mkdir()
    swarp = tmp_path / "slow-swarp"
    pid_file = tmp_path / "swarp.pid"
    swarp.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-v" ]; then echo "SWarp version 0.0-fake"; exit 0; fi\n'
        f"echo $$ > {pid_file}; exec sleep 60\n"
    )
    swarp.chmod(0o755)
    script = textwrap.dedent(
        f"""
        from stdpipe_ccd import conf, datasets, reproject_swarp
        frame = datasets.make_frame((64, 64), seed=1)
        with conf.set_temp("tmpdir", {str(work)!r}):
            reproject_swarp(frame.ccd, swarp_path={str(swarp)!r})
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], preexec_fn=default_stop_signals)
    for _ in range(600):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        time.sleep(0.05)
    else:
        process.kill()
        pytest.fail("the fake SWarp never started")
    process.send_signal(getattr(signal, name))
    assert process.wait(30) == 128 + getattr(signal, name)
    swarp_pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(swarp_pid, 0)  # SWarp is gone (killed and reaped)
    assert list(work.iterdir()) == []


@pytest.mark.requires_swarp
def test_mask_and_stack_a_multi_extension_night(frames, tmp_path):
    """Each CCD is masked into its own SCI/MASK/FLAGS set; the stack weighs by those masks."""
    from stdpipe_ccd import make_mask, mask_collection

    ccds = [frame.ccd.copy() for frame in frames]
    ccds[1].data[100:120, 100:120] = np.nan  # a hole that must stay out of the stack
    hdus = [fits.PrimaryHDU(header=fits.Header({"GAIN": 1.6, "SATURATE": 60000.0}))]
    for k, ccd in enumerate(ccds, start=1):
        hdus.append(fits.ImageHDU(ccd.data, header=ccd.wcs.to_header(), name=f"CCD{k}"))
    raw = tmp_path / "night" / "mosaic.fits"
    raw.parent.mkdir()
    fits.HDUList(hdus).writeto(raw)
    table = mask_collection([raw], tmp_path / "masked", progress=False, mask_bleed=True)
    assert list(table["status"]) == ["written"]
    output = tmp_path / "masked" / "mosaic.fits"
    for k, ccd in enumerate(ccds, start=1):
        back = read_fits(output, hdu=("SCI", k))
        alone = make_mask(
            CCDData(ccd.data, unit="adu", wcs=ccd.wcs, meta={"GAIN": 1.6, "SATURATE": 60000.0}),
            mask_bleed=True,
        )
        np.testing.assert_array_equal(back.mask, alone.mask)
        np.testing.assert_array_equal(back.flags, alone.flags)
    assert table["NONFINITE"][0] == 400
    again = mask_collection([raw], tmp_path / "masked", progress=False, mask_bleed=True)
    assert list(again["status"]) == ["skipped"]
    assert again["TOTAL"][0] == table["TOTAL"][0]
    stack = coadd(output, method="swarp")
    assert stack.meta["NCOMBINE"] == 2
    hole = ccds[1].wcs.pixel_to_world(110, 110)
    x, y = np.round(stack.wcs.world_to_pixel(hole)).astype(int)
    assert stack.count_map[y, x] == 1  # the masked hole of CCD 2 gave no weight there
    assert stack.count_map.max() == 2


def test_mask_an_hst_style_file(frames, tmp_path):
    """An empty primary with SCI, ERR and DQ: SCI is masked in its own unit, the rest named."""
    from stdpipe_ccd import mask_collection

    header = frames[0].ccd.wcs.to_header()
    header["BUNIT"] = "electron"
    path = tmp_path / "hst.fits"
    fits.HDUList(
        [
            fits.PrimaryHDU(header=fits.Header({"EXPTIME": 100.0})),
            fits.ImageHDU(frames[0].ccd.data * datasets.GAIN, header=header, name="SCI"),
            fits.ImageHDU(np.ones(SHAPE, np.float32), name="ERR"),
            fits.ImageHDU(np.zeros(SHAPE, np.int16), name="DQ"),
        ]
    ).writeto(path)
    with pytest.warns(StdpipeCCDWarning, match="extensions DQ, ERR are not used"):
        table = mask_collection([path], tmp_path / "out", progress=False, scheduler="synchronous")
    assert list(table["status"]) == ["written"]
    masked = read_fits(tmp_path / "out" / "hst.fits")
    assert masked.unit == u.electron
    assert masked.meta["EXPTIME"] == 100.0
