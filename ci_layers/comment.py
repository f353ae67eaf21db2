"""The plan for people: the pull request's sticky comment and the job summary.

A reviewer reads the top without unfolding anything, and it fits a screen at any size:
the headline; what changed and how many layers each change rebuilds (the causes); one
line per stage; a diagram only where it is legible at the comment column's width. Every
layer's reasons and the changed paths per layer are folded below. Names under one long
registry prefix are shown without it, the prefix said once. When the text must fit (a
comment's 65,536 characters, a summary's 1 MiB), what is least useful goes first and
what stays fills the budget: the paths per layer, then the diagram, then table rows;
never the headline, the causes or the stages.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from .errors import SpecInvalid
from .plan import Plan
from .report import (
    HIGHLIGHT,
    REUSED,
    arrow,
    compared_why,
    mermaid_label,
    plan_headline,
    printable,
    short_sha,
    stage_numbers,
)

__all__ = [
    "COMMENT_LIMIT",
    "SUMMARY_BYTES",
    "UNFOLDED_LINES",
    "affected_mermaid",
    "compare_link",
    "plan_report",
    "short_labels",
    "spec_error_report",
]

COMMENT_LIMIT = 65_000  # characters; GitHub refuses 65,536 and 262,144 bytes
COMMENT_BYTES = 262_144
SUMMARY_BYTES = 1024 * 1024 - 1024  # 1 MiB per step, with room for the runner's own lines
UNFOLDED_LINES = 60  # non-blank lines a reviewer sees without unfolding anything
_LINE = 300  # characters of an unfolded line
_CAUSES = 8  # cause lines; the rest are counted
_STAGE_LINES = 12  # stage lines (a plan without packing may be deeper); the rest counted
_NAMES_CHARS = 160  # of the first names on a stage line
_TABLE_OPEN = 10  # rows shown open; a longer table is folded
_LABEL = 40  # characters of a diagram node's label
_PREFIX = 24  # a shared name prefix shorter than this is not worth saying apart
_MERMAID_NODES = 60
_MERMAID_TEXT = 40_000  # Mermaid's maxTextSize is 50,000
_COMMIT = re.compile(r"[0-9a-f]{7,64}")
_AFTER_PARENT = re.compile(
    r"^(parent '.*' is rebuilt|(copies from|uses image) '.*', which is rebuilt)$"
)
_NOT_A_CAUSE = ("cache breaks at ", "and ")  # an explanation, or a count of more paths

# What GitHub gives a comment (880 px) and how Mermaid lays a diagram out (16 px labels,
# about 9 px a character, 15 px padding each side, 50 px between nodes and ranks). Past
# _MIN_SCALE of its natural size a label reads under 12 px: no diagram is better.
_COLUMN_PX = 860
_CHAR_PX = 9.0
_NODE_PAD_PX = 30
_GAP_PX = 50
_MIN_SCALE = 0.75
_LR_MAX_ROWS = 5  # nodes one rank may stack in a left-to-right diagram (each ~110 px)


Staging = Sequence[Sequence[Sequence[str]]]  # stages of jobs of layers, as packed


# --- names -------------------------------------------------------------------------------


def shared_prefix(names: Collection[str]) -> str:
    """The path prefix (ending in `/`) every name shares, when it is long enough to be
    worth saying once: `ghcr.io/acme/images/` of `ghcr.io/acme/images/api`, …"""
    if len(names) < 2:
        return ""
    first = min(names)
    last = max(names)
    common = ""
    for a, b in zip(first, last, strict=False):
        if a != b:
            break
        common += a
    prefix = common[: common.rfind("/") + 1]
    return prefix if len(prefix) >= _PREFIX else ""


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
    out = {name: _fit(label(name), _LABEL) for name in names}
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


def _fit(text: str, width: int) -> str:
    """At most `width` characters, the middle cut: a reference's tag is at its end."""
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: keep // 2] + "…" + text[len(text) - (keep - keep // 2) :]


def _md(text: str) -> str:
    """Text safe in markdown, also in a table cell: no markup, no pipes, no HTML."""
    out = []
    for ch in printable(text):
        if ch in "\\`*_{}[]<>()#+!|~&\"'":
            out.append(f"&#{ord(ch)};")
        elif ch in "\r\n":
            out.append(" ")
        elif ch == "@":  # a path like @org/team must not notify a team: break the mention
            out.append("@\u200b")
        else:
            out.append(ch)
    return "".join(out)


