import os
import warnings
from pathlib import Path

import astroscrappy
import ccdproc
import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, bitmask
from ccdproc import Keyword, trim_image
from scipy import ndimage

from stdpipe_ccd import (
    CosmicRayTuning,
    MaskFlag,
    StdpipeCCDWarning,
    _render,
    _sky,
    datasets,
    make_mask,
)
from stdpipe_ccd._cosmics.frame import noise_model
from stdpipe_ccd.flags import MaskFlagMap, flag_counts


def has(result, flag):
    return (result.flags & flag) != 0


def small(meta=None, shape=(60, 120), value=100.0):
    return CCDData(np.full(shape, value, dtype=np.float32), unit="adu", meta=meta or {})


# --- the product ----------------------------------------------------------------


def test_input_unchanged_and_new_object(frame, dark, flat):
    ccd = frame.ccd.copy()
    ccd.mask = np.zeros(ccd.shape, bool)
    ccd.mask[5, 5] = True
    before_data, before_mask, before_meta = ccd.data.copy(), ccd.mask.copy(), ccd.meta.copy()
    result = make_mask(ccd, mask_bleed=True, dark=dark, flat=flat)
    assert result is not ccd
    np.testing.assert_array_equal(ccd.data, before_data)
    np.testing.assert_array_equal(ccd.mask, before_mask)
    assert ccd.meta == before_meta
    assert "MSKTOTAL" not in ccd.meta
    with pytest.raises(ValueError, match="read-only"):
        result.data[0, 0] = 0


def test_mask_equals_flags(masked):
    assert masked.flags.dtype == np.uint16
    assert masked.mask.dtype == bool
    np.testing.assert_array_equal(masked.mask, masked.flags != 0)


def test_wcs_unit_and_header_carried(frame, masked):
    assert masked.unit == u.adu
    assert masked.wcs.wcs.compare(frame.ccd.wcs.wcs)
    assert masked.meta["DATASEC"] == frame.ccd.meta["DATASEC"]


def test_provenance_counts(masked):
    counts = flag_counts(masked.flags)
    assert masked.meta["MSKCR"] == counts["COSMIC_RAY"] > 0
    assert masked.meta["MSKHOT"] == counts["HOT"] > 0
    assert masked.meta["MSKTOTAL"] == masked.mask.sum()
    history = "".join(masked.meta["HISTORY"])
    assert "make_mask(" in history
    assert "mask_cosmics=True" in history


def test_provenance_round_trips_through_fits(masked, tmp_path):
    path = tmp_path / "masked.fits"
    masked.write(path)
    back = CCDData.read(path)
    assert back.meta["MSKSAT"] == masked.meta["MSKSAT"]
    np.testing.assert_array_equal(back.mask, masked.mask)


@pytest.mark.parametrize("add_keyword", [None, False])
def test_provenance_off(add_keyword):
    result = make_mask(small(), add_keyword=add_keyword)
    assert "MSKTOTAL" not in result.meta
    assert "HISTORY" not in result.meta


@pytest.mark.parametrize(
    ("add_keyword", "key", "value"),
    [
        ("MASKED", "MASKED", "make_mask"),
        (Keyword("MASKED", value="yes"), "MASKED", "yes"),
        ({"MASKED": "by hand"}, "MASKED", "by hand"),
    ],
)
def test_provenance_custom(add_keyword, key, value):
    result = make_mask(small(), add_keyword=add_keyword)
    assert result.meta[key] == value
    assert result.meta["MSKTOTAL"] == 0
    assert "HISTORY" not in result.meta


def test_bitmask_helpers_select_reasons(masked):
    """Flags turn into booleans with astropy's bitmask helpers and MaskFlagMap."""
    only_cosmics = bitmask.bitfield_to_boolean_mask(
        masked.flags, ignore_flags="~COSMIC_RAY", flag_name_map=MaskFlagMap
    )
    np.testing.assert_array_equal(only_cosmics, has(masked, MaskFlag.COSMIC_RAY))


# --- each reason, against truth ---------------------------------------------------


def test_nonfinite(frame, masked):
    np.testing.assert_array_equal(has(masked, MaskFlag.NONFINITE), frame.nonfinite_mask)


def test_outside_datasec(masked):
    outside = has(masked, MaskFlag.OUTSIDE_DATASEC)
    assert outside[:, -32:].all()
    assert not outside[:, :-32].any()


def test_saturation_from_header(frame, masked):
    saturated = has(masked, MaskFlag.SATURATED)
    np.testing.assert_array_equal(saturated, frame.ccd.data >= frame.ccd.meta["SATURATE"])
    # cores and trails, and a few bright wings just above SATURATE (below full well)
    assert (frame.saturated_mask | frame.bleed_mask)[saturated].mean() > 0.99
    assert saturated[frame.saturated_mask].all()  # every core


@pytest.mark.parametrize("level", [20000.0, 20000.0 * u.adu])
def test_saturation_explicit(frame, level):
    result = make_mask(frame.ccd, saturation=level)
    np.testing.assert_array_equal(has(result, MaskFlag.SATURATED), frame.ccd.data >= 20000)


def test_saturation_estimated():
    data = np.zeros((50, 50), dtype=np.float32)
    data[10, 10], data[20, 20], data[30, 30] = 100.0, 96.0, 94.0  # median 0, max 100 -> 95
    result = make_mask(CCDData(data, unit="adu"), saturation=True)
    assert has(result, MaskFlag.SATURATED).sum() == 2


