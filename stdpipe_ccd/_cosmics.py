"""Cosmic rays: LACosmic through astroscrappy, with a measured noise model and refinements.

`detect` is what `~stdpipe_ccd.make_mask` runs with ``mask_cosmics=True``;
each refinement is one short function, with its thresholds beside it.
"""

import inspect

import numpy as np

from ._sky import SkyModel

__all__ = ["COSMICS_DEFAULTS", "detect"]

#: astroscrappy options that `make_mask` sets itself.
COSMICS_DEFAULTS = {
    "sigclip": 4.5,
    "sigfrac": 0.3,
    "objlim": 5.0,
    "niter": 4,
    "sepmed": True,
    "cleantype": "meanmask",
}
_COSMICS_RESERVED = (
    "indat",
    "inmask",
    "inbkg",
    "invar",
    "gain",
    "readnoise",
    "satlevel",
    "verbose",
)


def detect(data, known, *, gain, readnoise, response, saturation, options):
    """Boolean image of the cosmic rays among the pixels not ``known`` to be bad.

    LACosmic runs with a noise model measured from the frame (and shaped by
    the flat's ``response``); its detections are then refined.

    LACosmic's Laplacian is noisy for rays a few sigma above the sky, so
    sharp pixels it misses are added (`_add_sharp_events`), and so are faint
    tracks that stand out along a line (`_add_faint_lines`); groups of pixels
    that are star cores are dropped (`_drop_star_cores`, and
    `_drop_faint_on_sources` for noise peaks on faint stars); faint tracks
    two pixels wide are added (`_add_faint_bands`), and so are rays that
    diffusion blurred wider, but narrower than the stars (`_add_narrow_rays`);
    the rest grow into the
    weaker edges of their tracks (`_grow`), tracks found in pieces are
    completed along their line (`_complete_tracks`) and faint rays get
    their weak rim (`_widen_faint_groups`), from which growth runs once more.
    """
    with np.errstate(divide="ignore", invalid="ignore"):  # masked and empty pixels
        return _detect(data, known, gain, readnoise, response, saturation, options)


def _detect(data, known, gain, readnoise, response, saturation, options):
    import astroscrappy

    options = _cosmics_options(astroscrappy.detect_cosmics, options)
    sky_model = SkyModel(data, known, response)
    variance = sky_model.variance(data, known, gain=gain, readnoise=readnoise)
    satlevel = np.inf if saturation is None else saturation * gain  # astroscrappy wants e-
    cosmics, _ = astroscrappy.detect_cosmics(
        data,
        inmask=known,
        invar=variance,
        gain=gain,
        readnoise=readnoise,
        satlevel=satlevel,
        **options,
    )
    cosmics &= ~known
    sigma = np.sqrt(variance, out=variance)
    del variance
    sky = sky_model.level()
    # one search and one look around them serve the sharp events, lines and bands
    candidates = _Candidates(data, sky, sigma, known)
    _add_sharp_events(cosmics, candidates)
    _add_faint_lines(cosmics, candidates)
    _drop_star_cores(cosmics, data, sky)
    _drop_faint_on_sources(cosmics, data, sky, sigma)
    # a band lifts its own 5 x 5 median: it has its own test against stars
    _add_faint_bands(cosmics, candidates)
    _add_narrow_rays(cosmics, data, sky, sigma, known)
    _grow(cosmics, data, sky, sigma, known)
    grown = cosmics.copy()
    _complete_tracks(cosmics, data, sky, sigma, known)
    _widen_faint_groups(cosmics, data, sky, sigma, known)
    # the pixels added along lines and rims may reach parts of the track growth missed
    _grow(cosmics, data, sky, sigma, known, seeds=cosmics & ~grown)
    return cosmics


#: a pixel this many sigma above the sky is a candidate sharp event
SHARP_SIGMA = 3.5
#: ... and is sharp if its 8 neighbours hold less than this times its excess
#: (a star with FWHM >= 2.7 pixels puts at least 4 times its core there)
SHARP_NEIGHBOURS = 3.0
#: ... and, if fainter than FAINT_SIGMA, the median of the ring two pixels out
#: is less than this many sigma above the sky
SHARP_RING_SIGMA = 0.75
#: a detection is on a smooth source if its 5 x 5 median exceeds the sky by
#: this fraction of the pixel's own excess (star cores: 0.3 or more; rays: about 0)
SMOOTH_FRACTION = 0.2
#: growth adds neighbours this many sigma above their own 5 x 5 median ...
GROW_SIGMA = 1.75
#: ... for this many steps of one pixel
GROW_STEPS = 3
#: the dimmest neighbour of a star core keeps at least this fraction of its excess
STAR_MIN_NEIGHBOUR = 0.2
#: the flags of a star core are dropped within this radius (pixels) of its peak
STAR_CORE_RADIUS = 2.5
#: flagged groups longer than this (pixels), and thin or sparse, are tracks, not star cores
STAR_CORE_EXTENT = 7
#: detections fainter than this (sigma above the sky) must also not sit on a smooth source
FAINT_SIGMA = 10.0
#: a brighter flagged pixel is a star's if its 5 x 5 median exceeds the sky by this
#: fraction of its excess (star pixels beside a ray: about 0.5; a track's edge: 0.25)
STAR_PIXEL_FRACTION = 0.4
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


#: pixels per block of the search for candidates (its temporaries stay in the cache)
CANDIDATE_BLOCK = 1 << 18