def _code(name: str, *, table: bool = False) -> str:
    """A name inside a code span: nothing escaped but what would end the span (or, in a
    table, the cell)."""
    text = printable(name).replace("`", "'").replace("\n", " ")
    text = re.sub(r"(?<![A-Za-z0-9_])@", "@\u200b", text)  # no mention, not even in code
    return text.replace("|", "\\|") if table else text


# --- what a reviewer reads first ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cause:
    """A change, and the affected layers that are rebuilt because of it."""

    what: tuple[str, ...]  # markdown: the changes, each said as a reviewer reads it
    layers: frozenset[str]


def causes(plan: Plan) -> list[Cause]:
    """The changes that start a rebuild, each with every layer rebuilt because of it,
    most first. A layer rebuilt anyway (its parent is) starts nothing of its own: a
    change deeper in a chain another change rebuilds adds no cause."""
    affected = set(plan.affected)
    children: dict[str, list[str]] = {n: [] for n in plan.affected}
    for n in plan.affected:
        for d in plan.layers[n].parents:
            if d in affected:
                children[d].append(n)
    roots = [n for n in plan.affected if not any(d in affected for d in plan.layers[n].parents)]
    closure: dict[str, frozenset[str]] = {}
    for root in roots:
        seen, todo = {root}, [root]
        while todo:
            for child in children[todo.pop()]:
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        closure[root] = frozenset(seen)
    by_change: dict[str, set[str]] = {}
    for root in roots:
        for change in _changes(plan, root):
            by_change.setdefault(change, set()).update(closure[root])
    grouped: dict[frozenset[str], list[str]] = {}
    for change, layers in by_change.items():
        grouped.setdefault(frozenset(layers), []).append(change)
    found = [Cause(tuple(what), layers) for layers, what in grouped.items()]
    return sorted(found, key=lambda c: (-len(c.layers), c.what))


def _changes(plan: Plan, name: str) -> list[str]:
    """What changed in `name` itself, each said once: a path, or the layer's own change,
    said of its image (one change to an image is one cause, whatever its platforms)."""
    said = name
    if plan.spec is not None and name in plan.spec.graph:
        said = plan.spec.graph[name].origin
    out = []
    for reason in plan.layers[name].reasons:
        if _AFTER_PARENT.match(reason) or reason.startswith(_NOT_A_CAUSE):
            continue
        if reason.startswith("changed: "):
            out.append(f"`{_code(reason.removeprefix('changed: '))}` changed")
        elif reason.startswith("global input changed: "):
            path = reason.removeprefix("global input changed: ")
            out.append(f"`{_code(path)}` (a global input) changed")
        else:
            out.append(f"`{_code(_plain(plan, said))}`: {_md(reason)}")
    return out or [f"`{_code(_plain(plan, said))}` changed"]


def _plain(plan: Plan, name: str) -> str:
    """A name without the prefix the report says once."""
    prefix = shared_prefix(plan.affected)
    return name.removeprefix(prefix) if prefix else name


def _kind(plan: Plan, names: Collection[str]) -> str:
    """`images` when every one is a Dockerfile image, else `layers` (one: singular)."""
    images = plan.spec is not None and all(
        n in plan.spec.graph and plan.spec.graph[n].dockerfile is not None for n in names
    )
    word = "image" if images else "layer"
    return word if len(names) == 1 else word + "s"


# --- diagrams ------------------------------------------------------------------------------


def _width(labels: Sequence[str]) -> float:
    """Pixels a row of these nodes takes, side by side."""
    nodes = sum(len(t) * _CHAR_PX + _NODE_PAD_PX for t in labels)
    return nodes + _GAP_PX * max(0, len(labels) - 1) + 16


def affected_mermaid(plan: Plan) -> str | None:
    """The affected layers and the reused layers they are built on, drawn top-down or
    left-to-right, whichever keeps labels legible at the comment's width (the widest
    rank decides); else the roots of the rebuild and how many layers each rebuilds; None
    when even that would be a crowd (the causes then say it)."""
    if not plan.affected:
        return None
    shown = set(plan.affected)
    for name in plan.affected:
        shown.update(plan.layers[name].parents)
    order = [n for n in plan.layers if n in shown]  # build order
    if len(order) <= _MERMAID_NODES:
        labels = short_labels(order)
        rank = _ranks(plan, order)
        ranks: dict[int, list[str]] = {}
        for n in order:
            ranks.setdefault(rank[n], []).append(labels[n])
        widest_row = max(_width(row) for row in ranks.values())
        widest_label = [max(row, key=len) for row in ranks.values()]
        if widest_row * _MIN_SCALE <= _COLUMN_PX:
            return _full(plan, order, labels, "TD")
        if (
            _width(widest_label) * _MIN_SCALE <= _COLUMN_PX
            and max(len(row) for row in ranks.values()) <= _LR_MAX_ROWS
        ):
            return _full(plan, order, labels, "LR")
    return _roots_and_counts(plan)