def test_saturation_off(frame):
    assert not has(make_mask(frame.ccd, saturation=False), MaskFlag.SATURATED).any()


@pytest.mark.parametrize("level", [0, -5.0, np.nan, np.inf])
def test_saturation_invalid(level):
    with pytest.raises(ValueError, match="saturation must be positive and finite"):
        make_mask(small(), saturation=level)


def test_saturate_keyword_invalid():
    with pytest.raises(ValueError, match="SATURATE in .meta must be positive"):
        make_mask(small({"SATURATE": -1}))


def test_saturation_wrong_unit():
    with pytest.raises(u.UnitsError, match="saturation=.* cannot be converted"):
        make_mask(small(), saturation=5 * u.m)


def test_bleed_against_truth(frame, masked):
    scores = datasets.score_bleed(frame, has(masked, MaskFlag.BLEED))
    assert scores["n_true"] > 300
    assert scores["recall"] >= 0.95
    assert scores["extra"] <= 0.05


def test_bleed_needs_saturation():
    with pytest.raises(ValueError, match="mask_bleed=True needs a saturation level"):
        make_mask(small(), mask_bleed=True)


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.int32])
def test_external_mask(dtype):
    external = np.zeros((60, 120), dtype=dtype)
    external[3:5, 7:9] = 1
    result = make_mask(small(), external_mask=external)
    np.testing.assert_array_equal(has(result, MaskFlag.EXTERNAL), external.astype(bool))


def test_input_mask_kept():
    ccd = small()
    ccd.mask = np.zeros(ccd.shape, bool)
    ccd.mask[1, 2] = True
    result = make_mask(ccd)
    assert has(result, MaskFlag.INPUT).sum() == 1
    assert result.mask[1, 2]


def test_hot_pixels_from_dark(frame, masked):
    hot = has(masked, MaskFlag.HOT)
    truth = np.zeros_like(hot)
    truth[frame.hot_pixels["y"], frame.hot_pixels["x"]] = True
    np.testing.assert_array_equal(hot, truth)


def test_low_response_from_flat(frame, masked):
    low = has(masked, MaskFlag.LOW_RESPONSE)
    assert low[:, -32:].all()  # zero response in the overscan
    response = frame.response[:, :-32]
    assert low[:, :-32][response < 0.47].all()
    assert not low[:, :-32][response > 0.53].any()


@pytest.mark.parametrize("name", ["external_mask", "dark", "flat"])
def test_shape_mismatch(name):
    with pytest.raises(ValueError, match=f"{name} has shape \\(3, 3\\)"):
        make_mask(small(), **{name: np.zeros((3, 3))})


def test_not_2d():
    with pytest.raises(ValueError, match="must be 2D"):
        make_mask(CCDData(np.zeros((2, 3, 4)), unit="adu"))


def test_not_ccddata():
    with pytest.raises(TypeError, match="must be an astropy.nddata.CCDData"):
        make_mask(np.zeros((3, 4)))


# --- sections ------------------------------------------------------------------


def test_reversed_section_is_the_forward_one():
    forward = make_mask(small({"DATASEC": "[11:110,1:60]"}))
    reverse = make_mask(small({"DATASEC": "[110:11,1:60]"}))
    np.testing.assert_array_equal(forward.flags, reverse.flags)
    assert has(forward, MaskFlag.OUTSIDE_DATASEC).sum() == 60 * 20


def test_datasec_and_trimsec_intersect():
    result = make_mask(small({"DATASEC": "[11:110,1:60]", "TRIMSEC": "[1:120,6:60]"}))
    valid = ~has(result, MaskFlag.OUTSIDE_DATASEC)
    assert valid.sum() == 100 * 55
    assert valid[5:, 10:110].all()


def test_section_clipped_with_warning():
    with pytest.warns(StdpipeCCDWarning, match="DATASEC = \\[1:500,1:60\\] extends beyond"):
        result = make_mask(small({"DATASEC": "[1:500,1:60]"}))
    assert not result.mask.any()


@pytest.mark.parametrize("value", ["[1:100]", "[a:b,1:60]", "1:100,1:60]", "nonsense"])
def test_section_malformed(value):
    with pytest.raises(ValueError, match="DATASEC = .* is not a FITS section"):
        make_mask(small({"DATASEC": value}))


def test_section_outside_image():
    with pytest.raises(ValueError, match="TRIMSEC = .* does not overlap"):
        make_mask(small({"TRIMSEC": "[200:300,1:60]"}))


def test_already_trimmed_frame_keeps_its_pixels(frame):
    """ccdproc.trim_image leaves DATASEC stale; no valid pixel may be lost."""
    trimmed = trim_image(frame.ccd, fits_section=frame.ccd.meta["DATASEC"])
    assert not has(make_mask(trimmed), MaskFlag.OUTSIDE_DATASEC).any()


def test_already_trimmed_prescan_warns():
    """Without a record of the trim, a section as long as the image along x is taken as done."""
    trimmed = small({"DATASEC": "[11:130,1:60]"})
    with pytest.warns(StdpipeCCDWarning, match="as long as the image along x"):
        result = make_mask(trimmed)
    assert not result.mask.any()


