"""Rendering of the synthetic frames: the detector, stars, bleeding charge and cosmic rays."""

import numpy as np
from astropy.table import Table
from scipy import ndimage

__all__ = [
    "MOFFAT_BETA",
    "bleed",
    "cosmic_rays",
    "crossed",
    "detector_response",
    "double_hit",
    "hot_pixels",
    "render_stars",
    "track",
]

MOFFAT_BETA = 3.5


def render_stars(image, stars, fwhm, oversample=3):
    """Add Moffat stars integrated over pixels (``oversample``-fold) to ``image``."""
    ny, nx = image.shape
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / MOFFAT_BETA) - 1))
    norm = (MOFFAT_BETA - 1) / (np.pi * alpha**2)
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    for x0, y0, flux in zip(stars["x"], stars["y"], stars["flux"], strict=True):
        # radius where the profile falls below 0.02 ADU
        radius = int(np.clip(alpha * np.sqrt((flux * norm / 0.02) ** (1 / MOFFAT_BETA)), 6, 200))
        ix, iy = round(x0), round(y0)
        xs = slice(max(ix - radius, 0), min(ix + radius + 1, nx))
        ys = slice(max(iy - radius, 0), min(iy + radius + 1, ny))
        if xs.start >= xs.stop or ys.start >= ys.stop:
            continue
        gx = (np.arange(xs.start, xs.stop)[:, None] + sub[None, :]).ravel() - x0
        gy = (np.arange(ys.start, ys.stop)[:, None] + sub[None, :]).ravel() - y0
        profile = (1 + (gy[:, None] ** 2 + gx[None, :] ** 2) / alpha**2) ** (-MOFFAT_BETA)
        profile = profile.reshape(ys.stop - ys.start, oversample, xs.stop - xs.start, oversample)
        image[ys, xs] += flux * norm * profile.mean(axis=(1, 3))


def bleed(raw, full_well):
    """Spill charge above ``full_well`` up and down the columns; return the pixels that got any."""
    bled = np.zeros(raw.shape, dtype=bool)
    for column in np.flatnonzero((raw >= full_well).any(axis=0)):
        values = raw[:, column]
        over = np.flatnonzero(values > full_well)
        excess = float(np.sum(values[over] - full_well))
        values[over] = full_well
        lo, hi = over.min(), over.max()
        # half the excess goes each way, filling pixels to full well
        for direction, start in ((-1, lo - 1), (1, hi + 1)):
            charge = excess / 2
            row = start
            while charge > 0 and 0 <= row < values.size:
                room = max(full_well - values[row], 0.0)
                taken = min(room, charge)
                if taken > 0:
                    values[row] += taken
                    bled[row, column] = True
                charge -= taken
                row += direction
    return bled


def cosmic_rays(rng, raw, shape, data_nx, density, diffuse, blur, *, gain):
    """Deposit cosmic rays (electrons) into ``raw``; return the label image and the table."""
    ny, _ = shape
    n_rays = rng.poisson(density * ny * data_nx / 1e6)
    label = np.zeros(shape, dtype=np.int32)
    kinds = rng.choice(["point", "short", "long"], n_rays, p=[0.4, 0.4, 0.2])
    rows = {"id": [], "kind": [], "npix": [], "peak": [], "px": [], "py": []}
    for ray_id, kind in enumerate(kinds, start=1):
        level = 10 ** rng.uniform(np.log10(80.0), np.log10(8000.0))  # ADU per pixel of track
        x0, y0 = rng.uniform(3, data_nx - 3), rng.uniform(3, ny - 3)
        if kind == "point":
            length = rng.choice([0.0, 1.0])  # a single or a double hit
        elif kind == "short":
            length = rng.uniform(2.0, 8.0)
        else:
            length = rng.uniform(20.0, 120.0)
        angle = rng.uniform(0, np.pi)
        if diffuse:
            ys, xs, values = track(x0, y0, length, angle, level, shape, data_nx)
        elif length == 1.0:
            ys, xs, values = double_hit(x0, y0, angle, level)
        else:
            ys, xs, values = crossed(x0, y0, length, angle, level, shape, data_nx)
        if blur > 0:
            ys, xs, values = _blurred(ys, xs, values, blur, shape, data_nx)
        raw[ys, xs] += values * gain
        strong = (values >= 0.2 * level) & (label[ys, xs] == 0)
        label[ys[strong], xs[strong]] = ray_id
        best = np.argmax(values)
        rows["id"].append(ray_id)
        rows["kind"].append(kind)
        rows["npix"].append(int(strong.sum()))
        rows["peak"].append(float(values[best]))
        rows["px"].append(int(xs[best]))
        rows["py"].append(int(ys[best]))
    return label, Table(rows, dtype=[int, str, int, float, int, int])


