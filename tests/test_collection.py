import os

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from ccdproc import ImageFileCollection

from stdpipe_ccd import MaskFlag, datasets, make_mask, mask_collection
from stdpipe_ccd.io import read_fits, write_fits

SHAPE = (512, 512)
OPTIONS = {"mask_cosmics": True, "mask_bleed": True}


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """Three light frames, a dark and a flat on disk, with the frames' truth."""
    folder = tmp_path_factory.mktemp("night")
    frames = datasets.make_dither_set(3, SHAPE, seed=21, max_offset=10.0)
    lights = []
    for i, frame in enumerate(frames):
        lights.append(folder / f"light{i}.fits")
        frame.ccd.write(lights[-1])
    write_fits(datasets.make_dark(SHAPE), folder / "dark.fits")
    write_fits(datasets.make_flat(SHAPE), folder / "flat.fits")
    return folder, lights, frames


def snapshot(folder):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


def test_masks_a_night_against_truth(night, tmp_path):
    folder, lights, frames = night
    before = snapshot(folder)
    table = mask_collection(
        lights, tmp_path, progress=False, dark=str(folder / "dark.fits"), **OPTIONS
    )
    assert list(table["status"]) == ["written"] * 3
    assert snapshot(folder) == before  # inputs untouched
    for row, light, frame in zip(table, lights, frames, strict=True):
        out = read_fits(row["output"])
        assert row["input"] == str(light)
        # the file holds what make_mask gives, and the table counts what the file holds
        direct = make_mask(frame.ccd, dark=datasets.make_dark(SHAPE), **OPTIONS)
        np.testing.assert_array_equal(out.flags, direct.flags)
        np.testing.assert_array_equal(out.mask, direct.mask)
        np.testing.assert_array_equal(out.data, frame.ccd.data)
        for flag in MaskFlag:
            assert row[flag.name] == np.count_nonzero(out.flags & flag)
        assert row["TOTAL"] == np.count_nonzero(out.mask) == out.meta["MSKTOTAL"]
        assert row["HOT"] >= 0.9 * len(frame.hot_pixels)
        scores = datasets.score_cosmic_rays(frame, out.flags & MaskFlag.COSMIC_RAY, masked=out.mask)
        assert scores["recall_5sigma"] >= 0.9
        assert scores["precision"] >= 0.9
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in lights]


def test_failed_frame_is_reported_and_others_complete(night, tmp_path):
    _, lights, _ = night
    broken = tmp_path / "in" / "broken.fits"
    broken.parent.mkdir()
    broken.write_text("not a FITS file")
    table = mask_collection([lights[0], broken, lights[1]], tmp_path / "out", progress=False)
    assert list(table["status"]) == ["written", "failed", "written"]
    assert "OSError" in table["error"][1]
    assert table["TOTAL"].mask[1]
    assert not table["TOTAL"].mask[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["light0.fits", "light1.fits"]


def test_resume_skips_finished_frames(night, tmp_path):
    _, lights, _ = night
    first = mask_collection(lights, tmp_path, progress=False)
    done = snapshot(tmp_path)
    # an interrupted run leaves a temporary file and no output for its frame
    os.unlink(tmp_path / "light1.fits")
    (tmp_path / ".light1.fits.abc.part").write_bytes(b"half")
    second = mask_collection(lights, tmp_path, progress=False)
    assert list(second["status"]) == ["skipped", "written", "skipped"]
    assert list(second["TOTAL"]) == list(first["TOTAL"])  # counts read back from the files
    after = snapshot(tmp_path)
    assert after["light0.fits"] == done["light0.fits"]
    third = mask_collection(lights, tmp_path, progress=False, overwrite=True)
    assert list(third["status"]) == ["written"] * 3


def test_resume_redoes_what_does_not_match(night, tmp_path):
    """Truncated, unrelated or other-option outputs are redone, not trusted."""
    _, lights, _ = night
    mask_collection(lights, tmp_path, progress=False)
    truncated = tmp_path / "light0.fits"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 3])
    CCDData(np.zeros((4, 4)), unit="adu").write(tmp_path / "light1.fits", overwrite=True)
    table = mask_collection(lights, tmp_path, progress=False)
    assert list(table["status"]) == ["redone", "redone", "skipped"]
    assert read_fits(truncated).shape == SHAPE
    # other options: every output is redone, and says so
    other = mask_collection(lights, tmp_path, progress=False, saturation=50000.0)
    assert list(other["status"]) == ["redone"] * 3
    again = mask_collection(lights, tmp_path, progress=False, saturation=50000.0)
    assert list(again["status"]) == ["skipped"] * 3
    # or they are refused, and kept
    before = snapshot(tmp_path)
    refused = mask_collection(lights, tmp_path, progress=False, redo_changed=False)
    assert list(refused["status"]) == ["failed"] * 3
    assert "made from another input or other options" in refused["error"][0]
    assert snapshot(tmp_path) == before


