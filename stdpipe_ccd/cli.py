"""The ``stdpipe-ccd`` command: mask, coadd, demo and info."""

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

from astropy import log

from . import _cli_arguments as arguments
from ._signals import signals_unwind
from ._tasks import SCHEDULERS

__all__ = ["main"]


DESCRIPTION = """\
STDPipe pre-processing for CCD frames: mask bad pixels with the reason for each,
and reproject and coadd frames with SWarp, from the command line.

Each subcommand has its own help: stdpipe-ccd SUBCOMMAND --help."""


def main(argv=None):
    """Run the ``stdpipe-ccd`` command.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default is ``sys.argv[1:]``.

    Returns
    -------
    status : int
        0 on success, 1 when some frame failed or an error stopped the
        command, 2 for bad usage, 130 when interrupted. SIGTERM and SIGHUP
        raise `SystemExit` with 128 plus the signal number once the files
        being written are removed.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    with _command_logging(args.verbose - args.quiet):
        try:
            _check_plotting(args)
            with signals_unwind():  # a batch system's stop leaves no half-written file
                return args.run(args)
        except KeyboardInterrupt:
            print("stdpipe-ccd: interrupted", file=sys.stderr)
            return 130
        except Exception as err:
            if args.debug:
                raise
            print(f"stdpipe-ccd {args.command}: error: {_one_line(err)}", file=sys.stderr)
            return 1


def build_parser():
    """Return the `argparse.ArgumentParser` of ``stdpipe-ccd`` with its subcommands."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="stdpipe-ccd",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"stdpipe_ccd {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0, help="say more")
    common.add_argument("-q", "--quiet", action="count", default=0, help="say less")
    common.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    _add_mask(commands, common)
    _add_coadd(commands, common)
    _add_demo(commands, common)
    _add_info(commands, common)
    return parser


# --- subcommands ------------------------------------------------------------------------