def raw_with_prescan_and_overscan():
    """A 100 x 512 raw frame: 16 prescan columns, data [17:480], 32 overscan columns."""
    return CCDData(
        np.full((100, 512), 100.0, np.float32), unit="adu", meta={"DATASEC": "[17:480,1:100]"}
    )


def test_ltv_shifts_the_sections():
    """IRAF's LTV1 = -16 says the 16 prescan columns were cut: the overscan is still there."""
    ccd = raw_with_prescan_and_overscan()[:, 16:]
    ccd.meta["LTV1"] = -16
    result = make_mask(ccd)
    outside = has(result, MaskFlag.OUTSIDE_DATASEC)
    assert outside.sum() == 100 * 32
    assert outside[:, 464:].all()
    assert not outside[:, :464].any()


@pytest.mark.parametrize(
    "section", ["[17:512,1:100]", "[17:480,1:100]", "[1:480,1:100]", "[17:480,11:90]"]
)
def test_ccdproc_trim_never_masks_data(section):
    """After ccdproc.trim_image, the sections are shifted by its record: data pixels stay."""
    raw = raw_with_prescan_and_overscan()
    trimmed = trim_image(raw, fits_section=section)
    outside = has(make_mask(trimmed), MaskFlag.OUTSIDE_DATASEC)
    (y0, y1), (x0, x1) = (0, 100), (16, 480)  # DATASEC in the raw frame
    (ty0, _ty1), (tx0, _tx1) = _box(section)
    expected = np.ones(trimmed.shape, bool)
    expected[max(y0 - ty0, 0) : y1 - ty0, max(x0 - tx0, 0) : x1 - tx0] = False
    np.testing.assert_array_equal(outside, expected)


def _box(section):
    (x, y) = section.strip("[]").split(",")
    (x0, x1), (y0, y1) = (map(int, x.split(":")), map(int, y.split(":")))
    return (y0 - 1, y1), (x0 - 1, x1)


def test_overscan_subtracted_frame_keeps_its_mask():
    """subtract_overscan leaves the geometry alone: the same pixels are outside DATASEC."""
    from ccdproc import subtract_overscan

    raw = raw_with_prescan_and_overscan()
    corrected = subtract_overscan(raw, fits_section="[481:512,1:100]", overscan_axis=1)
    np.testing.assert_array_equal(make_mask(corrected).mask, make_mask(raw).mask)


def test_ltv_with_an_updated_section_is_not_shifted():
    """A section already in the trimmed image's pixels is used as it is, with a warning."""
    ccd = small({"DATASEC": "[1:100,1:60]", "LTV1": -10})
    with pytest.warns(StdpipeCCDWarning, match="fits the image as it is"):
        result = make_mask(ccd)
    assert has(result, MaskFlag.OUTSIDE_DATASEC).sum() == 60 * 20


# --- cosmic rays -------------------------------------------------------------------


def cosmic_scores(frame, result):
    cosmic = has(result, MaskFlag.COSMIC_RAY)
    return datasets.score_cosmic_rays(frame, cosmic, masked=result.mask & ~cosmic)


def test_cosmic_rays_against_truth(frame, masked):
    scores = cosmic_scores(frame, masked)
    assert scores["n_rays"] > 200
    assert scores["star_cores"] == 0  # no star is a cosmic ray
    assert scores["precision"] >= 0.97
    assert scores["recall_5sigma"] >= 0.96
    assert scores["recall"] >= 0.89


def test_diffused_cosmic_rays_against_truth(dark, flat):
    """Rays two pixels wide with fainter pixels, as charge diffusion makes them."""
    frame = datasets.make_frame((1024, 1024), seed=1, diffuse_cosmics=True)
    result = make_mask(frame.ccd, mask_bleed=True, mask_cosmics=True, dark=dark, flat=flat)
    scores = cosmic_scores(frame, result)
    assert scores["star_cores"] == 0
    assert scores["precision"] >= 0.97
    assert scores["recall_5sigma"] >= 0.92
    assert scores["recall"] >= 0.8  # 15 % peak below 5 sigma


def test_cosmic_rays_beat_bare_astroscrappy(frame, masked):
    """The same frame through astroscrappy alone, with the same known-bad pixels excluded."""
    data = frame.ccd.data
    known = masked.mask & ~has(masked, MaskFlag.COSMIC_RAY)
    bare, _ = astroscrappy.detect_cosmics(
        data, inmask=known, gain=datasets.GAIN, readnoise=datasets.READNOISE, satlevel=np.inf
    )
    peer = datasets.score_cosmic_rays(frame, bare & ~known, masked=known)
    ours = cosmic_scores(frame, masked)
    assert ours["recall"] > peer["recall"]
    assert ours["recall_5sigma"] > peer["recall_5sigma"]
    assert ours["star_cores"] <= peer["star_cores"]


def test_cosmic_rays_sky_subtracted(frame, dark, flat):
    """The noise model is measured, so a sky-subtracted frame masks as well."""
    ccd = frame.ccd.subtract(frame.sky * u.adu)
    ccd.meta = frame.ccd.meta
    result = make_mask(
        ccd,
        mask_bleed=True,
        mask_cosmics=True,
        dark=dark,
        flat=flat,
        saturation=(datasets.SATURATE - frame.sky),
    )
    scores = cosmic_scores(frame, result)
    assert scores["star_cores"] == 0
    assert scores["precision"] >= 0.97
    assert scores["recall_5sigma"] >= 0.97


