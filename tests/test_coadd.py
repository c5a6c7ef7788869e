import sys

import numpy as np
import pytest
from astropy.nddata import CCDData, StdDevUncertainty

from stdpipe_ccd import StdpipeCCDWarning, coadd, datasets, make_mask, swarp

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
        header=swarp._target_header(
            swarp._as_items(inputs), wcs=None, shape=None, width=None, height=None, header=None
        ),
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


@pytest.mark.parametrize(("combine", "factor"), [("sum", 1), ("average", 4), ("median", 8 / np.pi)])
def test_effective_gain_without_swarp(inputs, combine, factor):
    out = coadd(inputs, method="interp", combine=combine)
    assert out.meta["GAIN"] == pytest.approx(datasets.GAIN * factor, rel=0.02)
    assert out.meta["NCOMBINE"] == 4


def test_auto_falls_back_without_swarp(inputs, monkeypatch):
    def missing(path=None):
        raise swarp.SwarpNotFoundError("no SWarp here")

    monkeypatch.setattr(sys.modules["stdpipe_ccd.coadd"], "find_swarp", missing)
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
        ({"method": "interp", "combine": "clipped"}, "combine='clipped'"),
    ],
)
def test_bad_options(inputs, options, match):
    with pytest.raises(ValueError, match=match):
        coadd(inputs[:1], **options)