def _add_mask(commands, common):
    parser = commands.add_parser(
        "mask",
        parents=[common],
        help="mask bad pixels of frames and write them with MASK and FLAGS",
        description=_paragraph(
            "Mask every frame with stdpipe_ccd.make_mask and write it to the --output-dir "
            "folder under its own name, with MASK and FLAGS extensions. Frames whose "
            "output exists, is complete and was made from the same input with the same "
            "options are skipped, so an interrupted run resumes; other outputs are "
            "redone. A frame that fails is reported and the others still complete; the "
            "exit status is then 1."
        ),
        epilog=(
            "example:\n"
            "  stdpipe-ccd mask 'night/*.fits' --filter imagetyp=light -o masked \\\n"
            "      --cosmics --bleed --dark calib/dark.fits --flat calib/flat.fits --png"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_inputs(parser)
    parser.add_argument(
        "-o",
        "--output-dir",
        required=True,
        type=Path,
        metavar="DIR",
        help="folder for the masked frames",
    )
    parser.add_argument(
        "--saturation",
        default=None,
        metavar="LEVEL",
        help="saturation level in the image unit, 'estimate' (median + 0.95 (max - median)) "
        "or 'none' (default: SATURATE from the header, if there)",
    )
    parser.add_argument("--bleed", action="store_true", help="mask bleeding-charge trails")
    parser.add_argument(
        "--cosmics", action="store_true", help="mask cosmic rays (LACosmic, astroscrappy)"
    )
    parser.add_argument(
        "--gain",
        type=float,
        metavar="E_PER_ADU",
        help="gain in e-/ADU (default: GAIN from the header)",
    )
    parser.add_argument(
        "--readnoise",
        type=float,
        metavar="E",
        help="read noise in e- (default: RDNOISE, READNOIS or READNOISE from the header, "
        "else measured on the sky)",
    )
    parser.add_argument(
        "--cosmics-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an option of astroscrappy.detect_cosmics, e.g. sigclip=5 (repeatable)",
    )
    parser.add_argument(
        "--dark", type=Path, metavar="FILE", help="master dark: mask its hot pixels"
    )
    parser.add_argument(
        "--hot-threshold",
        type=float,
        metavar="N",
        default=10.0,
        help="hot pixels are above median + this many MAD-std of the dark (default: 10)",
    )
    parser.add_argument(
        "--flat", type=Path, metavar="FILE", help="master flat: mask low-response pixels"
    )
    parser.add_argument(
        "--flat-threshold",
        type=float,
        metavar="FRACTION",
        default=0.5,
        help="low response is below this fraction of the flat's median (default: 0.5)",
    )
    parser.add_argument(
        "--external-mask",
        type=Path,
        metavar="FILE",
        help="FITS image whose non-zero pixels are masked",
    )
    parser.add_argument(
        "--table",
        type=Path,
        metavar="FILE",
        help="also write the table of results to this file (ECSV)",
    )
    _add_running(parser)
    parser.add_argument(
        "--no-overwrite-changed",
        action="store_true",
        help="fail, rather than redo, frames whose output exists but does not match",
    )
    parser.add_argument(
        "--png", action="store_true", help="write a quick-look PNG beside each masked frame"
    )
    parser.set_defaults(run=_run_mask)


def _add_coadd(commands, common):
    parser = commands.add_parser(
        "coadd",
        aliases=["stack"],
        parents=[common],
        help="reproject and coadd frames with SWarp (or reproject)",
        description=_paragraph(
            "Reproject and coadd frames with stdpipe_ccd.coadd and write the coadd, its "
            "inverse-variance weight (UNCERT) and the mask of uncovered pixels (MASK) to "
            "the --output file. Masked frames (MASK/UNCERT extensions, as from 'stdpipe-ccd mask') "
            "give zero weight to their masked pixels."
        ),
        epilog=(
            "example:\n"
            "  stdpipe-ccd coadd 'masked/*.fits' -o stack.fits --combine median --png\n"
            "  stdpipe-ccd stack 'survey/*.fits' -o mosaic.fits --tiles 4096 --jobs 4"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_inputs(parser)
    parser.add_argument(
        "-o", "--output", required=True, type=Path, metavar="FILE", help="the coadd FITS file"
    )
    parser.add_argument(
        "--method",
        choices=("auto", "swarp", "interp", "adaptive", "exact"),
        default="auto",
        help="swarp, a reproject method, or auto: swarp if found, else interp (default: auto)",
    )
    parser.add_argument(
        "--combine",
        choices=("weighted", "average", "median", "sum", "clipped", "min", "max"),
        default="weighted",
        help="how overlapping pixels combine (default: weighted, inverse-variance)",
    )
    parser.add_argument(
        "--resampling",
        choices=("lanczos3", "lanczos2", "lanczos4", "bilinear", "nearest"),
        help="SWarp's resampling kernel (default: lanczos3)",
    )
    parser.add_argument(
        "--conserve",
        choices=("flux", "surface_brightness"),
        default="flux",
        help="what is kept where pixel areas change (default: flux)",
    )
    parser.add_argument(
        "--subtract-background",
        action="store_true",
        help="subtract each frame's background first (SWarp's map, or the same estimate "
        "with reproject)",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        metavar="FILE",
        help="FITS image whose WCS and size are the target grid (default: a grid that "
        "covers all frames, north up)",
    )
    parser.add_argument(
        "--tiles",
        type=arguments.tile_size,
        metavar="N or NYxNX",
        help="coadd in tiles of this many pixels, one task each, for mosaics larger than memory",
    )
    parser.add_argument(
        "--zeropoint-keyword",
        metavar="KEY",
        help="scale every frame to the zero point of the first, read from this keyword",
    )
    parser.add_argument(
        "--flux-scale-keyword", metavar="KEY", help="multiply each frame by this keyword's value"
    )
    parser.add_argument(
        "--ignore-head",
        action="store_true",
        help="ignore SCAMP .head files beside the frames (default: apply them, as SWarp does)",
    )
    parser.add_argument(
        "--swarp", type=Path, metavar="PATH", help="the SWarp binary (default: from the PATH)"
    )
    _add_running(parser)
    parser.add_argument(
        "--png", action="store_true", help="write a quick-look PNG beside the coadd"
    )
    parser.set_defaults(run=_run_coadd)


def _add_demo(commands, common):
    parser = commands.add_parser(
        "demo",
        parents=[common],
        help="mask and coadd a synthetic night, and show the pictures",
        description=_paragraph(
            "Generate a synthetic night (dithered light frames with cosmic rays, "
            "saturated stars with bleed trails, hot pixels and an overscan; a master "
            "dark and flat), mask it, coadd it with SWarp (or with reproject when "
            "SWarp is missing), and write the frames, products and pictures to a folder."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        metavar="DIR",
        help="folder for the products; must be new or empty (default: a new "
        "stdpipe-ccd-demo-* folder here)",
    )
    parser.add_argument(
        "--size", type=int, default=1024, help="frame size in pixels (default: 1024)"
    )
    parser.add_argument("--frames", type=int, default=4, help="light frames (default: 4)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the night (default: 1)")
    _add_running(parser)
    parser.set_defaults(run=_run_demo)


def _add_info(commands, common):
    parser = commands.add_parser(
        "info",
        parents=[common],
        help="show the SWarp binary, versions and configuration",
        description="Show which SWarp is used, the versions of the packages and the "
        "configuration (stdpipe_ccd.conf).",
    )
    parser.set_defaults(run=_run_info)


def _add_inputs(parser):
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="FILE",
        help="FITS files, folders (their FITS files) or quoted glob patterns",
    )
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep frames whose header KEY equals VALUE, as ImageFileCollection.filter "
        "does (repeatable)",
    )


def _add_running(parser):
    parser.add_argument(
        "-j", "--jobs", type=int, metavar="N", help="parallel tasks (default: one per core)"
    )
    parser.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        default="threads",
        help="dask scheduler for the tasks (default: threads)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="redo and replace existing outputs"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


# --- running them -----------------------------------------------------------------------


def _run_mask(args):
    from . import plot
    from ._tasks import run_tasks
    from .collection import STATUSES, mask_collection

    files = arguments.select(arguments.expand(args.inputs), args.filter)
    options = {
        "saturation": arguments.saturation(args.saturation),
        "mask_bleed": args.bleed,
        "mask_cosmics": args.cosmics,
        "gain": args.gain,
        "readnoise": args.readnoise,
        "cosmics_options": arguments.pairs(args.cosmics_option) or None,
        "dark": arguments.existing(args.dark),
        "hot_threshold": args.hot_threshold,
        "flat": arguments.existing(args.flat),
        "flat_threshold": args.flat_threshold,
        "external_mask": arguments.existing(args.external_mask),
    }
    options = {key: value for key, value in options.items() if value is not None}
    table = mask_collection(
        files,
        args.output_dir,
        overwrite=args.overwrite,
        redo_changed=not args.no_overwrite_changed,
        scheduler=args.scheduler,
        jobs=args.jobs,
        progress=_progress(args),
        **options,
    )
    if args.png:
        done = [(row["output"], args.overwrite) for row in table if row["status"] != "failed"]
        run_tasks(
            plot.write_mask_png,
            done,
            scheduler=args.scheduler,
            client=None,
            jobs=args.jobs,
            progress=False,
        )
    if args.table:
        table.write(args.table, format="ascii.ecsv", overwrite=True)
    if args.verbose - args.quiet >= 0:
        _print_mask_table(table)
    counts = {status: int((table["status"] == status).sum()) for status in STATUSES}
    print(
        f"{counts['written'] + counts['redone']} of {len(table)} frames masked into "
        f"{args.output_dir} ({counts['redone']} redone), {counts['skipped']} up to date, "
        f"{counts['failed']} failed"
    )
    failed = counts["failed"]
    return 1 if failed else 0


def _run_coadd(args):
    from . import coadd

    files = arguments.select(arguments.expand(args.inputs), args.filter)
    options = {}
    if args.reference is not None:
        from astropy.io import fits

        options["header"] = fits.getheader(arguments.existing(args.reference))
        if options["header"].get("NAXIS", 0) < 2:
            msg = f"--reference {args.reference} has no image in its primary HDU"
            raise ValueError(msg)
    if args.method in ("auto", "swarp"):
        if args.resampling:
            options["resampling"] = args.resampling
        if args.swarp:
            options["swarp_path"] = args.swarp
    elif args.resampling or args.swarp:
        msg = "--resampling and --swarp need --method swarp or auto"
        raise ValueError(msg)
    options["subtract_background"] = args.subtract_background
    options["zeropoint_keyword"] = args.zeropoint_keyword
    options["flux_scale_keyword"] = args.flux_scale_keyword
    options["header_suffix"] = None if args.ignore_head else ".head"
    start = time.perf_counter()
    result = coadd(
        files,
        method=args.method,
        combine=args.combine,
        conserve=args.conserve,
        output=args.output,
        overwrite=args.overwrite,
        tiles=args.tiles,
        scheduler=args.scheduler,
        jobs=args.jobs,
        progress=_progress(args),
        **options,
    )
    if args.png:
        from . import plot

        plot.write_coadd_png(result, args.output.with_suffix(".png"))
    print(
        f"coadded {result.meta['NCOMBINE']} images of {len(files)} files into {args.output} "
        f"({result.shape[1]} x {result.shape[0]} pixels, GAIN {result.meta.get('GAIN', 1):.3g}) "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0


def _run_demo(args):
    from . import datasets
    from ._demo import run_demo

    smallest = datasets.MIN_SIZE + datasets.OVERSCAN
    if args.size < smallest or args.frames < 1:
        msg = f"--size must be at least {smallest} and --frames at least 1"
        raise ValueError(msg)  # before any folder is made
    folder = args.output_dir
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="stdpipe-ccd-demo-", dir="."))
    elif folder.exists() and any(folder.iterdir()) and not args.overwrite:
        msg = f"{folder} is not empty; choose another folder or pass --overwrite"
        raise FileExistsError(msg)
    summary = run_demo(
        folder,
        size=args.size,
        n_frames=args.frames,
        seed=args.seed,
        scheduler=args.scheduler,
        jobs=args.jobs,
        progress=_progress(args),
    )
    for line in summary:
        print(line)
    print(f"products and pictures are in {folder.resolve()}")
    return 0


def _run_info(args):
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__
    from ._conf import conf
    from ._swarp_binary import find_swarp, swarp_info
    from .exceptions import SwarpNotFoundError

    print(f"stdpipe_ccd {__version__}")
    try:
        path = find_swarp()
        print(f"SWarp: {path} (version {swarp_info(str(path))[0]})")
    except SwarpNotFoundError as err:
        print(f"SWarp: not found ({_one_line(err)})")
    print(f"Python: {sys.version.split()[0]} ({sys.executable})")
    names = ("numpy", "scipy", "astropy", "ccdproc", "astroscrappy", "dask", "distributed")
    for name in (*names, "reproject", "matplotlib"):
        try:
            print(f"{name}: {version(name)}")
        except PackageNotFoundError:
            print(f"{name}: not installed")
    print("configuration (stdpipe_ccd.conf):")
    for name in conf:
        item = getattr(type(conf), name)
        print(f"  {name} = {getattr(conf, name)!r}  # {item.description}")
    from astropy.config import get_config_dir

    print(f"configuration file: {Path(get_config_dir()) / 'stdpipe_ccd.cfg'}")
    return 0


# --- helpers ------------------------------------------------------------------------------


def _progress(args):
    return not args.no_progress and sys.stdout.isatty()


def _print_mask_table(table):
    columns = ["input", "status", "TOTAL", "NONFINITE", "SATURATED", "BLEED", "COSMIC_RAY"]
    columns += ["HOT", "LOW_RESPONSE", "OUTSIDE_DATASEC"]
    shown = table[columns]
    shown["input"] = [os.path.basename(p) for p in shown["input"]]
    for line in shown.pformat(max_lines=-1, max_width=-1):
        print(line)
    for row in table[table["status"] == "failed"]:
        print(f"{os.path.basename(row['input'])}: {row['error']}")


def _paragraph(text):
    return textwrap.fill(text, width=79)


def _one_line(err):
    """Return the first line of an error, in the command's words."""
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line.replace("pass overwrite=True", "pass --overwrite")


def _check_plotting(args):
    """Refuse --png (and the demo's pictures) before any work when matplotlib is missing."""
    if getattr(args, "png", False) or args.command == "demo":
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            msg = "pictures need matplotlib: pip install 'stdpipe_ccd[plot]'"
            raise ImportError(msg) from None


@contextlib.contextmanager
def _command_logging(level):
    """Send astropy's log (which the package logs to) to stderr, one plain line each.

    The log and ``warnings.showwarning`` are put back afterwards, so calling
    `main` from Python leaves them as they were.
    """
    saved = (log.handlers[:], log.propagate, log.level, warnings.showwarning)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(
        {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(
            level, logging.DEBUG if level > 1 else logging.ERROR
        )
    )
    # warnings as one line each, like the log
    warnings.showwarning = lambda message, category, *args, **kwargs: log.warning("%s", message)
    try:
        yield
    finally:
        log.handlers[:], log.propagate, _, warnings.showwarning = saved
        log.setLevel(saved[2])
