"""Neighbourhoods and groups of pixels: the geometry every cosmic-ray step uses.

Pixels are few next to the image, so the steps work on lists of rows and
columns and gather the values around them with flat indices, several times
faster than indexing with rows and columns or filtering the whole image.
"""

import functools

import numpy as np

#: the 8 neighbours of a pixel
NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def box(radius):
    """Offsets (dy, dx) of the square box of the given radius, the centre included."""
    return [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]


#: the 3 x 3 box around a pixel
BOX1 = box(1)
#: the 25 pixels of the 5 x 5 box around a pixel, and the 16 of its outer ring
BOX2 = box(2)
RING2 = [(dy, dx) for dy, dx in BOX2 if max(abs(dy), abs(dx)) == 2]
#: the 8 neighbours in opposite pairs, for `local_maxima`
_OPPOSITE_FIRST = [(0, -1), (0, 1), (-1, 0), (1, 0), (-1, -1), (1, 1), (-1, 1), (1, -1)]
#: the neighbours after a pixel in row order: enough to join 8-connected groups
_AHEAD = [(0, 1), (1, -1), (1, 0), (1, 1)]
#: pixels gathered at a time by `around`: the flat indices of their boxes stay small
GATHER_CHUNK = 1 << 15
#: pixels per block of `peaks_above` (its temporaries stay in the cache)
SEARCH_BLOCK = 1 << 18
#: a flagged pixel is followed uphill at most this many pixels to the top of its star
CLIMB_STEPS = 8
#: above this fraction of the image flagged, `groups` labels the whole image
DENSE_FRACTION = 1 / 40


def flagged(mask):
    """Rows and columns of the True pixels of a 2-D mask (faster than `numpy.nonzero`)."""
    return np.divmod(np.flatnonzero(mask), mask.shape[1])


def at(array, iy, ix):
    """Values of ``array`` at pixels ``iy, ix``.

    A gather by flat index: two to three times faster than indexing by rows
    and columns (an array that is not C-contiguous is copied first).
    """
    return array.ravel().take(np.multiply(iy, array.shape[1]) + ix)


def clip(index, size):
    """``index`` (rows or columns) clipped to 0 to ``size - 1``, in place.

    Several times faster than `numpy.clip` on the small integer arrays of
    the steps, which it spends checking the integer type's limits.
    """
    return np.minimum(np.maximum(index, 0, out=index), size - 1, out=index)


def edge_distance(shape, iy, ix):
    """Distance (pixels) of pixels ``iy, ix`` from the nearest edge of a frame of ``shape``."""
    ny, nx = shape
    return np.minimum(np.minimum(iy, ny - 1 - iy), np.minimum(ix, nx - 1 - ix))


def around(array, iy, ix, offsets):
    """Values of ``array`` at ``offsets`` around each pixel, clipped at the image edges.

    The result has one row per pixel and one column per offset.
    """
    if len(iy) <= GATHER_CHUNK:  # the common case, without the loop of `gather_around`
        return array.ravel().take(indices_around(array.shape, iy, ix, offsets), mode="clip")
    return gather_around([array], iy, ix, offsets)[0]


def gather_around(arrays, iy, ix, offsets):
    """`around` for several arrays of one shape, finding the indices once."""
    flat = [array.ravel() for array in arrays]
    gathered = [np.empty((len(iy), len(offsets)), dtype=array.dtype) for array in arrays]
    for start in range(0, len(iy), GATHER_CHUNK):
        part = slice(start, start + GATHER_CHUNK)
        index = indices_around(arrays[0].shape, iy[part], ix[part], offsets)
        for values, out in zip(flat, gathered, strict=True):
            np.take(values, index, out=out[part], mode="clip")  # "clip": unbuffered
    return gathered


@functools.cache
def _offset_table(offsets):
    """Rows and columns of ``offsets`` (a tuple of pairs), and how far they reach each way."""
    dy, dx = np.array(offsets, dtype=np.intp).reshape(-1, 2).T
    return dy, dx, -dy.min(), dy.max(), -dx.min(), dx.max()


