"""Quick-look pictures of masked frames and coadds (needs matplotlib).

The figures are made without `matplotlib.pyplot`, so they work in scripts,
on clusters and in notebooks alike, and never open a window.
"""

import warnings
from pathlib import Path

import numpy as np
from astropy.nddata import block_reduce
from astropy.visualization import AsinhStretch, ImageNormalize, ZScaleInterval

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


def plot_mask(ccd, *, flags=None, filename=None, title=None, width=8.0, dpi=100):
    """Draw a frame with each mask reason in its own colour, and a legend.

    Parameters
    ----------
    ccd : `~astropy.nddata.CCDData`
        A frame from `~stdpipe_ccd.make_mask` (or with ``.flags`` of
        `~stdpipe_ccd.MaskFlag` bits); without flags, its ``.mask`` is drawn
        as ``INPUT``.
    flags : `~numpy.ndarray`, optional
        Flags to draw instead of ``ccd.flags``.
    filename : str or path-like, optional
        Save the figure there (PNG, PDF, ... by its suffix).
    title : str, optional
        Title of the figure.
    width : float, optional
        Width of the figure in inches. Default is 8.
    dpi : int, optional
        Resolution. Default is 100.

    Returns
    -------
    figure : `matplotlib.figure.Figure`

    Notes
    -----
    The image is scaled with `~astropy.visualization.ZScaleInterval` over its
    unmasked pixels and an `~astropy.visualization.AsinhStretch`. Where the
    frame has more pixels than the picture, the reasons are pooled so that a
    one-pixel cosmic ray still shows: each picture pixel takes the colour of
    the first reason (in `REASON_COLOURS` order) of the pixels it covers.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    data = np.asarray(ccd.data, dtype=np.float32)
    flags = _flags_of(ccd, flags)
    figure, ax = _figure(data.shape, width, dpi, panels=1, legend=True)
    factor = _pooling_factor(data.shape, ax, dpi)
    valid = (flags == 0) & np.isfinite(data)
    shown = _pool(data, factor)
    extent = _extent(shown.shape, factor)
    ax.imshow(
        shown,
        norm=_image_norm(data, valid),
        cmap="gray",
        origin="lower",
        extent=extent,
        interpolation="nearest",
    )
    reasons = list(REASON_COLOURS)
    codes = np.zeros(flags.shape, dtype=np.uint8)
    for code, flag in enumerate(reversed(reasons), start=1):
        codes[(flags & flag.value) != 0] = code  # later (higher) codes win: first listed
    pooled = _pool(codes, factor, np.max)
    colours = ListedColormap([REASON_COLOURS[flag] for flag in reversed(reasons)])
    ax.imshow(
        np.ma.masked_equal(pooled, 0),
        cmap=colours,
        vmin=0.5,
        vmax=len(reasons) + 0.5,
        origin="lower",
        extent=extent,
        interpolation="nearest",
    )
    present = [flag for flag in reasons if np.any(flags & flag.value)]
    handles = [
        Patch(color=REASON_COLOURS[f], label=f"{f.name} ({np.count_nonzero(flags & f.value)})")
        for f in present
    ]
    ax.legend(
        handles=handles or [Patch(color="none", label="nothing masked")],
        loc="center left",
        bbox_to_anchor=(1.02, 0.5),
        borderaxespad=0,
        fontsize=8,
        frameon=False,
    )
    _finish(figure, ax, title, filename, dpi)
    return figure


def plot_coadd(ccd, *, filename=None, title=None, width=12.0, dpi=100):
    """Draw a coadd beside its weight map.

    Parameters
    ----------
    ccd : `~astropy.nddata.CCDData`
        A coadd from `~stdpipe_ccd.coadd` or `~stdpipe_ccd.reproject_swarp`,
        with an `~astropy.nddata.InverseVariance` uncertainty.
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
    figure : `matplotlib.figure.Figure`
        The coadd (zscale, asinh stretch) on the left, the weight
        (inverse variance) on the right; pixels where nothing was coadded are
        drawn in `EMPTY_COLOUR` in both.
    """
    from matplotlib.colors import Normalize

    data = np.asarray(ccd.data, dtype=np.float32)
    empty = ~np.isfinite(data) if ccd.mask is None else np.asarray(ccd.mask) | ~np.isfinite(data)
    weight = _weight_of(ccd, data.shape)
    figure, axes = _figure(data.shape, width, dpi, panels=2, legend=False)
    factor = _pooling_factor(data.shape, axes[0], dpi)
    for ax, image, norm, cmap in (
        (axes[0], data, _image_norm(data, ~empty), "gray"),
        (axes[1], weight, Normalize(0, _top(weight[~empty])), "viridis"),
    ):
        shown = np.ma.masked_array(_pool(image, factor), _pool(empty, factor, np.max))
        colours = _colormap(cmap)
        image_artist = ax.imshow(
            shown,
            norm=norm,
            cmap=colours,
            origin="lower",
            extent=_extent(shown.shape, factor),
            interpolation="nearest",
        )
        figure.colorbar(image_artist, ax=ax, fraction=0.046, pad=0.02, shrink=0.8)
    axes[0].set_title(f"coadd [{ccd.unit}]", fontsize=9)
    axes[1].set_title(f"weight (1/variance) [{(ccd.unit**-2).to_string()}]", fontsize=9)
    _finish(figure, axes[0], title, filename, dpi)
    return figure


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


def _figure(shape, width, dpi, *, panels, legend):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ny, nx = shape
    side = 0.4 if legend else 0.12  # room for the legend or the colour bars
    height = round((width * (1 - side) / panels * ny / nx + 0.6) * dpi) / dpi  # whole pixels
    figure = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, panels, sharex=True, sharey=True, squeeze=False)[0]
    return figure, (axes[0] if panels == 1 else axes)


def _pooling_factor(shape, ax, dpi):
    """Frame pixels per picture pixel, rounded down, at least 1."""
    box = ax.get_position()
    pixels = box.width * ax.figure.get_figwidth() * dpi
    return max(int(shape[1] // max(pixels, 1)), 1)


def _pool(image, factor, reduce=None):
    """Reduce ``image`` by ``factor`` per axis: ``reduce`` of each block, by default the mean."""
    if factor == 1:
        return image
    if reduce is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # blocks without finite pixels
            return block_reduce(image, factor, func=np.nanmean).astype(np.float32)
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


def _finish(figure, ax, title, filename, dpi):
    ax.set_xlabel("x [pixel]")
    ax.set_ylabel("y [pixel]")
    if title:
        figure.suptitle(title, fontsize=10)
    if filename is not None:
        figure.savefig(filename, dpi=dpi)


# --- pictures written by the command line and the demo, as tasks -------------------------


def write_mask_png(path, overwrite=False):
    """Write ``<path without .fits>.png``, a quick-look of a masked frame; return its path."""
    png = png_path(path)
    if png.exists() and not overwrite:
        return str(png)
    plot_mask(read_fits(path), filename=png, title=Path(path).name)
    return str(png)


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
