"""The `ci-layers` command: parse arguments, call one function per subcommand, and turn
errors into text once, here.

Exit codes: 0 ok, 1 a failed operation (git, I/O), 2 a bad spec or bad arguments,
3 an internal error (traceback written to a log file), 130 interrupted (SIGINT), 143
terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import json
import os
import signal
import stat
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TextIO

from . import __version__
from .atomic import write_atomic
from .changes import Comparison, GitHistory, changes_between, choose_comparison, read_event
from .comment import plan_report
from .discover import resolve_dockerfiles
from .docker import bake_file
from .errors import CiLayersError, SpecError, SpecInvalid, Terminated, UsageError
from .explain import explain_layer
from .gcpause import paused_gc
from .jsonout import dumps_indented
from .keys import KEY_VERSION, compute_keys
from .plan import make_plan
from .platforms import DEFAULT_PLATFORM, PlatformError, parse_platform
from .repo import RepoFiles, find_repo_root, read_at, source_of, tree_files, worktree_files
from .report import (
    annotation,
    graph_dot,
    graph_json,
    graph_mermaid,
    graph_text,
    plan_text,
    untrusted,
)
from .resolver import DependencyResolver
from .sources import broken_links
from .spec import (
    DEFAULT_BAKE_FILES,
    DEFAULT_SPEC,
    Spec,
    built_for,
    load_spec,
    parse_duration,
    parse_spec,
    schema,
)

__all__ = ["main"]


# --- subcommands ---------------------------------------------------------------------


def _emit_json(data: Any, out: TextIO) -> None:
    # ASCII escapes keep the output valid JSON whatever the file names' bytes are.
    # One write: json.dump writes each token on its own, which costs more than encoding
    # a plan of thousands of layers.
    out.write(dumps_indented(data) + "\n")


def cmd_validate(*, spec: Spec, out: TextIO) -> int:
    n = len(spec.layers)
    m = len(spec.images) + sum(1 for x in spec.layers.values() if x.dockerfile is not None)
    out.write(f"{spec.path}: ok, {n} layer{'s' * (n != 1)}, {m} image{'s' * (m != 1)}\n")
    return 0


def cmd_schema(*, out: TextIO) -> int:
    _emit_json(schema(), out)
    return 0


def cmd_graph(*, spec: Spec, fmt: str, out: TextIO) -> int:
    if fmt == "json":
        _emit_json(graph_json(spec.graph), out)
    else:
        render = {"text": graph_text, "mermaid": graph_mermaid, "dot": graph_dot}[fmt]
        out.write(render(spec.graph) + "\n")
    return 0


def cmd_order(*, spec: Spec, targets: list[str], fmt: str, out: TextIO) -> int:
    order = DependencyResolver(spec.graph).build_order(targets)
    if fmt == "json":
        _emit_json({"targets": targets, "order": order}, out)
    else:
        out.write("\n".join(f"{i}. {n}" for i, n in enumerate(order, 1)) + "\n")
    return 0


def cmd_affected(*, spec: Spec, changed: list[str], fmt: str, out: TextIO) -> int:
    resolver = DependencyResolver(spec.graph)
    affected = resolver.rebuild_affected_layers(changed)
    stages = resolver.stages(affected)
    if fmt == "json":
        _emit_json({"changed": changed, "affected": affected, "stages": stages}, out)
        return 0
    total = len(spec.graph)
    out.write(f"{len(affected)} of {total} layers to rebuild, in {len(stages)} stage(s):\n")
    for i, stage in enumerate(stages, 1):
        out.write(f"  stage {i}: {', '.join(stage)}\n")
    return 0


def cmd_keys(*, spec: Spec, files: RepoFiles, fmt: str, recipe: bool, out: TextIO) -> int:
    keys = compute_keys(spec, files)
    if fmt == "json" or recipe:  # the recipe is only shown as JSON
        layers = {}
        for name, k in keys.items():
            layers[name] = {"key": k.digest, **({"recipe": k.recipe} if recipe else {})}
        _emit_json({"version": KEY_VERSION, "layers": layers}, out)
    else:
        width = max((len(n) for n in keys), default=0)
        for name, k in keys.items():
            out.write(f"{name.ljust(width)}  {k.digest}\n")
    return 0


def cmd_explain(
    *,
    spec: Spec,
    root: Path,
    files: RepoFiles,
    spec_rel: str | None,
    layer: str,
    against: str,
    out: TextIO,
) -> int:
    builds = _builds(spec, layer)
    if len(builds) > 1:
        raise UsageError(
            f"'{layer}' is built for several platforms: explain one build of it ("
            + ", ".join(f"'{b}'" for b in builds)
            + ")"
        )
    layer = builds[0]
    DependencyResolver(spec.graph).build_order(layer)  # an unknown name fails here, clearly
    old_files = tree_files(root, against)
    if spec_rel is None:
        old_spec = spec  # a spec kept outside the repository is the same at both commits
    else:
        text = read_at(root, against, spec_rel)
        if text is None:
            out.write(f"{spec_rel} does not exist at {against}: every layer is new\n")
            return 0
        old_spec = parse_spec(text, filename=f"{against}:{spec_rel}")
    old_spec = resolve_dockerfiles(old_spec, old_files)
    new_files = files
    comparison = Comparison(against, None, "working-tree", f"the working tree vs {against}")
    lines = explain_layer(
        layer,
        spec=spec,
        keys=compute_keys(spec, new_files),
        old_spec=old_spec,
        old_keys=compute_keys(old_spec, old_files),
        changes=changes_between(old_files, new_files, comparison),
    )
    out.write(f"{layer}: working tree vs {against}\n")
    out.write("\n".join(lines) + "\n")
    return 0


def cmd_plan(
    *,
    spec: Callable[[], Spec],
    root: Path,
    spec_rel: str | None,
    base: str | None,
    head: str | None,
    event_name: str | None,
    payload: dict[str, Any],
    fmt: str,
    out: TextIO,
    err: TextIO,
    cache: str | None = None,
    publish: bool = False,
    check_registry: bool = False,
) -> int:
    """`spec` loads the spec on disk, which the plan needs only where the commit it
    plans has none (the working tree, a spec outside the repository)."""
    history = GitHistory(root)
    comparison = choose_comparison(
        history, event_name=event_name, payload=payload, base=base, head=head
    )
    plan = make_plan(
        root=root, spec=spec, spec_rel=spec_rel, comparison=comparison, history=history
    )
    planned = plan.spec or spec()  # the spec at head, its Dockerfiles resolved
    for warning in planned.warnings:
        _report(warning, err)
    if cache:
        from .cache import with_cache  # the registry client loads only with a cache

        plan = with_cache(plan, planned, cache)
    if check_registry:
        from .registry_check import with_registry  # the registry client loads only here

        plan = with_registry(plan, planned)
    if plan.cache_note:
        err.write(f"warning: {plan.cache_note}\n")
    if fmt == "bake":
        others = [n for n in plan.affected if planned.graph[n].dockerfile is None]
        if others:
            err.write(
                f"note: bake covers Dockerfile images only; {len(others)} spec layer(s) to "
                f"rebuild are not in it: {', '.join(others)}\n"
            )
        _emit_json(bake_file(plan, planned, publish=publish), out)
    elif fmt == "json":
        _emit_json(plan.to_json(), out)
    elif fmt == "markdown":
        out.write(plan_report(plan) + "\n")
    else:
        out.write(plan_text(plan) + "\n")
    return 0


def cmd_promote(
    args: argparse.Namespace,
    *,
    root: Path,
    spec_path: Path,
    spec_rel: str | None,
    shown: str,
    out: TextIO,
    err: TextIO,
) -> int:
    """The head commit's images, each promoted from its hand-off tag (promote.py)."""
    from .promote import promote

    event_name = args.event_name or (os.environ.get("GITHUB_EVENT_NAME") if args.event else None)
    history = GitHistory(root)
    comparison = choose_comparison(
        history,
        event_name=event_name,
        payload=read_event(args.event),
        base=args.base,
        head=args.head,
    )
    plan = make_plan(
        root=root,
        spec=functools.partial(load_spec, spec_path, display=shown),
        spec_rel=spec_rel,
        comparison=comparison,
        history=history,
    )
    spec = plan.spec or load_spec(spec_path, display=shown)
    for warning in spec.warnings:
        _report(warning, err)
    return promote(
        plan,
        spec,
        cache=args.cache,
        dry_run=args.dry_run,
        allow_missing=args.allow_missing,
        env=None,
        out=out,
    )


