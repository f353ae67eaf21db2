"""`ci-layers gha`: the GitHub Actions edge.

Reads the inputs and the runner's variables from the environment it is handed (cli.py
passes os.environ), plans, and writes what a workflow consumes: outputs, the job
summary, annotations and the sticky pull-request comment. Inputs arrive through `env:`
in action.yml, never interpolated into a script.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from .changes import GitHistory, choose_comparison, read_event
from .comment import COMMENT_LIMIT, SUMMARY_BYTES, compare_link, plan_report, spec_error_report
from .docker import bake_file
from .errors import Location, SpecError, SpecInvalid, UsageError
from .github import MARKER, marker_for, upsert_comment
from .outputs import (
    MATRIX_LIMIT,
    OutputTooLarge,
    OutputWriteError,
    action_outputs,
    stage_jobs,
    write_outputs,
)
from .plan import Plan, make_plan
from .platforms import PlatformError, parse_platform
from .report import annotation, plan_text, untrusted
from .spec import Spec
from .stagecheck import running_workflow, stage_jobs_problem

__all__ = ["ActionInputs", "inputs_from_env", "run_action"]

# Stage jobs a workflow declares unless it says otherwise: the example workflow's count
# (a test holds action.yml, this and the example to one number).
DEFAULT_STAGES = 3

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
    cache: str | None = None  # REGISTRY/REPO holding ci-layers-<key> images
    lint: bool = False  # annotate lint findings on their lines
    publish: bool = False  # release tags in the jobs' `tags`, not only hand-off tags
    pr_number: int | None = None  # the pull request to comment on, whatever the event
    header: str = ""  # tells apart several sticky comments of one spec
    check_registry: bool = False  # Dockerfile images found built by their hand-off tag
    runners: Mapping[str, Any] | None = None  # platform -> runs-on label, over the defaults


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
    stages = str(DEFAULT_STAGES)
    for name, default, top in (("max-stages", stages, 256), ("max-parallel-jobs", "256", 256)):
        raw = _input(env, name, default)
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not 1 <= int(raw) <= top:
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
        cache=_input(env, "cache") or None,
        lint=_flag(env, "lint"),
        publish=_flag(env, "publish"),
        pr_number=_pr_number(pr, what="input pr-number")
        if (pr := _input(env, "pr-number"))
        else None,
        header=_input(env, "header"),
        check_registry=_flag(env, "check-registry"),
        runners=_runners(_input(env, "runners")),
    )


def _runs_on(value: Any) -> bool:
    """Whether `value` is what a job's `runs-on` takes: a label, labels, or a group."""

    def labels(x: Any) -> bool:
        items = x if isinstance(x, list) else [x]
        return bool(items) and all(isinstance(i, str) and i.strip() for i in items)

    if isinstance(value, dict):
        return (
            bool(value)
            and set(value) <= {"group", "labels"}
            and all(labels(v) for v in value.values())
            and not isinstance(value.get("group", ""), list)
        )
    return labels(value)


def _runners(raw: str) -> dict[str, Any] | None:
    """The `runners` input: a YAML mapping of platform to a `runs-on` label (or a list
    of labels), over the defaults; each platform normalised as `platforms:` are."""
    if not raw:
        return None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise UsageError(f"input runners is not YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(
            "input runners must be a mapping of platform to runner label, e.g. "
            "'linux/arm64: ubuntu-24.04-arm'"
        )
    runners: dict[str, Any] = {}
    for platform, label in data.items():
        try:
            normal = parse_platform(str(platform))
        except PlatformError as exc:
            raise UsageError(f"input runners: {exc}") from None
        if not _runs_on(label):
            raise UsageError(
                f"input runners: {platform}'s runner must be what runs-on takes: a label, a "
                "list of labels, or {group: …, labels: …}"
            )
        if normal in runners:
            raise UsageError(f"input runners: {normal} is given twice ('{platform}' is {normal})")
        runners[normal] = label
    return runners


def _pr_number(raw: str, *, what: str) -> int:
    """A pull request's number as the `pr-number` input or `--pr` gives it."""
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10) or int(raw) < 1:
        raise UsageError(f"{what} must be a pull request's number, not {raw!r}")
    return int(raw)


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = _input(env, name, "false").lower()
    if value not in ("true", "false"):
        raise UsageError(f"input {name} must be true or false, not {value!r}")
    return value == "true"


