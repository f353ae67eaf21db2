"""`ci-layers demo`: the seed example turned into a git repository, a change, and what
ci-layers says about it. Everything happens in a temporary directory."""

from __future__ import annotations

import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import TextIO

import git

from .changes import Comparison, GitHistory, changes_between, choose_comparison
from .docker import bake_file
from .explain import explain_layer
from .keys import compute_keys
from .plan import make_plan
from .repo import tree_files, worktree_files
from .report import graph_text, plan_text
from .resolver import DependencyResolver
from .spec import load_spec

__all__ = ["fixture_path", "run_demo"]

_IDENTITY = {
    "GIT_AUTHOR_NAME": "ci-layers demo",
    "GIT_AUTHOR_EMAIL": "demo@ci-layers.invalid",
    "GIT_COMMITTER_NAME": "ci-layers demo",
    "GIT_COMMITTER_EMAIL": "demo@ci-layers.invalid",
}


def fixture_path(name: str) -> Path:
    """A sample repository shipped in fixtures/ (installed as ci_layers._fixtures)."""
    return Path(str(resources.files("ci_layers._fixtures").joinpath(name)))


def run_demo(*, out: TextIO) -> int:
    with tempfile.TemporaryDirectory(prefix="ci-layers-demo-") as tmp:
        root = Path(tmp) / "repo"
        _fixture_repo("seed", root)
        spec = load_spec(root / "ci-layers.yaml", display="ci-layers.yaml")
        resolver = DependencyResolver(spec.graph)

        out.write("== The layers (fixtures/seed/ci-layers.yaml)\n")
        out.write(graph_text(spec.graph) + "\n\n")
        out.write("== What my-app needs, in build order\n")
        out.write("  " + " -> ".join(resolver.build_order("my-app")) + "\n\n")

        before = compute_keys(spec, tree_files(root, "HEAD"))
        out.write("== Content-addressed keys at HEAD\n")
        for name, key in before.items():
            out.write(f"  {name:<12} {key.digest[:23]}...\n")

        req = root / "requirements.txt"
        req.write_text(req.read_text() + "gunicorn==22.0.0\n")
        out.write("\n== Edit requirements.txt (add gunicorn) in the working tree\n")
        after = compute_keys(spec, worktree_files(root))
        changed = [n for n in after if after[n].digest != before[n].digest]
        out.write(f"  keys that differ now: {', '.join(changed)}\n\n")
        out.write("== Why my-app's key differs (ci-layers explain my-app --against HEAD)\n")
        head_files = tree_files(root, "HEAD")
        lines = explain_layer(
            "my-app",
            spec=spec,
            keys=after,
            old_spec=spec,
            old_keys=before,
            changes=changes_between(
                head_files, worktree_files(root), Comparison("HEAD", None, "working-tree", "")
            ),
        )
        out.write("\n".join(lines) + "\n\n")

        first = [n for n in changed if not set(spec.graph.parents(n)) & set(changed)]
        affected = resolver.rebuild_affected_layers(first)
        stages = resolver.stages(affected)
        total = len(spec.graph)
        out.write(f"== Rebuild {len(affected)} of {total} layers, in {len(stages)} stage(s)\n")
        for i, stage in enumerate(stages, 1):
            out.write(f"  stage {i}: {', '.join(stage)}\n")
        reused = [n for n in spec.graph if n not in affected]
        out.write(f"  reused from cache: {', '.join(reused) or 'nothing'}\n\n")
        _monorepo_pull_request(Path(tmp) / "monorepo", out)
        _dockerfiles(Path(tmp) / "dockerfiles", out)
        _build(Path(tmp) / "build", out)
    return 0


