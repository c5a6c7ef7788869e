import numpy as np
import pytest
from astropy.nddata import CCDData, InverseVariance

from stdpipe_ccd import MaskFlag, datasets

plot = pytest.importorskip("stdpipe_ccd.plot")
image = pytest.importorskip("matplotlib.image")
colors = pytest.importorskip("matplotlib.colors")


def pixels_of(png, colour):
    """Boolean image of the PNG pixels that have exactly ``colour``."""
    rgb = np.array(colors.to_rgb(colour))
    return np.all(np.abs(png[..., :3] - rgb) < 0.6 / 255, axis=-1)


def axes_box(figure, ax, png):
    """Rows and columns of the PNG inside ``ax``."""
    figure.canvas.draw()
    x0, y0, x1, y1 = ax.get_window_extent().extents
    height = png.shape[0]
    return slice(int(height - y1) + 1, int(height - y0)), slice(int(x0) + 1, int(x1))


def test_mask_picture(masked, tmp_path):
    path = tmp_path / "mask.png"
    figure = plot.plot_mask(masked, filename=path, width=8, dpi=100)
    png = image.imread(path)
    assert png.shape[:2] == tuple(np.round(figure.get_size_inches()[::-1] * 100).astype(int))
    rows, cols = axes_box(figure, figure.axes[0], png)
    inside = np.zeros(png.shape[:2], bool)
    inside[rows, cols] = True
    for flag, colour in plot.REASON_COLOURS.items():
        drawn = pixels_of(png, colour) & inside
        if np.any(masked.flags & flag):
            assert drawn.sum() > 0, flag.name
        else:
            assert drawn.sum() == 0, flag.name
    # the overscan strip (32 of 1024 columns, on the right) is drawn where it is
    overscan = pixels_of(png, plot.REASON_COLOURS[MaskFlag.OUTSIDE_DATASEC])[rows, cols]
    columns = np.nonzero(overscan.any(axis=0))[0]
    width = cols.stop - cols.start
    assert columns.min() > (1 - 40 / 1024) * width
    # less the dashed outline of the LOW_RESPONSE it hides (the flat is low there too)
    assert overscan.mean() == pytest.approx(datasets.OVERSCAN / 1024, rel=0.3)
    low = pixels_of(png, plot.REASON_COLOURS[MaskFlag.LOW_RESPONSE])[rows, cols]
    assert low[:, columns.min() - 2 :].sum() > 0.5 * rows.stop - rows.start
    # a one-pixel hot pixel still shows when the picture has fewer pixels than the frame
    assert width < 1024
    hot = pixels_of(png, plot.REASON_COLOURS[MaskFlag.HOT])[rows, cols]
    assert hot.sum() >= 0.5 * np.count_nonzero(masked.flags & MaskFlag.HOT) / 4


def test_mask_picture_without_flags(frame):
    ccd = frame.ccd.copy()
    ccd.mask = np.zeros(ccd.shape, bool)
    ccd.mask[:100] = True
    figure = plot.plot_mask(ccd)
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert labels == ["INPUT (102400)"]
    with pytest.raises(ValueError, match="flags have shape"):
        plot.plot_mask(ccd, flags=np.zeros((3, 3), np.uint16))


def test_coadd_picture(tmp_path):
    rng = np.random.default_rng(5)
    data = rng.normal(100, 5, (300, 400)).astype(np.float32)
    weight = np.full(data.shape, 1 / 25, dtype=np.float32)
    empty = np.zeros(data.shape, bool)
    empty[:, :100] = True  # the left quarter has no data
    data[empty], weight[empty] = np.nan, 0
    ccd = CCDData(data, unit="adu", mask=empty, uncertainty=InverseVariance(weight))
    path = tmp_path / "coadd.png"
    figure = plot.plot_coadd(ccd, filename=path, dpi=80)
    png = image.imread(path)
    assert png.shape[:2] == tuple(np.round(figure.get_size_inches()[::-1] * 80).astype(int))
    for ax in figure.axes[:2]:
        rows, cols = axes_box(figure, ax, png)
        drawn = pixels_of(png, plot.EMPTY_COLOUR)[rows, cols]
        assert drawn.mean() == pytest.approx(0.25, abs=0.02)
        assert drawn[2:-2, 2 : drawn.shape[1] // 4 - 2].all()
        assert not drawn[2:-2, drawn.shape[1] // 4 + 2 : -2].any()
    assert "1 / adu2" in figure.axes[1].get_title()


def test_mask_picture_into_given_axes(masked):
    """``ax=`` draws into a figure of the caller's, with an intensity colour bar."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    ax = figure.subplots()
    assert plot.plot_mask(masked, ax=ax) is figure
    assert len(ax.images) == 2  # the frame and the reasons
    assert [a.get_label() for a in figure.axes] == ["", "<colorbar>"]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"HOT ({np.count_nonzero(masked.flags & MaskFlag.HOT)})" in labels
    # the 31 hot pixels are ringed: the picture is smaller than the frame
    rings = [c for c in ax.collections if c.get_offsets().shape[0]]
    assert sum(len(c.get_offsets()) for c in rings) >= np.count_nonzero(masked.flags & MaskFlag.HOT)


def test_coadd_picture_with_maps():
    """Exposure and image-count maps get their own panels; colour-bar ticks are spread."""
    rng = np.random.default_rng(6)
    data = rng.normal(100, 5, (200, 200)).astype(np.float32)
    data[50:60, 50:60] += 5000  # a bright star: the asinh stretch's ticks would bunch
    ccd = CCDData(data, unit="adu", uncertainty=InverseVariance(np.full(data.shape, 0.04)))
    ccd.exposure_map = np.full(data.shape, 120.0, np.float32)
    ccd.count_map = np.repeat(np.arange(4, dtype=np.int16), 50)[None, :].repeat(200, axis=0)
    figure = plot.plot_coadd(ccd)
    panels = [a for a in figure.axes if a.get_label() != "<colorbar>"]
    titles = [a.get_title() for a in panels]
    assert titles[2:] == ["exposure [s]", "images"]
    bars = [a for a in figure.axes if a.get_label() == "<colorbar>"]
    assert len(bars) == 4
    assert list(bars[3].get_yticks()) == [0, 1, 2, 3]
    # along the coadd's stretch the ticks are spread out, not bunched at one end
    norm = panels[0].images[0].norm
    ticks = np.asarray(bars[0].get_yticks())
    stretched = np.sort(norm(ticks[(ticks >= norm.vmin) & (ticks <= norm.vmax)]))
    assert len(stretched) >= 4
    assert np.diff(stretched).min() > 0.1
    assert not figure.legends  # no pixel without data: no legend for it
