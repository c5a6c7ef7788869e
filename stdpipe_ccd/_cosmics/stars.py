"""The star veto: LACosmic's flags on star cores are dropped, the test calibrated on the frame."""

import functools
from typing import NamedTuple

import numpy as np

from . import geometry as geo
from .faint_stars import star_top_sigma
from .geometry import pair_light, roundness
from .shape import Profile, StarLight, StarShape, explained_by_stars, psf_metric
from .sources import drop_on_sources

#: the star profile is measured this far (pixels) from the peak, in steps of PROFILE_STEP
PROFILE_RADIUS = 6
PROFILE_STEP = 0.25
PROFILE_BINS = int(PROFILE_RADIUS / PROFILE_STEP)
#: the pixels round a star's top that may lie within PROFILE_RADIUS of its centroid (at most
#: a pixel from the top's centre along each axis, `centroid_shift`)
PROFILE_BOX = np.array(
    [
        (dy, dx)
        for dy, dx in geo.box(PROFILE_RADIUS)
        if np.hypot(max(abs(dy) - 1, 0), max(abs(dx) - 1, 0)) < PROFILE_RADIUS
    ]
)
#: at most about this many stars are measured for the profile
PROFILE_STARS = 1000


def bright_peaks(cosmics, frame, tuning):
    """Rows and columns of the unflagged round local maxima ``star_shape_sigma`` above the sky.

    They are the frame's stars: rays that LACosmic missed, as many as the
    stars on a frame whose rays are blurred by charge diffusion, are not
    round (`roundness`). Stars twice as long as wide are not either, but
    they are once their neighbours' light is divided by that of the median
    peak, and a ray across them stays a line: when that makes twice as many
    peaks round or more, those are the stars (FWHM 2 and elongation 2 on 384
    x 384 pixels: precision 0.888 to 0.968, star cores flagged 3.1 to 0.7
    %). None when there are fewer than ``star_shape_min``.
    """
    iy, ix = frame.peaks(tuning.star_shape_sigma)
    unflagged = ~geo.at(cosmics, iy, ix)
    iy, ix = iy[unflagged], ix[unflagged]
    light, excess = neighbour_light(frame, iy, ix)
    peak = roundness(light) >= tuning.star_roundness
    if iy.size:
        pattern = np.median(light / excess[:, None], axis=0)  # the median peak's neighbours
        if (pattern > 0).all():
            relative = roundness(light / pattern) >= tuning.star_roundness
            if np.count_nonzero(relative) >= 2 * np.count_nonzero(peak):
                peak = relative
    if np.count_nonzero(peak) < tuning.star_shape_min:
        return None
    return iy[peak], ix[peak]


class StarTest(NamedTuple):
    """The thresholds of the star test on one frame (`star_thresholds`).

    Tops ``corner_sigma`` sigma or more above the sky need only the
    ``corner_roundness``.
    """

    neighbours: float
    dimmest: float
    dimmest_sigma: float
    roundness: float = 0.0
    roundness_sigma: float = 0.0
    corner_sigma: float = np.inf
    corner_roundness: float = 0.0


def star_thresholds(frame, peaks, tuning, shape=None):
    """Calibrate the star test (a `StarTest`) on the frame's bright ``peaks``.

    A star's 8 neighbours hold a set multiple of its excess that depends on
    the PSF: about 5 for FWHM 3, 2.7 for an undersampled FWHM of 1.6 pixels,
    against about 0 for a one-pixel ray. The thresholds are fractions of
    their medians over the frame's bright ``peaks`` (fixed ones without);
    so is the roundness asked for: stars of FWHM 3 are rounder than 0.85 at
    any phase, undersampled ones than 0.35. The dimmest neighbour is left
    out of the dimmest-neighbour test (`.geometry.second_least`). Tops
    `~CosmicRayTuning.star_corner_sigma` up need no more roundness than
    the frame's star ``shape`` (a `.shape.StarShape`) has at its least
    round phase (`.shape.StarShape.corner_roundness`).
    """
    if peaks is None:
        return StarTest(tuning.star_neighbours, tuning.star_dimmest, tuning.star_dimmest_sigma)
    light, excess = neighbour_light(frame, *peaks)
    shortfall = 1 - float(np.median(roundness(light)))
    asked = min(tuning.star_roundness_ceiling, 1 - tuning.star_roundness_spread * shortfall)
    corner = asked if shape is None else min(asked, shape.corner_roundness)
    return StarTest(
        tuning.star_neighbours_fraction * float(np.median(light.sum(axis=1) / excess)),
        tuning.star_dimmest_fraction * float(np.median(geo.second_least(light) / excess)),
        tuning.star_dimmest_sigma,
        asked,
        tuning.star_roundness_sigma,
        tuning.star_corner_sigma or np.inf,  # 0: off
        corner,
    )


