"""Quick-look pictures of masked frames and coadds (needs matplotlib).

The figures are made without `matplotlib.pyplot`, so they work in scripts,
on clusters and in notebooks alike, and never open a window.
"""

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.nddata import block_reduce
from astropy.visualization import AsinhStretch, ImageNormalize, ZScaleInterval

from ._inputs import image_hdus
from .flags import MaskFlag
from .io import FITS_SUFFIXES, read_fits

__all__ = ["REASON_COLOURS", "plot_coadd", "plot_mask"]

#: colour of each mask reason; where a pixel has several, the first listed wins
REASON_COLOURS = {
    MaskFlag.BLEED: "#ff7f0e",  # before SATURATED: trails are saturated too
    MaskFlag.SATURATED: "#d62728",
    MaskFlag.COSMIC_RAY: "#2ca02c",
    MaskFlag.HOT: "#17becf",
    MaskFlag.NONFINITE: "#ffd700",
    MaskFlag.OUTSIDE_DATASEC: "#1f77b4",
    MaskFlag.EXTERNAL: "#8c564b",
    MaskFlag.INPUT: "#e377c2",
    MaskFlag.LOW_RESPONSE: "#9467bd",
}
#: colour of pixels without data (nothing coadded, or not finite)
EMPTY_COLOUR = "#ff00ff"
#: reasons that cover areas, outlined where another reason hides them
AREA_REASONS = (
    MaskFlag.OUTSIDE_DATASEC,
    MaskFlag.EXTERNAL,
    MaskFlag.INPUT,
    MaskFlag.LOW_RESPONSE,
)
#: reasons of single pixels or small groups, ringed where the picture is smaller than the frame
RINGED_REASONS = (MaskFlag.HOT, MaskFlag.NONFINITE, MaskFlag.COSMIC_RAY)
#: a reason with at most this many groups is ringed where the picture is smaller than the frame
RING_LIMIT = 100


def plot_mask(ccd, *, flags=None, ax=None, filename=None, title=None, width=10.0, dpi=100):
    """Draw a frame with each mask reason in its own colour, and a legend.

    Parameters
    ----------
    ccd : `~astropy.nddata.CCDData`
        A frame from `~stdpipe_ccd.make_mask` (or with ``.flags`` of
        `~stdpipe_ccd.MaskFlag` bits); without flags, its ``.mask`` is drawn
        as ``INPUT``.
    flags : `~numpy.ndarray`, optional
        Flags to draw instead of ``ccd.flags``.
    ax : `~matplotlib.axes.Axes`, optional
        Draw into these axes (of a `matplotlib.pyplot` figure, say) instead
        of a new figure; ``width`` and ``dpi`` are then not used.
    filename : str or path-like, optional
        Save the figure there (PNG, PDF, ... by its suffix).
    title : str, optional
        Title of the figure.
    width : float, optional
        Width of the figure in inches. Default is 10.
    dpi : int, optional
        Resolution. Default is 100.

    Returns
    -------
    figure : `~matplotlib.figure.Figure`

    Notes
    -----
    The image is scaled with `~astropy.visualization.ZScaleInterval` over its
    unmasked pixels and an `~astropy.visualization.AsinhStretch`, with its
    colour bar below. Where the frame has more pixels than the
    picture, the reasons are pooled so that a one-pixel cosmic ray still
    shows: each picture pixel takes the colour of the first reason (in
    `REASON_COLOURS` order) of the pixels it covers. Where another reason
    hides an area reason (``LOW_RESPONSE`` in the overscan, say), the hidden
    part is outlined with a dashed line in its own colour; and a reason of
    at most ``RING_LIMIT`` groups (hot pixels) is ringed as well when the
    picture is smaller than the frame.
    """
    from matplotlib.patches import Patch

    data = np.asarray(ccd.data, dtype=np.float32)
    flags = _flags_of(ccd, flags)
    own_figure = ax is None
    if own_figure:
        figure, ax = _figure(data.shape, width, dpi, panels=1, legend=True)
    figure = ax.figure
    _label_axes(ax, ax)
    factor = _pooling_factor(data.shape, ax, figure.dpi)
    valid = (flags == 0) & np.isfinite(data)
    pooled = _pool(data, factor)
    extent = _extent(pooled.shape, factor)
    image = ax.imshow(
        pooled,
        norm=_image_norm(data, valid),
        cmap="gray",
        origin="lower",
        extent=extent,
        interpolation="nearest",
    )
    _colour_bar(figure, image, ax, str(ccd.unit or ""), location="bottom")
    present = [flag for flag in REASON_COLOURS if np.any(flags & flag.value)]
    shown = _draw_reasons(ax, flags, present, factor, extent)
    handles = [
        Patch(color=REASON_COLOURS[f], label=f"{f.name} ({np.count_nonzero(flags & f.value)})")
        for f in present
    ]
    if shown:
        handles.append(Patch(facecolor="none", edgecolor="0.3", ls="--", label="under another"))
    legend = {
        "handles": handles or [Patch(color="none", label="nothing masked")],
        "fontsize": 10,
        "frameon": False,
    }
    if own_figure:  # constrained layout makes room for it
        figure.legend(loc="outside right center", **legend)
    else:
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), borderaxespad=0, **legend)
    _finish(figure, title, filename)
    return figure