def test_cosmic_rays_no_false_rays_at_edges_and_corners(frame, masked):
    """No false rays along the DATASEC edge, around saturated stars or in vignetted corners."""
    cosmic = has(masked, MaskFlag.COSMIC_RAY)
    near_truth = np.zeros_like(cosmic)
    iy, ix = np.nonzero(frame.cosmic_label)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near_truth[np.clip(iy + dy, 0, 1023), np.clip(ix + dx, 0, 1023)] = True
    false = cosmic & ~near_truth
    # the sky-to-bias step at the DATASEC edge flags nothing of its own (peers flag
    # the whole column); what is there is the share of 3.5 sigma noise peaks
    edge = false[:, -40:]
    assert edge.sum() <= max(3.0, 3 * false.mean() * edge.size)
    last = frame.ccd.shape[1] - datasets.OVERSCAN
    assert false[:, last - 2 : last].sum() <= 2
    corner = frame.response < 0.8
    assert false[corner].sum() <= 0.01 * cosmic[corner].sum() + 2
    assert false.sum() <= 0.03 * cosmic.sum()


def test_noise_model_follows_the_flat(frame, flat):
    """The sky of a flat-fielded frame is flat; its noise grows where the response drops."""
    data_area = np.s_[:, : frame.ccd.shape[1] - datasets.OVERSCAN]
    known = ~np.isfinite(frame.ccd.data)
    known[:, frame.ccd.shape[1] - datasets.OVERSCAN :] = True  # as make_mask excludes it
    model = _sky.SkyModel(frame.ccd.data, known, np.asarray(flat.data) / np.median(flat.data))
    level = model.level()[data_area]
    assert np.abs(level / frame.sky - 1).max() < 0.01
    sigma = np.sqrt(model.sky_variance())[data_area]
    truth = frame.noise[data_area]
    corners = frame.response[data_area] < 0.6
    assert truth[corners].mean() > 1.3 * truth.min()  # the corners are noisier
    assert np.abs(np.median(sigma[corners] / truth[corners]) - 1) < 0.05
    assert np.percentile(np.abs(sigma / truth - 1), 99) < 0.12


def cosmics_with_tracks(frame, tracks):
    """Cosmic-ray flags of ``frame`` with extra tracks, and each track's pixels.

    ``tracks`` holds ``(x, y, length, angle, level)``, the level in sky sigma
    per pixel of track; a track's pixels are those with 20 % of its level or more.
    """
    ny, nx = frame.ccd.shape
    data = frame.ccd.data.copy()
    noise = datasets._sky_noise(frame.sky, 1.0)
    pixels = []
    for x, y, length, angle, level in tracks:
        iy, ix, values = _render.track(x, y, length, angle, level * noise, (ny, nx), nx)
        data[iy, ix] += values
        strong = values >= 0.2 * level * noise
        pixels.append((iy[strong], ix[strong]))
    ccd = frame.ccd.copy()
    ccd.data = data
    return has(make_mask(ccd, mask_cosmics=True), MaskFlag.COSMIC_RAY), pixels


def test_crossing_rays_both_flagged(frame):
    """A faint ray that crosses a bright one is not taken for a source lit by it."""
    centres = [(200.5, 150.5), (420.5, 700.5), (610.5, 330.5), (850.5, 880.5)]
    tracks = []
    for k, (x, y) in enumerate(centres):
        tracks += [(x, y, 6.0, 0.3 + k, 40), (x, y, 6.0, 1.9 + k, 8)]
    cosmic, rays = cosmics_with_tracks(frame, tracks)
    # each faint ray is found (half its pixels, as scored), most of its pixels flagged
    found = [cosmic[iy, ix].mean() for iy, ix in rays[1::2]]
    assert min(found) >= 0.5
    assert np.mean(found) >= 0.7


#: long tracks away from stars in the 1024² frame: (x, y, angle)
_OPEN_SKY_TRACKS = [
    (200.5, 150.5, 0.3),
    (420.5, 700.5, 0.8),
    (610.5, 330.5, 1.3),
    (300.2, 420.7, 2.3),
]


def with_lines(frame, profile, peak, length=40.0):
    """``frame`` with lines drawn through ``profile`` (a function of an image of the
    lines), each scaled to ``peak`` sky sigma, and the pixels of each line."""
    ny, nx = frame.ccd.shape
    noise = datasets._sky_noise(frame.sky, 1.0)
    data = frame.ccd.data.astype(float)
    pixels = []
    for x, y, angle in _OPEN_SKY_TRACKS:
        line = np.zeros((ny, nx))
        iy, ix, values = _render.crossed(x, y, length, angle, 1.0, (ny, nx), nx)
        line[iy, ix] = values
        line = profile(line)
        line *= peak * noise / line.max()
        data += line
        pixels.append(line >= 0.2 * peak * noise)
    ccd = frame.ccd.copy()
    ccd.data = data.astype(np.float32)
    return has(make_mask(ccd, mask_cosmics=True), MaskFlag.COSMIC_RAY), pixels


