import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from astropy.io import fits

from stdpipe_ccd import MaskFlag, coadd, datasets
from stdpipe_ccd.cli import main
from stdpipe_ccd.io import read_fits, write_fits

SHAPE = (384, 384)


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """Two light frames and a dark in one folder, and a flat elsewhere."""
    folder = tmp_path_factory.mktemp("cli")
    frames = datasets.make_dither_set(2, SHAPE, seed=41, max_offset=8.0)
    for i, frame in enumerate(frames):
        frame.ccd.write(folder / f"light{i}.fits")
    dark = datasets.make_dark(SHAPE)
    dark.meta["IMAGETYP"] = "DARK"
    write_fits(dark, folder / "dark.fits")
    write_fits(datasets.make_flat(SHAPE), folder.parent / "flat.fits")
    return folder, frames


def test_help_reads_like_a_manual(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in ("mask", "coadd", "demo", "info"):
        assert name in text
    with pytest.raises(SystemExit):
        main(["mask", "--help"])
    text = capsys.readouterr().out
    assert "--cosmics" in text
    assert "(default: 10)" in text


def test_mask_rerun_with_other_options(night, tmp_path, capsys):
    folder, _ = night
    lights = [str(folder / f"light{i}.fits") for i in range(2)]
    out = str(tmp_path / "out")
    assert main(["mask", *lights, "-o", out]) == 0
    assert main(["mask", *lights, "-o", out]) == 0
    assert "0 of 2 frames masked" in capsys.readouterr().out.splitlines()[-1]
    assert main(["mask", *lights, "-o", out, "--bleed", "--no-overwrite-changed"]) == 1
    captured = capsys.readouterr()
    assert "2 failed" in captured.out
    assert "made from another input or other options" in captured.err
    assert main(["mask", *lights, "-o", out, "--bleed"]) == 0
    summary = capsys.readouterr().out.splitlines()[-1]
    assert "2 of 2 frames masked" in summary
    assert "(2 redone), 0 up to date" in summary


def test_mask_a_folder_with_a_filter(night, tmp_path, capsys):
    folder, frames = night
    status = main(
        [
            "mask",
            str(folder),
            "--filter",
            "imagetyp=light",
            "-o",
            str(tmp_path / "out"),
            "--cosmics",
            "--bleed",
            "--dark",
            str(folder / "dark.fits"),
            "--png",
            "--table",
            str(tmp_path / "table.ecsv"),
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert "2 of 2 frames masked" in out
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["light0.fits", "light0.png", "light1.fits", "light1.png"]
    for i, frame in enumerate(frames):
        ccd = read_fits(tmp_path / "out" / f"light{i}.fits")
        scores = datasets.score_cosmic_rays(frame, ccd.flags & MaskFlag.COSMIC_RAY, masked=ccd.mask)
        assert scores["recall_5sigma"] > 0.9
        assert np.count_nonzero(ccd.flags & MaskFlag.HOT) > 0
    assert (tmp_path / "table.ecsv").read_text().count("written") == 2


def test_mask_glob_and_options(night, tmp_path, capsys):
    folder, _ = night
    status = main(
        [
            "mask",
            str(folder / "light*.fits"),
            "-o",
            str(tmp_path),
            "--saturation",
            "30000",
            "--flat",
            str(folder.parent / "flat.fits"),
            "--flat-threshold",
            "0.8",
            "--scheduler",
            "synchronous",
        ]
    )
    assert status == 0
    ccd = read_fits(tmp_path / "light0.fits")
    assert np.array_equal(ccd.flags & MaskFlag.SATURATED != 0, ccd.data >= 30000)
    # --flat-threshold reaches make_mask: the vignetted corners below 0.8 are masked
    flat = fits.getdata(folder.parent / "flat.fits")
    low = flat / np.median(flat[flat > 0]) < 0.8
    assert low.sum() > 1000
    assert np.array_equal(ccd.flags & MaskFlag.LOW_RESPONSE != 0, low)
    assert "SATURATE" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["mask", "missing/*.fits", "-o", "out"], "no file matches missing/*.fits"),
        (["mask", "nowhere.fits", "-o", "out"], "nowhere.fits does not exist"),
        (["mask", "{folder}", "-o", "out", "--saturation", "high"], "--saturation must be"),
        (["mask", "{folder}", "-o", "out", "--filter", "imagetyp=bias"], "no frame matches"),
        (["mask", "{folder}", "-o", "{folder}"], "holds the inputs"),
        (
            ["coadd", "{folder}/light*.fits", "-o", "c.fits", "--method", "interp", "--swarp", "x"],
            "need --method swarp",
        ),
    ],
)
def test_bad_input_gives_one_line_and_status_1(
    night, tmp_path, capsys, monkeypatch, arguments, message
):
    folder, _ = night
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in folder.iterdir())
    status = main([a.format(folder=folder) for a in arguments])
    err = capsys.readouterr().err
    assert status == 1
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert sorted(p.name for p in folder.iterdir()) == before


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["mask", str(tmp_path / "nothing.fits"), "-o", str(tmp_path), "--debug"])