def cmd_impacted(
    *,
    spec: Spec,
    files: Callable[[], RepoFiles],
    args: argparse.Namespace,
    store: Path,
    out: TextIO,
) -> int:
    """Which layers and images are built on a layer, a base image or a blob."""
    from .impacted import impact_plan, impacted_by_base, impacted_by_digest, impacted_by_layer

    asked = [a for a in (args.layer, args.base_image, args.digest) if a]
    if len(asked) != 1:
        raise UsageError("impacted: give exactly one of --layer, --base-image, --digest")
    keys = None
    if args.layer:
        impact = impacted_by_layer(spec, args.layer)
    elif args.base_image:
        impact = impacted_by_base(spec, args.base_image)
    else:
        from .oci.digest import Digest
        from .oci.manifest import tags_holding
        from .oci.store import OciStore

        digest = Digest.parse(args.digest.strip())
        if not store.is_dir():
            raise UsageError(f"--digest: no store at {store} to look the digest up in (--store)")
        keys = compute_keys(spec, files())
        oci = OciStore(store)
        impact = impacted_by_digest(spec, str(digest), keys, lambda _d: tags_holding(oci, digest))
    if args.plan:
        plan = impact_plan(spec, keys or compute_keys(spec, files()), impact)
        if args.format == "json":
            _emit_json(plan.to_json(), out)
        elif args.format == "markdown":
            out.write(plan_report(plan) + "\n")
        else:
            out.write(plan_text(plan) + "\n")
        return 0
    if args.format == "json":
        _emit_json(impact.to_json(), out)
        return 0
    if not impact.direct:
        out.write(f"nothing is built on {impact.query}\n")
        return 0
    out.write(
        f"impacted by {impact.query}: {len(impact.direct)} layer(s) directly, "
        f"{len(impact.layers)} in all, {len(impact.images)} image(s)\n"
    )
    out.write("  directly: " + ", ".join(impact.direct) + "\n")
    out.write("  layers (build order): " + ", ".join(impact.layers) + "\n")
    if impact.images:
        out.write("  images: " + ", ".join(impact.images) + "\n")
    return 0


