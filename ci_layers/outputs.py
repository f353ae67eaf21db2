"""A plan as GitHub Actions outputs: a matrix, packed stages, and the file they go in.

Every output is one line of compact JSON, written with a random heredoc delimiter, and
the whole set is checked against GitHub's limit before anything is written. Every stage
job has an id (`job`: "stage.n"), and the jobs file holds each job's whole entry. When
the whole entries would pass GitHub's 1 MB for a job's outputs (a monorepo of hundreds
of images), the outputs shrink, least needed first: `matrix` to ids, `stages` to ids
(a stage job then reads its entry from the jobs file, uploaded as an artifact, with the
`job` sub-action), then `matrix` and `affected` to nothing. So the outputs fit whatever
the plan's size, and what was left out is said.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .docker import docker_inputs, handoff_tag, pushed_tags, release_tags
from .errors import CiLayersError
from .pack import pack_stages
from .plan import Plan
from .platforms import DEFAULT_PLATFORM, DEFAULT_RUNNERS
from .report import stage_numbers
from .spec import Spec

__all__ = [
    "OUTPUT_LIMIT",
    "ActionOutputs",
    "OutputTooLarge",
    "OutputWriteError",
    "action_outputs",
    "stage_jobs",
    "write_outputs",
]

# "Outputs can be a maximum of 1 MB per job ... approximated based on UTF-16 encoding."
OUTPUT_LIMIT = 1_000_000
MATRIX_LIMIT = 256  # jobs one matrix may generate


class OutputTooLarge(CiLayersError):
    exit_code = 1


class OutputWriteError(CiLayersError):
    """A file the runner named cannot be written."""


def _json(value: Any) -> str:
    # ASCII escapes: a name that is not UTF-8 (a lone surrogate) stays valid JSON
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


class NoRunner(CiLayersError):
    """A platform that no runner builds."""

    exit_code = 1


def runner_for(spec: Spec, name: str, runners: Mapping[str, Any] | None) -> tuple[str, Any]:
    """(platform, runner label) of a layer's build: its platform's native runner."""
    platform = spec.graph[name].platform or DEFAULT_PLATFORM
    table = {**DEFAULT_RUNNERS, **(runners or {})}
    if platform not in table:
        raise NoRunner(
            f"'{spec.graph[name].origin}' is built for {platform}, and no runner builds "
            f"{platform}: add '{platform}: <runner label>' to the runners input (it has "
            f"{', '.join(table)})"
        )
    return platform, table[platform]


def layer_entry(
    plan: Plan,
    spec: Spec,
    name: str,
    *,
    publish: bool = False,
    cache: str | None = None,
    runners: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a build step needs for one layer, in one shape for both kinds: `tags` is what
    the build pushes (the hand-off tag later stages pull, and the release tags only when
    `publish`), `release-tags` and `hand-off-tag` apart; a Dockerfile image adds
    `context`, `file` and `docker` (build-push-action's inputs)."""
    layer = spec.graph[name]
    key = plan.layers[name].key
    release = release_tags(spec, name)
    platform, runner = runner_for(spec, name, runners)
    entry: dict[str, Any] = {
        "name": name,
        "key": key,
        "stage": plan.layers[name].stage,
        "kind": "spec" if layer.dockerfile is None else "dockerfile",
        "image": layer.origin,
        "platform": platform,
        "runner": runner,
        "parent": layer.parent,
        "from": layer.base,
        "tags": [],  # below, once the hand-off tag is known
        "release-tags": release,
        "hand-off-tag": None,
        "build-args": dict(layer.build_args),
    }
    if layer.dockerfile is not None:
        docker = docker_inputs(plan, spec, name, publish=publish)
        entry.update(context=docker["context"], file=docker["file"], docker=docker)
        entry["hand-off-tag"] = handoff_tag(spec, plan, name)
    elif cache:  # the tag `build --push` gives it (oci.reference.key_tag; planning keeps off oci/)
        entry["hand-off-tag"] = f"{cache}:ci-layers-{key.removeprefix('sha256:')}"
    # a build for one of several platforms: its image's index is promote's to tag
    released = release if layer.image is None else []
    entry["tags"] = pushed_tags(released, entry["hand-off-tag"], publish=publish)
    return entry


def _job_entry(
    plan: Plan, spec: Spec, job: tuple[str, ...], stage: int, ident: str, **how: Any
) -> dict[str, Any]:
    """One stage job: a build (every field of its layer, `packed` false) or, packed, a
    list of builds the job runs in order (`name`, `stage`, `job`, `layers`, `packed` true
    and nothing else: no field of one layer passes for the job's)."""
    layers = [layer_entry(plan, spec, n, **how) for n in job]
    for entry in layers:
        entry["stage"] = stage
    if len(job) == 1:
        return {**layers[0], "job": ident, "packed": False, "layers": layers}
    name = f"{job[0]} (+{len(job) - 1})"
    where = {k: layers[0][k] for k in ("platform", "runner")}  # one runner per job (pack)
    return {
        "name": name,
        "stage": stage,
        "job": ident,
        "packed": True,
        **where,
        "layers": layers,
    }


def _short(name: str, width: int = 40) -> str:
    """A job's name as a compact entry shows it: the reference's last part, cut in the
    middle past `width` (the jobs file has the whole)."""
    reference, paren, rest = name.partition(" (")  # " (linux/arm64)", " (+3)" kept
    tail = reference.rsplit("/", 1)[-1] + paren + rest
    return tail if len(tail) <= width else f"{tail[: width // 2 - 1]}…{tail[-(width // 2) :]}"


