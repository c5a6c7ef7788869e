import os
import stat
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, InverseVariance, StdDevUncertainty
from astropy.wcs import WCS
from ccdproc import ImageFileCollection

from stdpipe_ccd import (
    SwarpError,
    SwarpNotFoundError,
    conf,
    datasets,
    find_swarp,
    reproject_swarp,
    resample_swarp,
)

pytestmark = pytest.mark.requires_swarp

SHAPE = (512, 512)
SPARSE = {"star_density": 250.0, "cosmic_density": 0, "n_hot": 0, "nan_patch": False,
          "overscan": 0}


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
    [("identity", {}), ("subpixel shift", {"shift": (0.37, -0.61)}),
     ("rotation 15 deg", {"rotation": 15.0}), ("pixels 2x larger", {"scale": 2.0})],
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