def indices_around(shape, iy, ix, offsets):
    """Flat indices of the pixels at ``offsets`` around each pixel, clipped at the edges.

    One gather with flat indices is several times faster than indexing
    with rows and columns.
    """
    ny, nx = shape
    iy, ix = np.asarray(iy, dtype=np.intp), np.asarray(ix, dtype=np.intp)
    key = tuple(map(tuple, offsets)) if isinstance(offsets, np.ndarray) else tuple(offsets)
    dy, dx, up, down, left, right = _offset_table(key)
    index = (iy * nx + ix)[:, None] + (dy * nx + dx)
    # the pixels near an edge are few: looked for only when the extremes are near one
    if iy.size and (
        iy.min() < up or iy.max() >= ny - down or ix.min() < left or ix.max() >= nx - right
    ):
        edge = np.flatnonzero((iy < up) | (iy >= ny - down) | (ix < left) | (ix >= nx - right))
        index[edge] = clip(iy[edge, None] + dy, ny) * nx + clip(ix[edge, None] + dx, nx)
    return index


def row_median(values):
    """Median of each row of a 2-D array, NaN where the row holds a NaN, as `numpy.median`.

    One partition at the middle: `numpy.median` also partitions for the
    largest value to find NaN, which takes several times longer.
    """
    half = values.shape[1] // 2
    if values.shape[1] % 2:
        median = np.partition(values, half, axis=1)[:, half]
    else:
        middle = np.partition(values, [half - 1, half], axis=1)[:, half - 1 : half + 1]
        median = middle.mean(axis=1, dtype=values.dtype)
    median[np.isnan(values).any(axis=1)] = np.nan
    return median


def second_least(values):
    """Return the second least value of each row of a 2-D array.

    Of a star's 8 neighbours, the second-dimmest stays lit at any pixel
    phase: an undersampled star centred near a corner of its top pixel
    leaves the neighbour across that corner almost dark (a Gaussian of FWHM
    1.6 pixels centred 0.45 pixel off along both axes puts 3 % of the top's
    light there, 16 % centred, where the second-dimmest holds 16 % at any
    phase), while a ray leaves two or more neighbours dark.
    """
    return np.partition(values, 1, axis=1)[:, 1]


#: where, among the 8 neighbours, the opposite pairs across each axis and diagonal are
PAIRS = np.array(
    [
        [NEIGHBOURS.index(offset) for offset in pair]
        for pair in [((-1, 0), (1, 0)), ((0, -1), (0, 1)), ((-1, -1), (1, 1)), ((-1, 1), (1, -1))]
    ]
)


def pair_light(light):
    """Sum the light of opposite neighbours (`PAIRS`); return the lesser and greater pairs.

    Column 0 is the vertical against the horizontal pair, column 1 the two
    diagonal ones.
    """
    pairs = np.maximum(light, 0)[:, PAIRS].sum(axis=2)
    across = pairs[:, 0::2], pairs[:, 1::2]
    return np.minimum(*across), np.maximum(*across)


def roundness(light):
    """How evenly the 8 neighbours' ``light`` spreads round a pixel: 1 round, 0 a line.

    The lesser ratio of the light of opposite neighbours (`pair_light`),
    across the axes and across the diagonals. A star is round at any pixel
    phase (above 0.35 for a noiseless one of FWHM 1.6 pixels, 0.85 of FWHM 3);
    a track, even blurred, leaves the pixels across it dark.
    """
    lesser, greater = pair_light(light)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num((lesser / greater).min(axis=1))


def distance_to(cy, cx, iy, ix, metric=None):
    """Distance from ``cy, cx`` to pixels ``iy, ix`` (several times faster than `numpy.hypot`).

    With a ``metric`` (2 x 2), the length of the offsets it maps (`mapped`).
    """
    dy, dx = mapped(np.subtract(iy, cy), np.subtract(ix, cx), metric)
    return np.sqrt(dy * dy + dx * dx)


def mapped(dy, dx, metric):
    """Offsets ``dy, dx`` mapped by the 2 x 2 ``metric`` (unchanged if None)."""
    if metric is None:
        return dy, dx
    (yy, yx), (xy, xx) = metric
    return yy * dy + yx * dx, xy * dy + xx * dx


def ring_median(data, iy, ix):
    """Median of the outer ring of the 5 x 5 box around each pixel."""
    return row_median(around(data, iy, ix, RING2))


def box_median(data, iy, ix):
    """Median of the 5 x 5 box around each pixel."""
    return row_median(around(data, iy, ix, BOX2))


