# Sphinx configuration of stdpipe_ccd, on sphinx-astropy's v2 settings.
import datetime
import sys
from importlib import metadata
from pathlib import Path

from sphinx_astropy.conf.v2 import *  # noqa: F403

project = "stdpipe_ccd"
author = "stdpipe_ccd developers"
copyright = f"{datetime.date.today().year}, {author}"  # noqa: A001 (Sphinx setting)
release = metadata.version(project)
version = release.split("+")[0]

# The build must work offline: the inventories are files shipped in docs/inventories/
# (where they come from, and the command that refreshes them: its README), never
# fetched at build time.
sys.path.insert(0, str(Path(__file__).parent / "inventories"))
from refresh import INVENTORIES  # noqa: E402

intersphinx_mapping = {
    name: (url, str(Path(__file__).parent / "inventories" / f"{name}.inv"))
    for name, url in INVENTORIES.items()
}
nitpicky = True

exclude_patterns = ["_build", "inventories", "Thumbs.db", ".DS_Store"]
html_title = f"{project} {version}"
# The guide's pages have no sub-pages: the header lists them all, and the left
# sidebar (which would show only a page's own sub-pages) is left out, so that the
# article has the width its tables need.
html_theme_options = {"navigation_with_keys": False, "header_links_before_dropdown": 4}
html_sidebars = {"**": []}
html_static_path = ["_static"]
html_css_files = ["stdpipe_ccd.css"]
automodapi_toctreedirnm = "api"
automodsumm_inherited_members = False
numpydoc_show_class_members = False
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 100)]

# --- pages made from the code and the benchmark records at build time -----------------
# _generated/ holds the --help texts of the command line and the benchmark tables, so
# the pages always show what the installed code says and what benchmarks/ measured.
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
from unittest import mock  # noqa: E402

from astropy.table import Table  # noqa: E402

_here = Path(__file__).parent
_generated = _here / "_generated"
_generated.mkdir(exist_ok=True)
exclude_patterns.append("_generated")


def _write_cli_help():
    from stdpipe_ccd.cli import main

    for command in ("", "mask", "coadd", "demo", "info"):
        text = io.StringIO()
        # argparse wraps to the terminal width; 72 columns fit the page
        with (
            mock.patch.dict(os.environ, {"COLUMNS": "72"}),
            contextlib.redirect_stdout(text),
            contextlib.suppress(SystemExit),
        ):
            main([command, "--help"] if command else ["--help"])
        (_generated / f"help-{command or 'main'}.txt").write_text(text.getvalue())


def _table(rows, columns):
    """An RST table of ``rows`` (dicts), with ``columns`` as (key, heading, format)."""
    table = Table()
    for key, heading, fmt in columns:
        table[heading] = [fmt.format(row[key]) if row.get(key) is not None else "" for row in rows]
    lines = table.pformat(max_lines=-1, max_width=-1, align="<")
    rule = " ".join("=" * len(part) for part in lines[1].split(" "))
    return "\n".join([rule, lines[0], rule, *lines[2:], rule, ""])


