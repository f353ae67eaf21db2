"""Human and machine renderings of a LayerGraph: text tree, JSON, Mermaid, Graphviz dot.

Layer names are user text: every format escapes them, so no name can break a diagram.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from .graph import LayerGraph
from .plan import Plan

__all__ = [
    "graph_dot",
    "graph_json",
    "graph_mermaid",
    "graph_text",
    "plan_headline",
    "plan_markdown",
    "plan_text",
]


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


# --- plans -----------------------------------------------------------------------------


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "working tree"


def plan_headline(plan: Plan) -> str:
    total, n = len(plan.layers), len(plan.affected)
    if plan.comparison.mode == "none" or not n:
        return f"nothing to rebuild: all {total} layers reused"
    stages = len(plan.stages)
    return (
        f"{n} of {total} layers to rebuild, {total - n} reused, "
        f"in {stages} stage{'s' * (stages != 1)}"
    )


def plan_text(plan: Plan, *, max_reasons: int = 8) -> str:
    c = plan.comparison
    lines = [
        plan_headline(plan),
        f"  compare: {_short(c.base)}..{_short(c.head)} ({c.mode}: {c.reason})",
        f"  changed paths: {len(plan.changed_paths)}",
    ]
    for i, stage in enumerate(plan.stages, 1):
        lines.append(f"stage {i}:")
        for name in stage:
            lp = plan.layers[name]
            lines.append(f"  {name}  {lp.key[:19]}")
            for reason in lp.reasons[:max_reasons]:
                lines.append(f"    - {reason}")
            if len(lp.reasons) > max_reasons:
                lines.append(f"    - … {len(lp.reasons) - max_reasons} more")
    if plan.removed:
        lines.append(f"removed: {', '.join(plan.removed)}")
    return "\n".join(lines)


def _md(text: str) -> str:
    """Text safe inside a markdown table cell: no markup, no pipes, no HTML."""
    out = []
    for ch in text:
        if ch in "\\`*_{}[]<>()#+!|~&\"'":
            out.append(f"&#{ord(ch)};")
        elif ch in "\r\n":
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def plan_markdown(plan: Plan, *, max_reasons: int = 5) -> str:
    c = plan.comparison
    lines = [f"### ci-layers: {plan_headline(plan)}", ""]
    if plan.affected:
        lines += ["| stage | layer | why |", "|---:|---|---|"]
        for name in plan.affected:
            lp = plan.layers[name]
            why = "<br>".join(_md(r) for r in lp.reasons[:max_reasons])
            if len(lp.reasons) > max_reasons:
                why += f"<br>… {len(lp.reasons) - max_reasons} more"
            lines.append(f"| {lp.stage} | `{_md(name)}` | {why} |")
        lines.append("")
    if plan.removed:
        lines += ["Removed: " + ", ".join(f"`{_md(n)}`" for n in plan.removed), ""]
    lines.append(
        f"Compared `{_short(c.base)}`..`{_short(c.head)}` ({_md(c.mode)}: {_md(c.reason)}); "
        f"{len(plan.changed_paths)} changed paths."
    )
    return "\n".join(lines)