def test_compressed_frames(night, tmp_path):
    _, _, frames = night
    packed = tmp_path / "light0.fits.fz"
    header = frames[0].ccd.meta.copy()
    header.update(frames[0].ccd.wcs.to_header())
    fits.HDUList(
        [fits.PrimaryHDU(), fits.CompImageHDU(frames[0].ccd.data.astype(np.float32), header)]
    ).writeto(packed)
    table = mask_collection([packed], tmp_path / "out", progress=False)
    assert list(table["status"]) == ["written"]
    masked = read_fits(tmp_path / "out" / "light0.fits")
    reference = make_mask(frames[0].ccd)
    np.testing.assert_array_equal(masked.mask, reference.mask)


def test_never_overwrites_inputs(night, tmp_path):
    _, lights, _ = night
    copy = tmp_path / "light0.fits"
    copy.write_bytes(lights[0].read_bytes())
    before = copy.read_bytes()
    with pytest.raises(ValueError, match="holds the inputs"):
        mask_collection([copy], tmp_path, progress=False)
    assert copy.read_bytes() == before
    table = mask_collection([copy], tmp_path, progress=False, overwrite=True)
    assert table["status"][0] == "written"
    assert read_fits(copy).flags is not None


def test_image_file_collection_with_filter(night, tmp_path):
    folder, lights, _ = night
    collection = ImageFileCollection(folder, keywords=["imagetyp"])
    table = mask_collection(collection.filter(imagetyp="LIGHT"), tmp_path, progress=False)
    assert sorted(os.path.basename(p) for p in table["input"]) == [p.name for p in lights]


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_local_schedulers_give_the_same_files(night, tmp_path, scheduler):
    folder, lights, _ = night
    options = {"flat": str(folder / "flat.fits"), **OPTIONS}
    serial = mask_collection(lights, tmp_path / "serial", scheduler="synchronous", **options)
    parallel = mask_collection(
        lights, tmp_path / scheduler, scheduler=scheduler, jobs=2, progress=False, **options
    )
    assert list(parallel["TOTAL"]) == list(serial["TOTAL"])
    for a, b in zip(serial["output"], parallel["output"], strict=True):
        np.testing.assert_array_equal(read_fits(a).flags, read_fits(b).flags)


def test_local_cluster_gives_the_same_files(night, tmp_path):
    distributed = pytest.importorskip("distributed")
    _, lights, _ = night
    serial = mask_collection(lights, tmp_path / "serial", scheduler="synchronous", **OPTIONS)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, dashboard_address=None, processes=True
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        table = mask_collection(lights, tmp_path / "cluster", client=client, **OPTIONS)
        workers = len(client.scheduler_info()["workers"])
    assert workers == 2
    assert list(table["status"]) == ["written"] * 3
    assert list(table["TOTAL"]) == list(serial["TOTAL"])
    for a, b in zip(serial["output"], table["output"], strict=True):
        np.testing.assert_array_equal(read_fits(a).flags, read_fits(b).flags)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"mask_cosmic": True}, TypeError, "mask_cosmic"),
        ({"scheduler": "gpu"}, ValueError, "scheduler='gpu'"),
    ],
)
def test_bad_options(night, tmp_path, options, error, match):
    _, lights, _ = night
    with pytest.raises(error, match=match):
        mask_collection(lights, tmp_path, **options)
    assert not any(tmp_path.iterdir())


def test_same_names_collide(night, tmp_path):
    _, lights, _ = night
    other = tmp_path / "other"
    other.mkdir()
    CCDData(np.zeros((4, 4)), unit="adu").write(other / lights[0].name)
    with pytest.raises(ValueError, match="collide"):
        mask_collection([lights[0], other / lights[0].name], tmp_path / "out")


def test_options_that_would_fail_every_frame_fail_first(tmp_path):
    frames = [tmp_path / "a.fits"]
    with pytest.raises(FileNotFoundError, match="dark='nowhere.fits' is not a file"):
        mask_collection(frames, tmp_path / "out", dark="nowhere.fits")
    with pytest.raises(TypeError, match="unknown astroscrappy option"):
        mask_collection(frames, tmp_path / "out", mask_cosmics=True, cosmics_options={"sigclp": 4})
    assert not (tmp_path / "out").exists()
