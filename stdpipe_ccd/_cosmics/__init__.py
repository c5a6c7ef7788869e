"""Cosmic rays: LACosmic through astroscrappy, with a noise model and validated refinements.

`detect` is what `~stdpipe_ccd.make_mask` runs with ``mask_cosmics=True``.
The steps after LACosmic live in their own modules: `.stars` (the star
veto), `.blends` (flags on blended stars), `.sharp` (rays LACosmic missed),
`.tracks` (growth and track completion), `.singles` (lone flags and
small groups in the noise) and `.faint_stars` (faint undersampled stars
flagged whole), over the neighbourhood helpers of `.geometry`,
the noise model of `.frame`, the star shape of `.shape` and the tests for
a smooth source of `.sources`.
Their thresholds are the fields of `CosmicRayTuning`. Each step stays only
while it does no harm against the bare astroscrappy call on any cell of
the validation matrix (``benchmarks/bench_cosmics_matrix.py``).
"""

import inspect

import numpy as np
from astropy import log
from scipy import ndimage

from . import blends, faint_stars, sharp, singles, stars, tracks
from .frame import Frame, noise_model
from .tuning import CosmicRayTuning

__all__ = [
    "COSMICS_DEFAULTS",
    "MIN_SIDE",
    "CosmicRayTuning",
    "check_options",
    "check_shape",
    "detect",
]

#: astroscrappy options that `make_mask` sets itself (astroscrappy's own defaults).
COSMICS_DEFAULTS = {
    "sigclip": 4.5,
    "sigfrac": 0.3,
    "objlim": 5.0,
    "niter": 4,
    "sepmed": True,
    "cleantype": "meanmask",
}
#: the smallest side (pixels) of a frame astroscrappy takes: its 9-pixel median filter copies
#: 4 rows and columns from each edge, and writes outside the memory of a smaller frame
MIN_SIDE = 4
_RESERVED = ("indat", "inmask", "inbkg", "invar", "gain", "readnoise", "satlevel", "verbose")
#: data whose spread lies outside this range are searched over a power of two near it
WORKING_SPREAD = (2.0**-10, 2.0**20)


def detect(
    data,
    known,
    *,
    gain,
    readnoise,
    gain_known,
    response,
    saturation,
    options,
    tuning,
    uncertainty=None,
):
    """Boolean image of the cosmic rays among the pixels not ``known`` to be bad.

    LACosmic runs on the pixels not known to be bad, with the noise model of
    `noise_model` (and not on the lines of a raw frame that got no light,
    `.frame.unexposed_lines`); the cores of stars it flagged are then dropped
    (`.stars.drop_star_cores`), and the groups on blends of stars
    (`.blends.drop_blends`); sharp peaks it missed are added
    (`.sharp.add_sharp_peaks`), the weak edges of the rays grown
    (`.tracks.grow`), tracks found in pieces completed along their line and
    faint rays widened by their rim (`.tracks.complete_tracks`,
    `.tracks.widen_faint_groups`), from whose pixels that stand out
    (`.tracks.standing_out`) growth runs once more; lone flagged pixels and
    small groups that stand too little above their surroundings are
    unflagged (`.singles.drop_weak_groups`), and so are the small faint
    groups the frame's star shape fits (`.faint_stars.drop_faint_stars`).
    The variance ``uncertainty`` gives (image unit squared, if any) raises
    the model's (``_with_uncertainty``).
    """
    import astroscrappy

    tuning = CosmicRayTuning() if tuning is None else tuning
    options = check_options(options)
    scale = _working_scale(data, known)
    if scale != 1:
        # flux-calibrated data (1e-18) or huge values: float32 squares of them lose their
        # digits or overflow. Over a power of two the values keep every digit.
        data, gain = data / scale, gain * scale
        saturation = None if saturation is None else saturation / scale
        uncertainty = None if uncertainty is None else uncertainty / scale**2
        if "pssl" in options:
            options["pssl"] = options["pssl"] / scale
    with np.errstate(divide="ignore", invalid="ignore"):  # masked and empty pixels
        noise = noise_model(
            data,
            known,
            gain=gain,
            readnoise=readnoise,
            gain_known=gain_known,
            response=response,
            pedestal_ratio=tuning.pedestal_ratio,
            offset_ratio=tuning.offset_ratio,
        )
        if noise.unexposed is not None:
            known = _without_unexposed(known, noise)
        # without a gain or a read noise, those the sky implies
        variance, gain, readnoise = noise.variance, noise.gain, noise.readnoise
        if uncertainty is not None:
            variance = _with_uncertainty(variance, uncertainty)
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
        lowest = min(tuning.star_shape_sigma, tuning.sharp_sigma if tuning.sharp_peaks else np.inf)
        frame = Frame(data, known, noise.sky.level(), variance, peak_sigma=lowest)
        del variance, noise
        _refine(cosmics, frame, tuning, options["sigclip"])
    return cosmics