def cmd_lint(
    *, spec: Spec, root: Path, spec_path: Path, shown: str, fmt: str, fail_on: str, out: TextIO
) -> int:
    """Findings on every layer; exit 1 when one is at least as bad as `fail_on`."""
    from .lint import lint_checkout

    findings = lint_checkout(spec, root, spec_path if spec_path.is_file() else None, shown)
    if fmt == "json":
        _emit_json({"findings": [f.to_json() for f in findings]}, out)
    else:
        for f in findings:
            out.write(str(f) + "\n")
        errors = sum(1 for f in findings if f.severity == "error")
        out.write(f"{len(findings)} findings: {errors} errors, {len(findings) - errors} warnings\n")
    worst = {"error": ("error",), "warning": ("error", "warning"), "never": ()}[fail_on]
    return 1 if any(f.severity in worst for f in findings) else 0


def cmd_gha(args: argparse.Namespace, *, out: TextIO) -> int:
    """The action's entry point: everything comes from the environment the runner set."""
    env = dict(os.environ)
    spec_arg = args.spec or env.get("INPUT_SPEC") or None
    repo = args.repo
    if repo == "." and env.get("INPUT_WORKING_DIRECTORY"):
        repo = env["INPUT_WORKING_DIRECTORY"]
    from .gha import run_action  # PyGithub takes 0.2 s to import; only the action needs it

    root, spec_path, spec_rel = _locate(repo, spec_arg)
    shown = _shown(spec_path, spec_rel)
    try:
        spec, problem = load_spec(spec_path, display=shown), None
    except SpecInvalid as exc:
        spec, problem = None, exc
    return run_action(env=env, root=root, spec=spec, spec_rel=spec_rel, spec_error=problem, out=out)


def cmd_demo(*, out: TextIO) -> int:
    from .demo import run_demo  # creates git repositories; only the demo needs it

    return run_demo(out=out)


