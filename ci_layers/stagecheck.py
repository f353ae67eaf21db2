"""Whether the running workflow has a job for every stage a plan needs.

GitHub runs only the jobs a workflow declares: a plan packed into more stages than the
workflow has stage jobs for leaves layers unbuilt while every job is green. The workflow
file that runs is the one at $GITHUB_SHA named by $GITHUB_WORKFLOW_REF; stage job i+1
reads `fromJSON(….stages)[i]` somewhere in its values (comments are not values).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["StageJobs", "declared_stages", "running_workflow", "stage_jobs_problem"]

_STAGE_INDEX = re.compile(r"stages\s*\)\s*\[\s*(\d+)\s*\]", re.IGNORECASE)  # names ignore case


@dataclass(frozen=True, slots=True)
class StageJobs:
    path: str
    stages: frozenset[int]  # 1-based

    @property
    def contiguous(self) -> int:
        """How many stages from the first have a job, without a gap."""
        k = 0
        while k + 1 in self.stages:
            k += 1
        return k


def declared_stages(text: str, job: str | None = None) -> frozenset[int] | None:
    """The stages a workflow's text has jobs for; None when it is no YAML mapping or reads
    no `stages` (a workflow that builds some other way is not judged). With `job` (the
    planning job, $GITHUB_JOB), only what reads that job's outputs counts: two plans in
    one workflow each have their own stage jobs."""
    pattern = _STAGE_INDEX
    if job:
        pattern = re.compile(
            rf"needs\.{re.escape(job)}\.outputs\.[\w-]*{_STAGE_INDEX.pattern}", re.IGNORECASE
        )
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    found: set[int] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.update(int(i) + 1 for i in pattern.findall(value))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    if not isinstance(doc, dict):
        return None
    walk(doc.get("jobs"))
    return frozenset(found) or None


def running_workflow(env: Mapping[str, str], root: Path) -> StageJobs | None:
    """The stage jobs of the workflow that runs: its file at the commit the run is for.
    None where that cannot be known here (no runner variables, the commit not fetched, a
    reusable workflow's caller, which GITHUB_WORKFLOW_REF names, reading no `stages`)."""
    ref, repository = env.get("GITHUB_WORKFLOW_REF", ""), env.get("GITHUB_REPOSITORY", "")
    sha = env.get("GITHUB_SHA", "")
    if not repository or not ref.startswith(f"{repository}/") or "@" not in ref:
        return None
    path = ref.split("@", 1)[0].removeprefix(f"{repository}/")
    safe = re.fullmatch(r"\.github/workflows/[^/\s:]+\.ya?ml", path)
    if not safe or not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha):
        return None
    try:
        done = subprocess.run(
            ["git", "cat-file", "blob", f"{sha}:{path}"],
            cwd=root,
            capture_output=True,
            check=False,
        )
    except OSError:  # no git here: nothing to judge by
        return None
    if done.returncode != 0:
        return None
    stages = declared_stages(done.stdout.decode("utf-8", "replace"), env.get("GITHUB_JOB"))
    return StageJobs(path, stages) if stages else None


def stage_jobs_problem(jobs: StageJobs, *, needed: int, max_stages: int) -> tuple[str, str] | None:
    """(severity, message) when the workflow lacks a stage job: an error when this plan
    needs it, a warning when only a deeper plan would (max-stages above the jobs)."""
    have = ", ".join(str(k) for k in sorted(jobs.stages))
    missing = [k for k in range(1, needed + 1) if k not in jobs.stages]
    fix = f", or set max-stages to {jobs.contiguous}" if jobs.contiguous else ""
    if missing:
        return (
            "error",
            f"this plan needs {needed} stage jobs, and {jobs.path} has jobs for stages {have} "
            f"only (stage N reads fromJSON(….stages)[N-1]): stage "
            f"{', '.join(map(str, missing))} would not run and its layers would not be built. "
            f"Declare the missing jobs{fix}",
        )
    if max_stages > jobs.contiguous:
        return (
            "warning",
            f"max-stages is {max_stages}, and {jobs.path} has stage jobs for stages 1 to "
            f"{jobs.contiguous} only: a plan deeper than that would fail this step. Declare "
            f"the missing jobs{fix}",
        )
    return None