def _compact(job: Mapping[str, Any], artifact: str) -> dict[str, Any]:
    """A stage job as its id and its runner (`runs-on` reads it before the job starts):
    the `job` sub-action reads the rest from the artifact."""
    return {
        "name": _short(job["name"]),
        "stage": job["stage"],
        "job": job["job"],
        "runner": job["runner"],
        "packed": job["packed"],
        "compact": True,
        "artifact": artifact,
    }


def stage_jobs(
    plan: Plan, spec: Spec, *, max_stages: int, max_parallel: int
) -> list[list[tuple[str, ...]]]:
    """The stage jobs that build the plan: the outputs, the log, the summary and the
    comment all number stages by these."""
    return pack_stages(
        list(plan.affected),
        spec.graph.parents,
        max_stages=max_stages,
        max_parallel=max_parallel,
        runner=lambda n: spec.graph[n].platform or DEFAULT_PLATFORM,
    )


@dataclass(frozen=True, slots=True)
class ActionOutputs:
    outputs: dict[str, str]  # what goes to $GITHUB_OUTPUT
    jobs: dict[str, dict[str, Any]]  # each stage job's whole entry, by its id
    shrunk: tuple[str, ...] = ()  # what was left out of the outputs to fit, said once
    compact: bool = False  # the stage jobs read their entries from the jobs file


def action_outputs(
    plan: Plan,
    spec: Spec,
    *,
    packed: list[list[tuple[str, ...]]],
    plan_file: Path,
    artifact: str = "ci-layers-jobs",
    extra: Mapping[str, str] | None = None,
    publish: bool = False,
    cache: str | None = None,
    runners: Mapping[str, Any] | None = None,
) -> ActionOutputs:
    """The outputs of `ci-layers gha`, as the strings written to $GITHUB_OUTPUT, shrunk
    as the module says until they fit with `extra` (the other outputs of the step)."""
    affected = list(plan.affected)
    how: dict[str, Any] = {"publish": publish, "cache": cache, "runners": runners}
    stages = [
        [_job_entry(plan, spec, job, i, f"{i}.{j}", **how) for j, job in enumerate(jobs, 1)]
        for i, jobs in enumerate(packed, 1)
    ]
    jobs = {entry["job"]: entry for stage in stages for entry in stage}
    stage_of = stage_numbers(plan, packed)
    job_of = {layer["name"]: e["job"] for e in jobs.values() for layer in e["layers"]}
    matrix = [
        {**layer_entry(plan, spec, n, **how), "stage": stage_of[n], "job": job_of[n]}
        for n in affected
    ]
    outputs = {
        "has-changes": "true" if affected else "false",
        "matrix": _json({"include": matrix}),
        "stages": _json(stages),
        "stage-count": str(len(stages)),
        "affected": _json(affected),
        "plan-file": str(plan_file),
    }
    ids = [{k: e[k] for k in ("name", "stage", "job", "runner")} for e in matrix]
    shrinking = [
        ("matrix", "matrix holds each layer's name, stage and job only", {"include": ids}),
        (
            "stages",
            "stages holds each job's id (the job sub-action reads its entry)",
            [[_compact(e, artifact) for e in stage] for stage in stages],
        ),
        ("matrix", "matrix is empty", {"include": []}),
        ("affected", "affected is empty (the plan file lists the layers)", []),
    ]
    shrunk: dict[str, str] = {}  # what was shrunk: how it was said
    for name, said, smaller in shrinking:
        if _size({**outputs, **(extra or {})}) <= OUTPUT_LIMIT:
            break
        outputs[name] = _json(smaller)
        shrunk[said] = name
    check_size({**outputs, **(extra or {})})
    compact = "stages" in shrunk.values()
    return ActionOutputs(outputs, jobs, tuple(shrunk), compact=compact)


def _size(outputs: Mapping[str, str]) -> int:
    return sum(_utf16(k) + _utf16(v) for k, v in outputs.items())


def check_size(outputs: Mapping[str, str]) -> None:
    """GitHub counts a job's outputs together, in UTF-16."""
    size = _size(outputs)
    if size > OUTPUT_LIMIT:
        biggest = max(outputs, key=lambda k: len(outputs[k]))
        raise OutputTooLarge(
            f"the outputs would take {size:,} bytes, over GitHub's limit of {OUTPUT_LIMIT:,} per "
            f"job ('{biggest}' is the largest), even with each stage job as its id: too many "
            "stage jobs (lower max-parallel-jobs or max-stages). Only has-changes and the file "
            "paths (plan-file, bake-file, comment-file, jobs-file) were written"
        )


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass"))


def write_outputs(path: Path, outputs: Mapping[str, str]) -> None:
    """Append to $GITHUB_OUTPUT, each value behind a delimiter it cannot contain."""
    try:
        with path.open("a", encoding="utf-8") as out:
            for name, value in outputs.items():
                delimiter = f"ghadelimiter_{uuid.uuid4()}"
                while delimiter in value:
                    delimiter = f"ghadelimiter_{uuid.uuid4()}"
                out.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
    except OSError as exc:  # a missing folder, a directory, a full disk (issue 12, 6)
        raise OutputWriteError(f"cannot write $GITHUB_OUTPUT ({path}): {exc.strerror}") from None