@pytest.mark.parametrize("peak", [10, 40, 200])
def test_lines_through_the_psf_not_flagged(frame, peak):
    """A satellite trail or an edge-on galaxy (a line seen through the PSF) is no cosmic ray."""
    fwhm = frame.ccd.meta["FWHM"]

    def through_psf(line):
        iy, ix = np.nonzero(line)
        image = np.zeros_like(line)
        points = {"x": ix, "y": iy, "flux": line[iy, ix]}
        _render.render_stars(image, points, fwhm)
        return image

    cosmic, lines = with_lines(frame, through_psf, peak)
    assert max(cosmic[line].mean() for line in lines) <= 0.02


def test_fast_helpers_match_scipy_and_numpy():
    """The sparse grouping and the one-partition median agree with ndimage.label and np.median."""
    from stdpipe_ccd._cosmics.geometry import groups as _groups
    from stdpipe_ccd._cosmics.geometry import row_median as _row_median

    rng = np.random.default_rng(5)
    mask = rng.random((200, 300)) < 0.25  # many groups, some touching the edges
    iy, ix, group, count = _groups(mask)
    labels, expected = ndimage.label(mask, np.ones((3, 3), dtype=bool))
    assert count == expected
    # the same partition of the pixels, whatever the numbering
    pairs = set(zip(labels[iy, ix].tolist(), group.tolist(), strict=True))
    assert len(pairs) == count
    assert _groups(np.zeros((5, 5), dtype=bool))[3] == 0

    for width in (10, 16, 25):
        values = rng.normal(size=(500, width)).astype(np.float32)
        values[3, 4], values[7], values[9, ::2] = np.nan, np.inf, -np.inf
        np.testing.assert_array_equal(_row_median(values), np.median(values, axis=1))


def test_cosmic_options_pass_through(frame):
    strict = make_mask(frame.ccd, mask_cosmics=True, cosmics_options={"sigclip": 8.0})
    default = make_mask(frame.ccd, mask_cosmics=True)
    assert has(strict, MaskFlag.COSMIC_RAY).sum() < has(default, MaskFlag.COSMIC_RAY).sum()


@pytest.mark.parametrize("options", [{"sigclp": 4}, {"gain": 2.0}])
def test_cosmic_options_unknown(options):
    with pytest.raises(TypeError, match="cosmics_options has unknown astroscrappy option"):
        make_mask(small({"GAIN": 1.0}), mask_cosmics=True, cosmics_options=options)


def test_gain_quantity_matches_number(frame):
    meta = {k: v for k, v in frame.ccd.meta.items() if k != "GAIN"}
    ccd = CCDData(frame.ccd.data, unit="adu", meta=meta)
    with_number = make_mask(ccd, mask_cosmics=True, gain=1.6)
    with_quantity = make_mask(ccd, mask_cosmics=True, gain=1.6 * u.electron / u.adu)
    np.testing.assert_array_equal(with_number.flags, with_quantity.flags)


def test_gain_missing_warns():
    with pytest.warns(StdpipeCCDWarning, match="no gain given"):
        make_mask(small(), mask_cosmics=True)


def test_gain_ignored_for_electrons():
    ccd = CCDData(np.full((60, 120), 100.0), unit="electron")
    with pytest.warns(StdpipeCCDWarning, match="image is in electrons"):
        make_mask(ccd, mask_cosmics=True, gain=2.0)


def test_gain_wrong_unit():
    with pytest.raises(u.UnitsError, match="gain=.* cannot be converted"):
        make_mask(small(), mask_cosmics=True, gain=2 * u.m)


def test_big_endian_from_fits(frame, tmp_path):
    """Data straight from CCDData.read are big-endian: same result as native."""
    path = tmp_path / "frame.fits"
    frame.ccd.write(path)
    read = CCDData.read(path)
    assert not read.data.dtype.isnative
    native = make_mask(frame.ccd, mask_bleed=True, mask_cosmics=True)
    from_disk = make_mask(read, mask_bleed=True, mask_cosmics=True)
    np.testing.assert_array_equal(native.flags, from_disk.flags)


def test_real_gmos_frame_finds_both_rays():
    """astroscrappy's real GMOS cutout: both known rays are found, nothing else of size."""
    from scipy import ndimage

    path = os.path.join(os.path.dirname(astroscrappy.__file__), "tests", "data", "gmos.fits")
    with fits.open(path) as hdul:
        ccd = CCDData(hdul["SCI"].data, unit="electron")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StdpipeCCDWarning)
        result = make_mask(ccd, mask_cosmics=True, readnoise=4.24)
    labels, _ = ndimage.label(has(result, MaskFlag.COSMIC_RAY), np.ones((3, 3)))
    big = [
        box
        for box in ndimage.find_objects(labels)
        if (box[0].stop - box[0].start) * (box[1].stop - box[1].start) > 20
    ]
    for ray in [(slice(41, 72), slice(142, 161)), (slice(117, 147), slice(35, 43))]:
        assert any(
            box[0].start <= ray[0].start + 2
            and box[0].stop >= ray[0].stop - 2
            and box[1].start <= ray[1].start + 2
            and box[1].stop >= ray[1].stop - 2
            for box in big
        )
    assert len(big) == 2


