"""Human and machine renderings of a LayerGraph: text tree, JSON, Mermaid, Graphviz dot.

Layer names are user text: every format escapes them, so no name can break a diagram.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Collection, Sequence
from typing import Any

from .errors import SpecError
from .graph import LayerGraph
from .plan import Plan

__all__ = [
    "HIGHLIGHT",
    "REUSED",
    "annotation",
    "arrow",
    "compared_why",
    "graph_dot",
    "graph_json",
    "graph_mermaid",
    "graph_text",
    "mermaid_label",
    "plan_headline",
    "plan_text",
    "printable",
    "short_sha",
    "stage_numbers",
    "untrusted",
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


def mermaid_label(name: str) -> str:
    # Mermaid reads HTML entities inside a quoted label; quote, brackets and markdown
    # characters are replaced so a name can close neither the label nor the diagram.
    out = []
    for ch in name:
        if ch.isalnum() or ch in " .-_/:+":
            out.append(ch)
        else:
            out.append(f"#{ord(ch)};")
    return "".join(out)


# A text colour of its own: GitHub's dark theme draws labels light grey, unreadable on
# the highlight's yellow.
HIGHLIGHT = "fill:#fde68a,stroke:#b45309,stroke-width:2px,color:#1f2937"
REUSED = "fill:#e5e7eb,stroke:#6b7280,color:#1f2937"


def arrow(graph: LayerGraph, child: str, dep: str) -> str:
    """Solid for what a layer is built on (its parent, a Dockerfile's final base);
    dashed for what it only copies from or uses."""
    return "-->" if graph[child].parent == dep else "-.->"


def graph_mermaid(graph: LayerGraph, *, highlight: Collection[str] = ()) -> str:
    order = graph.topological_order()
    ids = {n: f"n{i}" for i, n in enumerate(order)}
    lines = ["graph TD"]
    for n in order:
        lines.append(f'  {ids[n]}["{mermaid_label(n)}"]')
    for n in order:
        for d in graph.parents(n):
            lines.append(f"  {ids[d]} {arrow(graph, n, d)} {ids[n]}")
    marked = [ids[n] for n in order if n in highlight]
    if marked:
        lines.append(f"  classDef affected {HIGHLIGHT}")
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


def short_sha(sha: str | None, *, missing: str = "working tree") -> str:
    return sha[:12] if sha else missing


Staging = Sequence[Sequence[Sequence[str]]]  # stages of jobs of layers, as packed


def plan_headline(plan: Plan, *, staging: Staging | None = None) -> str:
    """With `staging` (the stage jobs that run), its count; the dependency depth only
    where packing made it differ."""
    total, n = len(plan.layers), len(plan.affected)
    cached = f" ({len(plan.reused)} found built already)" if plan.reused else ""
    if plan.comparison.mode == "none" or not n:
        return f"nothing to rebuild: all {total} layers reused{cached}"
    stages = len(staging) if staging is not None else len(plan.stages)
    deep = ""
    if staging is not None and len(plan.stages) != stages:
        deep = f" ({len(plan.stages)} levels deep, packed)"
    return (
        f"{n} of {total} layers to rebuild, {total - n} reused{cached}, "
        f"in {stages} stage{'s' * (stages != 1)}{deep}"
    )


def stage_numbers(plan: Plan, staging: Staging | None = None) -> dict[str, int]:
    """Each affected layer's stage: the stage job that builds it when packed, else its
    dependency depth."""
    if staging is None:
        return {n: plan.layers[n].stage or 0 for n in plan.affected}
    return {n: i for i, stage in enumerate(staging, 1) for job in stage for n in job}


def compared_why(mode: str, reason: str) -> str:
    """The comparison's reason, with its mode only when the reason does not say it."""
    return reason if mode in reason or mode in ("all", "none") else f"{mode}: {reason}"


def plan_text(plan: Plan, *, max_reasons: int = 8, staging: Staging | None = None) -> str:
    c = plan.comparison
    lines = [
        plan_headline(plan, staging=staging),
        f"  compare: {short_sha(c.base, missing='nothing')}..{short_sha(c.head)}"
        f" ({compared_why(c.mode, c.reason)})",
        f"  changed paths: {len(plan.changed_paths)}",
    ]
    if plan.cache_note:
        lines.append(f"  ! {plan.cache_note}")
    if plan.reused:
        lines.append(f"in the cache {plan.cache}, not rebuilt: {', '.join(plan.reused)}")
    stages = staging if staging is not None else [[(n,) for n in s] for s in plan.stages]
    for i, stage in enumerate(stages, 1):
        lines.append(f"stage {i}:")
        for job in stage:
            if len(job) > 1:
                lines.append(f"  one job, in this order: {', '.join(job)}")
            for name in job:
                lp = plan.layers[name]
                lines.append(f"  {name}  {lp.key[:19]}")
                for reason in lp.reasons[:max_reasons]:
                    lines.append(f"    - {reason}")
                if len(lp.reasons) > max_reasons:
                    lines.append(f"    - … {len(lp.reasons) - max_reasons} more")
                lines.extend(f"    ! {note}" for note in lp.notes)
    if plan.removed:
        lines.append(f"removed: {', '.join(plan.removed)}")
    return printable("\n".join(lines))


def printable(text: str) -> str:
    """A file name that is not UTF-8 reaches Python with lone surrogates: show U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# --- workflow commands ----------------------------------------------------------------


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(kind: str, message: str, *, where: SpecError | None = None) -> str:
    """A workflow command: ::error file=…,line=…,col=…::message."""
    props = ""
    if where is not None and where.where.line:
        w = where.where
        props = f" file={_escape_property(w.file)},line={w.line},col={w.col}"
    elif where is not None:
        props = f" file={_escape_property(where.where.file)}"
    return f"::{kind}{props}::{_escape_data(message)}"


def untrusted(text: str) -> str:
    """Text from the repository (paths, names) with workflow commands stopped around it,
    so a name cannot smuggle in `::add-mask::` or `::error::`."""
    token = secrets.token_hex(16)
    return f"::stop-commands::{token}\n{text}\n::{token}::"
