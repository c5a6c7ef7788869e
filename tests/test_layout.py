"""The package's layout: no two modules import each other, directly or round a circle."""

import ast
import sys
from pathlib import Path

import stdpipe_ccd

sys.path.insert(0, str(Path(__file__).parents[1] / "docs"))
from import_graph import find_circle, import_graph

PACKAGE = Path(stdpipe_ccd.__file__).parent


def test_import_graph_is_acyclic():
    assert find_circle(import_graph(PACKAGE)) is None


def test_a_circle_is_found():
    graph = {"": ["a"], "a": ["b"], "b": ["c"], "c": ["a"]}
    assert find_circle(graph) == ["a", "b", "c", "a"]
    assert find_circle({"a": ["b"], "b": []}) is None


def test_no_module_is_over_600_lines():
    lengths = {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert {name: n for name, n in lengths.items() if n > 600} == {}


def test_private_names_stay_in_their_module():
    """A module imports no underscore name, except from the ``_`` modules made to be shared."""
    crossings = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.level:
                continue
            source = (node.module or "").rsplit(".", 1)[-1]
            for alias in node.names:
                shared = source.startswith("_") or (not source and alias.name.startswith("_"))
                if alias.name.startswith("_") and alias.name != "__version__" and not shared:
                    crossings.append(f"{path.name}: from {node.module} import {alias.name}")
    assert crossings == []