def _ranks(plan: Plan, order: Sequence[str]) -> dict[str, int]:
    """Each drawn node's rank, as Mermaid ranks them: one below its deepest parent."""
    rank: dict[str, int] = {}
    for n in order:
        parents = [d for d in plan.layers[n].parents if d in rank]
        rank[n] = 1 + max((rank[d] for d in parents), default=-1)
    return rank


def _full(plan: Plan, order: Sequence[str], labels: dict[str, str], direction: str) -> str | None:
    ids = {n: f"n{i}" for i, n in enumerate(order)}
    lines = [f"graph {direction}"]
    lines += [f'  {ids[n]}["{mermaid_label(labels[n])}"]' for n in order]
    graph = plan.spec.graph if plan.spec else None
    lines += [
        f"  {ids[d]} {arrow(graph, n, d) if graph else '-->'} {ids[n]}"
        for n in order
        if n in plan.affected
        for d in plan.layers[n].parents
        if d in ids
    ]
    affected = set(plan.affected)
    lines.append(f"  classDef rebuild {HIGHLIGHT}")
    lines.append(f"  class {','.join(ids[n] for n in order if n in affected)} rebuild")
    reused = [ids[n] for n in order if n not in affected]
    if reused:  # a colour of its own: the theme's default differs in light and dark
        lines.append(f"  classDef reused {REUSED}")
        lines.append(f"  class {','.join(reused)} reused")
    text = "\n".join(lines)
    return text if len(text) <= _MERMAID_TEXT else None


def _roots_and_counts(plan: Plan) -> str | None:
    """Where the rebuild starts and how much each start rebuilds: a node per root and
    one for the layers built on it (counted), left to right."""
    found = causes(plan)
    roots: dict[str, frozenset[str]] = {}
    affected = set(plan.affected)
    for n in plan.affected:
        if not any(d in affected for d in plan.layers[n].parents):
            roots[n] = next(c.layers for c in found if n in c.layers)
    if not roots or len(roots) > 6:
        return None
    labels = short_labels(list(roots))
    lines = ["graph LR"]
    for i, (root, layers) in enumerate(roots.items()):
        lines.append(f'  r{i}["{mermaid_label(labels[root])}"]')
        below = {n for n in layers if n != root and root in _ancestors(plan, n)}
        if below:
            what = f"{len(below)} {_kind(plan, below)} built on it"
            lines.append(f'  c{i}["{mermaid_label(what)}"]')
            lines.append(f"  r{i} --> c{i}")
    lines.append(f"  classDef rebuild {HIGHLIGHT}")
    lines.append("  class " + ",".join(f"r{i}" for i in range(len(roots))) + " rebuild")
    counted = [f"c{i}" for i in range(len(roots)) if f'  c{i}["' in "\n".join(lines)]
    if counted:  # a colour of its own: the theme's default differs in light and dark
        lines.append(f"  classDef count {REUSED}")
        lines.append(f"  class {','.join(counted)} count")
    return "\n".join(lines)


def _ancestors(plan: Plan, name: str) -> set[str]:
    seen: set[str] = set()
    todo = list(plan.layers[name].parents)
    while todo:
        d = todo.pop()
        if d not in seen and d in plan.layers:
            seen.add(d)
            todo.extend(plan.layers[d].parents)
    return seen


def _legend(plan: Plan, diagram: str) -> str:
    """What the colours and arrows mean (labels are escaped: only node lines hold `["`)."""
    if diagram.startswith("graph LR") and "built on it" in diagram:
        return "_Yellow: where the rebuild starts; each box beside it counts what is built on it._"
    nodes = sum('["' in line for line in diagram.splitlines())
    affected = set(plan.affected)
    text = "_Yellow: rebuilt"
    if nodes > len(affected):
        text += "; grey: reused, what a rebuilt layer is built on"
    text += ". Solid arrow: built on (`parent`, `FROM`)"
    if "-.->" in diagram:
        text += "; dashed: copies from or uses"
    return text + "._"