def box_median_without(data, exclude, iy, ix):
    """Median of the 5 x 5 box around each pixel, without the pixels where ``exclude`` is True."""
    values = around(data, iy, ix, BOX2)
    left_out = around(exclude, iy, ix, BOX2)
    # pixels left out become -inf and +inf in turn, so the middle stays in place
    # (for an odd number left out, the median is the upper of the two middle values)
    fill = np.where(np.cumsum(left_out, axis=1) % 2, np.inf, -np.inf)
    return row_median(np.where(left_out, fill, values))


def groups(mask):
    """Find the 8-connected groups of the True pixels of ``mask``.

    Returns the pixels' rows, columns and group (0 to count - 1, in the
    order of each group's first pixel in the image), and the count. Few
    pixels are joined as a graph, cheaper than labelling the whole image;
    many (more than `DENSE_FRACTION` of the image), by `scipy.ndimage.label`.
    """
    from scipy import ndimage
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    ny, nx = mask.shape
    flat = mask.ravel()
    index = np.flatnonzero(flat)
    iy, ix = np.divmod(index, nx)
    if index.size > DENSE_FRACTION * flat.size:
        labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
        return iy, ix, labels.ravel()[index] - 1, count
    position = np.empty(flat.size, np.intp)  # read only where ``mask`` is True
    position[index] = np.arange(index.size)
    head, tail = [], []  # positions in ``index`` of the two pixels of each link
    for dy, dx in _AHEAD:
        inside = np.flatnonzero((iy + dy < ny) & (ix + dx >= 0) & (ix + dx < nx))
        other = index[inside] + dy * nx + dx
        linked = flat[other]
        head.append(inside[linked])
        tail.append(position[other[linked]])
    head, tail = np.concatenate(head), np.concatenate(tail)
    graph = csr_matrix((np.ones(head.size, dtype=np.int8), (head, tail)), (index.size,) * 2)
    count, group = connected_components(graph, directed=False)
    return iy, ix, group, count


def group_peaks(data, iy, ix, group):
    """Row and column of the brightest pixel of each group (the last of equals), in group order."""
    value = at(data, iy, ix)
    count = group.max() + 1
    peak = np.full(count, -np.inf, value.dtype)  # ufunc.at is many times slower across dtypes
    np.maximum.at(peak, group, value)
    brightest = np.flatnonzero(value == peak[group])
    last = np.zeros(count, np.intp)
    np.maximum.at(last, group[brightest], brightest)
    return iy[last], ix[last]


def group_axes(iy, ix, group, weight, count):
    """Weighted centre ``(y, x)``, long axis (unit ``(dy, dx)``) and spreads along and across it.

    The spreads are the eigenvalues of each group's 2 x 2 covariance (pixel^2).
    """
    total = np.bincount(group, weight, count)
    centre = np.column_stack([np.bincount(group, weight * c, count) / total for c in (iy, ix)])
    dy, dx = iy - centre[group, 0], ix - centre[group, 1]
    syy, sxx, sxy = (
        np.bincount(group, weight * p, count) / total for p in (dy * dy, dx * dx, dy * dx)
    )
    mean, root = (syy + sxx) / 2, np.hypot((syy - sxx) / 2, sxy)
    angle = np.arctan2(2 * sxy, syy - sxx) / 2
    axis = np.column_stack([np.cos(angle), np.sin(angle)])
    return centre, axis, mean + root, mean - root


