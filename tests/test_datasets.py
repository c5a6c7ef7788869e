import numpy as np
import pytest
from scipy import ndimage

from stdpipe_ccd import _render, datasets


def test_same_seed_same_frame():
    a = datasets.make_frame((128, 160), seed=5)
    b = datasets.make_frame((128, 160), seed=5)
    c = datasets.make_frame((128, 160), seed=6)
    np.testing.assert_array_equal(a.ccd.data, b.ccd.data)
    assert not np.array_equal(
        a.ccd.data[np.isfinite(a.ccd.data)], c.ccd.data[np.isfinite(c.ccd.data)]
    )


def test_header_keywords(frame):
    meta = frame.ccd.meta
    assert meta["DATASEC"] == "[1:992,1:1024]"
    assert meta["GAIN"] == datasets.GAIN
    assert meta["SATURATE"] == datasets.SATURATE
    assert frame.ccd.wcs.has_celestial


def test_noise_matches_model(frame):
    """Pixels without stars, rays or defects scatter as the noise model says."""
    clean = (frame.model - frame.sky < 0.05 * frame.noise) & ~frame.nonfinite_mask
    clean &= frame.cosmic_label == 0
    clean[:, -datasets.OVERSCAN :] = False
    clean[frame.hot_pixels["y"], frame.hot_pixels["x"]] = False
    clean &= frame.ccd.data < frame.sky + 8 * frame.noise  # faint ray wings below 1/5 of a ray
    pulls = (frame.ccd.data - frame.model)[clean] / frame.noise[clean]
    assert abs(np.mean(pulls)) < 0.02
    assert np.std(pulls) == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize(("x", "y"), [(40.0, 40.0), (40.3, 39.6), (39.5, 40.5)])
def test_star_flux_and_position(x, y):
    """A rendered star holds its flux, centred at its catalogue position."""
    from astropy.table import Table

    image = np.zeros((81, 81))
    _render.render_stars(image, Table({"x": [x], "y": [y], "flux": [1e5]}), fwhm=3.0)
    yy, xx = np.mgrid[:81, :81]
    assert image.sum() == pytest.approx(1e5, rel=2e-3)
    assert (image * xx).sum() / image.sum() == pytest.approx(x, abs=0.005)
    assert (image * yy).sum() / image.sum() == pytest.approx(y, abs=0.005)


def test_bleed_trails_are_vertical_and_saturated(frame):
    assert frame.stars["saturated"].sum() >= 2
    assert frame.bleed_mask.sum() > 100
    # trails sit in the columns of saturated star cores
    assert set(np.nonzero(frame.bleed_mask)[1]) <= set(np.nonzero(frame.saturated_mask)[1])


def test_cosmic_ray_population(frame):
    rays = frame.cosmic_rays
    assert set(rays["kind"]) == {"point", "short", "long"}
    assert 0.7 < np.mean(rays["peak_snr"] >= 5) < 0.95
    assert (frame.cosmic_label[:, -datasets.OVERSCAN :] == 0).all()


def test_cosmic_ray_deposits_per_pixel_of_track():
    """A track gives each pixel it crosses its level times the length inside it."""
    level, shape = 500.0, (40, 40)
    ys, xs, values = _render.crossed(10.25, 20.5, 12.0, 0.0, level, shape, 40)
    assert set(ys) == {20}
    assert list(xs) == list(range(4, 17))  # from x = 4.25 to 16.25
    np.testing.assert_allclose(values, [0.75 * level, *[level] * 11, 0.25 * level])
    ys, xs, values = _render.crossed(20.0, 20.0, 14.0, np.pi / 4, level, shape, 40)
    assert values.sum() == pytest.approx(14 * level)
    assert values.max() == pytest.approx(np.sqrt(2) * level, rel=0.05)  # a pixel's diagonal
    ys, xs, values = _render.double_hit(20.7, 20.2, 0.1, level)
    assert (list(ys), list(xs), list(values)) == ([20, 20], [20, 21], [level, level])