@pytest.mark.parametrize("level", [None, 500.0])
def test_nonfinite_and_saturated_classified(level):
    """Every kind of bad value, spread over several blocks of the cached pass."""
    data = np.full((2000, 300), 100.0, dtype=np.float32)
    specials = {
        (0, 0): np.nan,
        (900, 5): np.inf,
        (1999, 299): -np.inf,
        (1500, 7): -1e30,
        (1200, 8): -600.0,
        (10, 10): 500.0,
        (11, 10): 499.99,
    }
    for where, value in specials.items():
        data[where] = value
    meta = {} if level is None else {"SATURATE": level}
    result = make_mask(CCDData(data, unit="adu", meta=meta))
    nonfinite = {(0, 0), (900, 5), (1999, 299)}
    saturated = {(10, 10)} if level else set()
    assert set(zip(*np.nonzero(has(result, MaskFlag.NONFINITE)))) == nonfinite
    assert set(zip(*np.nonzero(has(result, MaskFlag.SATURATED)))) == saturated
    assert set(zip(*np.nonzero(result.mask))) == nonfinite | saturated
    assert result.meta["MSKNFIN"] == 3
    assert result.meta["MSKSAT"] == len(saturated) * bool(level)
    assert result.meta["MSKTOTAL"] == np.count_nonzero(result.mask)


@pytest.mark.parametrize("layout", ["float64", "big-endian", "strided"])
def test_nonfinite_and_saturated_counts_any_layout(layout):
    """Flags and counts match numpy's own tests whatever the memory layout."""
    rng = np.random.default_rng(5)
    data = rng.normal(100.0, 200.0, (700, 900))
    for value in (np.nan, np.copysign(np.nan, -1.0), np.inf, -np.inf, -1e30):
        data[rng.random(data.shape) < 0.001] = value
    data[5, 3:9] = [499.99, 500.0, 500.01, -500.0, -1000.0, 1e38]
    data = {
        "float64": data,
        "big-endian": data.astype(">f4"),
        "strided": data.astype(np.float32)[:, ::2],
    }[layout]
    result = make_mask(CCDData(data, unit="adu", meta={"SATURATE": 500.0}))
    finite = np.isfinite(data)
    assert result.meta["MSKNFIN"] == np.count_nonzero(~finite) > 1000
    assert result.meta["MSKSAT"] == np.count_nonzero(finite & (data >= 500.0)) > 500
    np.testing.assert_array_equal(has(result, MaskFlag.NONFINITE), ~finite)


def test_infinity_is_not_saturation():
    """+inf from a flat with zeros is NONFINITE only: no SATURATED, no bleed trail."""
    ccd = small({"SATURATE": 500.0}, shape=(60, 60))
    ccd.data[:, :4] = np.inf  # an overscan divided by a flat of zeros
    ccd.data[30, 30] = 600.0
    result = make_mask(ccd, mask_bleed=True)
    assert result.meta["MSKNFIN"] == 240
    assert result.meta["MSKSAT"] == 1
    assert not has(result, MaskFlag.BLEED)[:, :4].any()


def test_total_counts_each_pixel_once():
    """Bad values in the overscan carry two reasons but count once in MSKTOTAL."""
    ccd = small({"DATASEC": "[1:100,3:58]", "SATURATE": 500.0})
    ccd.data[0, 0] = np.nan  # below the section
    ccd.data[10, 110] = np.inf  # beside it: three reasons
    ccd.data[20, 115] = 600.0
    ccd.data[30, 30] = 600.0  # inside
    result = make_mask(ccd)
    assert result.meta["MSKDSEC"] == 60 * 120 - 100 * 56
    assert result.meta["MSKSAT"] == 2  # +inf is not saturation
    assert result.meta["MSKTOTAL"] == np.count_nonzero(result.mask) == 60 * 120 - 100 * 56 + 1


def test_integer_raw_frame():
    data = np.full((40, 50), 1000, dtype=np.uint16)
    data[3, 4] = 65535
    result = make_mask(CCDData(data, unit="adu", meta={"SATURATE": 65000}))
    assert has(result, MaskFlag.SATURATED).sum() == 1
    assert result.mask[3, 4]


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int16, np.uint16, np.int32, np.int64, np.float16, np.float32, ">f8"]
)
def test_every_dtype_with_cosmics(dtype):
    """Raw integer, half-precision and big-endian frames are masked, rays included."""
    frame = datasets.make_frame((256, 256), seed=4, overscan=0, n_saturated=0)
    top = 250 if np.dtype(dtype) == np.uint8 else 30000
    scale = top / np.nanmax(frame.ccd.data)
    data = np.nan_to_num(frame.ccd.data * scale, nan=0.0)
    ccd = CCDData(data.astype(dtype), unit="adu", meta={"GAIN": 1.6 / scale, "RDNOISE": 6.0})
    before = ccd.data.copy()
    result = make_mask(ccd, mask_cosmics=True)
    assert result.data.dtype == np.dtype(dtype).newbyteorder("=")  # native order, same values
    np.testing.assert_array_equal(result.data, before)
    truth = frame.cosmic_mask
    found = np.count_nonzero(has(result, MaskFlag.COSMIC_RAY) & truth) / np.count_nonzero(truth)
    assert found > 0.5


def test_raw_uint16_bzero_file(tmp_path):
    """A raw BZERO = 32768 file read with CCDData.read is masked as it is."""
    data = np.full((64, 64), 1000, dtype=np.uint16)
    data[10, 10] = 20000  # a one-pixel hit
    path = tmp_path / "raw.fits"
    fits.PrimaryHDU(data).writeto(path)
    assert fits.getheader(path)["BZERO"] == 32768
    ccd = CCDData.read(path, unit="adu")
    result = make_mask(ccd, mask_cosmics=True, gain=2, readnoise=5)
    assert result.flags[10, 10] & MaskFlag.COSMIC_RAY
    assert result.meta["MSKCR"] <= 9