# --- the links -----------------------------------------------------------------------------


def compare_link(server: str | None, repository: str | None) -> str | None:
    """The repository's web address, if the runner's variables make a sound one."""
    if not server or not repository:
        return None
    if not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~-]+)*", server.rstrip("/")):
        return None
    if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repository):
        return None
    return f"{server.rstrip('/')}/{repository}"


def spec_error_report(
    error: SpecInvalid, *, shown: int = 50, repository_url: str | None = None, commit: str = ""
) -> str:
    """What the summary and the sticky comment say when the spec does not load; each
    problem's place links to that line of the file at the commit planned for."""
    out = ["### ci-layers: the spec does not load", ""]
    out += ["No plan was made, so an earlier plan here no longer applies.", ""]
    for p in error.problems[:shown]:
        text = _md(str(p))
        w = p.where
        if repository_url and _COMMIT.fullmatch(commit) and w.line and _safe_path(w.file):
            place = _md(str(w))
            link = f"{repository_url}/blob/{commit}/{w.file}#L{w.line}"
            text = f"[{place}]({link}){text[len(place) :]}"
        out.append(f"- {text}")
    if len(error.problems) > shown:
        out.append(f"- … {len(error.problems) - shown} more")
    return "\n".join(out)


def _safe_path(path: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9._/-]+", path)) and ".." not in path.split("/")


# --- the report ----------------------------------------------------------------------------


def plan_report(
    plan: Plan,
    *,
    marker: str = "",
    limit: int | None = None,
    max_bytes: int | None = None,
    staging: Staging | None = None,
    repository_url: str | None = None,
) -> str:
    """The plan for people (the module says what and in which order).

    `staging` is the stage jobs that run (the action's packing): stages are numbered by
    it. `repository_url` links the compared commits to GitHub's compare view. With
    `limit` (characters, a comment's) or `max_bytes` (UTF-8, a summary's) the least
    useful parts go until it fits, and a note says so."""
    view = _View.of(plan, marker, staging, repository_url)
    if limit is None and max_bytes is None:
        return view.body(_Cut())
    chars = limit if limit is not None else max_bytes or 0
    size = max_bytes if max_bytes is not None else COMMENT_BYTES

    def fits(cut: _Cut) -> bool:
        body = view.body(cut)
        return len(body) <= chars and len(body.encode("utf-8", "replace")) <= size

    cut = _Cut()
    if fits(cut):
        return view.body(cut)
    if limit is not None:
        note = "_Shortened to fit a comment: the job summary has the full plan._"
    else:
        note = "_Shortened to fit the job summary: the plan-file output has the full plan._"
    cut = _Cut(note=note)
    # least useful first, each kept as much as fits (the most that fit, found by
    # halving): the paths per layer, then table rows, then the diagram (small by now:
    # a plan this big draws its roots and counts), then names on the stage lines
    cut.paths = _most(len(view.rows), lambda n: fits(cut.but(paths=n)))
    if cut.paths == 0:
        cut.rows = _most(len(view.rows), lambda n: fits(cut.but(rows=n)))
    if not fits(cut):
        cut.diagram = False
    if not fits(cut):
        cut.names = 3
    return view.body(cut)


def _most(top: int, fits: Callable[[int], bool]) -> int:
    """The largest n in 0..top with fits(n), fits being monotone (more never fits when
    less does not)."""
    if fits(top):
        return top
    lo, hi = 0, top  # fits(lo) is assumed; 0 is what is left when nothing fits
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


@dataclass
class _Cut:
    """How much of each foldable part is kept."""

    rows: int | None = None  # table rows (None: all)
    paths: int | None = None  # layers whose changed paths are listed (None: all)
    diagram: bool = True
    names: int | None = None  # first names on a stage line (None: what fits a line)
    note: str = ""

    def but(self, **changes: object) -> _Cut:
        fields = {**self.__dict__, **changes}
        return _Cut(**fields)


