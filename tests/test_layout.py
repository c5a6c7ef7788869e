"""The package's layout: no two modules import each other, directly or round a circle."""

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
