"""`ci-layers gha`: the GitHub Actions edge.

Reads the inputs and the runner's variables from the environment it is handed (cli.py
passes os.environ), plans, and writes what a workflow consumes: outputs, the job
summary, annotations and the sticky pull-request comment. Inputs arrive through `env:`
in action.yml, never interpolated into a script.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .changes import GitHistory, choose_comparison, read_event
from .errors import SpecError, SpecInvalid, UsageError
from .github import marker_for, upsert_comment
from .outputs import MATRIX_LIMIT, action_outputs, write_outputs
from .plan import Plan, make_plan
from .report import COMMENT_LIMIT, plan_report, plan_text
from .spec import Spec

__all__ = ["ActionInputs", "annotation", "inputs_from_env", "run_action"]

SUMMARY_LIMIT = 1024 * 1024 - 1024  # 1 MiB per step, with room for the runner's own lines
ANNOTATIONS_PER_KIND = 10  # GitHub shows 10 warnings and 10 errors per step


@dataclass(frozen=True, slots=True)
class ActionInputs:
    base: str | None
    head: str | None
    token: str | None
    comment: str  # auto | always | never
    max_stages: int
    max_parallel: int
    fail_on: str  # error | warning | never


def _input(env: Mapping[str, str], name: str, default: str = "") -> str:
    value = env.get(f"INPUT_{name.upper().replace('-', '_')}", "").strip()
    return value or default


def inputs_from_env(env: Mapping[str, str]) -> ActionInputs:
    """The action's inputs, validated: a bad value is a usage error that names it."""
    comment = _input(env, "comment", "auto")
    fail_on = _input(env, "fail-on", "error")
    if comment not in ("auto", "always", "never"):
        raise UsageError(f"input comment must be auto, always or never, not {comment!r}")
    if fail_on not in ("error", "warning", "never"):
        raise UsageError(f"input fail-on must be error, warning or never, not {fail_on!r}")
    numbers = {}
    for name, default, top in (("max-stages", "4", 256), ("max-parallel-jobs", "256", 256)):
        raw = _input(env, name, default)
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= top:
            raise UsageError(f"input {name} must be a whole number from 1 to {top}, not {raw!r}")
        numbers[name] = int(raw)
    return ActionInputs(
        base=_input(env, "base") or None,
        head=_input(env, "head") or None,
        token=_input(env, "github-token") or None,
        comment=comment,
        max_stages=numbers["max-stages"],
        max_parallel=numbers["max-parallel-jobs"],
        fail_on=fail_on,
    )


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


def _annotate(problems: list[SpecError], out: TextIO) -> None:
    counts = {"error": 0, "warning": 0}
    for p in problems:
        counts[p.severity] = counts.get(p.severity, 0) + 1
        if counts[p.severity] <= ANNOTATIONS_PER_KIND:
            who = f"{p.layer}: " if p.layer else ""
            out.write(annotation(p.severity, who + p.message, where=p) + "\n")


def run_action(
    *,
    env: Mapping[str, str],
    root: Path,
    spec: Spec | None,
    spec_rel: str | None,
    spec_error: SpecInvalid | None,
    out: TextIO,
) -> int:
    """Plan for the event the runner describes, write everything, return the exit code."""
    inputs = inputs_from_env(env)
    output_path = Path(env["GITHUB_OUTPUT"]) if env.get("GITHUB_OUTPUT") else None
    if spec is None:
        assert spec_error is not None
        _annotate(spec_error.problems, out)
        out.write(str(spec_error) + "\n")
        if output_path:
            write_outputs(output_path, {"has-changes": "false", "stage-count": "0"})
        return 0 if inputs.fail_on == "never" else spec_error.exit_code

    event_name = env.get("GITHUB_EVENT_NAME") or None
    payload = read_event(env.get("GITHUB_EVENT_PATH"))
    history = GitHistory(root)
    comparison = choose_comparison(
        history, event_name=event_name, payload=payload, base=inputs.base, head=inputs.head
    )
    plan = make_plan(
        root=root, spec=spec, spec_rel=spec_rel, comparison=comparison, history=history
    )
    spec = plan.spec or spec  # the spec at head, which may differ from the one on disk
    _annotate(list(spec.warnings), out)  # with what resolving its Dockerfiles found

    plan_file = Path(env.get("RUNNER_TEMP") or tempfile.gettempdir()) / "ci-layers-plan.json"
    plan_file.write_text(json.dumps(plan.to_json(), indent=2, ensure_ascii=True) + "\n")
    outputs = action_outputs(
        plan,
        spec,
        max_stages=inputs.max_stages,
        max_parallel=inputs.max_parallel,
        plan_file=plan_file,
    )
    if output_path:
        write_outputs(output_path, outputs)
    _log_plan(plan, outputs, out)
    if len(plan.affected) > MATRIX_LIMIT:
        out.write(
            annotation(
                "warning",
                f"{len(plan.affected)} layers to rebuild: the 'matrix' output exceeds GitHub's "
                f"{MATRIX_LIMIT} jobs per matrix; build from the 'stages' output instead",
            )
            + "\n"
        )
    if env.get("GITHUB_STEP_SUMMARY"):
        summary_path = Path(env["GITHUB_STEP_SUMMARY"])
        with summary_path.open("a", encoding="utf-8", errors="replace") as summary:
            summary.write(plan_report(plan, limit=SUMMARY_LIMIT) + "\n")
    _comment(plan, inputs, env, event_name, payload, spec, out)
    if inputs.fail_on == "warning" and spec.warnings:
        out.write(f"failing: {len(spec.warnings)} warning(s) and fail-on is 'warning'\n")
        return 1
    return 0


def _log_plan(plan: Plan, outputs: Mapping[str, str], out: TextIO) -> None:
    # Paths are untrusted text: stop workflow commands while printing them.
    token = secrets.token_hex(16)
    out.write(f"::stop-commands::{token}\n")
    out.write(plan_text(plan) + "\n")
    out.write(f"::{token}::\n")
    out.write(f"has-changes={outputs['has-changes']} stage-count={outputs['stage-count']}\n")


def _comment(
    plan: Plan,
    inputs: ActionInputs,
    env: Mapping[str, str],
    event_name: str | None,
    payload: Mapping[str, Any],
    spec: Spec,
    out: TextIO,
) -> None:
    pr = payload.get("pull_request")
    number = pr.get("number") if isinstance(pr, dict) else None
    if inputs.comment == "never" or event_name not in ("pull_request", "pull_request_target"):
        return
    if not isinstance(number, int):
        return
    repository = env.get("GITHUB_REPOSITORY") or (payload.get("repository") or {}).get("full_name")
    if not inputs.token or not repository:
        out.write(annotation("warning", "no github-token or repository: no PR comment") + "\n")
        return
    marker = marker_for(spec.path)
    result = upsert_comment(
        api_url=env.get("GITHUB_API_URL") or "https://api.github.com",
        token=inputs.token,
        repository=repository,
        number=number,
        body=plan_report(plan, marker=marker, limit=COMMENT_LIMIT),
        marker=marker,
        create=inputs.comment == "always" or bool(plan.affected),
    )
    if result.warning:
        out.write(annotation("warning", f"PR comment not written: {result.warning}") + "\n")
    else:
        copies = f", {result.deleted_copies} duplicate(s) removed" if result.deleted_copies else ""
        out.write(f"PR comment {result.action}{copies}: {result.url or '-'}\n")