# --- argument parsing ------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--spec",
        metavar="PATH",
        help=f"the spec file (default: {DEFAULT_SPEC} at the repo root; relative to DIR)",
    )
    common.add_argument(
        "-C", "--repo", metavar="DIR", default=".", help="the repository (default: current dir)"
    )
    p = argparse.ArgumentParser(
        prog="ci-layers",
        description="Plan the minimal set of container layers to rebuild, in order, and "
        "build them.",
    )
    p.add_argument("--version", action="version", version=f"ci-layers {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser(
        "validate", parents=[common], help="check the spec; every problem with file:line"
    )
    sub.add_parser("schema", help="print the JSON Schema of the spec (for editors)")
    g = sub.add_parser("graph", parents=[common], help="show the layer DAG")
    g.add_argument("--format", choices=["text", "json", "mermaid", "dot"], default="text")
    o = sub.add_parser("order", parents=[common], help="what a target needs, in build order")
    o.add_argument("targets", nargs="+", metavar="TARGET")
    o.add_argument("--format", choices=["text", "json"], default="text")
    a = sub.add_parser("affected", parents=[common], help="layers to rebuild when LAYERs change")
    a.add_argument("changed", nargs="+", metavar="LAYER")
    a.add_argument("--format", choices=["text", "json"], default="text")
    k = sub.add_parser("keys", parents=[common], help="content-addressed key of every layer")
    k.add_argument("--format", choices=["text", "json"], default="text")
    k.add_argument(
        "--recipe", action="store_true", help="include each key's inputs (implies --format json)"
    )
    e = sub.add_parser("explain", parents=[common], help="why LAYER's key differs from REF's")
    e.add_argument("layer", metavar="LAYER")
    e.add_argument("--against", metavar="REF", required=True, help="commit to compare with")
    planning = argparse.ArgumentParser(add_help=False)
    planning.add_argument(
        "--base", metavar="REF", help="compare with this commit (merge-base with --head)"
    )
    planning.add_argument(
        "--head", metavar="REF", help="the commit to plan for (default: working tree)"
    )
    planning.add_argument(
        "--event", metavar="FILE", help="a GitHub event payload (GITHUB_EVENT_PATH)"
    )
    planning.add_argument(
        "--cache",
        metavar="REGISTRY/REPO",
        help="mark affected layers whose key is built there (ci-layers-<key>) as reused",
    )
    planning.add_argument(
        "--check-registry",
        action="store_true",
        help="mark affected Dockerfile images whose hand-off tag (<image>:ci-layers-<key>) "
        "their repository holds as reused: no job",
    )
    planning.add_argument(
        "--event-name",
        metavar="NAME",
        help="the event's name, with --event (default: $GITHUB_EVENT_NAME)",
    )
    what = "what to rebuild, and why"
    pl = sub.add_parser(
        "plan",
        parents=[common, planning],
        help=what,
        description=f"{what}: the working tree vs HEAD by default; with --base, vs its "
        "merge-base with --head (or the working tree); with --event/--event-name, the "
        "commits a GitHub event names.",
    )
    pl.add_argument(
        "--format",
        choices=["text", "json", "markdown"],
        default="text",
        help="text for people, json (stable, documented in the README), markdown",
    )
    bk = sub.add_parser(
        "bake",
        parents=[common, planning],
        help="docker-bake.json (to stdout) building the affected Dockerfile images in one call",
    )
    bk.add_argument(
        "--publish",
        action="store_true",
        help="also tag the images' release tags (default: only ci-layers-<key> hand-off tags)",
    )
    pr = sub.add_parser(
        "promote",
        parents=[common, planning],
        help="put every image's release tags on the build its hand-off tag names (no rebuild)",
    )
    pr.add_argument("--dry-run", action="store_true", help="say what would be put, put nothing")
    pr.add_argument(
        "--allow-missing",
        action="store_true",
        help="promote what is built and succeed when some image is not (default: fail)",
    )
    sub.add_parser(
        "gha", parents=[common], help="run as the GitHub Action (inputs from INPUT_* variables)"
    )
    cm = sub.add_parser(
        "comment",
        help="post a comment file (the action's comment-file) as the sticky PR comment",
        description="For a fork's pull request, whose run has a read-only token: a "
        "workflow_run job posts the planning run's comment-file with its own token "
        "($GITHUB_TOKEN, $GITHUB_REPOSITORY, $GITHUB_API_URL).",
    )
    cm.add_argument("--pr", required=True, metavar="N", help="the pull request's number")
    cm.add_argument("--body-file", required=True, metavar="FILE", help="the comment-file")
    cm.add_argument(
        "--head-sha",
        required=True,
        metavar="SHA",
        help="the commit the planning run was for (workflow_run.head_sha): the pull request "
        "must still be at it",
    )
    cm.add_argument(
        "--update-only",
        action="store_true",
        help="only edit an existing comment (a plan with nothing to rebuild, comment: auto)",
    )
    sub.add_parser("demo", help="run on the built-in example and show what ci-layers does")
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument(
        "--store", metavar="DIR", help="the OCI image layout (default: .ci-layers/store in DIR)"
    )
    b = sub.add_parser(
        "build",
        parents=[common, store],
        help="build layers (and what they need) into the store, reusing every key it has",
    )
    b.add_argument("targets", nargs="*", metavar="TARGET", help="layers (default: all)")
    b.add_argument("--job", metavar="JSON", help="a matrix job's entry ($JOB): its layers")
    b.add_argument(
        "--platform",
        metavar="OS/ARCH",
        help="build the layers' builds for this platform, which must be this machine's "
        "(RUN runs natively; default: this machine's)",
    )
    b.add_argument(
        "--compression",
        choices=["gzip", "zstd", "none"],
        default="gzip",
        help="of the layers built (default: gzip)",
    )
    b.add_argument("--runtime", metavar="PATH", help="the OCI runtime for `run` (default: runc)")
    b.add_argument(
        "--max-root-size",
        metavar="SIZE",
        help="what one extracted parent root may take, its files' sizes as their headers "
        "say (512M, 100G; default 64G): a guard against layers that unpack to terabytes",
    )
    b.add_argument(
        "--run-timeout",
        metavar="DURATION",
        help="how long a layer's `run` may take when it sets no `timeout:` (90s, 15m, 2h; "
        "default 1h)",
    )
    b.add_argument(
        "--cache",
        metavar="REGISTRY/REPO",
        help="find layers built elsewhere there (tagged ci-layers-<key>), pull parents from it",
    )
    b.add_argument(
        "--push", action="store_true", help="push each layer built here to --cache (new blobs only)"
    )
    b.add_argument(
        "--no-pull",
        action="store_true",
        help="never pull a missing `from:` base image from its registry (it must be in the store)",
    )
    b.add_argument(
        "--publish",
        action="store_true",
        help="also push the spec's `images:` tags where they name (e.g. on the default branch)",
    )
    b.add_argument(
        "--epoch",
        metavar="SECONDS",
        help="clamp mtimes and set created to this (default: $SOURCE_DATE_EPOCH, else 0)",
    )
    x = sub.add_parser(
        "export", parents=[common, store], help="write an image of the store as an OCI archive"
    )
    x.add_argument("image", metavar="IMAGE", help="a tag in the store, or a layer name")
    x.add_argument("--oci-archive", metavar="FILE", required=True, type=Path)
    sq = sub.add_parser(
        "squash",
        parents=[common, store],
        help="optimize_layer_stack: fewer layers in a published image, caching kept",
    )
    sq.add_argument("image", metavar="IMAGE", help="a tag in the store, or a layer name")
    sq.add_argument("--max-layers", type=int, required=True, metavar="N", help="at most N (<= 125)")
    sq.add_argument("--tag", metavar="T", help="its tag (default: IMAGE's tag + -squashed)")
    sq.add_argument(
        "--history",
        type=int,
        default=50,
        metavar="N",
        help="commits to learn change rates from (default 50)",
    )
    sq.add_argument("--compression", choices=["gzip", "zstd", "none"], default="gzip")
    li = sub.add_parser(
        "lint", parents=[common], help="what breaks cache reuse: unpinned installs, curl | sh, …"
    )
    li.add_argument("--format", choices=["text", "json"], default="text")
    li.add_argument(
        "--fail-on",
        choices=["error", "warning", "never"],
        default="error",
        help="exit 1 on findings this bad or worse (default: error)",
    )
    gc = sub.add_parser(
        "gc",
        parents=[common, store],
        help="delete what no tag, current key or --keep rule reaches (store, and --cache)",
    )
    gc.add_argument("--dry-run", action="store_true", help="say what would go, delete nothing")
    gc.add_argument(
        "--keep-last", type=int, default=0, metavar="N", help="keep the N newest layer records"
    )
    gc.add_argument(
        "--keep-days", type=float, metavar="D", help="keep layer records written in the last D days"
    )
    gc.add_argument(
        "--cache", metavar="REGISTRY/REPO", help="also delete its stale ci-layers-<key> tags"
    )
    im = sub.add_parser(
        "impacted",
        parents=[common, store],
        help="which layers and images are built on a layer, a base image or a blob",
    )
    im.add_argument("--layer", metavar="NAME", help="a layer of the spec")
    im.add_argument(
        "--base-image", metavar="REF", help="an external base (any spelling; no tag: all)"
    )
    im.add_argument(
        "--digest", metavar="SHA256", help="a manifest, config, blob or diff_id in the store"
    )
    im.add_argument("--plan", action="store_true", help="print the plan that rebuilds them all")
    im.add_argument("--format", choices=["text", "json", "markdown"], default="text")
    cache = argparse.ArgumentParser(add_help=False)
    cache.add_argument(
        "--cache", metavar="REGISTRY/REPO", help="where layers' images are (ci-layers-<key>)"
    )
    pu = sub.add_parser(
        "pull",
        parents=[common, store, cache],
        help="copy an image from a registry into the store, verified",
    )
    pu.add_argument("image", metavar="IMAGE", help="REGISTRY/REPO:TAG or @DIGEST, or a layer name")
    pu.add_argument("--tag", metavar="NAME", help="its name in the store (default: IMAGE)")
    ps = sub.add_parser(
        "push",
        parents=[common, store, cache],
        help="copy an image of the store to a registry, only the blobs it lacks",
    )
    ps.add_argument("image", metavar="IMAGE", help="a tag in the store, or a layer name")
    ps.add_argument("--to", metavar="REF", help="REGISTRY/REPO:TAG (default: where IMAGE names)")
    return p