def _draw_reasons(ax, flags, present, factor, extent):
    """Draw each reason in its colour (the first listed on top); return whether any is outlined."""
    from matplotlib.colors import ListedColormap

    codes = np.zeros(flags.shape, dtype=np.uint8)
    for code, flag in enumerate(reversed(present), start=1):
        codes[(flags & flag.value) != 0] = code  # later (higher) codes win: first listed
    pooled = _pool(codes, factor, np.max)
    if present:
        ax.imshow(
            np.ma.masked_equal(pooled, 0),
            cmap=ListedColormap([REASON_COLOURS[flag] for flag in reversed(present)]),
            vmin=0.5,
            vmax=len(present) + 0.5,
            origin="lower",
            extent=extent,
            interpolation="nearest",
        )
    outlined = False
    for code, flag in enumerate(reversed(present), start=1):
        mask, colour = (flags & flag.value) != 0, REASON_COLOURS[flag]
        if flag in AREA_REASONS:
            outlined |= _outline(ax, mask & (codes != code), factor, extent, colour)
        if factor > 1 and flag in RINGED_REASONS:
            _ring_small_groups(ax, mask, colour)
    return outlined


def _outline(ax, hidden, factor, extent, colour):
    """Outline the ``hidden`` pixels with a dashed line; return whether there were any."""
    pooled = _pool(hidden, factor, np.max)
    if not pooled.any():
        return False
    ax.contour(
        pooled,
        levels=[0.5],
        colors=[colour],
        linestyles="--",
        linewidths=1.5,
        extent=extent,  # as imshow's: the outline runs along the pixels' edges
        origin="lower",
    )
    return True


def _ring_small_groups(ax, mask, colour):
    """Ring each group of ``mask`` when there are few of them (lost at the picture's scale)."""
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if not count or count > RING_LIMIT:
        return
    centres = np.array(ndimage.center_of_mass(mask, labels, range(1, count + 1)))
    ax.scatter(
        centres[:, 1], centres[:, 0], s=80, facecolors="none", edgecolors=colour, linewidths=1.5
    )


def plot_coadd(ccd, *, figure=None, filename=None, title=None, width=12.0, dpi=100):
    """Draw a coadd beside its weight map, and its exposure and image-count maps.

    Parameters
    ----------
    ccd : `~astropy.nddata.CCDData`
        A coadd from `~stdpipe_ccd.coadd` or `~stdpipe_ccd.reproject_swarp`,
        with an `~astropy.nddata.InverseVariance` uncertainty.
    figure : `~matplotlib.figure.Figure`, optional
        Draw into this empty figure (of `matplotlib.pyplot`, say) instead of
        a new one; ``width`` and ``dpi`` are then not used.
    filename : str or path-like, optional
        Save the figure there.
    title : str, optional
        Title of the figure.
    width : float, optional
        Width of the figure in inches. Default is 12.
    dpi : int, optional
        Resolution. Default is 100.

    Returns
    -------
    figure : `~matplotlib.figure.Figure`
        The coadd (zscale, asinh stretch) and its weight (inverse variance);
        below them, when the coadd has them, its ``.exposure_map`` and
        ``.count_map``. Pixels where nothing was coadded are drawn in
        ``EMPTY_COLOUR`` (magenta) in every panel, named in a legend.
    """
    from matplotlib.patches import Patch

    data = np.asarray(ccd.data, dtype=np.float32)
    empty = ~np.isfinite(data) if ccd.mask is None else np.asarray(ccd.mask) | ~np.isfinite(data)
    panels = _coadd_panels(ccd, data, empty)
    rows = len(panels) // 2
    if figure is None:
        below = 0.4 if empty.any() else 0.0  # the legend
        figure, axes = _figure(
            data.shape, width, dpi, panels=2, legend=False, rows=rows, below=below
        )
    else:
        axes = figure.subplots(rows, 2, sharex=True, sharey=True, squeeze=False)
    axes = np.ravel(axes)
    for ax in axes[:-2]:
        ax.tick_params(labelbottom=False)
    _label_axes(axes[-2:], axes[::2])
    factor = _pooling_factor(data.shape, axes[0], figure.dpi)
    shown_empty = _pool(empty, factor, np.max)
    for ax, (image, norm, cmap, label) in zip(axes, panels, strict=True):
        counts = label == "images"
        shown = np.ma.masked_array(_pool(image, factor, np.max if counts else None), shown_empty)
        artist = ax.imshow(
            shown,
            norm=norm,
            cmap=_colormap(cmap),
            origin="lower",
            extent=_extent(shown.shape, factor),
            interpolation="nearest",
        )
        _colour_bar(figure, artist, ax, None, integers=counts)
        ax.set_title(label, fontsize=10)
    if empty.any():
        figure.legend(
            handles=[Patch(color=EMPTY_COLOUR, label="no data (masked or not covered)")],
            loc="outside lower center",
            fontsize=10,
            frameon=False,
        )
    _finish(figure, title, filename)
    return figure