def test_diffused_cosmic_rays_are_fainter():
    """Diffusion keeps every ray (same seed) but spreads its charge over more pixels."""
    sharp = datasets.make_frame((512, 512), seed=4).cosmic_rays
    diffused = datasets.make_frame((512, 512), seed=4, diffuse_cosmics=True).cosmic_rays
    assert list(sharp["kind"]) == list(diffused["kind"])
    points = sharp["kind"] == "point"
    assert set(sharp["npix"][points]) == {1, 2}
    assert sharp["peak"][points].min() >= 80  # the lowest deposit
    assert (diffused["npix"][points] > 2).any()
    assert np.mean(diffused["peak"] < 0.9 * sharp["peak"]) > 0.4
    assert np.mean(diffused["peak_snr"] >= 5) < np.mean(sharp["peak_snr"] >= 5)


def test_blurred_cosmic_rays_keep_their_charge():
    """Blur spreads each ray's deposit (same rays, same total) and lowers its peak."""
    sharp = datasets.make_frame((512, 512), seed=4, nan_patch=False)
    blurred = datasets.make_frame((512, 512), seed=4, nan_patch=False, cosmic_blur=0.7)
    assert list(sharp.cosmic_rays["kind"]) == list(blurred.cosmic_rays["kind"])
    assert (blurred.cosmic_rays["peak"] < sharp.cosmic_rays["peak"]).all()
    # the ray pixels of both frames together hold the same extra charge
    rays = (sharp.cosmic_label > 0) | (blurred.cosmic_label > 0)
    rays = ndimage.binary_dilation(rays, iterations=4)
    extra = [(f.ccd.data - f.model)[rays].sum() for f in (sharp, blurred)]
    assert extra[1] == pytest.approx(extra[0], rel=0.02)


def test_dark_and_flat_match_the_lights(frame, dark, flat):
    hot = frame.hot_pixels
    assert (dark.data[hot["y"], hot["x"]] > 500).all()
    assert np.median(dark.data) == pytest.approx(0.0, abs=0.1)
    corner = flat.data[:3, :3].mean()
    assert corner == pytest.approx(0.35, abs=0.03)
    np.testing.assert_allclose(flat.data[:, :-32], frame.response[:, :-32], atol=0.02)


def test_dither_set_shares_the_field():
    frames = datasets.make_dither_set(3, (256, 256), seed=2)
    # a star near the middle of the first frame is on every frame (dithers are small)
    stars = frames[0].stars
    middle = np.argmin(np.hypot(stars["x"] - 128, stars["y"] - 128))
    ra, dec = stars["ra"][middle], stars["dec"][middle]
    for item in frames[1:]:
        match = np.hypot(item.stars["ra"] - ra, item.stars["dec"] - dec).min() * 3600
        assert match < 1e-6
    skies = [item.sky for item in frames]
    assert len(set(skies)) == 3
    assert all(600 <= s <= 1950 for s in skies)


def test_too_small_a_frame_is_refused():
    with pytest.raises(ValueError, match="too small: the data section"):
        datasets.make_frame((10, 10))


def test_every_product_round_trips_through_ccddata_io(tmp_path):
    """Frames, darks, flats and validation fields write and read back with CCDData."""
    from astropy.nddata import CCDData

    from stdpipe_ccd import validation

    products = {
        "frame": datasets.make_frame((128, 128), seed=1).ccd,
        "dark": datasets.make_dark((128, 128)),
        "flat": datasets.make_flat((128, 128)),
        "dither": datasets.make_dither_set(2, (128, 128), seed=1)[1].ccd,
        "field": validation.make_field((128, 128), seed=1, n_stars=20, n_rays=5).ccd,
    }
    for name, ccd in products.items():
        path = tmp_path / f"{name}.fits"
        ccd.write(path)
        back = CCDData.read(path)
        assert back.unit == ccd.unit, name
        np.testing.assert_array_equal(back.data, ccd.data, err_msg=name)