@dataclass(frozen=True)
class _View:
    """What every attempt at fitting the report shares, computed once."""

    plan: Plan
    marker: str
    staging: Staging | None
    stage_of: dict[str, int]
    repository_url: str | None
    rows: list[str]
    prefix: str
    causes: list[Cause]
    diagram: str | None
    stages: list[list[tuple[str, ...]]] = field(default_factory=list)
    job_of: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(
        cls, plan: Plan, marker: str, staging: Staging | None, repository_url: str | None
    ) -> _View:
        stage_of = stage_numbers(plan, staging)
        position = {n: i for i, n in enumerate(plan.affected)}
        rows = sorted(plan.affected, key=lambda n: (stage_of[n], position[n]))
        stages: list[list[tuple[str, ...]]] = (
            [[tuple(job) for job in stage] for stage in staging]
            if staging is not None
            else [[(n,) for n in s] for s in plan.stages]
        )
        return cls(
            plan,
            marker,
            staging,
            stage_of,
            repository_url,
            rows,
            shared_prefix(plan.affected),
            causes(plan),
            affected_mermaid(plan),
            stages,
            {n: job for stage in stages for job in stage if len(job) > 1 for n in job},
        )

    def name(self, name: str) -> str:
        return name.removeprefix(self.prefix) if self.prefix else name

    def body(self, cut: _Cut) -> str:
        plan = self.plan
        top = [self.marker] if self.marker else []
        top += [f"### ci-layers: {plan_headline(plan, staging=self.staging)}", ""]
        if cut.note:
            top += [cut.note, ""]
        top += self._causes()
        top += self._stages(cut)
        top += self._notes()
        folded: list[str] = []
        diagram = self.diagram if cut.diagram else None
        if diagram:
            block = ["```mermaid", diagram, "```", "", _legend(plan, diagram), ""]
            if _unfolded(top + block) + 6 <= UNFOLDED_LINES:
                top += block
            else:
                folded += ["<details><summary>Diagram</summary>", "", *block, "</details>", ""]
        table = self._table(cut.rows)
        if table:
            if len(table) - 2 <= _TABLE_OPEN and _unfolded(top + table) + 4 <= UNFOLDED_LINES:
                top += [*table, ""]
            else:
                summary = f"Every layer to rebuild, by stage, and why ({len(plan.affected)})"
                folded = [
                    f"<details><summary>{summary}</summary>",
                    "",
                    *table,
                    "",
                    "</details>",
                    "",
                    *folded,
                ]
        folded += self._paths(cut.paths)
        return "\n".join([*top, *folded, self._footer()])

    def _causes(self) -> list[str]:
        plan = self.plan
        if not plan.affected:
            return []
        c = plan.comparison
        if c.mode == "all":
            return [f"**Why:** everything is rebuilt: {_md(c.reason)}.", ""]
        out = ["**Why:**"]
        for cause in self.causes[:_CAUSES]:
            said = ", ".join(cause.what[:3])
            if len(cause.what) > 3:
                said += f" and {len(cause.what) - 3} more"
            n = len(cause.layers)
            out.append(_line(f"- {said} → **{n}** {_kind(plan, cause.layers)} to rebuild"))
        if len(self.causes) > _CAUSES:
            rest = self.causes[_CAUSES:]
            layers: set[str] = set().union(*(c.layers for c in rest))
            kind = _kind(plan, layers)
            out.append(f"- and {len(rest)} more changes, rebuilding {len(layers)} {kind}")
        return [*out, ""]

    def _stages(self, cut: _Cut) -> list[str]:
        plan = self.plan
        if not plan.affected:
            return []
        out = []
        if self.prefix:
            out.append(f"Names below leave out the prefix they share, `{_code(self.prefix)}`.")
            out.append("")
        out.append("**Stages:**")
        shown = self.stages[:_STAGE_LINES]
        for i, stage in enumerate(shown, 1):
            names = [n for job in stage for n in job]
            kind = _kind(plan, names)
            text = f"- **Stage {i}**: {len(names)} {kind}"
            jobs = len(stage)
            if jobs != len(names):
                chained = sum(1 for job in stage if _chained(plan, job))
                text += f" in {jobs} jobs"
                if chained:
                    text += f" ({chained} build a layer and then what is built on it)"
            out.append(_line(text + ": " + self._first(names, cut.names)))
        if len(self.stages) > _STAGE_LINES:
            rest = [n for s in self.stages[_STAGE_LINES:] for job in s for n in job]
            more = len(self.stages) - _STAGE_LINES
            out.append(f"- … and {more} more stages ({len(rest)} {_kind(plan, rest)})")
        return [*out, ""]

    def _first(self, names: Sequence[str], most: int | None) -> str:
        said: list[str] = []
        used = 0
        for name in names:
            text = f"`{_code(_fit(self.name(name), _LABEL))}`"
            full = used + len(text) > _NAMES_CHARS or (most is not None and len(said) >= most)
            if said and full:
                break
            said.append(text)
            used += len(text) + 2
        more = len(names) - len(said)
        return ", ".join(said) + (f" and {more} more" if more else "")

    def _notes(self) -> list[str]:
        plan, out = self.plan, []
        if plan.removed:
            removed = ", ".join(f"`{_code(self.name(n))}`" for n in plan.removed[:10])
            more = f" and {len(plan.removed) - 10} more" if len(plan.removed) > 10 else ""
            out += [_line(f"Removed: {removed}{more}"), ""]
        if plan.reused:
            found = ", ".join(f"`{_code(self.name(n))}`" for n in plan.reused[:10])
            more = f" and {len(plan.reused) - 10} more" if len(plan.reused) > 10 else ""
            where = f"in `{_code(plan.cache)}`" if plan.cache else "under their hand-off tags"
            out += [_line(f"Affected but built before, found {where}: {found}{more}"), ""]
        if plan.cache_note:
            out += [f"> [!WARNING]\n> {_md(plan.cache_note)}", ""]
        return out

    def _table(self, most: int | None) -> list[str]:
        plan = self.plan
        rows = self.rows if most is None else self.rows[:most]
        if not self.rows:
            return []
        table = ["| stage | layer | why |", "|---:|---|---|"]
        for name in rows:
            lp = plan.layers[name]
            reasons = [self._reason(r) for r in lp.reasons[:5]]
            if after := self._after(name):
                reasons.insert(
                    0, f"built after `{_code(_fit(self.name(after), 40), table=True)}`, in its job"
                )
            why = "<br>".join(reasons)
            if len(lp.reasons) > 5:
                why += f"<br>… {len(lp.reasons) - 5} more"
            table.append(
                f"| {self.stage_of[name]} | `{_code(self.name(name), table=True)}` | {why} |"
            )
        if len(rows) < len(self.rows):
            left = len(self.rows) - len(rows)
            table.append(f"| | … | {left} more: see the job summary |")
        return table

    def _reason(self, reason: str) -> str:
        if self.prefix:
            reason = reason.replace(f"'{self.prefix}", "'")
        return _md(reason)

    def _after(self, name: str) -> str | None:
        """The layer a packed job builds before `name`, that `name` is built on: both
        show the same stage."""
        job = self.job_of.get(name, ())
        return next((d for d in self.plan.layers[name].parents if d in job), None)

    def _paths(self, most: int | None) -> list[str]:
        plan = self.plan
        with_paths = [n for n in self.rows if plan.layers[n].paths]
        if most is not None:
            with_paths = with_paths[:most]
        if not with_paths:
            return []
        out = ["<details><summary>Changed paths per layer</summary>", ""]
        for name in with_paths:
            out.append(f"**{_md(self.name(name))}**")
            out += [f"- {_md(p)}" for p in plan.layers[name].paths]
            out.append("")
        return [*out, "</details>", ""]

    def _footer(self) -> str:
        c, plan = self.plan.comparison, self.plan
        compared = f"`{short_sha(c.base, missing='nothing')}..{short_sha(c.head)}`"
        url = self.repository_url
        if url and c.head and _COMMIT.fullmatch(c.head):
            if c.base and _COMMIT.fullmatch(c.base):
                # two dots: the diff of exactly these commits, as planned (three would
                # diff from their merge-base, another range after a force-push)
                compared = f"[{compared}]({url}/compare/{c.base}..{c.head})"
            else:
                compared = f"`{short_sha(c.base, missing='nothing')}`..[`{short_sha(c.head)}`]"
                compared += f"({url}/commit/{c.head})"
        n = len(plan.changed_paths)
        why = _md(compared_why(c.mode, c.reason))
        return f"Compared {compared} ({why}); {n} changed path{'' if n == 1 else 's'}."


def _chained(plan: Plan, job: Sequence[str]) -> bool:
    inside = set(job)
    return any(d in inside for n in job for d in plan.layers[n].parents)


def _line(text: str) -> str:
    """One unfolded line, at most _LINE characters (a cut never splits a code span)."""
    if len(text) <= _LINE:
        return text
    cut = text[: _LINE - 2]
    if cut.count("`") % 2:
        cut = cut[: cut.rfind("`")]
    return cut.rstrip(", ") + " …"


def _unfolded(lines: Sequence[str]) -> int:
    return sum(1 for line in "\n".join(lines).splitlines() if line.strip())