def _with_uncertainty(variance, uncertainty):
    """Raise the model's ``variance`` to the lowest the ``uncertainty`` gives round each pixel.

    A coadd's noise changes with the number of frames that cover each pixel,
    and its sky's boxes spread that: on 3 frames dithered by up to 60
    pixels, the model's sigma was 0.55 of the coadd's own where one frame
    covered it, and 289 pixels were flagged where there was no ray (the
    bare call 14). The lowest variance of each 3 x 3 box leaves out the
    noise of a ray's own charge, which an uncertainty from the data holds.
    """
    floor = ndimage.minimum_filter(np.where(np.isfinite(uncertainty), uncertainty, np.inf), size=3)
    return np.maximum(variance, floor, out=variance, where=np.isfinite(floor))


def _working_scale(data, known):
    """Return a power of two near the spread of the data, or 1 within `WORKING_SPREAD`.

    The spread is the median absolute deviation of the pixels not ``known``
    to be bad, sampled every 8th row and column (their largest value where
    that is 0).
    """
    sample = data[::8, ::8][~known[::8, ::8]]
    sample = sample[np.isfinite(sample)]
    if not sample.size:
        return 1.0
    spread = np.median(np.abs(sample - np.median(sample)))
    if not spread > 0:
        spread = np.max(np.abs(sample))
    low, high = WORKING_SPREAD
    if not spread > 0 or low <= spread <= high:
        return 1.0
    return float(2.0 ** np.round(np.log2(spread)))


def _without_unexposed(known, noise):
    """``known`` and the lines that got no light, which LACosmic and the steps leave alone."""
    rows = int(np.count_nonzero(noise.unexposed.all(axis=1)))
    columns = int(np.count_nonzero(noise.unexposed.all(axis=0)))
    log.debug(
        "the sky's level holds an offset of %.1f (a bias left in), taken off for the noise; "
        "%d rows and %d columns at it are left out of the cosmic-ray search",
        noise.zero,
        rows,
        columns,
    )
    return known | noise.unexposed


def _refine(cosmics, frame, tuning, sigclip):
    """Run the steps after LACosmic that ``tuning`` switches on."""
    if tuning.star_veto:
        measured = stars.drop_star_cores(cosmics, frame, tuning)
        if measured is not None and tuning.star_blends:
            blends.drop_blends(cosmics, frame, measured, tuning)
    if tuning.sharp_peaks:
        sharp.add_sharp_peaks(cosmics, frame, tuning)
    if tuning.grow:
        tracks.grow(cosmics, frame, tuning)
    if tuning.complete_tracks:
        grown = cosmics.copy()
        tracks.complete_tracks(cosmics, frame, tuning)
        tracks.widen_faint_groups(cosmics, frame, tuning)
        if tuning.grow:
            # the pixels added along lines and rims may reach parts of the track growth missed
            seeds = tracks.standing_out(cosmics & ~grown, frame, tuning.grow_sigma)
            tracks.grow(cosmics, frame, tuning, seeds=seeds)
    if tuning.weak_groups:
        singles.drop_weak_groups(cosmics, frame, sigclip, tuning)
    if tuning.faint_stars:
        faint_stars.drop_faint_stars(cosmics, frame, tuning)


def check_shape(shape):
    """Raise `ValueError` unless a frame of ``shape`` has sides of `MIN_SIDE` pixels or more."""
    if min(shape) < MIN_SIDE:
        msg = (
            f"mask_cosmics needs a frame of at least {MIN_SIDE} x {MIN_SIDE} pixels, not "
            f"{tuple(shape)}: astroscrappy writes outside the memory of smaller ones"
        )
        raise ValueError(msg)


def check_options(options):
    """Merge user options into the defaults, rejecting names astroscrappy does not take."""
    import astroscrappy

    options = dict(options or {})
    allowed = set(inspect.signature(astroscrappy.detect_cosmics).parameters) - set(_RESERVED)
    unknown = sorted(set(options) - allowed)
    if unknown:
        msg = (
            f"cosmics_options has unknown astroscrappy option(s) {unknown}; "
            f"allowed are {sorted(allowed)}"
        )
        raise TypeError(msg)
    return {**COSMICS_DEFAULTS, **options}
