"""Reports stay within GitHub's limits and keep what matters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ci_layers.changes import ChangeSet, Comparison, FileChange
from ci_layers.comment import (
    COMMENT_BYTES,
    COMMENT_LIMIT,
    SUMMARY_BYTES,
    affected_mermaid,
    compare_link,
    plan_report,
    short_labels,
)
from ci_layers.keys import compute_keys
from ci_layers.outputs import OutputTooLarge, check_size
from ci_layers.plan import build_plan
from ci_layers.repo import RepoFiles, blob_id
from ci_layers.report import plan_text
from ci_layers.spec import parse_spec

MARK = "<!-- ci-layers:plan ci-layers.yaml -->"


def plan_of(text: str, changed: list[str], *, mode: str = "range", reason: str = "test"):
    """A plan of `text` in which the files `changed` differ between the two ends."""
    spec = parse_spec(text)
    old = {p: "100644 blob " + blob_id(b"a") for p in changed}
    new = {p: "100644 blob " + blob_id(b"b") for p in changed}
    comparison = Comparison("a" * 40, "b" * 40, mode, reason)
    return build_plan(
        spec=spec,
        keys=compute_keys(spec, RepoFiles(new)),
        comparison=comparison,
        base_spec=spec,
        base_keys=compute_keys(spec, RepoFiles(old)),
        changes=ChangeSet(comparison, tuple(FileChange("M", p) for p in changed)),
    )


def big_plan(n: int):
    lines = ["version: 1", "layers:", "  root: {from: scratch, copy: [{src: src/root, dest: /r}]}"]
    lines += [
        f"  layer-{i:04}: {{parent: root, copy: [{{src: src/l{i}, dest: /a}}]}}" for i in range(n)
    ]
    changed = [f"src/l{i}/file-with-a-long-name-{j}.txt" for i in range(n) for j in range(3)]
    return plan_of("\n".join(lines) + "\n", changed)


def test_a_huge_plan_is_cut_to_fit_a_comment_and_keeps_the_marker() -> None:
    plan = big_plan(3000)
    assert len(plan.affected) == 3000
    body = plan_report(plan, marker=MARK, limit=COMMENT_LIMIT)
    assert len(body) <= COMMENT_LIMIT
    assert body.startswith(MARK + "\n### ci-layers: 3000 of 3001 layers to rebuild")
    assert "the job summary has the full plan" in body
    assert affected_mermaid(plan) is None  # past Mermaid's limits: no diagram


def test_a_small_plan_has_table_diagram_and_paths() -> None:
    plan = big_plan(3)
    body = plan_report(plan, marker=MARK, limit=COMMENT_LIMIT)
    assert "```mermaid" in body
    assert "<details><summary>Changed paths per layer</summary>" in body
    assert "| 1 | `layer-0000` | changed: src/l0/file-with-a-long-name-0.txt" in body
    assert "Shortened" not in body
    # root, reused, is drawn as what they are built on, in a colour of its own
    assert '  n0["root"]' in body
    assert "  class n0 reused" in body
    assert "classDef reused fill:" in body
    assert "; grey: reused, what a rebuilt layer is built on." in body


def test_outputs_over_githubs_limit_fail_early_and_say_what_to_do() -> None:
    check_size({"matrix": "x" * 400_000})  # 800 kB in UTF-16: fine
    with pytest.raises(OutputTooLarge, match=r"'matrix' is the largest.*plan-file"):
        check_size({"matrix": "x" * 600_000, "stages": "[]"})


def test_a_summary_is_cut_only_past_its_own_limit() -> None:
    plan = big_plan(1000)
    full = plan_report(plan)
    assert COMMENT_BYTES < len(full.encode()) < SUMMARY_BYTES  # too big for a comment only
    assert plan_report(plan, max_bytes=SUMMARY_BYTES) == full
    cut = plan_report(plan, max_bytes=COMMENT_BYTES)
    assert len(cut.encode()) <= COMMENT_BYTES
    assert cut.splitlines()[2] == (  # said under the headline
        "_Shortened to fit the job summary: the plan-file output has the full plan._"
    )


def test_paths_cannot_mention_people() -> None:
    text = "version: 1\nlayers:\n  a: {from: scratch, copy: [{src: '@octo-org/ui', dest: /u}]}\n"
    plan = plan_of(text, ["@octo-org/ui/index.js"])
    body = plan_report(plan, marker=MARK, limit=COMMENT_LIMIT)
    assert "@octo-org" not in body.replace("@\u200bocto-org", "")


def table_rows(body: str) -> list[tuple[int, str]]:
    rows = [
        line.split(" | ") for line in body.splitlines() if line.startswith("| ") and "`" in line
    ]
    return [(int(r[0].strip("| ")), r[1].strip("`")) for r in rows]


def chain_plan(depth: int):
    """A chain `l0 <- l1 <- …` with a leaf hanging off each link, all rebuilt."""
    lines = ["version: 1", "layers:", "  l0: {from: scratch, copy: [{src: src, dest: /s}]}"]
    for i in range(1, depth):
        lines.append(f"  l{i}: {{parent: l{i - 1}, run: ['true']}}")
        lines.append(f"  leaf{i}: {{parent: l{i - 1}, run: ['true']}}")
    return plan_of("\n".join(lines) + "\n", ["src/a"])


def test_the_comment_numbers_stages_by_the_stage_jobs_that_run() -> None:
    from ci_layers.outputs import stage_jobs

    plan = chain_plan(10)
    assert len(plan.stages) == 10
    packed = stage_jobs(plan, plan.spec, max_stages=3, max_parallel=256)
    job_stage = {n: i for i, stage in enumerate(packed, 1) for job in stage for n in job}
    body = plan_report(plan, marker=MARK, limit=COMMENT_LIMIT, staging=packed)
    assert "in 3 stages (10 levels deep, packed)" in body.splitlines()[1]
    rows = table_rows(body)
    assert {name: stage for stage, name in rows} == job_stage  # the stage job, not the depth
    assert [s for s, _ in rows] == sorted(s for s, _ in rows)  # in stage order
    text = plan_text(plan, staging=packed)
    assert text.count("\nstage ") == 3
    assert "one job, in this order: l1, l2" in text
    unpacked = plan_report(plan)  # the CLI: no stage jobs, the depth is the stage
    assert "in 10 stages" in unpacked
    assert "packed" not in unpacked.splitlines()[0]
    assert {n: s for s, n in table_rows(unpacked)} == {
        n: plan.layers[n].stage for n in plan.affected
    }


def test_the_diagram_dashes_what_is_copied_from_and_colours_its_text() -> None:
    text = """version: 1
