"""Pieces of the cosmic-ray steps, against exact answers."""

import numpy as np
import pytest

from stdpipe_ccd import validation
from stdpipe_ccd._cosmics import stars
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
