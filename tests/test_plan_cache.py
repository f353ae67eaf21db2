"""Cache-aware plans: what the cache repository holds turns affected layers into
`reused` (no job), and unchanged layers that were never pushed into rebuilds."""

from __future__ import annotations

import json

from .test_gha import pr_event_from, run_gha
from .test_registry import SPEC, _build, _repo, run

TAGGED = (
    SPEC
    + """
images:
  app:
    layer: top
    tags: [example.com/acme/app:1]
"""
)


def _plan(root, base: str, head: str, *more: str) -> tuple[int, dict, str]:
    code, out, err = run(
        "plan", "-C", str(root), "--base", base, "--head", head, "--format", "json", *more
    )
    return code, json.loads(out) if code == 0 else {}, err


def test_after_a_revert_the_cache_aware_plan_builds_nothing(git_repo, tmp_path, registry):
    repo = _repo(git_repo)
    cache = f"{registry.host}/acme/cache"
    store = tmp_path / "store"
    _build(repo.root, store, cache, "--push")
    repo.write("top/run", "#!/bin/sh\necho changed\n", mode=0o755)
    changed = repo.commit("change top")
    _build(repo.root, store, cache, "--push")
    repo.git("revert", "--no-edit", "HEAD")
    reverted = repo.git("rev-parse", "HEAD").strip()

    _code, git_only, _err = _plan(repo.root, changed, reverted)
    assert git_only["affected"] == ["top"]  # git alone: the revert changed top
    code, plan, err = _plan(repo.root, changed, reverted, "--cache", cache)
    assert code == 0, err
    assert plan["affected"] == []
    assert plan["stages"] == []
    assert plan["layers"]["top"]["status"] == "reused"
    assert plan["cache"]["reused"] == ["top"]
    code, text, _err = run(
        "plan", "-C", str(repo.root), "--base", changed, "--head", reverted, "--cache", cache
    )
    assert "nothing to rebuild: all 3 layers reused (1 found built already)" in text


def test_an_unchanged_layer_never_pushed_is_rebuilt(git_repo, tmp_path, registry):
    """A job at base that was cancelled after `base`: its children's keys are 'at base'
    but their images are nowhere, so git alone would miss them."""
    repo = _repo(git_repo)
    first = repo.git("rev-parse", "HEAD").strip()
    cache = f"{registry.host}/acme/cache"
    code, _out, err = run(
        "build",
        "base",
        "-C",
        str(repo.root),
        "--store",
        str(tmp_path / "s"),
        "--cache",
        cache,
        "--push",
    )
    assert code == 0, err
    repo.write("README.md", "docs only\n")
    second = repo.commit("docs")
    _code, git_only, _err = _plan(repo.root, first, second)
    assert git_only["affected"] == []
    code, plan, err = _plan(repo.root, first, second, "--cache", cache)
    assert code == 0, err
    assert plan["affected"] == ["mid", "top"]
    assert plan["stages"] == [["mid"], ["top"]]
    assert "not in" in plan["layers"]["mid"]["reasons"][0]
    assert plan["layers"]["base"]["status"] == "unchanged"


def test_a_layer_with_release_tags_keeps_its_job(git_repo, tmp_path, registry):
    repo = _repo(git_repo)
    repo.write("ci-layers.yaml", TAGGED)
    repo.commit("tags")
    cache = f"{registry.host}/acme/cache"
    _build(repo.root, tmp_path / "s", cache, "--push")
    start = repo.git("rev-parse", "HEAD").strip()
    repo.write("top/run", "#!/bin/sh\necho v2\n", mode=0o755)
    changed = repo.commit("v2")
    _build(repo.root, tmp_path / "s", cache, "--push")
    repo.git("revert", "--no-edit", "HEAD")
    reverted = repo.git("rev-parse", "HEAD").strip()
    code, plan, err = _plan(repo.root, changed, reverted, "--cache", cache)
    assert code == 0, err
    assert plan["affected"] == ["top"]  # example.com/acme/app:1 must point at it again
    assert "pushes its `images:` tags only" in plan["layers"]["top"]["reasons"][-1]
    assert start


def test_an_unreachable_cache_leaves_the_git_plan(git_repo):
    from .registry import free_port

    repo = _repo(git_repo)
    first = repo.git("rev-parse", "HEAD").strip()
    repo.write("mid/lib.txt", "changed\n")
    second = repo.commit("mid")
    _code, git_only, _err = _plan(repo.root, first, second)
    code, plan, err = _plan(repo.root, first, second, "--cache", f"127.0.0.1:{free_port()}/a/c")
    assert code == 0, err
    assert plan["affected"] == git_only["affected"] == ["mid", "top"]
    assert "not checked" in plan["cache"]["note"]
    assert "git's alone" in err


def test_the_action_leaves_reused_layers_out_of_the_matrix(git_repo, tmp_path, registry):
    repo = _repo(git_repo)
    repo.git("branch", "-M", "main")
    cache = f"{registry.host}/acme/cache"
    _build(repo.root, tmp_path / "s", cache, "--push")
    base = repo.git("rev-parse", "HEAD").strip()
    repo.git("checkout", "-q", "-b", "pr")
    repo.write("top/run", "#!/bin/sh\necho pr\n", mode=0o755)
    repo.write("mid/lib.txt", "pr\n")
    head = repo.commit("pr")
    # top and mid of this very head were built already (a re-run after a cancelled job)
    _build(repo.root, tmp_path / "s", cache, "--push", "mid")
    done, outputs, summary = run_gha(
        repo,
        "pull_request",
        pr_event_from(repo, 3, base=base, head=head),
        cache=cache,
        comment="never",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(outputs["affected"]) == ["top"]
    assert [e["name"] for e in json.loads(outputs["matrix"])["include"]] == ["top"]
    assert "1 found built already" in summary