def free_neighbours(index, cosmics, known):
    """Rows and columns of the neighbours of flat pixel ``index`` not flagged or known yet."""
    ny, nx = cosmics.shape
    offsets = np.array(NEIGHBOURS)
    rows = (index // nx)[:, None] + offsets[None, :, 0]
    cols = (index % nx)[:, None] + offsets[None, :, 1]
    inside = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
    candidate = rows[inside] * nx + cols[inside]
    candidate = candidate[~cosmics.ravel()[candidate] & ~known.ravel()[candidate]]
    # each once, in order: marking an image and listing it beats sorting
    marked = np.zeros(ny * nx, dtype=bool)
    marked[candidate] = True
    return np.divmod(np.flatnonzero(marked), nx)


def peaks_above(data, sky, sigma, nsigma, known):
    """Rows and columns of the unmasked local maxima ``nsigma`` above the sky (`local_maxima`).

    Block by block, so that the temporary arrays stay small and in the
    cache; within a block, the pixels above the threshold are compared with
    their neighbours left, right, above and below by slices before
    `local_maxima` gathers the rest (crowded cell, 314,000 pixels 4 sigma
    up: 2.3 ms; 3.5 with the left and right ones only, 6.8 with none).
    """
    ny, nx = data.shape
    rows = max(SEARCH_BLOCK // max(nx, 1), 1)
    found_y, found_x = [], []
    for start in range(1, ny - 1, rows):
        stop = min(start + rows, ny - 1)
        block = data[start:stop]
        above = block - sky[start:stop] > nsigma * sigma[start:stop]
        above &= ~known[start:stop]
        above[:, [0, -1]] = False
        above[:, 1:-1] &= (block[:, 1:-1] > block[:, :-2]) & (block[:, 1:-1] > block[:, 2:])
        above &= (block > data[start - 1 : stop - 1]) & (block > data[start + 1 : stop + 1])
        iy, ix = flagged(above)
        found_y.append(iy + start)
        found_x.append(ix)
    return local_maxima(data, np.concatenate(found_y), np.concatenate(found_x))


def local_maxima(data, iy, ix):
    """Keep the pixels ``iy, ix`` brighter than their 8 neighbours (rows and columns).

    The pixels lie a pixel in from the image's edges. One neighbour at a
    time, on the pixels left, opposite neighbours first: a pixel on a slope
    is below one of the two.
    """
    nx = data.shape[1]
    flat = data.ravel()
    index = iy * nx + ix
    value = flat[index]
    for dy, dx in _OPPOSITE_FIRST:
        higher = value > flat[index + (dy * nx + dx)]
        index, value = index[higher], value[higher]
    return np.divmod(index, nx)


def below_a_top(shape, pixels, tops, value, which):
    """Whether pixels ``which`` have one of ``tops`` among their 8 neighbours, with more ``value``.

    ``tops`` and ``which`` index ``pixels`` (rows, columns) and ``value``.
    """
    iy, ix = pixels
    flat = np.ravel_multi_index((iy[tops], ix[tops]), shape)
    order = np.argsort(flat)
    flat, top_value = flat[order], value[tops][order]
    near = indices_around(shape, iy[which], ix[which], NEIGHBOURS)
    at = np.minimum(np.searchsorted(flat, near), flat.size - 1)
    return ((flat[at] == near) & (top_value[at] > value[which, None])).any(axis=1)


def is_track(group, iy, ix, count, extent, near_edge=False):
    """Whether each group (0 to count - 1, of pixels ``iy, ix``) is shaped like a track.

    A star core keeps its flags within a compact blob; a track, even one that
    crosses another track or a star, stretches out of it: longer than
    ``extent`` (three times that for the groups ``near_edge``), and thin or
    sparse.
    """
    sizes = []
    for coordinate in (iy, ix):
        low, high = np.full(count, coordinate.max()), np.zeros(count, dtype=coordinate.dtype)
        np.minimum.at(low, group, coordinate)
        np.maximum.at(high, group, coordinate)
        sizes.append(high - low + 1)
    longest, shortest = np.maximum(*sizes), np.minimum(*sizes)
    fill = np.bincount(group, minlength=count) / (longest * shortest)
    extent = np.where(near_edge, 3 * extent, extent)
    return (longest > extent) & ((longest >= 3 * shortest) | (fill < 0.4))


def climb(data, iy, ix, steps, radius=1):
    """Move each pixel to the brightest of its box until a local maximum, at most ``steps``."""
    iy, ix = iy.copy(), ix.copy()
    offsets = np.array(box(radius))
    centre = len(offsets) // 2
    ny, nx = data.shape
    moving = np.arange(len(iy))
    for _ in range(steps):  # only the pixels not yet at a maximum are looked at again
        best = np.argmax(around(data, iy[moving], ix[moving], offsets), axis=1)
        step = best != centre
        moving, best = moving[step], best[step]
        if not moving.size:
            break
        iy[moving] = clip(iy[moving] + offsets[best, 0], ny)
        ix[moving] = clip(ix[moving] + offsets[best, 1], nx)
    return iy, ix