def _build(root: Path, out: TextIO) -> None:
    """fixtures/build built by LayerBuilder on a busybox root, then rebuilt after a
    change: only the changed layer and what is built on it are built again."""
    from .build.builder import LayerBuilder
    from .build.busybox import BUSYBOX_REF, busybox_image
    from .build.progress import summary_table
    from .errors import BuildError
    from .oci.store import OciStore

    out.write("\n== fixtures/build: build the layers with ci-layers' own builder (no Docker\n")
    out.write("   daemon, no registry), on a root made from the host's busybox-static\n")
    store = OciStore(root.parent / "store")
    try:
        base = busybox_image(store)
    except BuildError as exc:
        out.write(f"   skipped: {exc}\n")
        return
    shutil.copytree(fixture_path("build"), root)
    spec_file = root / "ci-layers.yaml"
    pinned = f"{BUSYBOX_REF}@{base.digest}"
    spec_file.write_text(spec_file.read_text().replace(f"from: {BUSYBOX_REF}", f"from: {pinned}"))
    g = git.Repo.init(root, initial_branch="main").git
    _commit(g, "build fixture")
    out.write(f"   base image: {pinned[:60]}...\n")

    def build() -> None:
        spec = load_spec(spec_file, display="ci-layers.yaml")
        files = worktree_files(root)
        builder = LayerBuilder(
            spec=spec, keys=compute_keys(spec, files), files=files, root=root, store=store
        )
        order = builder.order(list(spec.layers))
        try:
            builder.check(order)
        except BuildError as exc:  # no root or no runc: the layers that only copy still build
            runs = {n for n in order if spec.graph[n].run}
            blocked = spec.graph.closure_down(runs)
            order = [n for n in order if n not in blocked]
            out.write(f"   only the copy layers build here: {exc}\n")
        results = [builder.build_layer(n) for n in order]
        out.write("   " + summary_table(results).replace("\n", "\n   ") + "\n")

    build()
    (root / "src/main.sh").write_text('#!/bin/sh\necho "hello again"\n')
    out.write("\n== Edit src/main.sh and build again: only app is built, the rest is reused\n")
    build()
    out.write(
        f"\n   The store is an OCI image layout: skopeo inspect oci:{store.path}:"
        "registry.example.com/demo-app:latest\n   (it is removed when the demo ends; "
        "ci-layers build keeps its own in .ci-layers/store)\n"
    )


def _fixture_repo(name: str, root: Path) -> git.Git:
    """A copy of fixtures/NAME as a git repository with one commit on main."""
    shutil.copytree(fixture_path(name), root)
    g = git.Repo.init(root, initial_branch="main").git
    _commit(g, name)
    return g


def _commit(g: git.Git, message: str) -> str:
    with g.custom_environment(**_IDENTITY):
        g.add("-A")
        g.commit("-q", "--no-gpg-sign", "--no-verify", "-m", message)
    return str(g.rev_parse("HEAD"))


def _dockerfiles(root: Path, out: TextIO) -> None:
    """Existing Dockerfiles, found by rules in ci-layers.yaml: a change to one file."""
    g = _fixture_repo("dockerfiles", root)
    base = str(g.rev_parse("HEAD"))
    (root / "images/builder/toolchain.cfg").write_text("cc=clang\n")
    (root / "images/api/docs/guide.md").write_text("ignored by .dockerignore\n")
    _commit(g, "clang; docs")
    spec = load_spec(root / "ci-layers.yaml", display="ci-layers.yaml")
    history = GitHistory(root)
    comparison = choose_comparison(history, event_name=None, payload={}, base=base, head="HEAD")
    plan = make_plan(
        root=root, spec=spec, spec_rel="ci-layers.yaml", comparison=comparison, history=history
    )
    out.write("\n== fixtures/dockerfiles: 11 Dockerfiles found by 5 rules; edit a file the\n")
    out.write("   builder image copies, and a doc its .dockerignore leaves out\n")
    out.write(plan_text(plan) + "\n")
    bake = bake_file(plan, plan.spec or spec)
    targets = bake["group"]["default"]["targets"]
    out.write(
        f"\n   `ci-layers bake` writes a docker-bake.json that builds these {len(targets)} "
        "images in one `docker buildx bake`,\n   each on its rebuilt parents: "
        + ", ".join(targets)
        + "\n"
    )


def _monorepo_pull_request(root: Path, out: TextIO) -> None:
    """A pull request on the sample monorepo, planned as the GitHub Action plans it."""
    g = _fixture_repo("monorepo", root)
    g.checkout("-q", "-b", "feature")
    (root / "services/api/poetry.lock").write_text("fastapi==0.115.2\nuvicorn==0.30.6\n")
    (root / "vendor/libfoo/docs/design.md").write_text("Excluded from the image.\n")
    (root / "docs/architecture.md").write_text("Not in any image.\n")
    head = _commit(g, "bump fastapi; docs")
    g.checkout("-q", "main")
    (root / "web/admin/src/index.js").write_text("// main moved on meanwhile\n")
    base = _commit(g, "admin fix")
    event = {"pull_request": {"number": 42, "base": {"sha": base}, "head": {"sha": head}}}
    spec = load_spec(root / "ci-layers.yaml", display="ci-layers.yaml")
    history = GitHistory(root)
    comparison = choose_comparison(
        history, event_name="pull_request", payload=event, base=None, head=None
    )
    plan = make_plan(
        root=root, spec=spec, spec_rel="ci-layers.yaml", comparison=comparison, history=history
    )
    out.write("== Pull request #42 on fixtures/monorepo: bump fastapi, edit docs and an\n")
    out.write("   excluded vendored file; main has moved on (admin) since the fork\n")
    out.write("   (ci-layers plan --event event.json --event-name pull_request)\n")
    out.write(plan_text(plan) + "\n")