def _locate(repo: str, spec: str | None) -> tuple[Path, Path, str | None]:
    """(repository root, spec path, spec path relative to the root or None if outside)."""
    start = Path(repo).resolve()
    if not start.is_dir():
        raise UsageError(f"-C {repo}: no such directory")
    root = find_repo_root(start) or start
    # resolve() follows a symlinked spec to the file git stores
    given = (start / spec if spec else root / DEFAULT_SPEC).absolute()
    spec_path = given.resolve()
    try:
        rel: str | None = spec_path.relative_to(root).as_posix()
    except ValueError:
        rel = None
    if not spec and not spec_path.exists() and (bake := _zero_config(root)) is not None:
        return root, bake, None
    if rel is None and given.is_relative_to(root):
        # a link a pull request commits must not make ci-layers read a file of the runner
        raise UsageError(
            f"{given.relative_to(root)} is a link that leaves the repository: a spec "
            "inside it is read inside it (pass --spec with the outside path to mean it)"
        )
    return root, spec_path, rel


_ZERO_CONFIG: dict[Path, str] = {}  # a spec written for bake files: what it is said to be


def _zero_config(root: Path) -> Path | None:
    """With no ci-layers.yaml, the bake files Docker itself would read at the root, as
    a spec of one `bake:` entry (kept outside the repository: the same at both ends of
    a comparison; each end reads its own bake files)."""
    found = [name for name in DEFAULT_BAKE_FILES if (root / name).is_file()]
    if not found:
        return None
    text = "version: 1\nbake:\n  - files: [" + ", ".join(json.dumps(f) for f in found) + "]\n"
    folder = _private_dir() / hashlib.sha256(text.encode()).hexdigest()[:16]
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / DEFAULT_SPEC
    if not path.is_file() or path.read_text() != text:
        write_atomic(path, text.encode(), durable=False)
    _ZERO_CONFIG[path] = f"{', '.join(found)} (no {DEFAULT_SPEC}: the bake files are the spec)"
    return path