layers:
  base: {from: scratch, copy: [{src: base, dest: /b}]}
  tools: {from: scratch, copy: [{src: tools, dest: /t}]}
  app: {parent: base, copy: [{src: /t/bin, dest: /bin, from_layer: tools}]}
"""
    plan = plan_of(text, ["base/a", "tools/a"])
    diagram = affected_mermaid(plan)
    assert diagram is not None
    ids = {
        line.split('["')[1].rstrip('"]'): line.split("[")[0].strip()
        for line in diagram.splitlines()
        if '["' in line
    }
    assert f"  {ids['base']} --> {ids['app']}" in diagram.splitlines()
    assert f"  {ids['tools']} -.-> {ids['app']}" in diagram.splitlines()
    classdef = next(line for line in diagram.splitlines() if "classDef" in line)
    assert "fill:" in classdef
    assert "color:#" in classdef
    body = plan_report(plan, marker=MARK)
    legend = body.split("```\n\n", 1)[1].splitlines()[0]
    assert legend.startswith("_Yellow: rebuilt")
    assert "grey: reused" not in legend  # both of app's parents are rebuilt
    assert "dashed: copies from or uses" in legend


def test_the_footer_counts_paths_in_words_and_says_the_mode_once() -> None:
    spec = "version: 1\nlayers:\n  a: {from: scratch, copy: [{src: a, dest: /a}]}\n"
    one = plan_of(spec, ["a/x"], mode="merge-base", reason="merge-base of main and the head")
    footer = plan_report(one).splitlines()[-1]
    assert footer.endswith("; 1 changed path.")
    assert footer.count("merge-base") == 1
    two = plan_of(spec, ["a/x", "a/y"], mode="range", reason="the pushed commits")
    assert (
        plan_report(two).splitlines()[-1].endswith("(range: the pushed commits); 2 changed paths.")
    )


def test_the_compared_commits_link_to_the_compare_view() -> None:
    spec = "version: 1\nlayers:\n  a: {from: scratch, copy: [{src: a, dest: /a}]}\n"
    plan = plan_of(spec, ["a/x"])
    url = compare_link("https://github.com", "octo/repo")
    footer = plan_report(plan, repository_url=url).splitlines()[-1]
    expected = (
        f"[`{'a' * 12}..{'b' * 12}`](https://github.com/octo/repo/compare/{'a' * 40}..{'b' * 40})"
    )
    assert footer.startswith(f"Compared {expected} ")
    assert compare_link("https://github.com", "octo/repo) [x](y") is None  # no markdown smuggled
    assert compare_link("javascript:alert(1)", "octo/repo") is None
    assert compare_link(None, "octo/repo") is None
    assert "](" not in plan_report(plan).splitlines()[-1]  # no runner variables: no link


def test_nodes_are_labelled_by_short_names_the_table_keeps_the_full_ones() -> None:
    names = [
        "registry.example.com/acme/base",
        "registry.example.com/other/base",
        "registry.example.com/acme/python:3.12",
        "ghcr.io/acme/app@sha256:" + "c" * 64,
        "x" * 80,
    ]
    labels = short_labels(names)
    assert labels == {
        names[0]: "acme/base",
        names[1]: "other/base",
        names[2]: "python:3.12",
        names[3]: "app@" + "c" * 12,
        names[4]: "x" * 19 + "…" + "x" * 20,
    }
    # cut to fit, two long references would look alike: their tags are kept, or numbered
    team = "registry.example.com/very-long-service-image-name-for-the-team"
    long = [f"{team}:release-2024-01", f"{team}:release-2024-02"]
    assert len(set(short_labels(long).values())) == 2
    assert short_labels(long)[long[0]].endswith("release-2024-01")
    same = [f"{team}-{'a' * 30}-{i}-{'b' * 30}" for i in range(2)]
    assert sorted(short_labels(same).values())[0].endswith(" #1")


@given(
    st.sets(
        st.lists(
            st.sampled_from(["a", "b", "reg.io", "base:1", "x", "y" * 45, "z" * 30 + ":1"]),
            min_size=1,
            max_size=4,
        ).map("/".join),
        max_size=12,
    )
)
def test_short_labels_are_distinct_and_short(names: set[str]) -> None:
    labels = short_labels(names)
    assert len(set(labels.values())) == len(names)
    for n in names:
        label = labels[n]
        assert len(label) <= 44  # the cut length, and a number where two cuts coincide
        if "…" not in label and "#" not in label:
            assert n == label or n.endswith("/" + label)


def test_a_diagram_is_drawn_only_as_wide_as_the_comment_reads() -> None:
    """Legibility depends on the widest rank, not on how many nodes there are: 30
    rebuilt layers each on a reused parent of its own (30 side by side) are not drawn;
    a chain of 30 is, top-down; a fan of 30 under one root is drawn as the root and the
    count of what is built on it."""
    lines = ["version: 1", "layers:"]
    for i in range(30):
        lines.append(f"  p{i}: {{from: scratch, copy: [{{src: p{i}, dest: /p}}]}}")
        lines.append(f"  c{i}: {{parent: p{i}, copy: [{{src: c{i}, dest: /c}}]}}")
    wide = plan_of("\n".join(lines) + "\n", [f"c{i}/x" for i in range(30)])
    assert affected_mermaid(wide) is None  # 30 starts: the causes list says it
    chain = chain_plan(15)  # 29 nodes, never more than two side by side
    diagram = affected_mermaid(chain)
    assert diagram is not None
    assert diagram.startswith("graph TD")
    assert sum('["' in line for line in diagram.splitlines()) == 29
    lines = ["version: 1", "layers:", "  root: {from: scratch, copy: [{src: r, dest: /r}]}"]
    lines += [f"  layer-{i:02}: {{parent: root, run: [make]}}" for i in range(30)]
    fan = plan_of("\n".join(lines) + "\n", ["r/x"])  # 30 rebuilt on one rebuilt root
    diagram = affected_mermaid(fan)
    assert diagram is not None
    assert diagram.splitlines() == [
        "graph LR",
        '  r0["root"]',
        '  c0["30 layers built on it"]',
        "  r0 --> c0",
        "  classDef rebuild fill:#fde68a,stroke:#b45309,stroke-width:2px,color:#1f2937",
        "  class r0 rebuild",
        "  classDef count fill:#e5e7eb,stroke:#6b7280,color:#1f2937",  # its own text colour
        "  class c0 count",
    ]
