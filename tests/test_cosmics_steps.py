"""Pieces of the cosmic-ray steps, against exact answers."""

import numpy as np
import pytest
from scipy import ndimage

from stdpipe_ccd import CosmicRayTuning, validation
from stdpipe_ccd._cosmics import singles, stars
from stdpipe_ccd._cosmics.frame import Frame

OFFSETS = np.linspace(-0.45, 0.45, 7)


def star_frame(psf, fwhm, dx, dy, sky=100.0, flux=1e5):
    """A noiseless 31 x 31 frame with one star centred (dx, dy) off pixel (15, 15)."""
    data = np.full((31, 31), sky, np.float32)
    data[3:28, 3:28] += flux * validation._psf_stamp(psf, fwhm, 4.765, dx, dy, 12)
    known = np.zeros(data.shape, bool)
    return Frame(data, known, np.full(data.shape, sky, np.float32), np.ones(data.shape, np.float32))


@pytest.mark.parametrize(
    ("psf", "fwhm", "tolerance"),
    [
        ("gaussian", 1.6, 0.005),
        ("gaussian", 2.5, 0.005),
        ("moffat", 1.6, 0.02),
        ("moffat", 3.0, 0.02),
    ],
)
def test_star_centroids_unbiased(psf, fwhm, tolerance):
    """A star's centroid is found within a small fraction of a pixel at every pixel phase.

    The 3 x 3 first moment it replaces was pulled towards the pixel centre by
    half the offset (0.27 px at 0.5 px off, FWHM 2.5), enough to halve the
    light predicted on a steep wing.
    """
    for dy in OFFSETS:
        for dx in OFFSETS:
            frame = star_frame(psf, fwhm, dx, dy)
            cy, cx, total = stars.centroids(frame, np.array([15]), np.array([15]))
            assert abs(cy[0] - (15 + dy)) < tolerance
            assert abs(cx[0] - (15 + dx)) < tolerance
            assert total[0] == pytest.approx(np.sum(frame.data[14:17, 14:17] - 100.0), rel=1e-5)


def test_centroid_of_a_pixel_without_light_on_both_sides_stays_put():
    """No light on one side (a ray, an edge) gives no shift rather than a wild one."""
    frame = star_frame("gaussian", 2.5, 0.0, 0.0, flux=0.0)
    frame.data[15, 15] += 1000.0
    frame.data[15, 16] += 300.0
    cy, cx, _ = stars.centroids(frame, np.array([15]), np.array([15]))
    assert cy[0] == 15.0
    assert cx[0] == 15.0


def star_grid(psf, fwhm, sky=100.0, flux=1e5):
    """A noiseless frame of 49 stars, one at each pixel phase of `OFFSETS`, and their tops."""
    data = np.full((7 * 25, 7 * 25), sky, np.float32)
    tops = []
    for i, dy in enumerate(OFFSETS):
        for j, dx in enumerate(OFFSETS):
            y, x = 12 + 25 * i, 12 + 25 * j
            data[y - 12 : y + 13, x - 12 : x + 13] += flux * validation._psf_stamp(
                psf, fwhm, 4.765, dx, dy, 12
            )
            tops.append((y, x))
    ones = np.ones(data.shape, np.float32)
    frame = Frame(data, np.zeros(data.shape, bool), sky * ones, ones)
    return frame, tuple(np.array(tops).T)


@pytest.mark.parametrize(
    ("psf", "fwhm"),
    [("gaussian", 1.6), ("moffat", 1.6), ("moffat", 2.0), ("gaussian", 2.5), ("moffat", 3.0)],
)
def test_star_test_passes_stars_at_every_phase(psf, fwhm):
    """Calibrated on the frame's stars, the star test's roundness passes every one, at any phase.

    So does the whole test, but for the noiseless Gaussian stars of FWHM 1.6
    centred near a pixel's corner, whose far corner neighbour is dark.
    """
    frame, tops = star_grid(psf, fwhm)
    test = stars.star_thresholds(frame, tops, CosmicRayTuning())
    assert (
        stars.roundness(stars.neighbour_light(frame, *tops)[0]) >= max(test.roundness, 0.35)
    ).all()
    passed = stars.is_star_top(frame, *tops, test)
    assert passed.all() or ((psf, fwhm) == ("gaussian", 1.6) and passed.mean() > 0.9)


@pytest.mark.parametrize("angle", np.arange(0, 180, 15))
def test_star_test_fails_blurred_tracks(angle):
    """A track blurred by charge diffusion (0.7 px) is no star of FWHM 3, whatever its angle.

    Along an axis, it passes the neighbour-sum and dimmest-neighbour tests:
    the pixels across it hold a third of its light. Its opposite neighbours
    do not agree.
    """
    frame, tops = star_grid("moffat", 3.0)
    test = stars.star_thresholds(frame, tops, CosmicRayTuning())
    track = np.zeros((61, 61))
    for step in np.linspace(-15, 15, 600):
        y, x = 30 + step * np.sin(np.radians(angle)), 30 + step * np.cos(np.radians(angle))
        track[round(y), round(x)] += 200.0
    frame.data[:61, :61] = 100.0 + ndimage.gaussian_filter(track, 0.7)
    top = np.array([30]), np.array([30])
    assert stars.roundness(stars.neighbour_light(frame, *top)[0])[0] < 0.4
    assert test.roundness >= 0.5
    assert not stars.is_star_top(frame, *top, test)[0]


def test_weak_singles_unflagged_and_the_rest_kept():
    """A lone flag less than sigclip sigma above its 5 x 5 median goes; rays and groups stay."""
    rng = np.random.default_rng(3)
    data = rng.normal(100.0, 10.0, (64, 64)).astype(np.float32)
    sigma = np.full(data.shape, 10.0, np.float32)
    frame = Frame(
        data, np.zeros(data.shape, bool), np.full(data.shape, 100.0, np.float32), sigma**2
    )
    cosmics = np.zeros(data.shape, bool)
    for (y, x), excess in {(10, 10): 40.0, (10, 40): 80.0, (40, 10): 30.0}.items():
        data[y, x] = 100.0 + excess  # lone flags at 4, 8 and 3 sigma
        cosmics[y, x] = True
    data[40, 40:42] = 130.0  # a pair of 3 sigma: a group, not a lone flag
    cosmics[40, 40:42] = True
    singles.drop_weak_singles(cosmics, frame, 4.5)
    assert not cosmics[10, 10]
    assert not cosmics[40, 10]
    assert cosmics[10, 40]
    assert cosmics[40, 40:42].all()
    assert np.count_nonzero(cosmics) == 3
