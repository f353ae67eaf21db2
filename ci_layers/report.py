"""Human and machine renderings of a LayerGraph: text tree, JSON, Mermaid, Graphviz dot.

Layer names are user text: every format escapes them, so no name can break a diagram.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import SpecError, SpecInvalid
from .graph import LayerGraph
from .plan import Plan

__all__ = [
    "graph_dot",
    "graph_json",
    "graph_mermaid",
    "graph_text",
    "plan_headline",
    "plan_report",
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


# A text colour of its own: GitHub's dark theme draws labels light grey, unreadable on
# the highlight's yellow.
_HIGHLIGHT = "fill:#fde68a,stroke:#b45309,stroke-width:2px,color:#1f2937"
_REUSED = "fill:#e5e7eb,stroke:#6b7280,color:#1f2937"


def _arrow(graph: LayerGraph, child: str, dep: str) -> str:
    """Solid for what a layer is built on (its parent, a Dockerfile's final base);
    dashed for what it only copies from or uses."""
    return "-->" if graph[child].parent == dep else "-.->"


def graph_mermaid(graph: LayerGraph, *, highlight: Collection[str] = ()) -> str:
    order = graph.topological_order()
    ids = {n: f"n{i}" for i, n in enumerate(order)}
    lines = ["graph TD"]
    for n in order:
        lines.append(f'  {ids[n]}["{_mermaid_label(n)}"]')
    for n in order:
        for d in graph.parents(n):
            lines.append(f"  {ids[d]} {_arrow(graph, n, d)} {ids[n]}")
    marked = [ids[n] for n in order if n in highlight]
    if marked:
        lines.append(f"  classDef affected {_HIGHLIGHT}")
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


def _short(sha: str | None, *, missing: str = "working tree") -> str:
    return sha[:12] if sha else missing


Staging = Sequence[Sequence[Sequence[str]]]  # stages of jobs of layers, as packed


def plan_headline(plan: Plan, *, staging: Staging | None = None) -> str:
    """With `staging` (the stage jobs that run), its count; the dependency depth only
    where packing made it differ."""
    total, n = len(plan.layers), len(plan.affected)
    cached = f" ({len(plan.reused)} found in the cache)" if plan.reused else ""
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


def _why(mode: str, reason: str) -> str:
    """The comparison's reason, with its mode only when the reason does not say it."""
    return reason if reason.startswith(mode) or mode in ("all", "none") else f"{mode}: {reason}"


def plan_text(plan: Plan, *, max_reasons: int = 8, staging: Staging | None = None) -> str:
    c = plan.comparison
    lines = [
        plan_headline(plan, staging=staging),
        f"  compare: {_short(c.base, missing='nothing')}..{_short(c.head)}"
        f" ({_why(c.mode, c.reason)})",
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
    return _printable("\n".join(lines))


def _md(text: str) -> str:
    """Text safe inside a markdown table cell: no markup, no pipes, no HTML."""
    out = []
    for ch in _printable(text):
        if ch in "\\`*_{}[]<>()#+!|~&\"'":
            out.append(f"&#{ord(ch)};")
        elif ch in "\r\n":
            out.append(" ")
        elif ch == "@":  # a path like @org/team must not notify a team: break the mention
            out.append("@\u200b")
        else:
            out.append(ch)
    return "".join(out)


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


# --- the pull-request comment and the job summary ------------------------------------

COMMENT_LIMIT = 65_000  # characters; GitHub refuses 65,536 and 262,144 bytes
COMMENT_BYTES = 262_144
SUMMARY_BYTES = 1024 * 1024 - 1024  # 1 MiB per step, with room for the runner's own lines
_MERMAID_NODES = 40  # past a few dozen nodes a diagram at comment width is unreadable
_MERMAID_EDGES = 500
_MERMAID_TEXT = 40_000  # Mermaid's maxTextSize is 50,000
_LABEL = 40  # characters of a node's label
_TABLE_OPEN = 30  # rows shown open; a longer table is collapsed
_COMMIT = re.compile(r"[0-9a-f]{7,64}")


def short_labels(names: Collection[str]) -> dict[str, str]:
    """Node labels: an image reference's last path parts, as few as keep the labels apart
    (registry names would shrink every label at comment width); the table has the full
    reference."""
    split = {}
    for name in names:
        ref, at, digest = name.partition("@")
        tail = f"@{digest.removeprefix('sha256:')[:12]}" if at else ""
        split[name] = (ref.split("/"), tail)
    depth = dict.fromkeys(names, 1)

    def label(name: str) -> str:
        parts, tail = split[name]
        return "/".join(parts[-depth[name] :]) + tail

    while True:
        seen: dict[str, list[str]] = {}
        for name in names:
            seen.setdefault(label(name), []).append(name)
        grow = [
            n
            for same in seen.values()
            if len(same) > 1
            for n in same
            if depth[n] < len(split[n][0])
        ]
        if not grow:
            break
        for n in grow:
            depth[n] += 1
    out = {name: _fit(label(name)) for name in names}
    counts: dict[str, int] = {}
    for text in out.values():
        counts[text] = counts.get(text, 0) + 1
    numbered: dict[str, int] = {}
    for name in names:  # cut labels that coincide: numbered, so no two nodes look alike
        text = out[name]
        if counts[text] > 1:
            numbered[text] = numbered.get(text, 0) + 1
            out[name] = f"{text} #{numbered[text]}"
    return out


def _fit(text: str) -> str:
    """At most `_LABEL` characters, the middle cut: a reference's tag is at its end."""
    if len(text) <= _LABEL:
        return text
    keep = _LABEL - 1
    return text[: keep // 2] + "…" + text[len(text) - (keep - keep // 2) :]


def affected_mermaid(plan: Plan) -> str | None:
    """The affected layers and the reused layers they are built on, highlighted; only
    the affected ones past `_MERMAID_NODES`, and None past that too (the caller shows a
    list instead)."""
    if not plan.affected:
        return None
    shown = set(plan.affected)
    for name in plan.affected:
        shown.update(plan.layers[name].parents)
    if len(shown) > _MERMAID_NODES:
        shown = set(plan.affected)
    if len(shown) > _MERMAID_NODES:
        return None
    order = [n for n in plan.layers if n in shown]  # build order
    ids = {n: f"n{i}" for i, n in enumerate(order)}
    labels = short_labels(order)
    lines = ["graph TD"]
    lines += [f'  {ids[n]}["{_mermaid_label(labels[n])}"]' for n in order]
    edges = [
        f"  {ids[d]} {_arrow(plan.spec.graph, n, d) if plan.spec else '-->'} {ids[n]}"
        for n in order
        if n in plan.affected
        for d in plan.layers[n].parents
        if d in shown
    ]
    if len(edges) > _MERMAID_EDGES:
        return None
    lines += edges
    lines.append(f"  classDef rebuild {_HIGHLIGHT}")
    lines.append(f"  class {','.join(ids[n] for n in order if n in plan.affected)} rebuild")
    reused = [ids[n] for n in order if n not in plan.affected]
    if reused:  # a colour of its own: the theme's default differs in light and dark
        lines.append(f"  classDef reused {_REUSED}")
        lines.append(f"  class {','.join(reused)} reused")
    text = "\n".join(lines)
    return text if len(text) <= _MERMAID_TEXT else None


def _legend(plan: Plan, diagram: str) -> str:
    """What the colours and arrows mean (labels are escaped: only node lines hold `["`)."""
    nodes = sum('["' in line for line in diagram.splitlines())  # labels escape [ and "
    affected = set(plan.affected)
    text = "_Yellow: rebuilt"
    if nodes > len(affected):
        text += "; grey: reused, what a rebuilt layer is built on"
    elif any(d not in affected for n in affected for d in plan.layers[n].parents):
        text += "; the reused layers they are built on are not drawn"
    text += ". Solid arrow: built on (`parent`, `FROM`)"
    if "-.->" in diagram:
        text += "; dashed: copies from or uses"
    return text + "._"


def compare_link(server: str | None, repository: str | None) -> str | None:
    """The repository's web address, if the runner's variables make a sound one."""
    if not server or not repository:
        return None
    if not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~-]+)*", server.rstrip("/")):
        return None
    if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repository):
        return None
    return f"{server.rstrip('/')}/{repository}"


