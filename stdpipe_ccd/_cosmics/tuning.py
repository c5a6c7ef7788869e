"""The thresholds of the cosmic-ray steps, in one documented place."""

from dataclasses import dataclass

__all__ = ["CosmicRayTuning"]


@dataclass(frozen=True, kw_only=True)
class CosmicRayTuning:
    """Switches and thresholds of the steps `~stdpipe_ccd.make_mask` adds to LACosmic.

    Pass one as ``make_mask(..., cosmics_tuning=CosmicRayTuning(...))``; the
    defaults are those validated on the matrix of the performance page
    (``benchmarks/bench_cosmics_matrix.py``). Sigma is the noise of each
    pixel from the noise model; "excess" is a pixel's value above the sky.

    Parameters
    ----------
    star_veto : bool
        Unflag the cores of stars that LACosmic flagged. Default is `True`.
    star_shape_sigma : float
        The star test is calibrated on the frame's own stars: the unflagged
        local maxima this many sigma above the sky. Default is 20.
    star_roundness : float
        ... and round: the light of opposite neighbours, across both axes and
        both diagonals, agrees to this ratio. A star's does at any pixel
        phase; a track's, even a blurred one, does not. On a frame of FWHM 3
        pixels whose rays are blurred by 0.7 pixels, 401 of the 522 bright
        peaks are rays LACosmic missed; without this, the test's thresholds
        follow them (median dimmest-neighbour fraction 0.27, the stars' 0.43)
        and faint blurred rays are dropped as stars. Where dividing the
        neighbours' light by that of the median peak makes twice as many
        peaks round or more (stars twice as long as wide), the ratio is
        taken after it. Default is 0.5.
    star_shape_min : int
        With fewer such peaks, the fixed `star_neighbours` and `star_dimmest`
        below apply instead. Default is 3: in undersampled fields LACosmic
        flags the tops of half the bright stars, and a small frame has few
        left, on which the fixed test for wider stars fails (FWHM 1.6 on
        384 x 384 pixels, 5 seeds: with 42 stars, precision 0.80 and 33 % of
        the star cores flagged with 20, 0.99 and 0.6 % with 8; with 14
        stars, 0.921 and 46 % with 8, 0.996 and 0 with 3, and with diffused
        rays recall 0.728 to 0.699, the bare call's 0.573; 2 does no better).
        The validation matrix's frames have more and keep their masks.
    star_neighbours : float
        A group's brightest pixel is a star's core when its 8 neighbours hold
        at least this many times its excess; the default 3.0 holds for stars
        of FWHM >= 2.7 pixels. When the frame's stars are measured, the
        threshold is `star_neighbours_fraction` of their median instead.
    star_neighbours_fraction : float
        See `star_neighbours`. Default is 0.6 (a Moffat star of FWHM 3 has
        about 5.2; one of FWHM 1.6 about 2.7; a one-pixel ray about 0).
    star_dimmest : float
        ... and when its second-dimmest neighbour holds at least this
        fraction of its excess (tracks leave dark pixels across them). Not
        the dimmest: an undersampled star centred near a corner of its top
        pixel leaves the neighbour across that corner dark. Over the matrix,
        precision in the crowded FWHM 1.6 cell 0.803 with the dimmest and
        0.867 with the second-dimmest (0.956 and 0.967 at FWHM 1.6, 0.956 and
        0.959 in the crowded cell), star cores flagged 1.74 % and 0.53 %
        (0.91 % and 0.23 % at FWHM 1.6), for 7 rays of about 1,490 in that
        cell, 4 at FWHM 1.6, and 4 of the 25 blurred rays found (the bare
        call finds 17). Default is 0.2.
    star_dimmest_fraction : float
        When the frame's stars are measured, `star_dimmest` is this fraction
        of their median. Default is 0.5.
    star_dimmest_sigma : float
        Each neighbour may fall this many sigma short of `star_dimmest`. The
        dimmest of 8 neighbours lies 1.4 sigma below its mean on average, so
        that without it the faint stars of undersampled frames fail the test
        and keep their flags: at FWHM 1.6 pixels, 7.9 % of star cores with 0,
        1.1 % with 1.5. Faint rays blurred by charge diffusion pass it too,
        unless the thresholds are measured on round peaks (`star_roundness`)
        and the top must be round (`star_roundness_spread`): on 4 frames of
        FWHM 3 pixels with rays blurred by 0.7 pixels, recall is 0.147
        without either, 0.196 with both (bare call 0.195). Default is 1.5.
    star_roundness_spread : float
        A star's top is round, too: the lesser ratio of the light of its
        opposite neighbours, across the axes and across the diagonals, is at
        least 1 minus this many times the shortfall from 1 of the median over
        the frame's stars (0.94 for FWHM 3 pixels, 0.8 for FWHM 1.6) ...
        Default is 5. A blurred track along an axis passes the neighbour
        tests but not this one (4 frames of FWHM 3 pixels with rays blurred
        by 0.7 pixels: recall 0.192 without it, 0.196 with it, 0.195 for the
        bare call).
    star_roundness_ceiling : float
        ... but never more than this. Default is 0.6.
    star_roundness_sigma : float
        ... and each pair may fall this many of its sigma short. Default is 1.
    star_corner_sigma : float
        Tops this many sigma above the sky need no more roundness than the
        frame's star shape has at its least round phase, centred near a
        pixel's corner (0.32 for a Gaussian of FWHM 1.6 pixels, 0.40 for
        the Moffat, 0.85 at FWHM 3). Where LACosmic flags most undersampled
        stars (83 % of the Gaussian FWHM 1.6 cores), the unflagged peaks
        that set the roundness are those centred on their pixel, and ask for
        0.6, which the others fail at any brightness. Default is 20
        (Gaussian FWHM 1.6, 1024 x 1024, seeds 0 to 2: precision 0.694 to
        0.934, star cores 16.8 % to 3.7 %, no ray lost; seeds 5 to 9: 0.692
        to 0.932, 18.1 % to 4.0 %, 3 rays of 1,480 lost, of 3 to 7 sigma on
        the cores of stars of 630 to 2,700 sigma, found before only because
        the star was flagged; 12 sigma gave 0.949 and 2.5 % but lost a ray
        of 8 sigma on a star of 11). The 22 cells of the matrix keep their
        masks, pixel for pixel. 0 switches it off.
    star_top_reach : float
        A flagged group on a star's wing that neither holds the star's top
        nor comes this close to it (pixels, measured once elongated stars are
        made round, as for their profile) is a ray LACosmic found sharp on
        the wing, and keeps its flags. Default is 2.5.
    star_fainter_beside : bool
        ... unless the group's peak, which passed the star test, is a local
        maximum that passes it again in the light left after the profile of
        the brighter star its climb runs on to, less the median of that
        light on the peak's 5 x 5 ring: a fainter star's top of its own. In
        a crowded field LACosmic flags such tops. On the validation matrix
        (22 cells, 5 seeds) it raises precision from 0.895 to 0.914 in the
        crowded cell, from 0.780 to 0.792 in the crowded one of FWHM 1.6
        (isolated flags in the noise from 2.13 to 1.80 times the Gaussian
        expectation) and from 0.782 to 0.801 with rays blurred, and loses
        no ray. Without the ring's level it lost 7 rays: on galaxies, and on
        the far wings of Moffat beta 2.5 stars that the profile misses, the
        light around the ray passed the test. Default is `True`.
    star_beside_brighter : bool
        ... or is a local maximum `star_shape_sigma` above the sky, without
        the second test (crowded cell, 5 seeds: precision 0.914 without it,
        0.923 with it, recall unchanged). Fainter peaks are left to the
        test above: a ray on the faint wing of a star passes the star test
        with its noise allowance (4 rays of 6 to 9 sigma over 5 seeds of
        Moffat beta 2.5). Default is `False`: on a
        2048 x 2048 frame of `~stdpipe_ccd.datasets` with rays blurred by 0.7
        pixels it drops one ray the bare astroscrappy call finds (recall
        0.1858 against 0.1867), and on the matrix one ray of about 1,480 at
        FWHM 6 and one in the galaxies cell; switch it on for crowded fields.
    star_core_radius : float
        The flags of a star's core are dropped within this radius (pixels) of
        its peak whatever their value: the pixel phase of an undersampled
        star changes its core too much to predict. Default is 1.5 (the 3 x 3
        box).
    star_profile_slack : float
        Beyond the core, a flagged pixel of a star is the star's own light
        when it holds at most this many times what the frame's median star
        profile, scaled to the star's 3 x 3 sum, puts there ... Default is
        1.3: with the star centred by a Gaussian through its top, the profile
        puts the light of a wing pixel within about 10 % of the truth at FWHM
        1.6 (34 wing pixels of 18 rays the veto dropped at slack 2, crowded
        cell, 2 seeds). It matters only on undersampled fields, where a star's
        flags reach its wings: 5 seeds, recall 0.8353 at slack 2 and 0.8407
        at 1.3 in the crowded FWHM 1.6 cell, 0.9027 and 0.9040 at FWHM 1.6,
        and no change in the other 20 cells.
    star_wing_slack : float
        A group beside its star's unflagged top (LACosmic flagged one side of
        a bright star; the test fails on the group's own peak, a wing pixel)
        is the star's when the star's profile explains every pixel of it
        with this slack, and the `star_profile_sigma`; one pixel it does not
        explain makes the whole group a ray on the wing. 0 switches the test
        off. Default is 1.25 (Gaussian FWHM 2.5 pixels, 5 seeds: star cores
        flagged 0.25 % without it, 0.06 % with it, recall unchanged).
    star_profile_sigma : float
        ... plus this many sigma. A ray on the star's wing stands out of that
        and keeps its flags. Default is 3.
    star_inner_tops : bool
        A flagged pixel of a star's group that the star does not explain is
        a fainter star's top when, in the light left after the star's
        profile, it is a local maximum and passes the star test, and goes
        (the pixels uphill of which it is the top were already measured
        against its own profile). In a crowded field
        LACosmic's group round a bright star takes in its neighbours, and
        the pieces the veto left on them stayed flagged, alone: crowded FWHM
        1.6, 5 seeds, precision 0.636 without it and 0.697 with it, noise
        ratio 4.83 and 3.37, recall 0.8413 and 0.8407 (one ray of 1,490, on
        a fainter star's top); precision 0.929 and 0.932 at FWHM 1.6; no
        change in the other 20 cells. The neighbours of such a top that
        hold less of the light left go too: they are the fainter star's
        slope, left alone when its top went (crowded FWHM 1.6, 5 seeds:
        noise ratio 3.54 without them and 2.13 with them, precision 0.773
        and 0.780, recall unchanged; 3 seeds of all 22 cells: no ray lost,
        crowded precision +0.001). Default is `True`.
    star_light_slack : float
        A ray that hits a star, or a track that crosses one, takes the star's
        pixels into LACosmic's group, which the veto keeps for a ray (its
        peak is the ray, or it is a track). Its flagged pixels go when the
        star their climb reaches (a top `star_shape_sigma` above the sky that
        passes the star test) adds a sigma or more to them and explains them
        within this many times its light plus `star_profile_sigma`; but for
        those within `track_half_width` of the line through two or more
        pixels no star explains, between the first and the last of them (the
        ray's charge on the star). The light is the frame's star shape, a
        radial profile integrated over each pixel, scaled to the star's 8
        neighbours; a top explains itself when its neighbours follow that
        shape. What is left of the group stays flagged, if only a pixel.
        0 switches this off, and `star_light_grow_sigma` with it. Default is 1
        (22 cells x 5 seeds: precision 0.950 without it and 0.959 with it,
        higher in every cell, crowded FWHM 1.6 0.700 and 0.773, FWHM 1.6 0.932
        and 0.953; one ray of about 1,490 lost in the crowded FWHM 1.6 cell,
        17 sigma across the core of a star of 2,300 sigma). The integrated
        shape in place of the veto's median radial profile took crowded FWHM
        1.6 from 0.891 to 0.912, crowded from 0.964 to 0.967 and FWHM 1.6
        from 0.969 to 0.973 (3 rays of about 27,000 lost, 1 found); 1.03
        took crowded FWHM 1.6 to 0.924 but lost 4 of its rays and, on seeds 5
        to 9, flagged noise 2.3 times the Gaussian rate. The pixels that go
        are not flagged again by growth (`star_light_grow_sigma` tests
        against 1 sigma, not 3), and a top's fit leaves out only the
        neighbours 3 sigma and 10 % of their light above it (on the bright
        stars of the matrix's frames the shape is 1 to 3 % off, 3 sigma of
        a neighbour 100 sigma up).
    star_light_off_line : float
        The same test with this slack for the pixels off the ray's line (the
        line is drawn through the pixels no star explains with
        `star_light_slack`, so it does not lose the ray's faint charge on a
        star). Default is 1.05: the shape is 1 to 3 % off on bright stars, as
        much as the 3 sigma allowance 100 sigma up. With it, the fit's 10 % and
        growth leaving those pixels alone, 3 seeds of all 22 cells:
        precision in the crowded FWHM 1.6 cell 0.916 to 0.927, crowded
        0.964 to 0.966, FWHM 1.6 0.976 to 0.978, no cell lower, no ray lost,
        noise ratio unchanged; seeds 3 to 7 of 4 cells: crowded FWHM 1.6
        0.900 to 0.914, one of its rays lost (17 pixels across a star of
        240 sigma, 2 sigma of charge on its core pixels); 22 cells x 5
        seeds: crowded FWHM 1.6 0.912 to 0.922, crowded 0.967 to 0.969, one
        ray of about 1,490 lost in the first, none elsewhere. Set to
        `star_light_slack` to switch it off.
    star_light_grow_sigma : float
        Growth, track completion and the rims of faint rays add no pixel that
        a star explains, as above, within its profile plus this many sigma:
        at FWHM 1.6 growth from a ray on a star took in the star's core
        (3 seeds: precision 0.947 with the veto step alone, 0.958 with
        this). In the crowded FWHM 1.6 cell, 3 seeds, 1 lost no ray where 3
        lost 2. Default is 1.
    undersampled_top_sigma : float
        On crowded undersampled frames (`faint_star_density`,
        `faint_star_top`; the stars the veto unflags counted) the stars
        whose light explains pixels, in the veto and the two steps above,
        need tops only this many sigma above the sky, not
        `star_shape_sigma`: at FWHM 1.6 a flag on a star of 8 to 20 sigma
        grows and widens over its light, which no brighter top explains.
        Default is 8 (crowded FWHM 1.6, seeds 0 to 9 at 1024 x 1024:
        precision 0.936 to 0.941, no ray lost). Unseen crowded cells, 384 x
        384, seeds 5 to 19: Gaussian stars of FWHM 1.6 0.646 to 0.651, FWHM 2
        0.955 to 0.960; 3 rays of 2,476 lost in 4 cells, each with half its
        pixels flagged before and a few fewer after; at FWHM 1.6, Moffat and
        Gaussian, 349 ray pixels more and 108 fewer, 22 false pixels more
        and 196 fewer. Frames that are not crowded are unchanged. Set to
        `star_shape_sigma` to switch it off.
    star_slope_ray_light : float
        A pixel the veto keeps in a star's group (its star does not explain
        it) is then dropped when it sits on a smooth source; but a ray on the
        slope of a sharp star has its 5 x 5 median lifted by the star's core.
        It stays flagged when, in the light left after its star's profile, it
        is a local maximum whose 8 neighbours hold at most this many times its
        own light (a star's hold 2.7 to 5 times). 0 switches this off.
        Default is 1 (22 cells x 5 seeds: 4 rays of about 1,490 more in the
        crowded FWHM 1.6 cell, 3 in the crowded cell, 1 each with sky 20 e-
        and read noise 20 e-; precision equal or higher and noise ratio
        unchanged in every cell).
    star_group_reach : float
        On frames with fewer than `star_shape_min` bright stars, where no
        profile is measured, a star's flags are dropped this far (pixels)
        from its peak. Default is 4.
    star_edge_band : int
        LACosmic never flags the 3 outermost rows and columns; next to them,
        where its filters are cut off, it flags the slopes of stars centred
        on or beyond the edge. A group within this many pixels of the edge,
        whose brightest pixel is no local maximum and climbs to the edge,
        loses its pixels that sit on that smooth source. 0 switches it off.
        Default is 6: on the crowded cell, 2 seeds, LACosmic's false flags
        are 40 times as dense 3 to 5 pixels from the edge as further in.
    star_edge_pixels : int
        ... when the group has at least this many pixels: LACosmic's flags
        there are bands of 3 to 9 pixels, and a ray of 1 or 2 pixels on the
        slope may fail the smooth-source check (1 ray of 1,480 at FWHM 6, 5
        seeds, with 1). Default is 3.
    star_blends : bool
        After the veto, fit the stars round each flagged group on a source
        together, and unflag the group when two or more of them explain
        every pixel of it (`blend_slack`): LACosmic's flags on the saddle
        between blended stars, or on a fainter star on a brighter one's
        slope, which the veto, weighing one star at a time, leaves whole.
        The fainter stars are found in the light left after the brighter
        ones' fit. Over the 22 cells of the matrix, 5 seeds each: no ray
        lost or gained in any cell; precision 0.916 without it and 0.956
        with it in the crowded cell, 0.793 and 0.803 in the crowded FWHM 1.6
        cell, 0.912 and 0.966 with blurred rays, higher or equal in the
        others. Default is `True`.
    blend_reach : int
        The stars are looked for this many pixels round the group. Default
        is 5.
    blend_min_peak : float
        A star's top is a local maximum at least this many sigma above the
        sky, or above the light of the stars fitted before it, that passes
        the star test. Default is 5.
    blend_lift : float
        Only the groups whose brightest pixel's 5 x 5 median is this many
        sigma above the sky are fitted: a group on the bare sky lies on no
        star, and most rays cost no fit. Default is 2.
    blend_slack : float
        A pixel is explained when its excess is at most this many times the
        fitted stars' light, plus `star_profile_sigma` sigma. Default is
        1.1: at 1.2, a ray of 8 sigma on a faint star beside a bright one
        went as a blend (galaxies cell, seed 1).
    track_extent : int
        Flagged groups longer than this (pixels), and thin or sparse, are
        tracks, never star cores. Default is 7.
    track_edge_margin : int
        ... or three times as long when their brightest pixel lies less than
        this many pixels from the frame's edge: there LACosmic flags bands
        across the cores of bright stars (3 rows by 9 to 17 columns at FWHM 4
        pixels). Without it 0.04 to 0.12 % of the star cores stayed flagged
        in 16 cells of the validation matrix, with it at most 0.05 %, for 2
        rays in 1,500 of the crowded cell. 0 switches it off. Default is 8.
    smooth_fraction : float
        A pixel left over from a star's group is the star's if its 5 x 5
        median exceeds the sky by this fraction of its excess (rays: about 0).
        Growth stops at such pixels too. Default is 0.2.
    sharp_peaks : bool
        Flag the sharp peaks LACosmic missed: local maxima standing out of
        the noise with dark neighbours round them, off any smooth source,
        from which growth then runs. LACosmic's Laplacian of the subsampled
        image, over a median-filtered noise, misses many rays of one or two
        pixels up to 6 sigma. Over the matrix (22 cells, 5 seeds) mean
        recall 0.797 without and 0.822 with them (base cell 0.877 and 0.900,
        sky of 20,000 e- 0.403 and 0.511, crowded FWHM 1.6 0.838 and 0.864
        against the bare call's 0.850), precision at most 0.005 lower in any
        cell, isolated noise flags 0.16 and 0.20 times the Gaussian rate on
        average (0.51 at most). On the reference frame of the test suite,
        recall 0.904 and 0.950, 0.977 and 0.992 for rays of 5 sigma and up.
        Default is `True`.
    sharp_sigma : float
        ... at least this many sigma (of their neighbours' noise) above the
        sky and above their 5 x 5 median; lone pixels must then pass the
        weak-groups check at LACosmic's ``sigclip``. Default is 4 (4.5: mean
        recall 0.815).
    sharp_dark_sigma : float
        ... whose 6 dimmest neighbours hold at most this many times their
        summed noise (a masked neighbour is never dark). A star's top has
        light all round at any phase; a faint star's top raised by noise has
        its neighbours a sigma or so up each. Default is 0.5: at 1.0, mean
        recall 0.826, but precision in the crowded cell 0.954 against 0.957
        and in the crowded FWHM 1.6 one 0.852 against 0.862, with more star
        cores flagged there (0.92 % against 0.72 %).
    grow : bool
        Add the weak edges of the rays found. Default is `True`.
    grow_sigma : float
        Growth adds neighbours this many sigma above their own 5 x 5 median.
        The pixels that track completion and the rims of faint rays add lead
        growth again only if they stand out as much: a gap or a dark rim led
        it into the noise beside the track (3 seeds of the 22 cells: precision
        up 0.002 to 0.012 in every cell, crowded FWHM 1.6 0.927 to 0.934; 1
        ray of about 900 lost in 5 cells, recall of the sky 20,000 e- cell
        0.527 to 0.521, bare 0.317; seeds 5 to 9 of 10 cells alike). Default
        is 1.75.
    grow_steps : int
        Growth runs for this many steps of one pixel. Default is 3.
    certain_sigma : float
        Flagged pixels this many sigma above the sky are rays for sure: growth
        does not take them for a source. Default is 10.
    certain_total : float
        So are groups of two or more pixels whose significance adds up to
        this (sum over the square root of their number). Default is 5.5.
    complete_tracks : bool
        Follow tracks found in part along their line, and widen faint rays
        by their weak rim. Default is `True`.
    track_min_length : int
        Groups this long (pixels; one more unless `certain_total` is reached)
        are tested as tracks. Default is 3.
    track_elongation : float
        ... if this elongated (ratio of the spreads along and across their
        axis, square-rooted). Default is 3.
    track_spread : float
        ... and no wider than this spread across their axis (pixel^2): not
        two tracks in a V. Default is 0.5.
    track_window : int
        A track is followed past its ends while the mean of this many pixels
        on its line ... Default is 4.
    track_follow_sigma : float
        ... stands this many sigma out of the ring two pixels out. Default is 1.
    track_follow_max : int
        ... for at most this many pixels at each end. Default is 40.
    track_half_width : float
        Pixels whose centres lie this close (pixels) to a track's line share
        its charge. Default is 1.
    track_source_sigma : float
        ... unless the ring two pixels out is this many sigma above the sky
        (a source the track crosses) ... Default is 1.
    track_ring_fraction : float
        ... and this fraction of the pixel's own excess. Default is 0.25.
    widen_sigma : float
        A faint group that is certain takes the neighbours of its pixels
        above `widen_core_sigma` that stand this many sigma out of their
        5 x 5 median. Default is 0.5.
    widen_core_sigma : float
        See `widen_sigma`. Default is 3.5.
    weak_groups : bool
        Unflag lone flagged pixels (no flagged neighbour) that stand less
        than LACosmic's ``sigclip`` sigma above their 5 x 5 median, and small
        groups (`weak_group_size`) whose brightest pixel stands less than
        `weak_group_fraction` of that: noise that LACosmic's smoothed noise
        estimate let through, and grew into its neighbours. Default is
        `True`.
    weak_group_size : int
        Groups of up to this many pixels are tested; 1 tests the lone
        pixels only. Default is 4.
    weak_group_fraction : float
        See `weak_groups`. Default is 0.95: over the matrix, precision with
        blurred rays (few rays found, these groups most of the false flags)
        0.840 without the groups and 0.966 with them, higher in 21 of the 22
        cells, for 23 rays of about 26,000 (at most 3 in a cell); 0.937 and
        7 rays at 0.9, 0.974 and 49 rays at 1.0.
    faint_stars : bool
        Unflag the small faint groups that the frame's star shape fits
        better than a ray. At FWHM 1.6 the star test passes or fails stars
        of 5 to 10 sigma by the noise of their neighbours, and flags on
        them grow into groups of up to 9 pixels; fitted over the 5 x 5 box
        round its peak, a star's light follows the shape all round, a
        ray's stays in its pixels. Default is `True` (crowded FWHM 1.6, 5
        seeds: precision 0.930 to 0.938, star cores 0.70 % to 0.47 %, one
        ray of about 1,500 lost; the other 21 cells unchanged).
    faint_star_top : float
        The fit runs on undersampled frames, whose star shape puts more
        than this fraction of a star's 3 x 3 light in its top pixel, the
        star centred on it (0.29 measured at FWHM 1.6, 0.23 at 2, 0.19 at
        2.5, 0.165 at 3): on wider stars the star test holds, and the fit only dropped
        faint blurred and diffused rays (1 to 3 of each cell's on 5 seeds)
        ... Default is 0.21.
    faint_star_density : float
        ... in crowded fields: where the unflagged local maxima
        `star_shape_sigma` above the sky are this many per 1024 x 1024
        pixels not masked, or more (about 4,600 with 8,000 stars of FWHM
        1.6, 2,300 with 4,000, 930 with 1,500). Faint stars are then most
        faint compact groups; in sparser fields faint compact rays are as
        common, and rays diffused by charge (0.4 pixel) fit the star shape:
        at FWHM 1.6 with 1,500 stars and diffused rays, the fit took 0.014
        of the recall (5 seeds, 1024 x 1024; bare call 0.611, 0.666 without
        the fit, 0.652 with it) for 0.0008 of precision ... Default is
        2,000.
    faint_star_pixels : int
        ... and there, groups of up to this many pixels, peaking below
        `certain_sigma`, are fitted ... Default is 9.
    faint_star_chi2 : float
        ... with a constant level, as a star of the frame's shape (its
        centre at the best of 9 x 9 phases in the pixel) and as a ray in two
        pixels (the peak and its brightest edge neighbour, each free); they
        go when the star fits within this chi-square per pixel ...
        Default is 1.2.
    faint_star_margin : float
        ... and better than the two pixels by this much chi-square (a
        likelihood ratio of 12). Default is 5: of the groups fitted on 5
        seeds, 1.4 per pixel and a margin of 0 dropped 6 of the 200 with a
        ray at FWHM 1.6, these thresholds 1, and 54 of the 178 without a
        ray in the crowded FWHM 1.6 cell.
    pedestal_ratio : float
        With a known gain, the noise model is the Poisson noise of the data
        plus the read noise; when the sky's measured variance is more than
        this many times what its level predicts, the sky was subtracted and
        its variance is added back as a pedestal. Default is 4.
    offset_ratio : float
        When what the sky's level predicts is more than this many times its
        measured variance, the level holds an offset with no noise of its
        own (a bias left in a raw frame), taken off for the noise model, and
        the rows and columns at the offset's level (overscan inside the data
        section) are left out of the search. Default is 1.5: without an
        offset, the frames of the validation matrix predict at most 1.02
        times their measured variance; a bias of 1,000 ADU under a sky of
        250 predicts 4.6 times, and rays LACosmic finds drop from 0.91 to
        0.75 of them.
    """

    star_veto: bool = True
    star_shape_sigma: float = 20.0
    star_roundness: float = 0.5
    star_shape_min: int = 3
    star_neighbours: float = 3.0
    star_neighbours_fraction: float = 0.6
    star_dimmest: float = 0.2
    star_dimmest_fraction: float = 0.5
    star_dimmest_sigma: float = 1.5
    star_roundness_spread: float = 5.0
    star_roundness_ceiling: float = 0.6
    star_roundness_sigma: float = 1.0
    star_corner_sigma: float = 20.0
    star_top_reach: float = 2.5
    star_fainter_beside: bool = True
    star_beside_brighter: bool = False
    star_core_radius: float = 1.5
    star_profile_slack: float = 1.3
    star_wing_slack: float = 1.25
    star_profile_sigma: float = 3.0
    star_inner_tops: bool = True
    star_light_slack: float = 1.0
    star_light_off_line: float = 1.05
    star_light_grow_sigma: float = 1.0
    undersampled_top_sigma: float = 8.0
    star_slope_ray_light: float = 1.0
    star_group_reach: float = 4.0
    star_edge_band: int = 6
    star_edge_pixels: int = 3
    star_blends: bool = True
    blend_reach: int = 5
    blend_min_peak: float = 5.0
    blend_lift: float = 2.0
    blend_slack: float = 1.1
    track_extent: int = 7
    track_edge_margin: int = 8
    smooth_fraction: float = 0.2
    sharp_peaks: bool = True
    sharp_sigma: float = 4.0
    sharp_dark_sigma: float = 0.5
    grow: bool = True
    grow_sigma: float = 1.75
    grow_steps: int = 3
    certain_sigma: float = 10.0
    certain_total: float = 5.5
    complete_tracks: bool = True
    track_min_length: int = 3
    track_elongation: float = 3.0
    track_spread: float = 0.5
    track_window: int = 4
    track_follow_sigma: float = 1.0
    track_follow_max: int = 40
    track_half_width: float = 1.0
    track_source_sigma: float = 1.0
    track_ring_fraction: float = 0.25
    widen_sigma: float = 0.5
    widen_core_sigma: float = 3.5
    weak_groups: bool = True
    weak_group_size: int = 4
    weak_group_fraction: float = 0.95
    faint_stars: bool = True
    faint_star_top: float = 0.21
    faint_star_density: float = 2000.0
    faint_star_pixels: int = 9
    faint_star_chi2: float = 1.2
    faint_star_margin: float = 5.0
    pedestal_ratio: float = 4.0
    offset_ratio: float = 1.5

    def __post_init__(self):
        for name, value in vars(self).items():
            if isinstance(value, bool):
                continue
            if not (value == value and 0 <= value < float("inf")):  # NaN fails both
                msg = f"CosmicRayTuning.{name} must be finite and >= 0, not {value!r}"
                raise ValueError(msg)