def _private_dir() -> Path:
    """This user's own folder in the shared temporary folder: made by us, not a link,
    readable by nobody else; else a fresh one."""
    folder = Path(tempfile.gettempdir()) / f"ci-layers-bake-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(folder)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077:
            return folder
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="ci-layers-bake-"))


def _shown(spec_path: Path, spec_rel: str | None) -> str:
    if spec_path in _ZERO_CONFIG:
        return _ZERO_CONFIG[spec_path]
    return spec_rel if spec_rel is not None else str(spec_path)


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.command == "schema":
        return cmd_schema(out=out)
    if args.command == "demo":
        return cmd_demo(out=out)
    if args.command == "gha":
        return cmd_gha(args, out=out)
    if args.command == "comment":
        from .gha import post_comment_file  # PyGithub loads only to comment

        return post_comment_file(
            env=dict(os.environ),
            number=args.pr,
            body_file=Path(args.body_file),
            head_sha=args.head_sha,
            create=not args.update_only,
            out=out,
        )
    root, spec_path, spec_rel = _locate(args.repo, args.spec)
    shown = _shown(spec_path, spec_rel)
    if args.command in ("pull", "push"):
        return _transfer_command(args, root=root, spec_path=spec_path, shown=shown, out=out)
    if args.command == "promote":
        return cmd_promote(
            args, root=root, spec_path=spec_path, spec_rel=spec_rel, shown=shown, out=out, err=err
        )
    if args.command in ("plan", "bake"):
        event_name = args.event_name
        if event_name and not args.event:
            raise UsageError(f"--event-name {event_name} needs --event FILE (the event payload)")
        if args.event and not event_name:
            event_name = os.environ.get("GITHUB_EVENT_NAME")
            if not event_name:
                raise UsageError("--event needs --event-name (or $GITHUB_EVENT_NAME)")
        return cmd_plan(
            spec=functools.partial(load_spec, spec_path, display=shown),
            root=root,
            spec_rel=spec_rel,
            base=args.base,
            head=args.head,
            event_name=event_name,
            payload=read_event(args.event),
            fmt="bake" if args.command == "bake" else getattr(args, "format", "text"),
            out=out,
            err=err,
            cache=args.cache,
            publish=getattr(args, "publish", False),
            check_registry=args.check_registry,
        )
    spec = load_spec(spec_path, display=shown)

    @functools.cache
    def working_tree() -> RepoFiles:
        # one snapshot per command: writing the working tree as a git tree is not cheap
        return worktree_files(root)

    if spec.dockerfile_rules or spec.bake:
        spec = resolve_dockerfiles(spec, working_tree())
    for warning in spec.warnings:
        _report(warning, err)
    if args.command in ("validate", "build") and (
        problems := broken_links(spec.layers.values(), working_tree())
    ):
        raise SpecInvalid(problems)  # Docker's COPY fails on them; build would copy a link
    fmt = getattr(args, "format", "text")
    if args.command in ("build", "export", "gc", "squash"):
        return _build_commands(
            args, spec=spec, root=root, spec_rel=spec_rel, files=working_tree, out=out, err=err
        )
    match args.command:
        case "validate":
            return cmd_validate(spec=spec, out=out)
        case "graph":
            return cmd_graph(spec=spec, fmt=fmt, out=out)
        case "order":
            targets = [b for t in args.targets for b in _builds(spec, t)]
            return cmd_order(spec=spec, targets=targets, fmt=fmt, out=out)
        case "affected":
            changed = [b for t in args.changed for b in _builds(spec, t)]
            return cmd_affected(spec=spec, changed=changed, fmt=fmt, out=out)
        case "lint":
            return cmd_lint(
                spec=spec,
                root=root,
                spec_path=spec_path,
                shown=shown,
                fmt=fmt,
                fail_on=args.fail_on,
                out=out,
            )
        case "impacted":
            where = Path(args.store) if args.store else root / ".ci-layers" / "store"
            return cmd_impacted(spec=spec, files=working_tree, args=args, store=where, out=out)
        case "keys":
            return cmd_keys(spec=spec, files=working_tree(), fmt=fmt, recipe=args.recipe, out=out)
        case "explain":
            return cmd_explain(
                spec=spec,
                root=root,
                files=working_tree(),
                spec_rel=spec_rel,
                layer=args.layer,
                against=args.against,
                out=out,
            )
    raise AssertionError(args.command)