def plan_report(
    plan: Plan,
    *,
    marker: str = "",
    limit: int | None = None,
    max_bytes: int | None = None,
    staging: Staging | None = None,
    repository_url: str | None = None,
) -> str:
    """The plan for people: headline, table, diagram, changed paths, comparison.

    `staging` is the stage jobs that run (the action's packing): the headline and the
    table number stages by it. `repository_url` makes the compared commits a link to
    GitHub's compare view. With `limit` (characters, a comment's) or `max_bytes` (UTF-8,
    a summary's), parts are dropped until it fits: the diagram, then the changed paths,
    then table rows; never the marker, and a note says so.
    """
    diagram = affected_mermaid(plan)
    stage_of = stage_numbers(plan, staging)
    position = {n: i for i, n in enumerate(plan.affected)}
    rows = sorted(plan.affected, key=lambda n: (stage_of[n], position[n]))
    view = _View(plan, marker, staging, stage_of, repository_url)
    body = view.body(rows, diagram, paths=True)
    if limit is None and max_bytes is None:
        return body
    chars = limit if limit is not None else max_bytes or 0
    size = max_bytes if max_bytes is not None else COMMENT_BYTES
    if _fits(body, chars, size):
        return body
    if limit is not None:
        note = "_Shortened to fit a comment: the job summary has the full plan._"
    else:
        note = "_Shortened to fit the job summary: the plan-file output has the full plan._"
    attempts = [(rows, None, True), (rows, None, False)]
    n = len(rows)
    while n > 1:
        n //= 2
        attempts.append((rows[:n], None, False))
    for r, d, p in attempts:
        body = view.body(r, d, paths=p) + "\n\n" + note
        if _fits(body, chars, size):
            return body
    return f"{marker}\n### ci-layers: {plan_headline(plan, staging=staging)}\n\n{note}"