def neighbour_light(frame, iy, ix, offsets=geo.NEIGHBOURS):
    """Light above the sky at ``offsets`` (the 8 neighbours) round ``iy, ix``, and their own."""
    light = geo.around(frame.data, iy, ix, offsets) - geo.at(frame.sky, iy, ix)[:, None]
    return light, frame.excess(iy, ix)


#: where, in the 3 x 3 box, the pixel and its neighbours above, below, left and right are
AXES = np.array([geo.BOX1.index(offset) for offset in [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)]])


def centroids(frame, iy, ix):
    """Centroid (rows, columns) of the star topping at each pixel, and its 3 x 3 sum of excess.

    Along each axis, a Gaussian through the pixel and its two neighbours (a
    parabola in log light). The 3 x 3 first moment is pulled towards the
    pixel's centre, by half the star's offset from it on a Gaussian star of
    FWHM 2.5 (up to 0.27 px), which halves the light predicted on the steep
    wing; the Gaussian's is exact there.
    """
    light = geo.around(frame.data, iy, ix, geo.BOX1) - geo.at(frame.sky, iy, ix)[:, None]
    shift, total = centroid_shift(light)
    return iy + shift[:, 0], ix + shift[:, 1], total


def centroid_shift(light):
    """`centroids` of the 3 x 3 ``light`` (`.geometry.BOX1` order): shifts from the centre, sums."""
    total = np.maximum(light, 0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        log = np.log(light[:, AXES])
        centre = log[:, :1]
        shift = (log[:, 1::2] - log[:, 2::2]) / (2 * (log[:, 1::2] - 2 * centre + log[:, 2::2]))
    # not a top with light on both sides: no shift; at most a pixel either way
    shift = np.where(np.isfinite(shift), np.minimum(np.maximum(shift, -1), 1), 0.0)
    return shift, total


def star_profile(frame, peaks, *, elongated=True):
    """Median light of the frame's stars against distance from their centroid.

    Returns a `.shape.Profile`: the distances (pixels, bin centres) and the
    light there as a fraction of the star's 3 x 3 sum, measured on the
    bright ``peaks``. The median over many stars averages out the pixel
    phase and the neighbours of a crowded field. Elongated stars are first
    made round (`.shape.psf_metric`), unless ``elongated`` is False.
    """
    iy, ix = peaks
    step = max(len(iy) // PROFILE_STARS, 1)  # enough for a median; bounded cost
    iy, ix = iy[::step], ix[::step]
    cy, cx, total = centroids(frame, iy, ix)
    metric = psf_metric(frame, iy, ix, cy, cx) if elongated else None
    fraction = geo.around(frame.data, iy, ix, PROFILE_BOX)
    fraction -= geo.at(frame.sky, iy, ix)[:, None]
    fraction /= total[:, None]
    dy, dx = PROFILE_BOX.T
    dy, dx = (iy - cy)[:, None] + dy, (ix - cx)[:, None] + dx  # from the centroid
    dy, dx = geo.mapped(dy, dx, metric)
    distance = np.sqrt(dy * dy + dx * dx)
    # small integers: the stable sort below is a radix sort
    bins = np.minimum(distance / PROFILE_STEP, PROFILE_BINS).astype(np.uint8).ravel()
    fraction = fraction.ravel()
    finite = np.isfinite(fraction)
    if not finite.all():  # a star beside masked pixels (NaN round a coadd's holes)
        bins, fraction = bins[finite], fraction[finite]
    order = np.argsort(bins, kind="stable")
    edges = np.searchsorted(bins[order], np.arange(PROFILE_BINS + 1))
    fraction = fraction[order]
    profile = np.zeros(PROFILE_BINS)
    for k in range(PROFILE_BINS):
        values = fraction[edges[k] : edges[k + 1]]
        if values.size:
            profile[k] = max(float(geo.row_median(values[None, :])[0]), 0.0)
    return Profile((np.arange(PROFILE_BINS) + 0.5) * PROFILE_STEP, profile, metric)


def star_profile_and_shape(frame, peaks, tuning):
    """Return the star profile (`star_profile`) and shape (`.shape.StarShape`) of ``peaks``.

    The stars are made round only if the shape then follows more of the
    peaks' neighbours (`.shape.StarShape.fit`): on 384 x 384 frames of
    Gaussian stars of FWHM 1.6 the median moments of 10 to 20 peaks may
    find round stars 1.2 times longer than wide.
    """

    def shaped(profile):
        return StarShape(
            frame,
            peaks,
            centroids=centroids,
            is_star=None,
            slack=tuning.star_light_slack,
            metric=profile.metric,
        )

    def followed(shape):
        return np.mean(shape.fit(frame, *peaks)[3])

    profile = star_profile(frame, peaks)
    shape = shaped(profile)
    if profile.metric is not None:
        round_profile = star_profile(frame, peaks, elongated=False)
        round_shape = shaped(round_profile)
        if followed(round_shape) > followed(shape):
            return round_profile, round_shape
    return profile, shape


def drop_star_cores(cosmics, frame, tuning):
    """Unflag the flags LACosmic put on stars.

    A group whose brightest pixel passes the star test (`star_thresholds`),
    that is no track (`.geometry.is_track`) and that holds its star's top
    (`star_groups`) loses its pixels within
    `~CosmicRayTuning.star_core_radius` of its peak, and those the star's
    own light explains (`star_explains`): at most
    `~CosmicRayTuning.star_profile_slack` times the frame's median star
    profile (`star_profile`) scaled to the star, plus
    `~CosmicRayTuning.star_profile_sigma` sigma. A ray on the star stands out
    of that and keeps its flags; the pixels kept are tested for sitting on
    another smooth source (`drop_on_sources`). A group beside its star's
    unflagged top goes whole if the star explains every pixel of it
    (`~CosmicRayTuning.star_wing_slack`), or stays whole. Frames with too few
    bright stars to measure a profile lose every pixel of a star's group
    within `~CosmicRayTuning.star_group_reach` of its peak. The star pixels
    in the groups of rays go too (`drop_star_light`), and the frame keeps
    its stars for the later steps (`StarLight`). Returns the star test and
    the star profile, or None if the frame's stars were too few to measure.
    """
    iy, ix, group, count = geo.groups(cosmics)
    if not count:
        return None
    peaks = bright_peaks(cosmics, frame, tuning)
    profile = shape = None
    if peaks is not None:
        profile, shape = star_profile_and_shape(frame, peaks, tuning)
    test = star_thresholds(frame, peaks, tuning, shape)
    py, px = geo.group_peaks(frame.data, iy, ix, group)
    star, wing, tops = star_groups(
        cosmics, frame, (iy, ix, group, count), (py, px), (test, profile), tuning
    )
    drop_edge_slopes(cosmics, frame, (iy, ix, group, count), (py, px), tops, tuning)
    if peaks is not None and tuning.star_light_slack:
        on_star = (star | wing)[group]
        nsigma = star_top_sigma(cosmics, (iy[on_star], ix[on_star]), frame, shape, tuning)
        shape.is_star = functools.partial(is_bright_star_top, test=test, nsigma=nsigma)
        frame.stars = StarLight(shape, tuning.star_light_slack, tuning.star_light_grow_sigma)
        drop_star_light(cosmics, frame, (iy, ix, group, count), ~(star | wing), tuning)
    if peaks is None:
        on_star = np.flatnonzero(star[group])
        iy, ix, group = iy[on_star], ix[on_star], group[on_star]
        drop = geo.distance_to(py[group], px[group], iy, ix) <= tuning.star_group_reach
    else:
        on_star = np.flatnonzero((star | wing)[group])
        iy, ix, group = iy[on_star], ix[on_star], group[on_star]
        tops = np.where(wing, tops[0], py), np.where(wing, tops[1], px)
        centre = [value[group] for value in centroids(frame, *tops)]  # once per group
        on_wing = wing[group]
        drop = star_explains(
            frame,
            (iy, ix),
            (tops[0][group], tops[1][group], *centre),
            profile,
            test,
            np.where(on_wing, tuning.star_wing_slack, tuning.star_profile_slack),
            tuning.star_profile_sigma,
            inner_tops=tuning.star_inner_tops,
        )
        drop |= ~on_wing & (
            geo.distance_to(py[group], px[group], iy, ix) <= tuning.star_core_radius
        )
        # a wing group goes whole or stays whole: a pixel its star does not explain
        # makes it a ray on the wing
        ray = on_wing & (np.bincount(group, weights=~drop, minlength=count) > 0)[group]
        iy, ix, drop = iy[~ray], ix[~ray], drop[~ray]
        centre = [value[~ray] for value in centre]
    cosmics[iy[drop], ix[drop]] = False
    kept = ~drop
    if peaks is not None and tuning.star_slope_ray_light:
        # the star lifts the 5 x 5 median of a ray on its slope: that ray stays
        kept[kept] = ~rays_on_slope(
            frame,
            (iy[kept], ix[kept]),
            [value[kept] for value in centre],
            profile,
            tuning.star_slope_ray_light,
        )
    drop_on_sources(cosmics, frame, iy[kept], ix[kept], tuning.smooth_fraction)
    return None if peaks is None else (test, profile)


def star_groups(cosmics, frame, groups, peaks, stars, tuning):
    """Which flagged groups are on a star: at its top, or beside its unflagged top.

    Returns the groups whose peak passes the star test, that are no track
    and hold their star's top; the other groups beside an unflagged star
    top (on the wing of a bright star, where the test fails on the group's
    own peak; none if `~CosmicRayTuning.star_wing_slack` is 0); and the
    tops those climb to. A group out on a star's wing, neither holding the
    top nor coming `~CosmicRayTuning.star_top_reach` near it, is what
    LACosmic found sharp there: a ray. In a crowded field the climb from a
    fainter star's top runs on to a brighter neighbour; a peak that is a
    local maximum holds its own top when it is a star's in the light left
    after the brighter star's (`fainter_tops` with the ring's level,
    `~CosmicRayTuning.star_fainter_beside`), or when it is
    `~CosmicRayTuning.star_shape_sigma` above the sky
    (`~CosmicRayTuning.star_beside_brighter`). ``stars`` holds the star
    test and the frame's star profile (None if not measured).
    Near the frame's edge LACosmic flags bands across bright stars' cores,
    which are no tracks (`~CosmicRayTuning.track_edge_margin`).
    """
    iy, ix, group, count = groups
    py, px = peaks
    test, profile = stars
    edge = geo.edge_distance(frame.data.shape, py, px)
    track = geo.is_track(group, iy, ix, count, tuning.track_extent, edge < tuning.track_edge_margin)
    star = is_star_top(frame, py, px, test) & ~track
    sy, sx = geo.climb(frame.data, py, px, geo.CLIMB_STEPS, radius=2)
    closest = np.full(count, np.inf)
    metric = None if profile is None else profile.metric  # an elongated star's top is nearer
    np.minimum.at(closest, group, geo.distance_to(sy[group], sx[group], iy, ix, metric))
    at_top = geo.at(cosmics, sy, sx) | (closest <= tuning.star_top_reach)
    ty, tx = frame.climb(py, px, geo.CLIMB_STEPS)
    if tuning.star_beside_brighter:
        # a local maximum, bright enough that noise does not make a ray on a faint
        # wing pass the test
        own = frame.excess(py, px) >= tuning.star_shape_sigma * geo.at(frame.sigma, py, px)
        at_top |= own & (ty == py) & (tx == px)
    if tuning.star_fainter_beside and profile is not None:
        beside = np.flatnonzero(star & ~at_top & (ty == py) & (tx == px))
        beside = beside[is_star_top(frame, sy[beside], sx[beside], test)]
        brighter = centroids(frame, sy[beside], sx[beside])
        at_top[beside] = fainter_tops(
            frame, (py[beside], px[beside]), brighter, profile, test, ring_level=True
        )
    star &= at_top
    wing = ~star & ~track & ~geo.at(cosmics, ty, tx) & (np.maximum(abs(ty - py), abs(tx - px)) == 1)
    wing &= tuning.star_wing_slack > 0
    wing[wing] = is_star_top(frame, ty[wing], tx[wing], test)
    return star, wing, (ty, tx)


#: astroscrappy flags nothing this close to the frame's edge, where its filters are cut off
LACOSMIC_BLIND_EDGE = 3


def drop_edge_slopes(cosmics, frame, groups, peaks, tops, tuning):
    """Unflag what LACosmic flags on the slope of a star at the frame's edge.

    Next to the outermost rows and columns it never flags, LACosmic flags
    the slopes of stars centred on or beyond the edge (crowded cell, 2
    seeds: 40 times as many false flags 3 to 5 pixels from the edge as
    further in). A group of at least `~CosmicRayTuning.star_edge_pixels`
    within `~CosmicRayTuning.star_edge_band` of the edge, whose brightest
    pixel is no local maximum and climbs to ``tops`` on the edge, loses the
    pixels that sit on that smooth source (`drop_on_sources`). A ray there
    is a local maximum, or stands well above the slope around it, and keeps
    its flags.
    """
    if not tuning.star_edge_band:
        return
    iy, ix, group, count = groups
    py, px = peaks
    farthest = np.zeros(count, np.intp)
    np.maximum.at(farthest, group, geo.edge_distance(frame.data.shape, iy, ix))
    ty, tx = tops  # the climb leaves a peak that is no local maximum
    slope = (farthest < tuning.star_edge_band) & ((ty != py) | (tx != px))
    slope &= geo.edge_distance(frame.data.shape, ty, tx) < LACOSMIC_BLIND_EDGE
    slope &= np.bincount(group, minlength=count) >= tuning.star_edge_pixels
    on_slope = slope[group]
    drop_on_sources(cosmics, frame, iy[on_slope], ix[on_slope], tuning.smooth_fraction)


def drop_star_light(cosmics, frame, groups, rays, tuning):
    """Unflag the star pixels LACosmic put in the groups of rays.

    A ray that hits a star, or a track that crosses one, takes the star's
    pixels into its group; the veto keeps the group for a ray (``rays``):
    its peak is the ray, or it is a track. Its flagged pixels that a star
    explains (`explained_by_stars`, with `~CosmicRayTuning.star_profile_sigma`)
    go, but for those within `~CosmicRayTuning.track_half_width` of the
    line through two or more pixels that no star explains: the ray's own
    charge on the star. Off that line the star may explain them within
    `~CosmicRayTuning.star_light_off_line` times its light. Growth does not
    flag the pixels that went again (`.frame.Frame.star_light`). What is
    left of the group stays flagged, if only a
    pixel: putting a group left with a lone pixel back whole saved one ray
    of the validation matrix and kept 1,730 false flags (22 cells x 5
    seeds; crowded FWHM 1.6 precision 0.862 with it, 0.891 without).
    """
    iy, ix, group, count = groups
    pick = np.flatnonzero(rays[group] & geo.at(cosmics, iy, ix))
    iy, ix, group = iy[pick], ix[pick], group[pick]
    ty, tx = frame.climb(iy, ix, geo.CLIMB_STEPS)
    lit = explained_by_stars(frame, iy, ix, tuning.star_profile_sigma, (ty, tx))
    line = on_ray_line(iy, ix, group, ~lit, count, tuning.track_half_width)
    off_line = np.flatnonzero(~lit & ~line)
    lit[off_line] = explained_by_stars(
        frame,
        iy[off_line],
        ix[off_line],
        tuning.star_profile_sigma,
        (ty[off_line], tx[off_line]),
        slack=tuning.star_light_off_line,
    )
    lit &= ~line
    cosmics[iy[lit], ix[lit]] = False
    frame.star_light = np.sort(iy[lit] * cosmics.shape[1] + ix[lit])


def on_ray_line(iy, ix, group, ray, count, half_width):
    """Whether pixels lie within ``half_width`` of the line through their group's ``ray`` pixels.

    Only for groups with two ``ray`` pixels or more, through which the
    line is their long axis, from the first of them to the last: a short
    ray beside a star does not keep the star's core on the line drawn on
    beyond its end (22 cells x 5 seeds: crowded FWHM 1.6 precision 0.904
    with the whole line, 0.908 with its segment; crowded 0.965 and 0.967).
    """
    weight = ray.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):  # groups without ray pixels
        centre, axis, _, _ = geo.group_axes(iy, ix, group, weight, count)
    dy, dx = iy - centre[group, 0], ix - centre[group, 1]
    across = dy * axis[group, 1] - dx * axis[group, 0]
    along = dy * axis[group, 0] + dx * axis[group, 1]
    # the line runs from the first ray pixel to the last, and half_width beyond
    first, last = np.full(count, np.inf), np.full(count, -np.inf)
    np.minimum.at(first, group[ray], along[ray])
    np.maximum.at(last, group[ray], along[ray])
    lined = np.bincount(group, weights=weight, minlength=count) >= 2
    near = np.abs(np.nan_to_num(across, nan=np.inf)) <= half_width
    near &= (along >= first[group] - half_width) & (along <= last[group] + half_width)
    return lined[group] & near


def star_explains(frame, pixels, stars, profile, test, slack, nsigma, *, inner_tops=True):
    """Whether a star's light explains the flagged ``pixels`` (rows, columns).

    ``stars`` holds, for each pixel, the top of its group's star and that
    star's `centroids` (rows, columns, 3 x 3 sum). The light is that star's,
    or that of the star uphill of the pixel (a group may span two stars),
    from the frame's star ``profile`` (`.shape.Profile`), times ``slack``,
    plus ``nsigma`` sigma; a pixel that is its own top is no star's wing.
    With ``inner_tops``, the tops of fainter stars (`fainter_tops`) are
    explained too, and so are their neighbours that hold less of the light
    left after the star's than the fainter top: in a crowded field a bright
    star's group takes in its neighbours.
    """
    iy, ix = pixels
    top_y, top_x, cy, cx, total = stars
    own_light = star_light(cy, cx, total, iy, ix, profile)
    excess, sigma = frame.excess(iy, ix), geo.at(frame.sigma, iy, ix)
    slack = np.broadcast_to(slack, iy.shape)
    explained = excess <= slack * own_light + nsigma * sigma
    # another star's light only adds to the star's: the climb is for the pixels it leaves
    other = np.flatnonzero(~explained)
    ty, tx = frame.climb(iy[other], ix[other], geo.CLIMB_STEPS)
    own_top = (ty == iy[other]) & (tx == ix[other])
    uphill = ~own_top & ((ty != top_y[other]) | (tx != top_x[other]))
    uphill[uphill] = is_star_top(frame, ty[uphill], tx[uphill], test)
    other, ty, tx = other[uphill], ty[uphill], tx[uphill]
    cy, cx, total = centroids(frame, ty, tx)
    starlight = np.maximum(
        own_light[other], star_light(cy, cx, total, iy[other], ix[other], profile)
    )
    explained[other] = excess[other] <= slack[other] * starlight + nsigma * sigma[other]
    if inner_tops:
        rest = np.flatnonzero(~explained)
        explained[rest] = fainter_tops(
            frame,
            (iy[rest], ix[rest]),
            [value[rest] for value in stars[2:]],
            profile,
            test,
        )
        tops = rest[explained[rest]]
        rest = np.flatnonzero(~explained)
        if tops.size and rest.size:
            left = excess - own_light
            explained[rest] = geo.below_a_top(frame.data.shape, (iy, ix), tops, left, rest)
    return explained


def fainter_tops(frame, pixels, stars, profile, test, *, ring_level=False):
    """Whether ``pixels`` are the tops of fainter stars on the slope of ``stars``.

    ``stars`` holds the `centroids` (rows, columns, 3 x 3 sum) of the star of
    each pixel's group, or of the brighter star beside. In the light left
    after that star's (from the frame's star ``profile``), a fainter star's
    top is a local maximum that passes the star ``test``; a ray on the
    star's wing is a local maximum too, but its neighbours are dark. With
    ``ring_level``, the median of that light on the pixel's 5 x 5 ring is
    taken off too: whatever else lights the neighbourhood (a wing the
    profile misses, a galaxy) would light a ray's neighbours.
    """
    iy, ix = pixels
    light, excess = light_left(frame, pixels, stars, profile)
    if ring_level:
        ring, _ = light_left(frame, pixels, stars, profile, geo.RING2)
        level = np.median(ring, axis=1)
        light, excess = light - level[:, None], excess - level
    top = np.flatnonzero((light < excess[:, None]).all(axis=1))
    fainter = np.zeros(iy.size, bool)
    sigma = neighbour_sigma(frame, iy[top], ix[top])
    fainter[top] = passes_star_test(light[top], excess[top], sigma, test)
    return fainter


def rays_on_slope(frame, pixels, stars, profile, neighbours):
    """Whether ``pixels`` are rays on the slope of ``stars`` (`centroids` of each pixel's star).

    In the light left after the star's (from the frame's star ``profile``),
    a ray is a local maximum whose 8 neighbours hold at most ``neighbours``
    times its own light: a star's hold 2.7 (FWHM 1.6 pixels) to 5 times.
    """
    light, excess = light_left(frame, pixels, stars, profile)
    top = (light < excess[:, None]).all(axis=1)
    return top & (np.maximum(light, 0).sum(axis=1) <= neighbours * excess)


def light_left(frame, pixels, stars, profile, offsets=geo.NEIGHBOURS):
    """Light above the sky at ``offsets`` round ``pixels`` and their own, less that of ``stars``.

    ``stars`` holds the `centroids` (rows, columns, 3 x 3 sum) of each
    pixel's star, whose light comes from the frame's star ``profile``.
    """
    iy, ix = pixels
    cy, cx, total = stars
    dy, dx = np.array(offsets).T
    light, excess = neighbour_light(frame, iy, ix, offsets)
    light = light - star_light(
        cy[:, None], cx[:, None], total[:, None], iy[:, None] + dy, ix[:, None] + dx, profile
    )
    return light, excess - star_light(cy, cx, total, iy, ix, profile)


def is_bright_star_top(frame, iy, ix, *, test, nsigma):
    """`is_star_top` for pixels ``nsigma`` or more above the sky; False for the others."""
    star = frame.excess(iy, ix) >= nsigma * geo.at(frame.sigma, iy, ix)
    star[star] = is_star_top(frame, iy[star], ix[star], test)
    return star


def is_star_top(frame, iy, ix, test):
    """Whether pixels ``iy, ix`` have a star's light around them (a `StarTest`).

    The second-dimmest neighbour (`.geometry.second_least`), its light raised by
    ``test.dimmest_sigma`` times each neighbour's sigma, must reach the
    dimmest-neighbour threshold (on a faint star, noise decides which
    neighbour is dimmest), and each pair of opposite neighbours
    ``test.roundness_sigma`` times a pair's noise (that of two pixels like
    the top) short of the roundness.
    """
    light, excess = neighbour_light(frame, iy, ix)
    return passes_star_test(light, excess, neighbour_sigma(frame, iy, ix), test)


def neighbour_sigma(frame, iy, ix):
    """Noise of the 8 neighbours of pixels ``iy, ix``, and their own."""
    return geo.around(frame.sigma, iy, ix, geo.NEIGHBOURS), geo.at(frame.sigma, iy, ix)


def passes_star_test(light, excess, sigma, test):
    """`is_star_top` on the ``light`` of the 8 neighbours, the pixels' ``excess`` and ``sigma``.

    ``sigma`` holds the noise of the 8 neighbours and of the pixels (`neighbour_sigma`).
    """
    sigma, own_sigma = sigma
    lesser, greater = pair_light(light)
    pair_sigma = np.sqrt(2) * own_sigma[:, None]
    bright = excess >= test.corner_sigma * own_sigma
    asked = np.where(bright, test.corner_roundness, test.roundness)[:, None]
    round_enough = lesser + test.roundness_sigma * pair_sigma >= asked * greater
    return (
        (light.sum(axis=1) >= test.neighbours * excess)
        & (geo.second_least(light + test.dimmest_sigma * sigma) >= test.dimmest * excess)
        & round_enough.all(axis=1)
    )


def star_light(cy, cx, total, iy, ix, profile):
    """Light at pixels ``iy, ix`` of stars centred at ``cy, cx`` with 3 x 3 sums ``total``."""
    return total * profile.at(cy, cx, iy, ix)