def test_complex_data_refused():
    with pytest.raises(TypeError, match="real numbers"):
        make_mask(CCDData(np.ones((8, 8), complex), unit="adu"))


def fading_trail_frame(seed, flat_scatter=0.0):
    """A saturated star whose trails fall linearly from full well to 20 % of it, and their truth.

    Drawn here, not by `datasets`: a Gaussian star clipped at full well and
    trails three columns wide, 40-90 pixels up and down; optionally divided
    by a flat with per-pixel scatter, which moves saturated pixels below the level.
    """
    rng = np.random.default_rng(seed)
    ny, nx, full = 400, 200, 60000.0
    y, x = np.mgrid[:ny, :nx]
    yc, xc = 200 + rng.uniform(-0.5, 0.5), 100 + rng.uniform(-0.5, 0.5)
    star = 4e6 * np.exp(-((y - yc) ** 2 + (x - xc) ** 2) / (2 * 1.5**2)) / (2 * np.pi * 1.5**2)
    image = 1000.0 + np.minimum(star, full)
    truth = np.zeros((ny, nx), bool)
    cols = np.arange(round(xc) - 1, round(xc) + 2)
    core = star >= full
    for direction in (-1, 1):
        length = int(rng.integers(40, 90))
        edge = np.flatnonzero(core[:, round(xc)]).max() if direction > 0 else None
        edge = edge if direction > 0 else np.flatnonzero(core[:, round(xc)]).min()
        rows = edge + direction * np.arange(1, length + 1)
        level = full * np.linspace(1.0, 0.2, length)
        image[np.ix_(rows, cols)] = np.maximum(image[np.ix_(rows, cols)], level[:, None] + 1000)
        truth[np.ix_(rows, cols)] = True
    image = rng.normal(image, np.sqrt(image))
    if flat_scatter:
        image /= rng.normal(1.0, flat_scatter, image.shape)
    ccd = CCDData(image.astype(np.float32), unit="adu", meta={"SATURATE": full})
    return ccd, truth


@pytest.mark.parametrize("flat_scatter", [0.0, 0.03])
def test_bleed_follows_trails_below_full_well(flat_scatter):
    """>= 95 % of trail pixels with <= 5 % extra, when trails fade to 20 % of full well."""
    found = extra = total = 0
    for seed in range(5):
        ccd, truth = fading_trail_frame(seed, flat_scatter)
        bleed = has(make_mask(ccd, mask_bleed=True), MaskFlag.BLEED)
        found += np.count_nonzero(bleed & truth)
        extra += np.count_nonzero(bleed & ~truth)
        total += np.count_nonzero(truth)
    assert found / total >= 0.95
    assert extra / total <= 0.05


def test_real_raw_saao_frame_same_rays_as_astroscrappy():
    """ccdproc's raw SAAO frame (uint16, BZERO, TRIMSEC): every group astroscrappy flags is
    flagged, none is added, and the 24 columns outside TRIMSEC are masked. Its bias (214 ADU in
    BIASSEC) is found in the sky's level and taken off for the noise model (sky sigma 7 ADU,
    12.8 with the bias taken for sky), and its 8 top rows, read past the CCD at the bias level
    inside TRIMSEC, raise no group along the sky's edge."""
    path = Path(ccdproc.__file__).parent / "tests" / "data" / "a8280271.fits"
    if not path.exists():
        pytest.skip("ccdproc's test data are not installed")
    ccd = CCDData.read(path, unit="adu")
    result = make_mask(ccd, mask_cosmics=True)
    assert result.data.dtype == np.uint16
    assert result.meta["MSKDSEC"] == 24 * 520
    cosmic = has(result, MaskFlag.COSMIC_RAY)
    known = result.mask & ~cosmic
    tuning = CosmicRayTuning()
    noise = noise_model(
        ccd.data.astype(np.float32),
        known,
        gain=ccd.meta["GAIN"],
        readnoise=ccd.meta["RDNOISE"],
        gain_known=True,
        response=None,
        pedestal_ratio=tuning.pedestal_ratio,
        offset_ratio=tuning.offset_ratio,
    )
    assert 210 < noise.zero < 225
    np.testing.assert_allclose(np.median(np.sqrt(noise.variance[~known])), 7.0, rtol=0.05)
    np.testing.assert_array_equal(np.flatnonzero(noise.unexposed.all(axis=1)), np.arange(512, 520))
    bare, _ = astroscrappy.detect_cosmics(
        ccd.data.astype(np.float32), inmask=known, gain=ccd.meta["GAIN"], readnoise=5.0
    )
    ours, count = ndimage.label(cosmic, np.ones((3, 3)))
    _, their_count = ndimage.label(bare, np.ones((3, 3)))
    assert count == their_count > 10
    assert not (bare & ~cosmic).any()  # ours grows their groups, drops none
    assert set(np.unique(ours[bare])) == set(range(1, count + 1))