def _fits(body: str, chars: int, size: int) -> bool:
    return len(body) <= chars and len(body.encode("utf-8", "replace")) <= size


def _printable(text: str) -> str:
    """A file name that is not UTF-8 reaches Python with lone surrogates: show U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _code(name: str, *, table: bool = False) -> str:
    """A layer name inside a code span: nothing escaped but what would end the span (or,
    in a table, the cell)."""
    text = _printable(name).replace("`", "'").replace("\n", " ")
    return text.replace("|", "\\|") if table else text


def spec_error_report(error: SpecInvalid, *, shown: int = 50) -> str:
    """What the summary and the sticky comment say when the spec does not load."""
    out = ["### ci-layers: the spec does not load", ""]
    out += ["No plan was made, so an earlier plan here no longer applies.", ""]
    out += [f"- {_md(str(p))}" for p in error.problems[:shown]]
    if len(error.problems) > shown:
        out.append(f"- … {len(error.problems) - shown} more")
    return "\n".join(out)


@dataclass(frozen=True)
class _View:
    """What every attempt at fitting the report shares."""

    plan: Plan
    marker: str
    staging: Staging | None
    stage_of: dict[str, int]
    repository_url: str | None

    def body(self, rows: list[str], diagram: str | None, *, paths: bool) -> str:
        plan = self.plan
        out = [self.marker] if self.marker else []
        out += [f"### ci-layers: {plan_headline(plan, staging=self.staging)}", ""]
        if rows:
            table = ["| stage | layer | why |", "|---:|---|---|"]
            for name in rows:
                lp = plan.layers[name]
                why = "<br>".join(_md(r) for r in lp.reasons[:5])
                if len(lp.reasons) > 5:
                    why += f"<br>… {len(lp.reasons) - 5} more"
                table.append(f"| {self.stage_of[name]} | `{_code(name, table=True)}` | {why} |")
            if len(rows) < len(plan.affected):
                left = len(plan.affected) - len(rows)
                table.append(f"| | … | {left} more layers: see the job summary |")
            if len(rows) > _TABLE_OPEN:
                summary = f"The {len(plan.affected)} layers to rebuild, by stage"
                out += [f"<details><summary>{summary}</summary>", "", *table, "", "</details>"]
            else:
                out += table
            out.append("")
        if diagram:
            out += ["```mermaid", diagram, "```", "", _legend(plan, diagram), ""]
        elif plan.affected:
            stages = self.staging or [[(n,) for n in s] for s in plan.stages]
            listed = (", ".join(f"`{_code(n)}`" for job in s for n in job) for s in stages)
            out += ["Stages: " + " → ".join(listed), ""]
        with_paths = [n for n in rows if plan.layers[n].paths]
        if paths and with_paths:
            out += ["<details><summary>Changed paths per layer</summary>", ""]
            for name in with_paths:
                out.append(f"**{_md(name)}**")
                out += [f"- {_md(p)}" for p in plan.layers[name].paths]
                out.append("")
            out += ["</details>", ""]
        if plan.removed:
            out += ["Removed: " + ", ".join(f"`{_code(n)}`" for n in plan.removed), ""]
        if plan.reused:
            found = ", ".join(f"`{_code(n)}`" for n in plan.reused[:50])
            more = f" and {len(plan.reused) - 50} more" if len(plan.reused) > 50 else ""
            out += [
                f"Affected but built before, found in `{_code(plan.cache or '')}`: {found}{more}",
                "",
            ]
        if plan.cache_note:
            out += [f"> [!WARNING]\n> {_md(plan.cache_note)}", ""]
        out.append(self._footer())
        return "\n".join(out)

    def _footer(self) -> str:
        c, plan = self.plan.comparison, self.plan
        compared = f"`{_short(c.base, missing='nothing')}..{_short(c.head)}`"
        url = self.repository_url
        if url and c.head and _COMMIT.fullmatch(c.head):
            if c.base and _COMMIT.fullmatch(c.base):
                # two dots: the diff of exactly these commits, as planned (three would
                # diff from their merge-base, another range after a force-push)
                compared = f"[{compared}]({url}/compare/{c.base}..{c.head})"
            else:
                compared = f"`{_short(c.base, missing='nothing')}`..[`{_short(c.head)}`]"
                compared += f"({url}/commit/{c.head})"
        n = len(plan.changed_paths)
        why = _md(_why(c.mode, c.reason))
        return f"Compared {compared} ({why}); {n} changed path{'' if n == 1 else 's'}."