def _write_benchmark_tables():
    results = _here.parent / "benchmarks" / "results"
    masking = json.loads((results / "masking.json").read_text())
    swarp = json.loads((results / "swarp.json").read_text())
    no_nan = json.loads((results / "swarp-no-nan.json").read_text())
    quality = [dict(row, cores=row["star_cores"] * row["n_stars"]) for row in masking["quality"]]
    tables = {
        "masking-speed": _table(
            masking["without_cosmics"],
            [
                ("method", "method (4096 x 4096 float32)", "{}"),
                ("seconds", "seconds", "{:.3f}"),
                ("ratio_to_isfinite", "time / np.isfinite", "{:.2f}"),
                ("extra_in_images", "extra memory / image", "{:.2f}"),
            ],
        ),
        "cosmics-speed": _table(
            masking["with_cosmics"],
            [
                ("method", "method (4096 x 4096)", "{}"),
                ("seconds", "seconds", "{:.1f}"),
                ("ratio_to_bare_call", "time / astroscrappy", "{:.2f}"),
                ("ratio_to_own_call", "time / its own astroscrappy call", "{:.3f}"),
                ("memory_ratio_to_bare_call", "memory / astroscrappy", "{:.2f}"),
            ],
        ),
        "cosmics-quality": _table(
            quality,
            [
                ("method", "method", "{}"),
                ("size", "frame", "{}"),
                ("rays", "rays", "{}"),
                ("recall", "recall", "{:.3f}"),
                ("recall_5sigma", "recall >= 5 sigma", "{:.3f}"),
                ("precision", "precision (+-1 px)", "{:.3f}"),
                ("cores", "star cores flagged", "{:.0f}"),
                ("n_stars", "of stars", "{}"),
            ],
        ),
        "bleed": _table(
            masking["bleed"],
            [
                ("size", "frame", "{}"),
                ("recall", "trail pixels found", "{:.3f}"),
                ("extra", "extra pixels / trail pixels", "{:.3f}"),
                ("n_true", "trail pixels", "{}"),
            ],
        ),
    }
    parity = json.loads((results / "parity.json").read_text())
    tables["parity"] = _table(
        parity["rows"],
        [
            ("option", f"option ({parity['frames']} x {parity['size']}^2)", "{}"),
            ("stars", "stars", "{}"),
            ("flux_ratio_median", "flux interp / SWarp", "{:.4f}"),
            ("flux_ratio_worst", "worst star", "{:.4f}"),
            ("within_1pc", "stars within 1 %", "{:.2f}"),
            ("bright_whole_stars", "stars >= 1e5 ADU, unmasked", "{}"),
            ("bright_worst", "worst of them", "{:.4f}"),
            ("bright_within_1pc", "within 1 %", "{:.2f}"),
            ("inverse_variance_ratio", "inverse variance", "{:.3f}"),
            ("gain_ratio", "gain", "{:.3f}"),
            ("count_map_agreement", "image counts equal", "{:.3f}"),
        ],
    )
    for name, record in (("swarp", swarp), ("swarp-no-nan", no_nan)):
        tables[name] = _table(
            record["rows"],
            [
                ("method", f"method ({record['frames']} x {record['size']}^2)", "{}"),
                ("call_s", "call s", "{:.1f}"),
                ("call_ratio", "call ratio", "{:.2f}"),
                ("process_ratio", "process ratio", "{:.2f}"),
                ("peak_mb", "Python peak MB", "{:.0f}"),
                ("swarp_peak_mb", "SWarp peak MB", "{:.0f}"),
            ],
        )
    scaling = json.loads((results / "scaling.json").read_text())
    run_columns = [
        ("method", f"method ({scaling['frames']} x {scaling['size']}^2)", "{}"),
        ("call_s", "seconds", "{:.1f}"),
        ("call_ratio", "time ratio", "{:.2f}"),
        ("peak_mb", "peak MB", "{:.0f}"),
        ("peak_ratio", "peak ratio", "{:.2f}"),
        ("child_peak_mb", "child peak MB", "{:.0f}"),
    ]
    tables["night"] = _table(scaling["masking"], run_columns)
    tables["mosaic"] = _table(scaling["mosaic"], run_columns)
    ny, nx = scaling["mosaic_shape"]
    tables["tiles"] = "The mosaic has {} x {} pixels. Against the single run:\n\n".format(
        nx, ny
    ) + _table(
        [dict(value, tiles=name) for name, value in scaling["tile_agreement"].items()],
        [
            ("tiles", "tiles", "{}"),
            ("max_relative_to_local_scale", "largest difference / local scale", "{:.1e}"),
            ("relative_99.99_percentile", "99.99th percentile of difference / value", "{:.1e}"),
            ("same_mask", "same mask", "{}"),
        ],
    )
    matrix = json.loads((results / "cosmics-matrix.json").read_text())
    matrix_rows = []
    for cell in matrix["cells"]:
        for row in cell["rows"]:
            worse = row.get("worse_than_bare")
            matrix_rows.append(
                dict(row, cell=cell["cell"], worse=", ".join(worse) if worse else "")
            )
    matrix_columns = [
        ("method", "method", "{}"),
        ("recall", "recall", "{:.3f}"),
        ("recall_5sigma", ">= 5 sigma", "{:.3f}"),
        ("precision", "precision", "{:.3f}"),
        ("star_cores", "star cores", "{:.3f}"),
        ("galaxy_cores", "galaxy cores", "{:.3f}"),
        ("noise_ratio", "noise / Gauss", "{:.1f}"),
    ]
    tables["cosmics-matrix"] = _table(
        matrix_rows,
        [
            ("cell", "cell", "{}"),
            *matrix_columns,
            ("time_ratio", "time / bare", "{:.2f}"),
            ("worse", "worse than bare", "{}"),
        ],
    )
    tables["cosmics-matrix-mean"] = _table(matrix["mean"], matrix_columns)
    steps = json.loads((results / "cosmics-steps.json").read_text())
    tables["cosmics-steps"] = _table(
        [dict(row, step=row["method"]) for row in steps["mean"]],
        [("step", "make_mask", "{}"), *matrix_columns[1:]],
    )
    machine = masking["machine"]
    tables["machine"] = (
        f"Python {machine['python']}, numpy {machine['numpy']}, ccdproc {machine['ccdproc']}, "
        f"{machine['cpu_count']} cores, {machine['platform']}.\n"
    )
    for name, text in tables.items():
        (_generated / f"bench-{name}.rst").write_text(text)


def _write_import_graph():
    import stdpipe_ccd

    sys.path.insert(0, str(_here))
    from import_graph import import_graph

    graph = import_graph(Path(stdpipe_ccd.__file__).parent)
    rows = [
        {
            "module": f"stdpipe_ccd.{name}" if name else "stdpipe_ccd",
            "imports": ", ".join(t or "(package)" for t in targets) or "-",
        }
        for name, targets in graph.items()
        if name != "_version"
    ]
    text = _table(
        rows, [("module", "module", "{}"), ("imports", "imports (modules of the package)", "{}")]
    )
    (_generated / "import-graph.rst").write_text(text)


_write_cli_help()
_write_benchmark_tables()
_write_import_graph()