def _transfer_command(
    args: argparse.Namespace, *, root: Path, spec_path: Path, shown: str, out: TextIO
) -> int:
    """`pull` and `push`: a layer name needs the spec (for its key); a reference does not,
    so they also work where there is no spec."""
    from .build.command import cmd_pull, cmd_push

    keys = None
    if spec_path.exists() and "/" not in args.image and ":" not in args.image:
        spec = load_spec(spec_path, display=shown)
        args.image = spec.image_named(args.image)
        if args.image in spec.layers:
            files = worktree_files(root)
            if spec.dockerfile_rules or spec.bake:
                spec = resolve_dockerfiles(spec, files)
            keys = {
                n: k.digest
                for n, k in compute_keys(built_for(spec, _host_platform()), files).items()
            }
    store = Path(args.store) if args.store else root / ".ci-layers" / "store"
    if args.command == "pull":
        return cmd_pull(
            store=store, image=args.image, tag=args.tag, cache=args.cache, keys=keys, out=out
        )
    return cmd_push(store=store, image=args.image, to=args.to, cache=args.cache, keys=keys, out=out)


def _build_commands(
    args: argparse.Namespace,
    *,
    spec: Spec,
    root: Path,
    spec_rel: str | None,
    files: Callable[[], RepoFiles],
    out: TextIO,
    err: TextIO,
) -> int:
    from .build.command import cmd_build, cmd_export  # the build path loads only here
    from .build.rootfs import MAX_ROOT_BYTES
    from .build.run import DEFAULT_RUN_TIMEOUT

    store = Path(args.store) if args.store else root / ".ci-layers" / "store"
    planned, spec = spec, built_for(spec, _host_platform())
    if args.command in ("squash", "export"):
        args.image = spec.image_named(args.image)
    if args.command == "squash":
        from .build.command import cmd_squash
        from .build.squash import key_history

        return cmd_squash(
            store=store,
            image=args.image,
            spec=spec,
            keys={n: k.digest for n, k in compute_keys(spec, files()).items()},
            max_layers=args.max_layers,
            tag=args.tag,
            history=key_history(root, spec_rel, args.history) if spec_rel else ({}, 0),
            compression=args.compression,
            out=out,
        )
    if args.command == "gc":
        from .build.command import cmd_gc

        # a cache is shared by every platform's machines: each one's keys are current
        platforms = {DEFAULT_PLATFORM, _host_platform()}
        platforms |= {p for x in planned.layers.values() if x.platform for p in [x.platform]}
        current = {
            k.digest
            for p in sorted(platforms)
            for k in compute_keys(built_for(planned, p), files()).values()
        }
        return cmd_gc(
            store=store,
            keys=sorted(current),
            keep_last=args.keep_last,
            keep_days=args.keep_days,
            cache=args.cache,
            dry_run=args.dry_run,
            out=out,
        )
    if args.command == "export":
        keys = None
        if args.image in spec.layers:
            keys = {n: k.digest for n, k in compute_keys(spec, files()).items()}
        return cmd_export(
            store=store, image=args.image, archive=args.oci_archive, keys=keys, out=out
        )
    epoch_text = args.epoch if args.epoch is not None else os.environ.get("SOURCE_DATE_EPOCH", "0")
    if not epoch_text.isdigit():
        raise UsageError(f"epoch '{epoch_text}' is not a number of seconds (SOURCE_DATE_EPOCH)")
    revision, source = source_of(root)
    if os.environ.get("GITHUB_REPOSITORY"):
        server = os.environ.get("GITHUB_SERVER_URL", "https://github.com")
        source = f"{server}/{os.environ['GITHUB_REPOSITORY']}"
    annotations = {
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.source": source,
    }
    try:
        log: IO[bytes] | None = err.buffer if err.fileno() >= 0 else None
    except (AttributeError, OSError, ValueError):
        log = None
    run_timeout = DEFAULT_RUN_TIMEOUT
    if args.run_timeout is not None:
        parsed = parse_duration(args.run_timeout)
        if parsed is None:
            raise UsageError(
                f"--run-timeout {args.run_timeout}: a duration such as 90s, 15m or 1h30m"
            )
        run_timeout = parsed
    max_root = MAX_ROOT_BYTES if args.max_root_size is None else _bytes(args.max_root_size)
    return cmd_build(
        spec=spec,
        root=root,
        files=files(),
        targets=args.targets,
        platform=_build_platform(args.platform),
        job=args.job,
        store=store,
        compression=args.compression,
        epoch=int(epoch_text),
        runtime=args.runtime,
        annotations={k: v for k, v in annotations.items() if v},
        actions=os.environ.get("GITHUB_ACTIONS") == "true",
        out=out,
        log=log,
        cache=args.cache,
        push=args.push,
        publish=args.publish,
        pull=not args.no_pull,
        run_timeout=run_timeout,
        max_root_bytes=max_root,
    )


