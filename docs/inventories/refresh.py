"""Refresh the Sphinx inventories the docs link against, shipped so that builds stay offline.

    python docs/inventories/refresh.py                 # download every inventory
    python docs/inventories/refresh.py numpy ccdproc   # only these
    python docs/inventories/refresh.py --stand-in      # offline: numpy and matplotlib

Each inventory is the project's own ``objects.inv``, saved as ``<name>.inv``
beside this script. Where a machine cannot download, ``--stand-in`` writes
inventories for numpy and matplotlib that list only the objects these docs
name (`STAND_INS`), at the addresses of their reference pages.
"""

import argparse
import sys
import urllib.request
import zlib
from pathlib import Path

HERE = Path(__file__).parent

#: name -> base address of the documentation (its objects.inv is below it)
INVENTORIES = {
    "python": "https://docs.python.org/3/",
    "numpy": "https://numpy.org/doc/stable/",
    "scipy": "https://docs.scipy.org/doc/scipy/",
    "matplotlib": "https://matplotlib.org/stable/",
    "astropy": "https://docs.astropy.org/en/stable/",
    "ccdproc": "https://ccdproc.readthedocs.io/en/latest/",
    "reproject": "https://reproject.readthedocs.io/en/stable/",
    "astroscrappy": "https://astroscrappy.readthedocs.io/en/latest/",
    "dask": "https://docs.dask.org/en/stable/",
    "distributed": "https://distributed.dask.org/en/stable/",
}

#: objects the docs name, as (name, role, page below the base address)
STAND_INS = {
    "numpy": [
        (f"numpy.{name}", role, f"reference/generated/numpy.{name}.html")
        for name, role in [
            ("ndarray", "class"),
            ("dtype", "class"),
            ("errstate", "class"),
            ("memmap", "class"),
            ("isfinite", "data"),
            ("median", "function"),
        ]
    ],
    "matplotlib": [
        ("matplotlib.pyplot", "module", "api/pyplot_summary.html"),
        ("matplotlib.figure.Figure", "class", "api/_as_gen/matplotlib.figure.Figure.html"),
        ("matplotlib.axes.Axes", "class", "api/_as_gen/matplotlib.axes.Axes.html"),
    ],
}


def download(name):
    """Save ``name``'s objects.inv beside this script."""
    url = INVENTORIES[name] + "objects.inv"
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read()
    if not data.startswith(b"# Sphinx inventory version 2"):
        msg = f"{url} is not a Sphinx inventory"
        raise ValueError(msg)
    (HERE / f"{name}.inv").write_bytes(data)


def write_stand_in(name):
    """Write an inventory of the objects of ``STAND_INS[name]``."""
    lines = []
    for target, role, page in STAND_INS[name]:
        anchor = f"module-{target}" if role == "module" else target
        lines.append(f"{target} py:{role} 1 {page}#{anchor} -\n")
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {name} (stand-in: the objects these docs name)\n"
        "# Version: \n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = zlib.compress("".join(lines).encode())
    (HERE / f"{name}.inv").write_bytes(header.encode() + body)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="inventories to refresh (default: all)")
    parser.add_argument(
        "--stand-in", action="store_true", help="write the numpy and matplotlib stand-ins"
    )
    args = parser.parse_args(argv)
    if args.stand_in:
        for name in args.names or STAND_INS:
            write_stand_in(name)
        return 0
    failed = []
    for name in args.names or INVENTORIES:
        try:
            download(name)
        except OSError as error:
            failed.append(f"{name}: {error}")
    for line in failed:
        print(f"not refreshed: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