def _pixels_above(data, sky, sigma, nsigma, known):
    """Rows and columns of unmasked pixels ``nsigma`` above the sky, one pixel in from the edges.

    Block by block, so that the temporary arrays stay small and in the cache.
    """
    ny, nx = data.shape
    rows = max(CANDIDATE_BLOCK // max(nx, 1), 1)
    found_y, found_x = [], []
    for start in range(1, ny - 1, rows):
        stop = min(start + rows, ny - 1)
        above = data[start:stop] - sky[start:stop] > nsigma * sigma[start:stop]
        above &= ~known[start:stop]
        above[:, [0, -1]] = False
        iy, ix = _flagged(above)
        found_y.append(iy + start)
        found_x.append(ix)
    return np.concatenate(found_y), np.concatenate(found_x)


class _Candidates:
    """Pixels `LINE_SIGMA` above the sky, with their 5 x 5 boxes, gathered once.

    ``z`` holds each box in sigma above the sky at its centre, ``masked``
    which of its pixels are known to be bad; columns follow `_BOX2`.
    """

    def __init__(self, data, sky, sigma, known):
        self.iy, self.ix = iy, ix = _pixels_above(data, sky, sigma, LINE_SIGMA, known)
        self.z, self.masked = _gather_around([data, known], iy, ix, _BOX2)
        self.z -= sky[iy, ix, None]
        self.z /= sigma[iy, ix, None]


def _add_sharp_events(cosmics, candidates):
    """Flag local maxima well above the sky whose neighbours hold too little light for a star.

    A noise peak on a faint star can pass that test; the ring two pixels out
    is lit around a star, while a track crosses it in two places only.
    """
    bright = np.flatnonzero(candidates.z[:, _CENTRE] > SHARP_SIGMA)
    z, masked = candidates.z.take(bright, axis=0), candidates.masked.take(bright, axis=0)
    centre = z[:, _CENTRE]
    around = z[:, _NEIGHBOUR_INDEX]
    sharp = ((around <= centre[:, None]) & ~masked[:, _NEIGHBOUR_INDEX]).all(axis=1)
    sharp &= around.sum(axis=1) < SHARP_NEIGHBOURS * centre
    faint = np.flatnonzero(sharp & (centre < FAINT_SIGMA))
    sharp[faint] = _row_median(z[faint][:, _RING2_INDEX]) < SHARP_RING_SIGMA
    cosmics[candidates.iy[bright[sharp]], candidates.ix[bright[sharp]]] = True


#: a pixel this many sigma above the sky may lie on a faint track ...
LINE_SIGMA = 2.5
#: ... if it and its two neighbours along one of 4 directions sum to this many
#: sigma, and to this many more than it and its neighbours across
LINE_SUM = 8.0
LINE_CONTRAST = 4.0
#: ... and both neighbours along the line are this many sigma above the sky
LINE_END_SIGMA = 1.0
#: ... and its 5 x 5 median is less than this many sigma above the sky,
LINE_MEDIAN_SIGMA = 0.5
#: ... or less than twice that (a track two pixels wide lifts it) for a pixel this
#: many sigma above the sky, brighter than its neighbours off the line (a star's
#: edge has its core there) and with the ring two pixels out under LINE_MEDIAN_SIGMA
LINE_PEAK_SIGMA = 5.0
_DIRECTIONS = [(0, 1), (1, 0), (1, 1), (1, -1)]


def _add_faint_lines(cosmics, candidates):
    """Flag pixels of tracks too faint per pixel for LACosmic, but bright along a line.

    Three pixels in a row of a track add up; across it they stay dark. The
    edge of a faint star can look the same, but it lifts its 5 x 5 median
    (a track two pixels wide does too, a little, so a pixel that peaks off
    the line and leaves the ring two pixels out dark is allowed more).
    """
    free = np.flatnonzero(~cosmics[candidates.iy, candidates.ix])
    z = candidates.z.take(free, axis=0)
    pairs, lit = np.empty((4, free.size), np.float32), np.empty((4, free.size), bool)
    for k, (dy, dx) in enumerate(_DIRECTIONS):
        ahead, behind = z[:, _box_index(dy, dx)], z[:, _box_index(-dy, -dx)]
        pairs[k] = ahead + behind
        # both ends lit: inside a track, not on the edge of a star looking inwards
        lit[k] = np.minimum(ahead, behind) >= LINE_END_SIGMA
    along = np.where(lit, pairs, -np.inf)
    k = np.argmax(along, axis=0)
    column = np.arange(free.size)
    best = z[:, _CENTRE] + along[k, column]
    contrast = along[k, column] - pairs[k ^ 1, column]  # directions 0/1 and 2/3 are across
    chosen = np.flatnonzero((best >= LINE_SUM) & (contrast >= LINE_CONTRAST))
    # the 5 x 5 median must see only valid pixels
    chosen = chosen[~candidates.masked[free[chosen]].any(axis=1)]
    # not on any source: a short track barely lifts the 5 x 5 median, a faint star does
    box = z[chosen]
    median = _row_median(box)
    centre = box[:, _CENTRE]
    beside = box[np.arange(chosen.size)[:, None], _OFF_LINE_INDEX[k[chosen]]]
    peak = (centre >= LINE_PEAK_SIGMA) & (centre >= beside.max(axis=1))
    peak &= _row_median(box[:, _RING2_INDEX]) < LINE_MEDIAN_SIGMA
    quiet = (median < LINE_MEDIAN_SIGMA) | (peak & (median < 2 * LINE_MEDIAN_SIGMA))
    line = free[chosen[quiet]]
    cosmics[candidates.iy[line], candidates.ix[line]] = True


#: two rows (or columns) of three pixels may hold a faint track that shares its
#: charge between them, if they sum to this many sigma ...
BAND_SUM = 11.0
#: ... the rows on either side of them hold less than this fraction of that ...
BAND_OUTER = 0.1
#: ... and the mean or the median of those rows, five pixels long, is under this
#: many sigma (over 10 pixels of sky they scatter by 0.3 and 0.4 sigma; either may
#: be lifted by chance, a faint star lifts both)
BAND_SIDE_SIGMA = 0.5
#: rows of the 5 x 5 box, 0 to 4, holding the band and on either side of it
_BAND_ROWS = [([2, 3], [1, 4]), ([1, 2], [0, 3])]


def _add_faint_bands(cosmics, candidates):
    """Flag pixels of faint tracks two pixels wide, close to a row or a column.

    `_add_faint_lines` takes the second row of such a track for light
    across it; here the two rows are summed and compared with the rows
    on either side, which a track leaves dark and a faint star does not.
    """
    free = np.flatnonzero(~cosmics[candidates.iy, candidates.ix])
    box = candidates.z.take(free, axis=0).reshape(-1, 5, 5)
    band = np.zeros(free.size, dtype=bool)
    for z in (box, box.transpose(0, 2, 1)):  # rows, then columns
        sums = z[:, :, 1] + z[:, :, 2] + z[:, :, 3]  # the middle three pixels of each row
        for lit, beside in _BAND_ROWS:
            total = sums[:, lit[0]] + sums[:, lit[1]]
            outer = sums[:, beside[0]] + sums[:, beside[1]]
            ends = np.minimum(z[:, lit[0], 1] + z[:, lit[1], 1], z[:, lit[0], 3] + z[:, lit[1], 3])
            # lit at both ends, as in `_add_faint_lines`
            maybe = np.flatnonzero(
                (total >= BAND_SUM) & (outer <= BAND_OUTER * total) & (ends >= 2 * LINE_END_SIGMA)
            )
            side = z[maybe][:, beside].reshape(-1, 10)
            dark = (side.mean(axis=1) < BAND_SIDE_SIGMA) | (_row_median(side) < BAND_SIDE_SIGMA)
            band[maybe[dark]] = True
    hit = free[band]
    hit = hit[~candidates.masked[hit].any(axis=1)]
    cosmics[candidates.iy[hit], candidates.ix[hit]] = True


def _flagged(mask):
    """Rows and columns of the True pixels of a 2-D mask (faster than `numpy.nonzero`)."""
    return np.divmod(np.flatnonzero(mask), mask.shape[1])


#: the 25 pixels of the 5 x 5 box around a pixel, and the 16 of its outer ring
_BOX2 = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
_RING2 = [(dy, dx) for dy, dx in _BOX2 if max(abs(dy), abs(dx)) == 2]


def _box_index(dy, dx):
    """Column of offset ``(dy, dx)`` in values gathered with `_BOX2`."""
    return (dy + 2) * 5 + dx + 2


_CENTRE = _box_index(0, 0)
_NEIGHBOUR_INDEX = [_box_index(dy, dx) for dy, dx in _NEIGHBOURS]
_RING2_INDEX = [_box_index(dy, dx) for dy, dx in _RING2]
#: box columns (`_BOX2`) of the 6 neighbours off the line, for each direction
_OFF_LINE_INDEX = np.array(
    [[_box_index(*n) for n in _NEIGHBOURS if n not in (d, (-d[0], -d[1]))] for d in _DIRECTIONS]
)


#: pixels gathered at a time by `_around`: the flat indices of their boxes stay small
GATHER_CHUNK = 1 << 15


def _around(array, iy, ix, offsets):
    """Values of ``array`` at ``offsets`` around each pixel, clipped at the image edges.

    The result has one row per pixel and one column per offset.
    """
    return _gather_around([array], iy, ix, offsets)[0]


def _gather_around(arrays, iy, ix, offsets):
    """`_around` for several arrays of one shape, finding the indices once."""
    flat = [array.ravel() for array in arrays]
    gathered = [np.empty((len(iy), len(offsets)), dtype=array.dtype) for array in arrays]
    for start in range(0, len(iy), GATHER_CHUNK):
        part = slice(start, start + GATHER_CHUNK)
        index = _indices_around(arrays[0].shape, iy[part], ix[part], offsets)
        for values, out in zip(flat, gathered, strict=True):
            np.take(values, index, out=out[part], mode="clip")  # "clip": unbuffered
    return gathered


def _indices_around(shape, iy, ix, offsets):
    """Flat indices of the pixels at ``offsets`` around each pixel, clipped at the edges.

    One gather with flat indices is several times faster than indexing
    with rows and columns.
    """
    ny, nx = shape
    iy, ix = np.asarray(iy, dtype=np.intp), np.asarray(ix, dtype=np.intp)
    dy, dx = np.array(offsets).T
    index = (iy * nx + ix)[:, None] + (dy * nx + dx)
    edge = np.flatnonzero(
        (iy < -dy.min()) | (iy >= ny - dy.max()) | (ix < -dx.min()) | (ix >= nx - dx.max())
    )
    if edge.size:
        rows = np.clip(iy[edge, None] + dy, 0, ny - 1)
        index[edge] = rows * nx + np.clip(ix[edge, None] + dx, 0, nx - 1)
    return index


def _row_median(values):
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


def _ring_median(data, iy, ix):
    """Median of the outer ring of the 5 x 5 box around each pixel."""
    return _row_median(_around(data, iy, ix, _RING2))


def _box_median(data, iy, ix):
    """Median of the 5 x 5 box around each pixel."""
    return _row_median(_around(data, iy, ix, _BOX2))


def _box_median_without(data, exclude, iy, ix):
    """Median of the 5 x 5 box around each pixel, without the pixels where ``exclude`` is True."""
    values = _around(data, iy, ix, _BOX2)
    left_out = _around(exclude, iy, ix, _BOX2)
    # pixels left out become -inf and +inf in turn, so the middle stays in place
    # (for an odd number left out, the median is the upper of the two middle values)
    fill = np.where(np.cumsum(left_out, axis=1) % 2, np.inf, -np.inf)
    return _row_median(np.where(left_out, fill, values))


def _on_smooth_source(data, sky, sigma, rays, iy, ix, fraction=SMOOTH_FRACTION):
    """Whether each pixel sits on a smooth source, and its excess over its 5 x 5 median.

    On a source, the 5 x 5 median exceeds the sky by more than ``fraction``
    (a number or one per pixel) of the pixel's own excess. The pixels
    flagged as ``rays`` (if given) are left out of that median: a ray beside
    another does not sit on a source.
    """
    local = _box_median(data, iy, ix)
    excess = data[iy, ix] - sky[iy, ix]
    fraction = np.broadcast_to(fraction, excess.shape)

    def lifted(median, i):
        smooth = median - sky[iy[i], ix[i]]
        # the median of 25 pixels scatters by about a quarter of one pixel's sigma
        return (smooth > fraction[i] * excess[i]) & (smooth > 0.75 * sigma[iy[i], ix[i]])

    on_source = lifted(local, slice(None))
    if rays is not None:
        again = np.flatnonzero(on_source)
        on_source[again] = lifted(_box_median_without(data, rays, iy[again], ix[again]), again)
    return on_source, data[iy, ix] - local


def _drop_star_cores(cosmics, data, sky):
    """Unflag the cores of groups of pixels whose brightest pixel has a star's light around it.

    The 8 neighbours of a star core hold at least 4 times its excess over the
    sky; those of a cosmic ray, even one on a star's wing, hold much less.
    Pixels of the group beyond `STAR_CORE_RADIUS` stay flagged (a ray that
    leaves the star); `_drop_faint_on_sources` tests them next.
    """
    iy, ix, group, count = _groups(cosmics)
    if not count:
        return
    py, px = _group_peaks(data, iy, ix, group)
    neighbours = _around(data, py, px, _NEIGHBOURS) - sky[py, px, None]
    excess = data[py, px] - sky[py, px]
    # a star lights all its neighbours; a track leaves dark pixels across it
    star = (neighbours.sum(axis=1) >= SHARP_NEIGHBOURS * excess) & (
        neighbours.min(axis=1) >= STAR_MIN_NEIGHBOUR * excess
    )
    star &= ~_is_track(group, iy, ix, count)
    # a ray leaving the star keeps its pixels beyond the core
    core = (iy - py[group]) ** 2 + (ix - px[group]) ** 2 <= STAR_CORE_RADIUS**2
    drop = star[group] & core
    cosmics[iy[drop], ix[drop]] = False


def _is_track(group, iy, ix, count):
    """Whether each group (0 to count - 1, of pixels ``iy, ix``) is shaped like a track.

    A star core keeps its flags within a compact blob; a track, even one that
    crosses another track or a star, stretches out of it: long, and thin or sparse.
    """
    sizes = []
    for coordinate in (iy, ix):
        low, high = np.full(count, coordinate.max()), np.zeros(count, dtype=coordinate.dtype)
        np.minimum.at(low, group, coordinate)
        np.maximum.at(high, group, coordinate)
        sizes.append(high - low + 1)
    longest, shortest = np.maximum(*sizes), np.minimum(*sizes)
    fill = np.bincount(group, minlength=count) / (longest * shortest)
    return (longest > STAR_CORE_EXTENT) & ((longest >= 3 * shortest) | (fill < 0.4))


def _group_peaks(data, iy, ix, group):
    """Row and column of the brightest pixel of each group, in group order."""
    order = np.lexsort((data[iy, ix], group))  # by group, brightest last
    last = np.flatnonzero(np.diff(group[order], append=group.max() + 1))
    return iy[order[last]], ix[order[last]]


#: the neighbours after a pixel in row order: enough to join 8-connected groups
_AHEAD = [(0, 1), (1, -1), (1, 0), (1, 1)]


def _groups(mask):
    """Find the 8-connected groups of the True pixels of ``mask``.

    Returns the pixels' rows, columns and group (0 to count - 1), and the count.
    The pixels are few, so a graph of them is joined instead of labelling
    the whole image.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ny, nx = mask.shape
    flat = mask.ravel()
    index = np.flatnonzero(flat)
    iy, ix = np.divmod(index, nx)
    head, tail = [], []  # positions in ``index`` of the two pixels of each link
    for dy, dx in _AHEAD:
        inside = np.flatnonzero((iy + dy < ny) & (ix + dx >= 0) & (ix + dx < nx))
        other = index[inside] + dy * nx + dx
        linked = flat[other]
        head.append(inside[linked])
        tail.append(np.searchsorted(index, other[linked]))
    head, tail = np.concatenate(head), np.concatenate(tail)
    graph = coo_matrix((np.ones(head.size, dtype=np.int8), (head, tail)), (index.size,) * 2)
    count, group = connected_components(graph, directed=False)
    return iy, ix, group, count


def _drop_faint_on_sources(cosmics, data, sky, sigma):
    """Unflag pixels of smooth sources: noise peaks on faint stars, star pixels beside a ray.

    Noise in a faint star's neighbours defeats `_drop_star_cores`, and a
    group whose brightest pixel is a ray can hold star pixels that LACosmic
    added around it; their 5 x 5 median gives them away. Faint detections
    use `SMOOTH_FRACTION`; brighter ones `STAR_PIXEL_FRACTION`, above what the
    weak edge of a bright track shows.
    """
    iy, ix = _flagged(cosmics)
    faint = data[iy, ix] - sky[iy, ix] < FAINT_SIGMA * sigma[iy, ix]
    fraction = np.where(faint, SMOOTH_FRACTION, STAR_PIXEL_FRACTION)
    on_source, _ = _on_smooth_source(data, sky, sigma, None, iy, ix, fraction)
    cosmics[iy[on_source], ix[on_source]] = False
    # a ray beside another ray sees it in its 5 x 5 median: look again without the rays kept
    again = np.flatnonzero(on_source)
    iy, ix = iy[again], ix[again]
    on_source, _ = _on_smooth_source(data, sky, sigma, cosmics, iy, ix, fraction[again])
    cosmics[iy[~on_source], ix[~on_source]] = True


def _grow(cosmics, data, sky, sigma, known, seeds=None):
    """Add neighbours of flagged pixels that stand out of their own 5 x 5 median (track edges).

    Each step tests only the neighbours of the pixels added by the step before,
    the first those of ``seeds`` (a boolean image; all flagged pixels if None).
    A ray that is certain (`_certain_rays`) is no source for the pixels beside
    it; a lone faint detection may be a noise peak on a star, so it counts.
    """
    flat_cosmics = cosmics.ravel()
    frontier = np.flatnonzero(flat_cosmics if seeds is None else seeds)
    certain = _certain_rays(cosmics, data, sky, sigma)
    for _ in range(GROW_STEPS):
        iy, ix = _free_neighbours(frontier, cosmics, known)
        # none stands GROW_SIGMA out of its median unless it is that far above the sky,
        # less the scatter of a 5 x 5 median (a quarter sigma) three times over
        above = data[iy, ix] - sky[iy, ix] > (GROW_SIGMA - 0.75) * sigma[iy, ix]
        iy, ix = iy[above], ix[above]
        on_source, sharpness = _on_smooth_source(data, sky, sigma, certain, iy, ix)
        keep = ~on_source & (sharpness > GROW_SIGMA * sigma[iy, ix])
        frontier = np.ravel_multi_index((iy[keep], ix[keep]), data.shape)
        if not frontier.size:
            break
        flat_cosmics[frontier] = True


def _group_significance(cosmics, data, sky, sigma):
    """Return flagged pixels, their group and significance, and each group's size and sum.

    Groups are 8-connected; a group's sum is the significance of its pixels
    added up, over the square root of their number.
    """
    iy, ix, group, count = _groups(cosmics)
    z = (data[iy, ix] - sky[iy, ix]) / sigma[iy, ix]
    size = np.bincount(group, minlength=count)
    total = np.bincount(group, z, count) / np.sqrt(size)
    return iy, ix, group, z, size, total


def _certain_rays(cosmics, data, sky, sigma):
    """Image of the flagged pixels that are rays for sure.

    They are bright (`FAINT_SIGMA`), or in a group of pixels whose summed
    significance reaches `WIDEN_TOTAL`; a lone faint pixel may be a noise
    peak on a star.
    """
    iy, ix, group, z, size, total = _group_significance(cosmics, data, sky, sigma)
    certain = (z >= FAINT_SIGMA) | ((size >= 2) & (total >= WIDEN_TOTAL))[group]
    rays = np.zeros_like(cosmics)
    rays[iy[certain], ix[certain]] = True
    return rays


def _free_neighbours(index, cosmics, known):
    """Rows and columns of the neighbours of flat pixel ``index`` not flagged or known yet."""
    ny, nx = cosmics.shape
    offsets = np.array(_NEIGHBOURS)
    rows = (index // nx)[:, None] + offsets[None, :, 0]
    cols = (index % nx)[:, None] + offsets[None, :, 1]
    inside = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
    candidate = rows[inside] * nx + cols[inside]
    candidate = candidate[~cosmics.ravel()[candidate] & ~known.ravel()[candidate]]
    # each once, in order: marking an image and listing it beats sorting
    marked = np.zeros(ny * nx, dtype=bool)
    marked[candidate] = True
    return np.divmod(np.flatnonzero(marked), nx)


#: flagged groups this long (pixels; one more unless their summed significance
#: reaches WIDEN_TOTAL) and this elongated (ratio of the spreads along and
#: across their axis) are tracks, completed along their line
TRACK_MIN_LENGTH = 3
TRACK_ELONGATION = 3.0
#: ... and no wider than this spread (pixel^2) across it (not two tracks in a V)
TRACK_SPREAD = 0.5
#: a track is followed past its flagged ends while the pixels on its line,
#: in windows of this many, stand out of the ring two pixels out by this many sigma
TRACK_WINDOW = 4
TRACK_FOLLOW_SIGMA = 1.0
#: ... for at most this many pixels at each end
TRACK_FOLLOW_MAX = 40
#: pixels whose centres lie this close to a track's line share its charge ...
TRACK_HALF_WIDTH = 1.0
#: ... unless the ring two pixels out is this many sigma above the sky (a star),
TRACK_SOURCE_SIGMA = 1.0
#: ... and this fraction of the pixel's own excess (a bright track lights the ring
#: of the track beside it)
TRACK_RING_FRACTION = 0.25


def _complete_tracks(cosmics, data, sky, sigma, known):
    """Flag the whole line of each track found in part.

    The charge of a faint track is shared between the pixels along it, so
    LACosmic and `_grow` find it in pieces. Each elongated group is followed
    along its axis past its ends (over gaps shorter than `TRACK_WINDOW`) and
    the pixels within `TRACK_HALF_WIDTH` of its line are flagged, unless they
    belong to a smooth source the track crosses.
    """
    centre, axis, start, end = _track_lines(cosmics, data, sky, sigma)
    if not len(centre):
        return
    start -= _follow(data, sky, sigma, known, centre, -axis, -start)
    end += _follow(data, sky, sigma, known, centre, axis, end)
    iy, ix = _segment_pixels(centre, axis, start, end)
    ny, nx = data.shape
    inside = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    index = np.unique(iy[inside] * nx + ix[inside])
    index = index[~known.ravel()[index] & ~cosmics.ravel()[index]]
    iy, ix = np.divmod(index, nx)
    # the track lifts the 5 x 5 median of its own pixels; the ring around it, less
    on_source = _on_lit_ring(_ring_median(data, iy, ix), data, sky, sigma, iy, ix)
    cosmics[iy[~on_source], ix[~on_source]] = True


def _on_lit_ring(ring, data, sky, sigma, iy, ix):
    """Whether the ring median ``ring`` around pixels on a track's line shows a source there."""
    lift = ring - sky[iy, ix]
    excess = data[iy, ix] - sky[iy, ix]
    return (lift > TRACK_SOURCE_SIGMA * sigma[iy, ix]) & (lift > TRACK_RING_FRACTION * excess)


def _segment_pixels(centre, axis, start, end):
    """Rows and columns of the pixels whose centres lie within `TRACK_HALF_WIDTH` of each segment.

    Segment k runs from ``centre + start * axis`` to ``centre + end * axis``;
    it is sampled every half pixel along and across.
    """
    count = np.ceil((end - start + 0.25) / 0.5).astype(np.intp)
    track = np.repeat(np.arange(len(centre)), count)
    t = start[track] + 0.5 * (np.arange(track.size) - np.repeat(np.cumsum(count) - count, count))
    c, a = centre[track, None, :], axis[track, None, :]
    n = a[..., ::-1] * [-1, 1]
    s = np.arange(-2, 3)[None, :, None] * 0.5 * (TRACK_HALF_WIDTH + 0.5)
    points = np.rint(c + t[:, None, None] * a + s * n)
    dy, dx = points[..., 0] - c[..., 0], points[..., 1] - c[..., 1]
    across, along = dy * n[..., 0] + dx * n[..., 1], dy * a[..., 0] + dx * a[..., 1]
    near = (
        (np.abs(across) <= TRACK_HALF_WIDTH)
        & (along >= start[track, None] - 0.5)
        & (along <= end[track, None] + 0.5)
    )
    return points[near].astype(np.intp).T


def _track_lines(cosmics, data, sky, sigma):
    """Centre, unit axis (dy, dx) and extent along it of each elongated flagged group."""
    iy, ix, group, z, pixels, total = _group_significance(cosmics, data, sky, sigma)
    count = pixels.size
    # weighted by significance: the weak rim added around a track does not tilt its line
    centre, axis, along_spread, across_spread = _group_axes(
        iy, ix, group, np.clip(z, 1, None), count
    )
    along = (iy - centre[group, 0]) * axis[group, 0] + (ix - centre[group, 1]) * axis[group, 1]
    start, end = np.full(count, np.inf), np.full(count, -np.inf)
    np.minimum.at(start, group, along)
    np.maximum.at(end, group, along)
    # the shortest lines must be rays for sure (a star's edge can look like one)
    certain = total >= WIDEN_TOTAL
    length = end - start + 1
    # a one-pixel-wide line still spreads 1/12 pixel^2 across
    line = (
        ((length >= TRACK_MIN_LENGTH + 1) | ((length >= TRACK_MIN_LENGTH) & certain))
        & (across_spread <= TRACK_SPREAD)
        & (along_spread >= TRACK_ELONGATION**2 * np.maximum(across_spread, 1 / 12))
    )
    return centre[line], axis[line], start[line], end[line]


def _follow(data, sky, sigma, known, centre, axis, end):
    """How far (pixels) each track goes on past ``centre + end * axis`` along ``axis``.

    Most tracks stop at once, so the steps are scored a few at a time, and
    only for the tracks still going.
    """
    reach = np.full(len(centre), float(TRACK_FOLLOW_MAX))
    going = np.arange(len(centre))
    for first in range(1, TRACK_FOLLOW_MAX + 1, TRACK_WINDOW):
        steps = np.arange(first, first + 2 * TRACK_WINDOW - 1)
        score = _line_score(data, sky, sigma, known, centre[going], axis[going], end[going], steps)
        # the mean of the TRACK_WINDOW steps from each step on
        window = np.lib.stride_tricks.sliding_window_view(score, TRACK_WINDOW, axis=1).mean(axis=2)
        stop = window < TRACK_FOLLOW_SIGMA
        stopped = stop.any(axis=1)
        reach[going[stopped]] = first - 1 + np.argmax(stop[stopped], axis=1)
        going = going[~stopped]
        if not going.size:
            break
    return np.minimum(reach, TRACK_FOLLOW_MAX)


def _line_score(data, sky, sigma, known, centre, axis, end, steps):
    """Excess over the ring two pixels out, in sigma, of the pixels ``steps`` past each end."""
    points = centre[:, None, :] + (end[:, None] + steps[None, :])[..., None] * axis[:, None, :]
    iy, ix = np.rint(points).astype(np.intp).transpose(2, 0, 1)
    ny, nx = data.shape
    inside = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    iy, ix = np.clip(iy, 0, ny - 1), np.clip(ix, 0, nx - 1)
    local = _ring_median(data, iy.ravel(), ix.ravel()).reshape(iy.shape)
    score = (data[iy, ix] - local) / sigma[iy, ix]
    # a track is not followed off the image, into masked pixels or into a source
    on_source = _on_lit_ring(local, data, sky, sigma, iy, ix)
    score[~inside | known[iy, ix] | on_source] = -np.inf
    return score


#: a faint group (brightest pixel below FAINT_SIGMA) of at least two pixels whose
#: pixels add up to this many sigma (sum over square root of their number) ...
WIDEN_TOTAL = 5.5
#: ... is widened by the neighbours of its pixels above SHARP_SIGMA that stand
#: this many sigma out of their 5 x 5 median
WIDEN_SIGMA = 0.5


def _widen_faint_groups(cosmics, data, sky, sigma, known):
    """Flag the weak rim of faint rays that are certain.

    A faint short track is two pixels wide and its charge is shared out, so
    its rim is only a sigma or two above the sky: too little for `_grow`
    from any seed, but enough beside the core of a group that is a ray for sure.
    """
    iy, ix, group, z, size, total = _group_significance(cosmics, data, sky, sigma)
    peak = np.full(size.size, -np.inf)
    np.maximum.at(peak, group, z)
    certain = (size >= 2) & (peak < FAINT_SIGMA) & (total >= WIDEN_TOTAL)
    core = certain[group] & (z > SHARP_SIGMA)
    index = np.ravel_multi_index((iy[core], ix[core]), data.shape)
    ry, rx = _free_neighbours(index, cosmics, known)
    on_source, sharpness = _on_smooth_source(data, sky, sigma, cosmics, ry, rx)
    add = ~on_source & (sharpness > WIDEN_SIGMA * sigma[ry, rx])
    cosmics[ry[add], rx[add]] = True


#: pixels this many sigma above the sky make the groups tested as narrow rays
THIN_SIGMA = 3.0
#: a thin line (a track) has at least this many of them ...
THIN_MIN_PIXELS = 12
#: ... is this many times longer than wide (square root of its moments' ratio) ...
THIN_ELONGATION = 3.0
#: ... and is narrower across its line than this fraction of the stars' width
THIN_WIDTH_FRACTION = 0.75
#: stars setting the width: round groups peaking this many sigma above the sky ...
THIN_STAR_SIGMA = 20.0
#: ... of which there must be this many (else no ray is added this way); their
#: width is this percentile of theirs (a minority of blurred hits among them
#: does not lower it)
THIN_STAR_PERCENTILE = 75
THIN_MIN_STARS = 5
#: a group of at least this many pixels, peaking this many sigma above the sky, is a
#: blurred hit if narrower than the stars by this many times the error of its variance
THIN_MIN_BLOB = 5
THIN_BLOB_SIGMA = 10.0
THIN_BLOB_MARGIN = 3.0
#: ... measured within this many pixels of its peak
THIN_BLOB_REACH = 2
#: widths are measured over this many pixels each side of a line or a star's centre ...
THIN_REACH = 3
#: ... in pieces of a line this long (pixels)
THIN_SEGMENT = 8
#: groups of which earlier steps flagged more than this fraction are not tested
THIN_FOUND_FRACTION = 0.1
#: pixels of a thin piece this close to its line (pixels) are flagged; a local
#: maximum further than THIN_PEAK_OFF_LINE from the line is a star's
THIN_HALF_WIDTH = 2.0
THIN_PEAK_OFF_LINE = 1.5
#: a peak in a narrow group is a star's (and the group is left alone) if three
#: quarters of its ring two pixels out hold this fraction of its excess (stars
#: with FWHM 3: about 0.2) and this many sigma
THIN_STAR_RING = 0.1
THIN_STAR_RING_SIGMA = 0.5


def _add_narrow_rays(cosmics, data, sky, sigma, known):
    """Flag groups of pixels narrower than the stars: rays blurred by charge diffusion.

    LACosmic's fine-structure test takes a track two or three pixels wide,
    or a hit blurred as wide, for a source. Every source on the sky is at
    least as wide as the PSF in every direction, and the frame's stars give
    that width, so a long group narrower across its line, or a bright one
    narrower at its peak, is a ray. Groups that touch masked pixels (bleed
    trails, the overscan) are left alone.
    """
    above = np.zeros(data.shape, dtype=bool)
    above[_pixels_above(data, sky, sigma, THIN_SIGMA, known)] = True
    if not above.any():
        return
    groups = _NarrowCandidates(above, cosmics, data, sky, sigma, known)
    if np.count_nonzero(groups.stars) < THIN_MIN_STARS:
        return
    # the light of each star and blob at its peak: lines are measured THIN_REACH
    # across, blobs closer in, where their light is
    chosen = np.flatnonzero(groups.stars | groups.blobs)
    peaks = groups.peaks(data, chosen)
    variance, error = _peak_spreads(data, sky, sigma, known, *peaks, THIN_BLOB_REACH)
    star = groups.stars[chosen] & np.isfinite(variance)
    line_variance, _ = _peak_spreads(
        data, sky, sigma, known, peaks[0][star], peaks[1][star], THIN_REACH
    )
    star[star] = np.isfinite(line_variance)
    line_variance = line_variance[np.isfinite(line_variance)]
    if np.count_nonzero(star) < THIN_MIN_STARS:
        return
    blob_limit = THIN_WIDTH_FRACTION**2 * np.percentile(variance[star], THIN_STAR_PERCENTILE)
    narrow = variance + THIN_BLOB_MARGIN * error < blob_limit  # no star is
    _flag_blurred_hits(
        cosmics, data, sky, sigma, groups, chosen[narrow], peaks[0][narrow], peaks[1][narrow]
    )
    limit = THIN_WIDTH_FRACTION * np.sqrt(np.percentile(line_variance, THIN_STAR_PERCENTILE))
    for k in np.flatnonzero(groups.lines):
        _flag_thin_line(cosmics, data, sky, sigma, known, above, groups, k, limit)


class _NarrowCandidates:
    """The groups of pixels above `THIN_SIGMA`: which are stars, lines or blobs."""

    def __init__(self, above, cosmics, data, sky, sigma, known):
        iy, ix, group, count = _groups(above)
        z = (data[iy, ix] - sky[iy, ix]) / sigma[iy, ix]
        # weighted by the square: a faint star beside a short ray does not stretch it
        self.centre, self.axis, along, across = _group_axes(
            iy, ix, group, np.clip(z, 0, None) ** 2, count
        )
        elongation = np.sqrt(along / np.maximum(across, 1e-12))
        size = np.bincount(group, minlength=count)
        # groups earlier steps found are left to growth: a ray may be beside a star
        found = np.bincount(group, cosmics[iy, ix], count) > THIN_FOUND_FRACTION * size
        self.lines = (size >= THIN_MIN_PIXELS) & (elongation >= THIN_ELONGATION) & ~found
        self.stars = (size >= 9) & (elongation < 1.5) & _any_in_group(z >= THIN_STAR_SIGMA, group)
        self.blobs = (size >= THIN_MIN_BLOB) & ~self.lines & ~found
        self.blobs &= _any_in_group(z >= THIN_BLOB_SIGMA, group)
        # only groups clear of masked pixels: a bleed trail is thin too
        tested = np.flatnonzero((self.stars | self.lines | self.blobs)[group])
        touching = _around(known, iy[tested], ix[tested], _NEIGHBOURS).any(axis=1)
        for kind in (self.stars, self.lines, self.blobs):
            kind[group[tested[touching]]] = False
        # the pixels in group order, each group a slice of them
        order = np.argsort(group, kind="stable")
        self._iy, self._ix = iy[order], ix[order]
        self._start = np.concatenate([[0], np.cumsum(size)])

    def pixels(self, chosen):
        """Rows and columns of the pixels of the groups ``chosen``."""
        parts = [np.arange(self._start[k], self._start[k + 1]) for k in chosen]
        index = np.concatenate(parts) if parts else np.zeros(0, dtype=int)
        return self._iy[index], self._ix[index]

    def sizes(self, chosen):
        """Return the number of pixels of each group ``chosen``."""
        chosen = np.asarray(chosen, dtype=int)
        return self._start[chosen + 1] - self._start[chosen]

    def peaks(self, data, chosen):
        """Row and column of the brightest pixel of each group ``chosen`` (ascending)."""
        iy, ix = self.pixels(chosen)
        return _group_peaks(data, iy, ix, np.repeat(chosen, self.sizes(chosen)))


def _flag_blurred_hits(cosmics, data, sky, sigma, groups, chosen, py, px):
    """Flag the pixels of the groups ``chosen`` within `THIN_BLOB_REACH` of their peaks.

    A group that also holds a star's peak is a hit beside a star: it is left
    to the other steps.
    """
    iy, ix = groups.pixels(chosen)
    member = np.repeat(np.arange(len(chosen)), groups.sizes(chosen))
    star = np.bincount(member, _star_peaks(data, sky, sigma, iy, ix), len(chosen)) > 0
    near = (np.abs(iy - py[member]) <= THIN_BLOB_REACH) & (
        np.abs(ix - px[member]) <= THIN_BLOB_REACH
    )
    keep = near & ~star[member]
    cosmics[iy[keep], ix[keep]] = True


def _flag_thin_line(cosmics, data, sky, sigma, known, above, groups, k, limit):
    """Flag the pixels of group ``k`` on pieces of its line narrower than ``limit``.

    A group that also holds a star is left to the other steps: the star's
    wings can make a piece of the line look thin.
    """
    iy, ix = groups.pixels([k])
    widths, piece, across = _thin_parts(
        data, sky, sigma, known, above, iy, ix, groups.centre[k], groups.axis[k]
    )
    # a line's peaks lie on it: one off it is a star's
    if _star_peaks(data, sky, sigma, iy, ix, np.abs(across) > THIN_PEAK_OFF_LINE).any():
        return
    thin = (widths[piece] < limit) & (np.abs(across) <= THIN_HALF_WIDTH)
    cosmics[iy[thin], ix[thin]] = True


def _any_in_group(values, group):
    """Whether any of the boolean ``values`` of each group's pixels is True."""
    return np.bincount(group, values, group.max() + 1) > 0


def _star_peaks(data, sky, sigma, iy, ix, star_if_peak=None):
    """Which pixels of a group are a star's peak.

    A star that a ray ends on or passes is a local maximum whose ring two
    pixels out is lit all round; along a line, that ring is dark but where
    the line crosses it, so its lower quartile is the sky. Pixels marked in
    ``star_if_peak`` are a star's peak if they are a local maximum at all.
    """
    peak = data[iy, ix] >= _around(data, iy, ix, _NEIGHBOURS).max(axis=1)
    ring = np.partition(_around(data, iy, ix, _RING2), 3, axis=1)[:, 3] - sky[iy, ix]
    excess = data[iy, ix] - sky[iy, ix]
    lit = (ring > THIN_STAR_RING_SIGMA * sigma[iy, ix]) & (ring > THIN_STAR_RING * excess)
    if star_if_peak is not None:
        lit |= star_if_peak
    return peak & lit


def _group_axes(iy, ix, group, weight, count):
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


def _peak_spreads(data, sky, sigma, known, py, px, reach):
    """Variance of the light around each peak along its narrowest direction, and its error.

    The light within ``reach`` pixels (a square box) gives the moments: a
    round star is as wide every way, a short blurred track is narrow across
    itself. Peaks too near the image edge for the box get NaN.
    """
    box = [(dy, dx) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)]
    light = _around(data, py, px, box) - sky[py, px, None]
    light[_around(known, py, px, box)] = 0.0
    # the moments of each box as a group of its pixels
    oy, ox = (np.broadcast_to(offset, light.shape) for offset in np.array(box, dtype=float).T)
    member = np.broadcast_to(np.arange(py.size)[:, None], light.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        centre, axis, _, _ = _group_axes(
            oy.ravel(), ox.ravel(), member.ravel(), light.ravel(), py.size
        )
    across = (ox - centre[:, 1:]) * axis[:, :1] - (oy - centre[:, :1]) * axis[:, 1:]
    variance, error = _spread(light, across, sigma[py, px, None])
    ny, nx = data.shape
    inside = (py >= reach) & (py < ny - reach) & (px >= reach) & (px < nx - reach)
    variance[~inside] = np.nan
    return variance, error


def _thin_parts(data, sky, sigma, known, above, iy, ix, centre, axis):
    """Width of a group's line in pieces `THIN_SEGMENT` pixels long; each pixel's piece and offset.

    Light within `THIN_REACH` of the line is measured across it piece by
    piece, so that a star the line passes widens only its own piece; the
    pixels of other groups are left out. A piece's width is pushed up by
    twice its error, so that a faint piece is not thin by chance.
    """
    along = (iy - centre[0]) * axis[0] + (ix - centre[1]) * axis[1]
    reach = THIN_REACH + 1
    y0, y1 = max(iy.min() - reach, 0), min(iy.max() + reach + 1, data.shape[0])
    x0, x1 = max(ix.min() - reach, 0), min(ix.max() + reach + 1, data.shape[1])
    by, bx = np.mgrid[y0:y1, x0:x1]
    t = (by - centre[0]) * axis[0] + (bx - centre[1]) * axis[1]
    d = -(by - centre[0]) * axis[1] + (bx - centre[1]) * axis[0]
    own = np.zeros(by.shape, dtype=bool)
    own[iy - y0, ix - x0] = True
    box = np.s_[y0:y1, x0:x1]
    # other groups' pixels and masked ones carry no light of this line
    light = np.where(known[box] | (above[box] & ~own), 0.0, data[box] - sky[box])
    band = (t >= along.min()) & (t <= along.max()) & (np.abs(d) <= THIN_REACH)
    length = along.max() - along.min()
    pieces = max(round(length / THIN_SEGMENT), 1)
    piece = np.minimum(((t - along.min()) / max(length, 1e-9) * pieces).astype(int), pieces - 1)
    noise = sigma[box]
    widths = []
    for part in (band & (piece == k) for k in range(pieces)):
        variance, error = _spread(light[part], d[part], noise[part])
        widths.append(np.sqrt(variance + 2 * error))
    return np.array(widths), piece[iy - y0, ix - x0], d[iy - y0, ix - x0]


def _spread(weight, position, noise):
    """Weighted variance of ``position`` along the last axis, and its error.

    ``noise`` is that of each weight; weights may be negative (noise), and
    where no width can be told the variance is infinite.
    """
    total = weight.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = (weight * position).sum(axis=-1) / total
        square = (position - mean[..., None]) ** 2
        variance = (weight * square).sum(axis=-1) / total
        error = np.sqrt((((square - variance[..., None]) * noise) ** 2).sum(axis=-1)) / total
    return np.where((total > 0) & (variance >= 0), variance, np.inf), error


def _cosmics_options(function, options):
    """Merge user options into the defaults, rejecting names ``function`` does not take."""
    options = dict(options or {})
    allowed = set(inspect.signature(function).parameters) - set(_COSMICS_RESERVED)
    unknown = sorted(set(options) - allowed)
    if unknown:
        msg = (
            f"cosmics_options has unknown astroscrappy option(s) {unknown}; "
            f"allowed are {sorted(allowed)}"
        )
        raise TypeError(msg)
    return {**COSMICS_DEFAULTS, **options}
