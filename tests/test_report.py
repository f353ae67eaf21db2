"""Reports stay within GitHub's limits and keep what matters."""

from __future__ import annotations

import pytest

from ci_layers.changes import ChangeSet, Comparison, FileChange
from ci_layers.keys import compute_keys
from ci_layers.outputs import OutputTooLarge, check_size
from ci_layers.plan import build_plan
from ci_layers.repo import RepoFiles, blob_id
from ci_layers.report import (
    COMMENT_BYTES,
    COMMENT_LIMIT,
    SUMMARY_BYTES,
    affected_mermaid,
    plan_report,
)
from ci_layers.spec import parse_spec

MARK = "<!-- ci-layers:plan ci-layers.yaml -->"


def big_plan(n: int):
    lines = ["version: 1", "layers:", "  root: {from: scratch, copy: [{src: src/root, dest: /r}]}"]
    lines += [
        f"  layer-{i:04}: {{parent: root, copy: [{{src: src/l{i}, dest: /a}}]}}" for i in range(n)
    ]
    spec = parse_spec("\n".join(lines) + "\n")
    old = {
        f"src/l{i}/file-with-a-long-name-{j}.txt": "100644 blob " + blob_id(b"a")
        for i in range(n)
        for j in range(3)
    }
    new = {p: "100644 blob " + blob_id(b"b") for p in old}
    comparison = Comparison("a" * 40, "b" * 40, "range", "test")
    changes = ChangeSet(comparison, tuple(FileChange("M", p) for p in old))
    return build_plan(
        spec=spec,
        keys=compute_keys(spec, RepoFiles(new)),
        comparison=comparison,
        base_spec=spec,
        base_keys=compute_keys(spec, RepoFiles(old)),
        changes=changes,
    )


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
    assert cut.endswith(
        "_Shortened to fit the job summary: the plan-file output has the full plan._"
    )


def test_paths_cannot_mention_people() -> None:
    text = "version: 1\nlayers:\n  a: {from: scratch, copy: [{src: '@octo-org/ui', dest: /u}]}\n"
    spec = parse_spec(text)
    old = {"@octo-org/ui/index.js": "100644 blob " + blob_id(b"a")}
    new = {"@octo-org/ui/index.js": "100644 blob " + blob_id(b"b")}
    comparison = Comparison("a" * 40, "b" * 40, "range", "test")
    plan = build_plan(
        spec=spec,
        keys=compute_keys(spec, RepoFiles(new)),
        comparison=comparison,
        base_spec=spec,
        base_keys=compute_keys(spec, RepoFiles(old)),
        changes=ChangeSet(comparison, (FileChange("M", "@octo-org/ui/index.js"),)),
    )
    body = plan_report(plan, marker=MARK, limit=COMMENT_LIMIT)
    assert "@octo-org" not in body.replace("@\u200bocto-org", "")
