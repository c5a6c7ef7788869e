"""The import graph of the package's modules, read from their source (lazy imports too).

Used by ``conf.py`` for the developer page and by ``tests/test_layout.py``.
"""

import ast
from pathlib import Path


def import_graph(package):
    """Return ``{module: sorted modules of the package it imports}``; '' is the package."""
    graph = {}
    for path in sorted(Path(package).rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        here = list(parts[:-1])
        name = ".".join(p for p in parts if p != "__init__")
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.level):
                continue
            base = here[: len(here) - (node.level - 1)]
            if node.module is None:  # from . import a, b
                targets.update(".".join([*base, alias.name]) for alias in node.names)
            else:
                targets.add(".".join([*base, *node.module.split(".")]))
        graph[name] = targets - {name}
    return {name: sorted(t for t in targets if t in graph) for name, targets in graph.items()}


def find_circle(graph):
    """Return a list of modules that import each other in a circle, or None.

    The package's ``__init__`` ('') imports everything; the modules import
    it only lazily for ``__version__``, so it is left out.
    """
    edges = {name: [t for t in targets if t] for name, targets in graph.items() if name}
    state = {}

    def visit(node, path):
        state[node] = "open"
        for target in edges.get(node, ()):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (circle := visit(target, [*path, target])):
                return circle
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state and (circle := visit(node, [node])):
            return circle
    return None
