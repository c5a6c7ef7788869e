"""Argument types and input selection of the command-line tool."""

import argparse
import glob
import os
from pathlib import Path

from .io import FITS_SUFFIXES

__all__ = ["existing", "expand", "number", "pairs", "saturation", "select", "tile_size"]


def expand(patterns):
    """FITS files named by paths, folders and glob patterns, in order, without repeats."""
    files = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            found = sorted(glob.glob(pattern))
            if not found:
                msg = f"no file matches {pattern}"
                raise FileNotFoundError(msg)
        elif os.path.isdir(pattern):
            found = sorted(
                str(p) for p in Path(pattern).iterdir() if p.name.lower().endswith(FITS_SUFFIXES)
            )
            if not found:
                msg = f"folder {pattern} has no FITS files"
                raise FileNotFoundError(msg)
        elif os.path.isfile(pattern):
            found = [pattern]
        else:
            msg = f"{pattern} does not exist"
            raise FileNotFoundError(msg)
        files += [f for f in found if f not in files]
    return files


def select(files, filters):
    """Keep the files whose headers match every KEY=VALUE, as ImageFileCollection.filter."""
    if not filters:
        return files
    from ccdproc import ImageFileCollection

    criteria = pairs(filters)
    folders = {os.path.dirname(os.path.abspath(f)) for f in files}
    kept = []
    for folder in sorted(folders):
        names = [
            os.path.basename(f) for f in files if os.path.dirname(os.path.abspath(f)) == folder
        ]
        collection = ImageFileCollection(folder, filenames=names, keywords=sorted(criteria))
        kept += list(collection.files_filtered(include_path=True, **criteria))
    kept = [f for f in files if os.path.abspath(f) in {os.path.abspath(k) for k in kept}]
    if not kept:
        msg = f"no frame matches {' '.join(filters)}"
        raise ValueError(msg)
    return kept


def pairs(texts):
    pairs = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key:
            msg = f"expected NAME=VALUE, not {text!r}"
            raise ValueError(msg)
        pairs[key.strip().lower()] = number(value.strip())
    return pairs


def number(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def saturation(text):
    if text is None:
        return None
    if text.lower() == "estimate":
        return True
    if text.lower() == "none":
        return False
    try:
        return float(text)
    except ValueError:
        msg = f"--saturation must be a number, 'estimate' or 'none', not {text!r}"
        raise ValueError(msg) from None


def tile_size(text):
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts, default=0) < 1:
        msg = f"expected N or NYxNX with positive integers, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return parts[0] if len(parts) == 1 else tuple(parts)


def existing(path):
    if path is not None and not path.is_file():
        msg = f"{path} does not exist"
        raise FileNotFoundError(msg)
    return None if path is None else str(path)