def _coadd_panels(ccd, data, empty):
    """(image, norm, colour map, title) of each panel of `plot_coadd`."""
    from matplotlib.colors import BoundaryNorm, Normalize

    weight = _weight_of(ccd, data.shape)
    panels = [
        (data, _image_norm(data, ~empty), "gray", f"coadd [{ccd.unit}]"),
        (
            weight,
            Normalize(0, _top(weight[~empty])),
            "viridis",
            f"weight (1/variance) [{(ccd.unit**-2).to_string()}]",
        ),
    ]
    exposure, count = getattr(ccd, "exposure_map", None), getattr(ccd, "count_map", None)
    if exposure is not None and count is not None:
        exposure, count = np.asarray(exposure, np.float32), np.asarray(count)
        most = max(int(count.max()), 1)
        panels += [
            (exposure, Normalize(0, max(float(exposure.max()), 1.0)), "cividis", "exposure [s]"),
            (count, BoundaryNorm(np.arange(-0.5, most + 1), 256), "plasma", "images"),
        ]
    return panels


def _colour_bar(figure, artist, ax, label, *, location="right", integers=False):
    """Add a colour bar with a few round ticks, along a stretched scale too."""
    from matplotlib.ticker import FormatStrFormatter

    bar = figure.colorbar(artist, ax=ax, location=location, fraction=0.046, pad=0.02, shrink=0.8)
    norm = artist.norm
    bar.formatter = FormatStrFormatter("%g")
    if integers:
        most = int(norm.boundaries[-1] - 0.5)
        bar.set_ticks(np.unique(np.linspace(0, most, min(most + 1, 6)).round()))
    elif getattr(norm, "stretch", None) is not None:
        # evenly spaced along the stretch, rounded: asinh ticks would bunch at the top
        ticks = np.unique([_round(value) for value in norm.inverse(np.linspace(0, 1, 5))])
        bar.set_ticks(ticks[(ticks >= norm.vmin) & (ticks <= norm.vmax)])
    if label:
        bar.set_label(label)
    return bar


def _round(value, digits=2):
    """``value`` to ``digits`` significant digits."""
    value = float(value)
    if value == 0 or not np.isfinite(value):
        return 0.0
    return round(value, digits - 1 - int(np.floor(np.log10(abs(value)))))


def _flags_of(ccd, flags):
    if flags is None:
        flags = ccd.flags
    if flags is None:
        mask = np.zeros(ccd.shape, bool) if ccd.mask is None else np.asarray(ccd.mask, bool)
        return np.where(mask, MaskFlag.INPUT.value, 0).astype(np.uint16)
    flags = np.asarray(flags)
    if flags.shape != ccd.shape:
        msg = f"flags have shape {flags.shape}, the image {ccd.shape}"
        raise ValueError(msg)
    return flags


def _weight_of(ccd, shape):
    from astropy.nddata import InverseVariance

    if ccd.uncertainty is None:
        return np.zeros(shape, dtype=np.float32)
    if isinstance(ccd.uncertainty, InverseVariance):
        return np.asarray(ccd.uncertainty.array, dtype=np.float32)
    return np.asarray(ccd.uncertainty.represent_as(InverseVariance).array, dtype=np.float32)