def _blurred(ys, xs, values, blur, shape, data_nx):
    """Blur the deposits ``values`` at ``ys, xs`` by a Gaussian of ``blur`` pixels."""
    margin = int(np.ceil(4 * blur))
    y0, x0 = ys.min() - margin, xs.min() - margin
    box = np.zeros((ys.max() - y0 + margin + 1, xs.max() - x0 + margin + 1))
    box[ys - y0, xs - x0] = values
    box = ndimage.gaussian_filter(box, blur, mode="constant")
    by, bx = np.nonzero(box > 1e-3 * values.max())
    return _summed(by + y0, bx + x0, box[by, bx], shape, data_nx)


def double_hit(x0, y0, angle, level):
    """Two neighbouring pixels of ``level`` ADU each, the second one step along ``angle``."""
    x, y = int(x0), int(y0)  # x0, y0 keep 3 px from the edges
    dx, dy = round(np.cos(angle)), round(np.sin(angle))
    return np.array([y, y + dy]), np.array([x, x + dx]), np.array([level, level])


def crossed(x0, y0, length, angle, level, shape, data_nx):
    """Pixels a straight track crosses, each with ``level`` ADU per pixel of length in it."""
    if length == 0:
        return np.array([int(y0)]), np.array([int(x0)]), np.array([level])
    steps = max(int(np.ceil(length * 16)), 2)  # samples at the centres of equal pieces
    t = ((np.arange(steps) + 0.5) / steps - 0.5) * length
    ix = np.floor(x0 + t * np.cos(angle)).astype(int)
    iy = np.floor(y0 + t * np.sin(angle)).astype(int)
    return _summed(iy, ix, np.full(steps, level * length / steps), shape, data_nx)


def track(x0, y0, length, angle, level, shape, data_nx):
    """Pixels and ADU deposits of a straight track, its charge shared bilinearly."""
    if length == 0:
        return np.array([int(y0)]), np.array([int(x0)]), np.array([level])
    steps = max(int(length * 4), 2)
    t = np.linspace(-length / 2, length / 2, steps)
    x, y = x0 + t * np.cos(angle), y0 + t * np.sin(angle)
    ix, iy = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - ix, y - iy
    px = np.concatenate([ix, ix + 1, ix, ix + 1])
    py = np.concatenate([iy, iy, iy + 1, iy + 1])
    weight = np.concatenate([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
    return _summed(py, px, weight * level * length / steps, shape, data_nx)


def _summed(iy, ix, values, shape, data_nx):
    """Sum ``values`` per pixel, leaving out pixels beyond the data area."""
    keep = (iy >= 0) & (iy < shape[0]) & (ix >= 0) & (ix < data_nx) & (values > 0)
    index, inverse = np.unique(iy[keep] * data_nx + ix[keep], return_inverse=True)
    values = np.bincount(inverse, weights=values[keep])
    return index // data_nx, index % data_nx, values


# --- scores against truth ------------------------------------------------------


def detector_response(shape, detector_seed, vignetting, overscan):
    """Return the flat-field response: vignetted to ``vignetting`` in the corners, 0.5 % noise."""
    ny, nx = shape
    data_nx = nx - overscan
    y, x = np.ogrid[:ny, :data_nx]
    r2 = ((x - (data_nx - 1) / 2) / (data_nx / 2)) ** 2 + ((y - (ny - 1) / 2) / (ny / 2)) ** 2
    # flat out to 70 % of the half-diagonal, then falling to `vignetting` at the corners
    edge = np.clip((np.sqrt(r2 / 2) - 0.7) / 0.3, 0, 1)
    response = np.ones(shape)
    response[:, :data_nx] = 1.0 - (1.0 - vignetting) * edge**2
    rng = np.random.default_rng([detector_seed, 3])
    response[:, :data_nx] *= 1.0 + 0.005 * rng.standard_normal((ny, data_nx))
    return response


def hot_pixels(shape, detector_seed, n_hot, exptime, overscan):
    """Hot pixels of the detector; ``current`` is in ADU for ``exptime``."""
    ny, nx = shape
    if n_hot is None:
        n_hot = max(3, round(30 * ny * nx / 1e6))
    rng = np.random.default_rng([detector_seed, 4])
    rate = 10 ** rng.uniform(1.0, 2.5, n_hot)  # ADU per second
    return Table(
        {
            "x": rng.integers(2, nx - overscan - 2, n_hot),
            "y": rng.integers(2, ny - 2, n_hot),
            "current": rate * exptime,
        }
    )
