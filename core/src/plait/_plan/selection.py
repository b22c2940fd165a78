"""``op_selection``: which nodes of a job to run.

Each clause names a node key (``load``, ``sub.load``) or a nested graph (``sub``: all its
nodes), optionally with ``*`` (all ancestors before / all descendants after) or one ``+``
per level (``++load`` = two levels of ancestors).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from plait._defs.compose import NodeSpec
from plait.errors import RunConfigError

_CLAUSE = re.compile(r"^(\*|\++)?([^*+]+?)(\*|\++)?$")


def _neighbours(nodes: Mapping[str, NodeSpec]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    up: dict[str, set[str]] = {key: set() for key in nodes}
    down: dict[str, set[str]] = {key: set() for key in nodes}
    for key, node in nodes.items():
        deps = set(node.upstream_keys())
        if node.mapped_over is not None:
            deps.add(node.mapped_over.node_key)
        for dep in deps:
            up[key].add(dep)
            down[dep].add(key)
    return up, down


def _walk(start: Iterable[str], edges: dict[str, set[str]], depth: int | None) -> set[str]:
    seen = set(start)
    frontier = set(start)
    level = 0
    while frontier and (depth is None or level < depth):
        frontier = {n for key in frontier for n in edges[key]} - seen
        seen |= frontier
        level += 1
    return seen


def _depth(marker: str | None) -> int | None:
    if marker is None:
        return 0
    return None if marker == "*" else len(marker)


def select_nodes(nodes: Mapping[str, NodeSpec], selection: Iterable[str]) -> set[str]:
    """The node keys a selection names; unknown names are an error listing what exists."""
    up, down = _neighbours(nodes)
    selected: set[str] = set()
    problems = []
    for clause in selection:
        match = _CLAUSE.match(clause.strip())
        if not match:
            problems.append(f"op_selection: {clause!r} is not a valid clause (use name, *name, name*, +name, name+)")
            continue
        before, name, after = match.groups()
        base = {key for key in nodes if key == name or key.startswith(name + ".")}
        if not base:
            problems.append(
                f"op_selection: no op {name!r} in this job; its ops are: {', '.join(sorted(nodes))}"
            )
            continue
        selected |= _walk(base, up, _depth(before)) | _walk(base, down, _depth(after))
    if problems:
        raise RunConfigError(problems)
    return selected