def test_bad_usage_is_status_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["coadd", "a.fits", "-o", "b.fits", "--tiles", "0x5"])
    assert exit_info.value.code == 2
    assert "NYxNX" in capsys.readouterr().err


def test_failed_frame_gives_status_1(night, tmp_path, capsys):
    folder, _ = night
    broken = tmp_path / "broken.fits"
    broken.write_text("not FITS")
    status = main(["mask", str(folder / "light0.fits"), str(broken), "-o", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert status == 1
    assert "1 of 2 frames masked" in out
    assert (tmp_path / "o" / "light0.fits").exists()


@pytest.mark.requires_swarp
def test_stack_matches_the_python_call(night, tmp_path, capsys):
    folder, _ = night
    lights = [str(folder / f"light{i}.fits") for i in range(2)]
    status = main(
        ["stack", *lights, "-o", str(tmp_path / "stack.fits"), "--png", "--combine", "average"]
    )
    assert status == 0
    assert "coadded 2 images of 2 files" in capsys.readouterr().out
    ours = read_fits(tmp_path / "stack.fits")
    direct = coadd(lights, method="swarp", combine="average")
    np.testing.assert_allclose(ours.data, direct.data, rtol=1e-6, equal_nan=True)
    assert ours.meta["GAIN"] == pytest.approx(2 * datasets.GAIN, rel=0.01)
    assert (tmp_path / "stack.png").stat().st_size > 10_000
    # a second run keeps the existing file
    assert main(["stack", *lights, "-o", str(tmp_path / "stack.fits")]) == 1
    assert "overwrite" in capsys.readouterr().err


@pytest.mark.requires_swarp
def test_coadd_onto_a_reference_in_tiles(night, tmp_path):
    folder, _ = night
    lights = [str(folder / f"light{i}.fits") for i in range(2)]
    status = main(
        [
            "coadd",
            *lights,
            "-o",
            str(tmp_path / "tiled.fits"),
            "--reference",
            lights[0],
            "--tiles",
            "200x150",
            "-j",
            "2",
        ]
    )
    assert status == 0
    header = fits.getheader(tmp_path / "tiled.fits")
    assert (header["NAXIS2"], header["NAXIS1"]) == SHAPE
    single = coadd(lights, method="swarp", header=fits.getheader(lights[0]))
    tiled = read_fits(tmp_path / "tiled.fits")
    both = ~single.mask
    np.testing.assert_allclose(tiled.data[both], single.data[both], rtol=1e-5)


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    swarp = shutil.which("SWarp") or shutil.which("swarp")
    assert (f"SWarp: {swarp}" in out) if swarp else ("SWarp: not found" in out)
    assert "astropy: " in out
    assert "nthreads = 0" in out


def test_demo(tmp_path, capsys):
    folder = tmp_path / "demo"
    status = main(["demo", "-o", str(folder), "--size", "384", "--frames", "2"])
    out = capsys.readouterr().out
    assert status == 0
    assert out.strip().splitlines()[-1] == f"products and pictures are in {folder.resolve()}"
    assert "cosmic rays found" in out
    assert (folder / "coadd.fits").exists()
    assert sorted(p.name for p in (folder / "png").iterdir()) == [
        "coadd.png",
        "light_00.png",
        "light_01.png",
    ]
    # the folder is not clobbered by a second run
    assert main(["demo", "-o", str(folder), "--size", "384", "--frames", "2"]) == 1
    assert "not empty" in capsys.readouterr().err


def test_demo_refuses_a_tiny_frame_and_makes_nothing(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "demo"), "--size", "10"]) == 1
    assert "--size must be at least 64" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_demo_without_swarp(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no SWarp on it
    assert main(["demo", "-o", str(tmp_path), "--size", "256", "--frames", "2"]) == 0
    assert "reproject_interp (SWarp was not found)" in capsys.readouterr().out


def test_console_script():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from stdpipe_ccd.cli import main; sys.exit(main())",
            "--version",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("stdpipe_ccd ")


def test_mask_a_raw_uint16_night(tmp_path, capsys):
    """Raw frames as a camera writes them (uint16 with BZERO) are masked, rays included."""
    folder = tmp_path / "raw"
    folder.mkdir()
    frames = datasets.make_dither_set(2, (256, 256), seed=7, max_offset=4.0)
    for i, frame in enumerate(frames):
        counts = np.clip(np.nan_to_num(frame.ccd.data, nan=0.0), 0, 65535).astype(np.uint16)
        fits.PrimaryHDU(counts, header=fits.Header(frame.ccd.meta)).writeto(folder / f"r{i}.fits")
        assert fits.getheader(folder / f"r{i}.fits")["BZERO"] == 32768
    status = main(["mask", str(folder / "r*.fits"), "-o", str(tmp_path / "out"), "--cosmics"])
    assert status == 0
    assert "2 of 2 frames masked" in capsys.readouterr().out
    for i, frame in enumerate(frames):
        ccd = read_fits(tmp_path / "out" / f"r{i}.fits")
        scores = datasets.score_cosmic_rays(frame, ccd.flags & MaskFlag.COSMIC_RAY, masked=ccd.mask)
        assert scores["recall_5sigma"] > 0.9
        assert scores["star_cores"] == 0


@pytest.mark.requires_swarp
def test_multi_extension_night_through_the_command(night, tmp_path, capsys):
    """Mask a two-CCD file, then stack it with and without a SCAMP .head file."""
    _, frames = night
    hdus = [fits.PrimaryHDU(header=fits.Header({"GAIN": 1.6, "SATURATE": 60000.0}))]
    for k, frame in enumerate(frames, start=1):
        hdus.append(fits.ImageHDU(frame.ccd.data, header=frame.ccd.wcs.to_header(), name=f"C{k}"))
    raw = tmp_path / "raw" / "mosaic.fits"
    raw.parent.mkdir()
    fits.HDUList(hdus).writeto(raw)
    masked = tmp_path / "masked"
    assert main(["mask", str(raw), "-o", str(masked), "--bleed", "--png"]) == 0
    assert "1 of 1 frames masked" in capsys.readouterr().out
    output = masked / "mosaic.fits"
    assert sorted(p.name for p in masked.glob("*.png")) == ["mosaic.1.png", "mosaic.2.png"]
    assert read_fits(output, hdu=("SCI", 2)).mask is not None
    assert main(["coadd", str(output), "-o", str(tmp_path / "stack.fits")]) == 0
    assert "coadded 2 images of 1 files" in capsys.readouterr().out
    # a SCAMP solution for the two CCDs moves the stack; --ignore-head leaves it
    head = ""
    for frame in frames:
        cards = frame.ccd.wcs.to_header()
        cards["CRVAL1"] += 0.01
        head += cards.tostring(sep="\n", endcard=True, padding=False) + "\n"
    (masked / "mosaic.head").write_text(head)
    for name, extra in (("solved", []), ("ignored", ["--ignore-head"])):
        target = str(tmp_path / f"{name}.fits")
        assert main(["coadd", str(output), "-o", target, *extra]) == 0
    plain = fits.getheader(tmp_path / "stack.fits")
    assert fits.getheader(tmp_path / "ignored.fits")["CRVAL1"] == plain["CRVAL1"]
    assert fits.getheader(tmp_path / "solved.fits")["CRVAL1"] == pytest.approx(
        plain["CRVAL1"] + 0.01, abs=1e-3
    )


def test_png_without_matplotlib_is_refused_before_work(night, tmp_path, capsys, monkeypatch):
    folder, _ = night
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "out"
    assert main(["mask", str(folder / "light0.fits"), "-o", str(out), "--png"]) == 1
    assert "pip install 'stdpipe_ccd[plot]'" in capsys.readouterr().err
    assert not out.exists()


def test_quiet_and_the_commands_own_words(night, tmp_path, capsys):
    folder, _ = night
    light = str(folder / "light0.fits")
    assert main(["mask", light, "-o", str(tmp_path / "out"), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "NONFINITE" not in printed  # no table
    assert "1 of 1 frames masked" in printed
    stack = str(tmp_path / "stack.fits")
    assert main(["coadd", light, "-o", stack, "--method", "interp"]) == 0
    capsys.readouterr()
    assert main(["coadd", light, "-o", stack, "--method", "interp"]) == 1
    assert "pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_stop_signal_while_writing_leaves_no_partial_file(
    night, tmp_path, name, default_stop_signals
):
    """A batch system's stop in the middle of a write unwinds: nothing half-written is left."""
    folder, _ = night
    out = tmp_path / "out"
    script = textwrap.dedent(
        f"""
        import os, signal
        from astropy.io import fits
        from stdpipe_ccd.cli import main

        write = fits.HDUList.writeto

        def write_then_stop(self, *args, **kwargs):
            write(self, *args, **kwargs)  # the temporary file is complete, not yet published
            os.kill(os.getpid(), signal.{name})

        fits.HDUList.writeto = write_then_stop
        main(["mask", {str(folder / "light0.fits")!r}, "-o", {str(out)!r},
              "--scheduler", "synchronous"])
        """
    )
    process = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        timeout=120,
        preexec_fn=default_stop_signals,
    )
    assert process.returncode == 128 + getattr(signal, name)
    assert sorted(p.name for p in out.iterdir()) == []  # neither the output nor a .part