def _figure(shape, width, dpi, *, panels, legend, rows=1, below=0.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ny, nx = shape
    side = 0.5 if legend else 0.12  # room for the colour bars and the legend
    panel_height = width * (1 - side) / panels * ny / nx + 0.8  # and its title and labels
    if legend:
        panel_height += 0.6  # the colour bar below
    height = round((rows * panel_height + below) * dpi) / dpi  # whole pixels
    figure = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, panels, sharex=True, sharey=True, squeeze=False)
    return figure, (axes[0, 0] if panels == 1 else axes)


def _pooling_factor(shape, ax, dpi):
    """Frame pixels per picture pixel, rounded up, so that no frame pixel is dropped.

    The axes are measured after the figure's layout, less a fifth for the
    colour bars and legend that are added later.
    """
    engine = ax.figure.get_layout_engine()
    if engine is not None:
        engine.execute(ax.figure)
    box = ax.get_position()
    pixels = 0.8 * box.width * ax.figure.get_figwidth() * dpi
    return max(int(np.ceil(shape[1] / max(pixels, 1))), 1)


def _pool(image, factor, reduce=None):
    """Reduce ``image`` by ``factor`` per axis: ``reduce`` of each block, by default the mean."""
    if factor == 1:
        return image
    if reduce is None:
        # the mean of the finite pixels, as sums: numpy.nanmean warns of blocks without any,
        # and catching that warning is not safe where pictures are drawn in threads
        finite = np.isfinite(image)
        total = block_reduce(np.where(finite, image, 0.0), factor, func=np.sum)
        count = block_reduce(finite, factor, func=np.sum)
        with np.errstate(invalid="ignore"):  # NaN for blocks without finite pixels
            return (total / count).astype(np.float32)
    return block_reduce(image, factor, func=reduce)


def _extent(shape, factor):
    """Extent of the pooled image in frame pixels."""
    return (-0.5, shape[1] * factor - 0.5, -0.5, shape[0] * factor - 0.5)


def _image_norm(data, valid):
    sample = data[valid]
    if sample.size == 0:
        return ImageNormalize(vmin=0, vmax=1)
    sample = sample[:: max(sample.size // 200_000, 1)]
    low, high = ZScaleInterval().get_limits(sample)
    return ImageNormalize(vmin=low, vmax=high, stretch=AsinhStretch(0.1), clip=False)


def _top(values):
    finite = values[np.isfinite(values)]
    return float(np.percentile(finite, 99.5)) if finite.size and np.any(finite > 0) else 1.0


def _colormap(name):
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad=EMPTY_COLOUR)


def _label_axes(bottom, left):
    """Label the x axis of the ``bottom`` axes and the y axis of the ``left`` ones."""
    for ax in np.atleast_1d(bottom):
        ax.set_xlabel("x [pixel]")
    for ax in np.atleast_1d(left):
        ax.set_ylabel("y [pixel]")


def _finish(figure, title, filename):
    if title:
        figure.suptitle(title, fontsize=10)
    if filename is not None:
        figure.savefig(filename, dpi=figure.dpi)


# --- pictures written by the command line and the demo, as tasks -------------------------


def write_mask_png(path, overwrite=False):
    """Write quick-looks of a masked frame beside it; return their paths.

    ``<path without .fits>.png`` for one image; for a file of several (the
    CCDs of a mosaic), one picture each, ``<path without .fits>.<n>.png``
    with ``n`` the image's ``EXTVER`` (or its place in the file).
    """
    with fits.open(path) as hdul:
        images = image_hdus(hdul)
        versions = [hdul[index].header.get("EXTVER", k) for k, index in enumerate(images, 1)]
    name, png = Path(path).name, png_path(path)
    if len(images) < 2:
        pictures = [(png, None, name)]
    else:
        pictures = [
            (png.with_suffix(f".{version}.png"), index, f"{name}, image {version}")
            for version, index in zip(versions, images, strict=True)
        ]
    for picture, index, title in pictures:
        if overwrite or not picture.exists():
            plot_mask(read_fits(path, hdu=index), filename=picture, title=title)
    return [str(picture) for picture, _, _ in pictures]


def write_coadd_png(ccd, png):
    """Write a quick-look of a coadd and its weight map to ``png``; return its path."""
    plot_coadd(ccd, filename=png, title=Path(png).stem)
    return str(png)


def png_path(path):
    """Return the picture's path beside a FITS file: ``.png`` for its FITS ending."""
    path = Path(path)
    name = path.name
    for suffix in FITS_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(name + ".png")