def _lint_annotations(spec: Spec, root: Path, spec_rel: str | None, out: TextIO) -> None:
    """Each lint finding as an annotation on its line (errors as errors), at most
    ANNOTATIONS_PER_KIND of each kind: GitHub shows only so many per step."""
    from .lint import lint_checkout

    findings = lint_checkout(spec, root, root / spec_rel if spec_rel else None, spec_rel or "")
    counts = {"error": 0, "warning": 0}
    for f in findings:
        counts[f.severity] += 1
        if counts[f.severity] <= ANNOTATIONS_PER_KIND:
            where = SpecError(f.message, where=Location(f.file, f.line, f.col))
            who = f"{f.layer}: " if f.layer else ""
            out.write(
                annotation(f.severity, f"{f.rule}: {who}{f.message} (fix: {f.hint})", where=where)
                + "\n"
            )


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
    event_name = env.get("GITHUB_EVENT_NAME") or None
    payload = read_event(env.get("GITHUB_EVENT_PATH"))
    plan = None
    if spec is not None:
        history = GitHistory(root)
        comparison = choose_comparison(
            history, event_name=event_name, payload=payload, base=inputs.base, head=inputs.head
        )
        try:  # Dockerfiles are read at both ends, and one may be broken at head
            plan = make_plan(
                root=root, spec=spec, spec_rel=spec_rel, comparison=comparison, history=history
            )
        except SpecInvalid as exc:
            spec_error = exc
    if plan is None or spec is None:
        assert spec_error is not None
        return _spec_failed(spec_error, spec, inputs, env, event_name, payload, out)
    spec = plan.spec or spec  # the spec at head, which may differ from the one on disk
    _annotate(list(spec.warnings), out)  # with what resolving its Dockerfiles found
    if inputs.lint:
        _lint_annotations(spec, root, spec_rel, out)
    if inputs.cache:
        from .cache import with_cache  # the registry client loads only with a cache

        plan = with_cache(plan, spec, inputs.cache, env=dict(env))
    if inputs.check_registry:
        from .registry_check import with_registry

        plan = with_registry(plan, spec, env=dict(env))
    if plan.cache_note:
        out.write(annotation("warning", plan.cache_note) + "\n")
    if comparison.mode == "all" and event_name in _COMPARING_EVENTS:
        out.write(annotation("warning", f"everything is rebuilt: {comparison.reason}") + "\n")

    plan_file = _write_file(
        _runner_file(env, "plan", spec.path),
        json.dumps(plan.to_json(), indent=2, ensure_ascii=True),
        what="the plan file in $RUNNER_TEMP",
    )
    bake = _write_bake_file(env, plan, spec, publish=inputs.publish)
    failed = None
    packed = stage_jobs(plan, spec, max_stages=inputs.max_stages, max_parallel=inputs.max_parallel)
    jobs_file = _runner_file(env, "jobs", spec.path, inputs.header)
    artifact = f"ci-layers-jobs-{_tag(spec.path, inputs.header)}"
    later = {  # the step's other outputs, as long as they will be
        "bake-file": str(bake or ""),
        "comment-file": str(_comment_path(env, spec.path, inputs.header)),
        "comment-id": "0" * 20,
        "jobs-file": str(jobs_file),
        "jobs-artifact": artifact,
    }
    try:
        result = action_outputs(
            plan,
            spec,
            packed=packed,
            plan_file=plan_file,
            artifact=artifact,
            extra=later,
            publish=inputs.publish,
            cache=inputs.cache,
            runners=inputs.runners,
        )
        outputs = result.outputs
        _write_file(
            jobs_file,
            json.dumps({"artifact": artifact, "jobs": result.jobs}, ensure_ascii=True),
            what="the jobs file in $RUNNER_TEMP",
        )
        outputs["jobs-file"] = str(jobs_file)
        outputs["jobs-artifact"] = artifact if result.compact else ""
        if result.shrunk:
            said = "; ".join(result.shrunk)
            out.write(
                annotation(
                    "notice",
                    f"{len(plan.affected)} layers' entries would pass GitHub's 1 MB of outputs "
                    f"for a job, so {said}",
                )
                + "\n"
            )
    except OutputTooLarge as exc:  # still say what is planned, in the summary and comment
        failed = exc
        outputs = {"has-changes": "true" if plan.affected else "false", "plan-file": str(plan_file)}
        out.write(annotation("error", str(exc)) + "\n")
    outputs["bake-file"] = str(bake) if bake else ""
    where = compare_link(env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY"))
    marker = marker_for(spec.path, inputs.header)
    body = plan_report(
        plan, marker=marker, limit=COMMENT_LIMIT, staging=packed, repository_url=where
    )
    outputs["comment-file"] = str(_write_comment_file(env, spec.path, inputs.header, body))
    if output_path:
        write_outputs(output_path, outputs)
    _log_plan(plan, packed, outputs, out)
    if len(plan.affected) > MATRIX_LIMIT:
        out.write(
            annotation(
                "warning",
                f"{len(plan.affected)} layers to rebuild: the 'matrix' output exceeds GitHub's "
                f"{MATRIX_LIMIT} jobs per matrix; build from the 'stages' output instead",
            )
            + "\n"
        )
    summary = plan_report(plan, max_bytes=SUMMARY_BYTES, staging=packed, repository_url=where)
    _summarize(env, summary, out)
    create = inputs.comment == "always" or bool(plan.affected)
    posted = _post(body, spec.path, inputs, env, event_name, payload, out, create=create)
    if output_path:
        write_outputs(output_path, {"comment-id": str(posted or "")})
    if failed is not None:
        return failed.exit_code
    if not _check_stage_jobs(env, root, inputs, len(packed), out):
        return 1
    if inputs.fail_on == "warning" and spec.warnings:
        out.write(f"failing: {len(spec.warnings)} warning(s) and fail-on is 'warning'\n")
        return 1
    return 0


_COMPARING_EVENTS = ("pull_request", "pull_request_target", "push", "merge_group")
EMPTY_OUTPUTS = {
    "has-changes": "false",
    "matrix": '{"include":[]}',
    "stages": "[]",
    "stage-count": "0",
    "affected": "[]",
    "plan-file": "",
    "bake-file": "",
    "comment-file": "",
    "jobs-file": "",
    "jobs-artifact": "",
}


def _tag(*names: str) -> str:
    """What a spec and a header are called in file and artifact names."""
    joined = "\0".join(names).encode("utf-8", "surrogateescape")
    return hashlib.sha256(joined).hexdigest()[:12]


def _runner_file(env: Mapping[str, str], kind: str, *names: str, suffix: str = ".json") -> Path:
    """A file in $RUNNER_TEMP named by what it is for (a spec, and a header): two steps of
    a job (one spec each) keep their own."""
    folder = Path(env.get("RUNNER_TEMP") or tempfile.gettempdir())
    return folder / f"ci-layers-{kind}-{_tag(*names)}{suffix}"


def _write_file(path: Path, text: str, *, what: str) -> Path:
    """`text` and a final newline in `path`; one that cannot be written stops the step."""
    try:
        path.write_text(text + "\n", encoding="utf-8", errors="replace")
    except OSError as exc:
        raise OutputWriteError(f"cannot write {what} ({path}): {exc.strerror}") from None
    return path


def _check_stage_jobs(
    env: Mapping[str, str], root: Path, inputs: ActionInputs, needed: int, out: TextIO
) -> bool:
    """False when the running workflow lacks a stage job this plan needs (an error
    annotation; a warning under `fail-on: never`)."""
    jobs = running_workflow(env, root)
    problem = (
        stage_jobs_problem(jobs, needed=needed, max_stages=inputs.max_stages) if jobs else None
    )
    if problem is None:
        return True
    severity, message = problem
    if severity == "error" and inputs.fail_on == "never":
        severity = "warning"
    out.write(annotation(severity, message) + "\n")
    return severity != "error"


def _write_comment_file(env: Mapping[str, str], spec_name: str, header: str, body: str) -> Path:
    """The comment's body, marker first, for a job that posts it elsewhere (a fork's pull
    request: `ci-layers comment` in a `workflow_run` job) or with another tool."""
    return _write_file(_comment_path(env, spec_name, header), body, what="the comment file")


def _comment_path(env: Mapping[str, str], spec_name: str, header: str) -> Path:
    return _runner_file(env, "comment", spec_name, header, suffix=".md")


def _write_bake_file(
    env: Mapping[str, str], plan: Plan, spec: Spec, *, publish: bool
) -> Path | None:
    """docker-bake.json for the affected Dockerfile images, beside the plan file, for
    docker/bake-action (`source: .`, `files:`); None when there are none to build."""
    if not any(spec.graph[n].dockerfile is not None for n in plan.affected):
        return None
    bake = json.dumps(bake_file(plan, spec, publish=publish), indent=2)
    return _write_file(_runner_file(env, "bake", spec.path), bake, what="the bake file")


def _spec_failed(
    error: SpecInvalid,
    spec: Spec | None,
    inputs: ActionInputs,
    env: Mapping[str, str],
    event_name: str | None,
    payload: Mapping[str, Any],
    out: TextIO,
) -> int:
    """A spec or Dockerfile that does not load: annotations, outputs a workflow can guard
    on, a summary, and the sticky comment (if there is one) says the plan is stale."""
    _annotate(error.problems, out)
    out.write(untrusted(str(error)) + "\n")  # names from the repository: no workflow commands
    pr = payload.get("pull_request")
    head = pr.get("head") if isinstance(pr, dict) else None
    sha = head.get("sha") if isinstance(head, dict) else None
    report = spec_error_report(
        error,
        repository_url=compare_link(env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY")),
        commit=str(sha or env.get("GITHUB_SHA") or ""),
    )
    name = spec.path if spec is not None else error.problems[0].where.file
    comment = f"{marker_for(name, inputs.header)}\n{report}"
    written = _write_comment_file(env, name, inputs.header, comment)
    if env.get("GITHUB_OUTPUT"):
        write_outputs(Path(env["GITHUB_OUTPUT"]), {**EMPTY_OUTPUTS, "comment-file": str(written)})
    _summarize(env, report, out)
    posted = _post(comment, name, inputs, env, event_name, payload, out, create=False)
    if env.get("GITHUB_OUTPUT"):
        write_outputs(Path(env["GITHUB_OUTPUT"]), {"comment-id": str(posted or "")})
    return 0 if inputs.fail_on == "never" else error.exit_code


def _summarize(env: Mapping[str, str], text: str, out: TextIO) -> None:
    """Append to the job summary, where the runner gave one; one that cannot be written
    is a warning, and the comment is still posted."""
    if env.get("GITHUB_STEP_SUMMARY"):
        path = Path(env["GITHUB_STEP_SUMMARY"])
        try:
            with path.open("a", encoding="utf-8", errors="replace") as f:
                f.write(text + "\n")
        except OSError as exc:
            why = f"cannot write $GITHUB_STEP_SUMMARY ({path}): {exc.strerror}"
            out.write(annotation("warning", why) + "\n")


def _log_plan(
    plan: Plan, packed: list[list[tuple[str, ...]]], outputs: Mapping[str, str], out: TextIO
) -> None:
    out.write(untrusted(plan_text(plan, staging=packed)) + "\n")
    out.write(
        f"has-changes={outputs['has-changes']} stage-count={outputs.get('stage-count', '-')}\n"
    )


def _post(
    body: str,
    spec_name: str,
    inputs: ActionInputs,
    env: Mapping[str, str],
    event_name: str | None,
    payload: Mapping[str, Any],
    out: TextIO,
    *,
    create: bool,
) -> int | None:
    """Create or update the pull request's sticky comment for spec `spec_name` (the
    event's pull request, or `pr-number`'s); the comment's id, if written."""
    pr = payload.get("pull_request")
    number = pr.get("number") if isinstance(pr, dict) else None
    if inputs.pr_number is not None:
        number = inputs.pr_number
    elif event_name not in ("pull_request", "pull_request_target"):
        return None
    if inputs.comment == "never":
        return None
    if not isinstance(number, int) or isinstance(number, bool):  # true is no PR number
        return None
    repo_field = payload.get("repository")
    repository = env.get("GITHUB_REPOSITORY") or (
        repo_field.get("full_name") if isinstance(repo_field, dict) else None
    )
    if not inputs.token or not isinstance(repository, str) or not repository:
        out.write(annotation("warning", "no github-token or repository: no PR comment") + "\n")
        return None
    api_url = env.get("GITHUB_API_URL") or "https://api.github.com"
    if not re.match(r"https?://[^/\s]+", api_url):
        why = f"GITHUB_API_URL {api_url!r} is no http(s) URL"
        out.write(annotation("warning", f"PR comment not written: {why}") + "\n")
        return None
    marker = marker_for(spec_name, inputs.header)
    if not body.startswith(marker):
        body = f"{marker}\n{body}"
    result = upsert_comment(
        api_url=api_url,
        token=inputs.token,
        repository=repository,
        number=number,
        body=body,
        marker=marker,
        create=create,
    )
    if result.warning:
        out.write(annotation("warning", f"PR comment not written: {result.warning}") + "\n")
    else:
        copies = f", {result.deleted_copies} duplicate(s) removed" if result.deleted_copies else ""
        out.write(f"PR comment {result.action}{copies}: {result.url or '-'}\n")
    return result.id


def post_comment_file(
    *,
    env: Mapping[str, str],
    number: str,
    body_file: Path,
    head_sha: str,
    create: bool,
    out: TextIO,
) -> int:
    """`ci-layers comment`: post a comment-file written by a run that could not (a fork's
    pull request). The file and the number come from that run, which the pull request's
    code controlled: its text is the fork's to choose, so what is checked is where it
    goes (the pull request whose head is `head_sha`, the workflow_run event's, which
    GitHub sets), that it is a ci-layers comment within GitHub's size, and that it
    notifies nobody. A pull request that moved on since is a warning: its newer run
    comments."""
    pr = _pr_number(number, what="--pr")
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", head_sha):
        raise UsageError(f"--head-sha must be a full commit id, not {head_sha!r}")
    try:
        raw = body_file.read_bytes()
    except OSError as exc:
        raise UsageError(f"--body-file {body_file}: {exc.strerror}") from None
    marker, _, rest = raw.decode("utf-8", "replace").rstrip("\n").partition("\n")
    if not MARKER.fullmatch(marker):
        raise UsageError(
            f"{body_file}:1: not a ci-layers comment (the first line must be its "
            "'<!-- ci-layers:plan … -->' marker)"
        )
    body = f"{marker}\n{_no_mentions(rest)}"
    if len(body) > COMMENT_LIMIT:
        raise UsageError(
            f"{body_file}: {len(body):,} characters, over the {COMMENT_LIMIT:,} a comment takes"
        )
    token, repository = env.get("GITHUB_TOKEN"), env.get("GITHUB_REPOSITORY")
    if not token or not repository:
        raise UsageError("ci-layers comment needs $GITHUB_TOKEN and $GITHUB_REPOSITORY")
    result = upsert_comment(
        api_url=env.get("GITHUB_API_URL") or "https://api.github.com",
        token=token,
        repository=repository,
        number=pr,
        body=body,
        marker=marker,
        create=create,
        head_sha=head_sha,
    )
    if result.warning:
        kind = "warning" if result.action == "stale" else "error"
        out.write(annotation(kind, f"PR comment not written: {result.warning}") + "\n")
        return 0 if result.action == "stale" else 1
    out.write(f"PR comment {result.action}: {result.url or '-'}\n")
    if env.get("GITHUB_OUTPUT"):
        write_outputs(Path(env["GITHUB_OUTPUT"]), {"comment-id": str(result.id or "")})
    return 0


def _no_mentions(text: str) -> str:
    """Every `@` GitHub could read as a mention broken, as report._md breaks them: one
    after anything but an ASCII letter, digit or `_` (GitHub's rule is ASCII `\\W@`, on
    the text with entities decoded, so `&#64;` counts too). `image@sha256:…` stays."""
    text = re.sub(r"&(?:#0*64|#x0*40|commat);", "@", text, flags=re.IGNORECASE)
    return re.sub(r"(?<![A-Za-z0-9_])@(?!\u200b)", "@\u200b", text)