def _builds(spec: Spec, name: str) -> list[str]:
    """What a name on the command line means in the graph: a layer, an image or tag of
    one, or every platform's build of a layer or image built for several."""
    found = spec.layer_named(name) or name
    if found in spec.layers:
        return [found]
    builds = [n for n, x in spec.layers.items() if x.origin == found]
    return builds or [name]  # an unknown name: the resolver says so


def _host_platform() -> str:
    """This machine's platform, as `platforms:` writes it."""
    from .oci.manifest import host_platform

    written = "/".join(host_platform())
    try:
        return parse_platform(written)
    except PlatformError:
        return written


def _build_platform(asked: str | None) -> str:
    """`build --platform`: this machine's platform only, as runc runs RUN natively."""
    host = _host_platform()
    if asked is None:
        return host
    try:
        platform = parse_platform(asked)
    except PlatformError as exc:
        raise UsageError(f"--platform: {exc}") from None
    if platform != host:
        raise UsageError(
            f"--platform {platform}: this machine is {host}, and `run` runs natively under "
            f"runc (no emulation): build {platform} on a {platform} machine (the matrix "
            "entry's runner)"
        )
    return platform


def _bytes(text: str) -> int:
    """`512M`, `100G`, `2GiB`, `1T` or a number of bytes."""
    units = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}
    number, unit = text.strip().upper().removesuffix("IB").removesuffix("B"), ""
    if number[-1:] in units:
        number, unit = number[:-1], number[-1]
    if not number.isdigit() or int(number) == 0:
        raise UsageError(f"--max-root-size {text}: a size such as 512M, 100G or 1T")
    return int(number) << units[unit]


def _report(problem: SpecError, err: TextIO) -> None:
    if os.environ.get("GITHUB_ACTIONS") != "true":
        err.write(f"{problem}\n")
        return
    err.write(untrusted(str(problem)) + "\n")  # names from the repository
    who = f"{problem.layer}: " if problem.layer else ""
    err.write(annotation(problem.severity, who + problem.message, where=problem) + "\n")


@contextlib.contextmanager
def _error_handler(err: TextIO) -> Iterator[list[int]]:
    code = [0]
    try:
        yield code
    except SpecInvalid as exc:
        for problem in exc.problems:
            _report(problem, err)
        err.write(exc.summary + "\n")
        code[0] = exc.exit_code
    except CiLayersError as exc:
        err.write(f"error: {exc}\n")
        if os.environ.get("GITHUB_ACTIONS") == "true":
            err.write(annotation("error", str(exc)) + "\n")
        code[0] = exc.exit_code
    except KeyboardInterrupt:
        err.write("interrupted\n")
        code[0] = 130
    except Terminated:
        err.write("terminated\n")
        code[0] = 143
    except BrokenPipeError:  # `ci-layers keys | head`: the reader left, nothing to say
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code[0] = 141
    except Exception:
        fd, log = tempfile.mkstemp(prefix="ci-layers-crash-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            traceback.print_exc(file=f)
        err.write(f"internal error: this is a bug in ci-layers; the traceback is in {log}\n")
        code[0] = 3


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Entry point of the console script; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # name the command whose options were mistyped, with its own usage
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    # Under Actions, names from the repository (a file called `x\n::add-mask::…`) must
    # not become workflow commands: such text goes out between stop-commands.
    held = io.StringIO() if _names_in_text(args) else None
    # A planning command of this process's own command line runs without collector
    # passes, and leaves what it made out of the one at exit (gcpause.py).
    short = argv is None and args.command in ("plan", "bake", "gha", "promote")
    collecting = paused_gc(freeze=True) if short else contextlib.nullcontext()
    try:
        with _error_handler(err) as code, _terminable(), collecting:
            code[0] = _run(args, held or out, err)
    finally:
        if held is not None and (printed := held.getvalue()):
            out.write(untrusted(printed.rstrip("\n")) + "\n")
    return code[0]


@contextlib.contextmanager
def _terminable() -> Iterator[None]:
    """SIGTERM raises Terminated where the program is (once: the cleanups it starts run
    undisturbed by a second one), as SIGINT raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    before = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _names_in_text(args: argparse.Namespace) -> bool:
    """Whether this command prints repository names as text under GitHub Actions (JSON
    escapes line breaks; the action's own output is guarded where it is written)."""
    if os.environ.get("GITHUB_ACTIONS") != "true" or getattr(args, "recipe", False):
        return False
    commands = {"plan", "explain", "graph", "keys", "order", "affected"}
    return args.command in commands and getattr(args, "format", "text") != "json"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