@pytest.mark.parametrize("shape", [(3, 200), (200, 3), (2, 2), (1, 50)])
def test_cosmics_on_a_frame_too_small_for_astroscrappy(shape):
    """A side under 4 pixels makes astroscrappy write outside its arrays: a clear error first."""
    with pytest.raises(ValueError, match=r"at least 4 x 4 pixels"):
        make_mask(small(shape=shape), mask_cosmics=True, gain=2.0, readnoise=5.0)


@pytest.mark.parametrize(
    ("shape", "hit", "by_lacosmic"),
    [((4, 4), (2, 2), False), ((4, 60), (2, 30), False), ((9, 60), (4, 30), True)],
)
def test_cosmics_on_the_smallest_frames(shape, hit, by_lacosmic):
    """Frames 4 pixels wide run. astroscrappy filters nothing 4 pixels from an edge, so it finds
    a hit from 9 pixels on, where the frame has a middle; the sharp-peak step finds it on any
    pixel but the outermost, and only there."""
    ccd = small(shape=shape, value=500.0)
    ccd.data += np.random.default_rng(0).normal(0, 0.5, shape).astype(np.float32)
    ccd.data[hit] += 5000.0
    for sharp_peaks, found in ((True, True), (False, by_lacosmic)):
        tuning = CosmicRayTuning(sharp_peaks=sharp_peaks)
        masked = make_mask(ccd, mask_cosmics=True, gain=1.0, readnoise=5.0, cosmics_tuning=tuning)
        flagged = np.argwhere(has(masked, MaskFlag.COSMIC_RAY)).tolist()
        assert flagged == ([list(hit)] if found else [])
        assert masked.data[hit] == ccd.data[hit]


def test_real_crowded_m13_frame_keeps_its_stars():
    """astropy's real 300 x 300 image of M13, a crowded field of stars without cosmic rays: no
    star core of the 405 stars 10 sigma up is flagged; the bare astroscrappy call flags some."""
    import astropy

    path = Path(astropy.__file__).parent / "io/fits/hdu/compressed/tests/data/m13.fits"
    if not path.exists():
        pytest.skip("astropy's test data are not installed")
    ccd = CCDData.read(path, unit="adu")
    data = ccd.data.astype(np.float32)
    sky = np.median(data)
    sigma = sky - np.percentile(data, 15.87)  # the lower half is clean of stars
    gain = float(sky / sigma**2)  # the Poisson gain that gives the sky its noise
    ours = has(make_mask(ccd, mask_cosmics=True, gain=gain, readnoise=0.01), MaskFlag.COSMIC_RAY)
    bare, _ = astroscrappy.detect_cosmics(data, gain=gain, readnoise=0.01)
    top = (data == ndimage.maximum_filter(data, 3)) & (data - sky > 10 * sigma)
    cores = ndimage.binary_dilation(top, np.ones((3, 3), bool))
    assert np.count_nonzero(top) > 300
    assert not (ours & cores).any()
    assert (bare & cores).any()
    assert np.count_nonzero(ours) < np.count_nonzero(bare) / 4


def test_saturate_in_adu_after_gain_correct():
    """SATURATE stays in ADU through ccdproc.gain_correct: converted with the recorded gain."""
    from ccdproc import gain_correct

    ccd = small({"SATURATE": 500.0, "GAIN": 2.0})
    ccd.data[5, 5] = 450.0  # 900 e-: below the level of 1000 e- (above 500)
    ccd.data[6, 6] = 600.0  # 1200 e-
    electrons = gain_correct(ccd, 2.0 * u.electron / u.adu)
    result = make_mask(electrons)
    assert result.meta["MSKSAT"] == 1
    electrons.data[5, 5] = 1100.0
    assert make_mask(electrons).meta["MSKSAT"] == 2


@pytest.mark.parametrize("value", [True, "high"])
def test_saturate_keyword_not_a_number(value):
    with pytest.raises(ValueError, match="SATURATE = .* is not a number"):
        make_mask(small({"SATURATE": value}))


def test_saturation_estimate_needs_finite_pixels():
    with pytest.raises(ValueError, match="no finite pixel"):
        make_mask(small(value=np.nan), saturation=True)


@pytest.mark.parametrize("value", [-5.0, 0.0, np.nan, np.inf])
@pytest.mark.parametrize("name", ["hot_threshold", "flat_threshold"])
def test_thresholds_checked(name, value):
    with pytest.raises(ValueError, match=f"{name} must be positive and finite"):
        make_mask(small(), **{name: value})


def test_string_external_mask_refused():
    with pytest.raises(TypeError, match="external_mask must be an array of numbers"):
        make_mask(small(shape=(2, 3)), external_mask=np.array([["a", "b", "c"]] * 2))


def test_empty_dark_and_flat_refused():
    with pytest.raises(ValueError, match="dark has no finite pixel"):
        make_mask(small(), dark=np.full((60, 120), np.nan))
    with pytest.raises(ValueError, match="flat has no positive finite pixel"):
        make_mask(small(), flat=np.zeros((60, 120)))


def test_uncertainty_not_shared_with_the_input():
    from astropy.nddata import StdDevUncertainty

    ccd = small()
    ccd.uncertainty = StdDevUncertainty(np.full(ccd.shape, 3.0))
    result = make_mask(ccd)
    result.uncertainty.array[0, 0] = 99.0
    assert ccd.uncertainty.array[0, 0] == 3.0
    assert result.uncertainty.unit == ccd.uncertainty.unit
