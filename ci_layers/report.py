"""Human and machine renderings of a LayerGraph: text tree, JSON, Mermaid, Graphviz dot.

Layer names are user text: every format escapes them, so no name can break a diagram.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from .graph import LayerGraph

__all__ = ["graph_dot", "graph_json", "graph_mermaid", "graph_text"]


def graph_json(graph: LayerGraph) -> dict[str, Any]:
    """A stable JSON description: layers in build order with their edges."""
    return {
        "layers": [
            {
                "name": n,
                "parents": list(graph.parents(n)),
                "children": list(graph.children(n)),
                "depth": graph.depth(n),
                "from": graph[n].base,
            }
            for n in graph.topological_order()
        ],
        "roots": graph.roots(),
        "leaves": graph.leaves(),
        "order": graph.topological_order(),
    }


def graph_text(graph: LayerGraph, *, highlight: Collection[str] = ()) -> str:
    """A tree under each root; a layer with several parents is drawn under its first
    parent and its other dependencies are named beside it."""
    lines: list[str] = []

    def walk(name: str, prefix: str, last: bool, top: bool) -> None:
        layer = graph[name]
        extra = [d for d in layer.dependencies if d != layer.parent]
        note = f"  [from {layer.base}]" if layer.base else ""
        note += f"  (also needs {', '.join(extra)})" if extra else ""
        mark = "* " if name in highlight else ""
        branch = "" if top else ("└── " if last else "├── ")
        lines.append(f"{prefix}{branch}{mark}{name}{note}")
        kids = [c for c in graph.children(name) if graph[c].dependencies[0] == name]
        inner = prefix if top else prefix + ("    " if last else "│   ")
        for i, child in enumerate(kids):
            walk(child, inner, i == len(kids) - 1, False)

    for root in graph.roots():
        walk(root, "", True, True)
    return "\n".join(lines)


def _mermaid_label(name: str) -> str:
    # Mermaid reads HTML entities inside a quoted label; quote, brackets and markdown
    # characters are replaced so a name can close neither the label nor the diagram.
    out = []
    for ch in name:
        if ch.isalnum() or ch in " .-_/:+":
            out.append(ch)
        else:
            out.append(f"#{ord(ch)};")
    return "".join(out)


def graph_mermaid(graph: LayerGraph, *, highlight: Collection[str] = ()) -> str:
    order = graph.topological_order()
    ids = {n: f"n{i}" for i, n in enumerate(order)}
    lines = ["graph TD"]
    for n in order:
        lines.append(f'  {ids[n]}["{_mermaid_label(n)}"]')
    for n in order:
        for d in graph.parents(n):
            lines.append(f"  {ids[d]} --> {ids[n]}")
    marked = [ids[n] for n in order if n in highlight]
    if marked:
        lines.append("  classDef affected fill:#fde68a,stroke:#b45309,stroke-width:2px")
        lines.append(f"  class {','.join(marked)} affected")
    return "\n".join(lines)


def graph_dot(graph: LayerGraph, *, highlight: Collection[str] = ()) -> str:
    def q(name: str) -> str:
        return json.dumps(name)  # a JSON string is a valid dot ID: quotes and \ escaped

    lines = ["digraph layers {", "  rankdir=TB;", "  node [shape=box];"]
    for n in graph.topological_order():
        style = " [style=filled, fillcolor=gold]" if n in highlight else ""
        lines.append(f"  {q(n)}{style};")
    for n in graph.topological_order():
        for d in graph.parents(n):
            lines.append(f"  {q(d)} -> {q(n)};")
    lines.append("}")
    return "\n".join(lines)
