"""`ci-layers plan` on real git histories of the sample monorepo."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ci_layers.cli import main

from .conftest import FIXTURES
from .gitrepo import GitRepo

ALL = 13


@pytest.fixture
def mono(git_repo: GitRepo) -> GitRepo:
    git_repo.copy_fixture(FIXTURES / "monorepo")
    git_repo.commit("monorepo")
    return git_repo


def plan(repo: GitRepo, *args: str, event: dict | None = None, name: str | None = None) -> dict:
    argv = ["plan", "--format", "json", "-C", str(repo.root), *args]
    if event is not None:
        path = repo.root.parent / "event.json"
        path.write_text(json.dumps(event))
        argv += ["--event", str(path), "--event-name", name or "push"]
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out=out, err=err)
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue())


def test_working_tree_change_rebuilds_the_reader_only(mono: GitRepo) -> None:
    mono.write("services/api/src/api/routes.py", "# changed\n")
    p = plan(mono)
    assert p["mode"] == "working-tree"
    assert p["affected"] == ["api"]
    assert p["layers"]["api"]["reasons"] == ["changed: services/api/src/api/routes.py"]
    assert p["layers"]["worker"]["status"] == "unchanged"
    assert p["stages"] == [["api"]]


def test_untracked_and_deleted_files_count(mono: GitRepo) -> None:
    mono.write("services/api/src/api/new.py", "x = 1\n")  # untracked
    mono.remove("web/admin/src/index.js")  # deleted, unstaged
    assert plan(mono)["affected"] == ["admin", "api"]


def test_pull_request_against_a_base_that_moved_on(mono: GitRepo) -> None:
    fork = mono.git("rev-parse", "HEAD")
    mono.git("checkout", "-q", "-b", "feature")
    mono.write("services/api/src/api/routes.py", "# feature\n")
    head = mono.commit("feature work")
    mono.git("checkout", "-q", "main")
    mono.write("web/admin/src/index.js", "// main moved on\n")
    base = mono.commit("main moves on")
    event = {
        "pull_request": {"number": 7, "base": {"sha": base}, "head": {"sha": head}},
        "repository": {"default_branch": "main"},
    }
    p = plan(mono, event=event, name="pull_request")
    assert p["mode"] == "merge-base"
    assert p["base"] == fork
    assert p["head"] == head
    assert p["affected"] == ["api"]  # admin changed on main only: not this PR's doing
    assert "pull request #7" in p["reason"]


def test_push_compares_before_and_after(mono: GitRepo) -> None:
    before = mono.git("rev-parse", "HEAD")
    mono.write("services/worker/poetry.lock", "celery==5.4.1\n")
    after = mono.commit("bump celery")
    event = {"ref": "refs/heads/main", "before": before, "after": after}
    p = plan(mono, event=event, name="push")
    assert (p["mode"], p["base"], p["head"]) == ("range", before, after)
    assert p["affected"] == ["worker-deps", "worker"]
    assert p["layers"]["worker"]["reasons"] == ["parent 'worker-deps' is rebuilt"]
    assert p["stages"] == [["worker-deps"], ["worker"]]


def test_first_push_of_a_branch_uses_the_merge_base_with_the_default_branch(mono: GitRepo) -> None:
    fork = mono.git("rev-parse", "HEAD")
    mono.git("checkout", "-q", "-b", "topic")
    mono.write("tools/cli/main.go", "package main\n\nfunc main() { println() }\n")
    first = mono.commit("one")
    mono.write("tools/cli/go.sum", "x v1\n")
    after = mono.commit("two")
    mono.git("checkout", "-q", "main")
    mono.write("web/admin/src/index.js", "// later\n")
    mono.commit("main moves on")
    event = {
        "ref": "refs/heads/topic",
        "before": "0" * 40,
        "after": after,
        "created": True,
        "commits": [{"id": first}, {"id": after}],
        "repository": {"default_branch": "main"},
    }
    p = plan(mono, event=event, name="push")
    assert (p["mode"], p["base"]) == ("merge-base", fork)
    assert p["affected"] == ["cli"]


def test_first_push_without_a_default_branch_uses_the_first_commits_parent(mono: GitRepo) -> None:
    parent = mono.git("rev-parse", "HEAD")
    mono.git("branch", "-m", "main", "trunk")
    mono.write("tools/cli/main.go", "package main\n")
    first = mono.commit("one")
    event = {
        "ref": "refs/heads/trunk",
        "before": "0" * 40,
        "after": first,
        "commits": [{"id": first}],
    }
    p = plan(mono, event=event, name="push")
    assert (p["mode"], p["base"]) == ("range", parent)
    assert p["affected"] == ["cli"]


def test_force_push_with_an_unreachable_before(mono: GitRepo) -> None:
    fork = mono.git("rev-parse", "HEAD")
    mono.git("checkout", "-q", "-b", "topic")
    mono.write("web/storefront/src/index.js", "// rewritten\n")
    after = mono.commit("rewritten")
    event = {
        "ref": "refs/heads/topic",
        "before": "1234567890abcdef1234567890abcdef12345678",
        "after": after,
        "forced": True,
        "repository": {"default_branch": "main"},
    }
    p = plan(mono, event=event, name="push")
    assert (p["mode"], p["base"]) == ("merge-base", fork)
    assert p["affected"] == ["storefront"]
    assert "force push" in p["reason"]


def test_force_push_to_the_default_branch_without_before_rebuilds_everything(mono: GitRepo) -> None:
    mono.write("docs/x.md", "x\n")
    after = mono.commit("docs")
    event = {
        "ref": "refs/heads/main",
        "before": "1234567890abcdef1234567890abcdef12345678",
        "after": after,
        "forced": True,
    }
    p = plan(mono, event=event, name="push")
    assert p["mode"] == "all"
    assert len(p["affected"]) == ALL
    assert all(p["layers"][n]["reasons"] == [p["reason"]] for n in p["affected"])


def test_merge_group(mono: GitRepo) -> None:
    base = mono.git("rev-parse", "HEAD")
    mono.write("runtimes/node/.nvmrc", "22.9.0\n")
    head = mono.commit("node 22")
    event = {"merge_group": {"base_sha": base, "head_sha": head, "base_ref": "refs/heads/main"}}
    p = plan(mono, event=event, name="merge_group")
    assert (p["mode"], p["base"], p["head"]) == ("range", base, head)
    assert p["affected"] == ["node-runtime", "web-deps", "admin", "storefront"]
    assert p["stages"] == [["node-runtime"], ["web-deps"], ["admin", "storefront"]]


def test_schedule_and_dispatch_rebuild_everything_unless_given_a_base(mono: GitRepo) -> None:
    p = plan(mono, event={}, name="schedule")
    assert p["mode"] == "all"
    assert len(p["affected"]) == ALL
    base = mono.git("rev-parse", "HEAD")
    mono.write("services/api/src/api/routes.py", "# x\n")
    mono.commit("x")
    p = plan(mono, "--base", base, event={}, name="workflow_dispatch")
    assert p["affected"] == ["api"]


def test_shallow_clone_fetches_and_deepens_until_the_merge_base(
    mono: GitRepo, tmp_path: Path
) -> None:
    fork = mono.git("rev-parse", "HEAD")
    mono.git("checkout", "-q", "-b", "feature")
    for i in range(40):  # a long branch: the merge-base is far below a depth-1 clone
        mono.write(f"services/api/src/api/step{i}.py", f"x = {i}\n")
        head = mono.commit(f"step {i}")
    mono.git("checkout", "-q", "main")
    for i in range(5):
        mono.write("docs/log.md", f"{i}\n")
        base = mono.commit(f"main {i}")
    mono.git("tag", "v-main", base)
    clone = tmp_path / "clone"
    subprocess.run(
        [
            "git",
            "clone",
            "-q",
            "--depth",
            "1",
            "--branch",
            "feature",
            f"file://{mono.root}",
            str(clone),
        ],
        check=True,
    )
    assert (
        subprocess.run(["git", "-C", str(clone), "cat-file", "-e", base], check=False).returncode
        != 0
    )
    cloned = GitRepo.__new__(GitRepo)
    cloned.root = clone
    event = {"pull_request": {"number": 1, "base": {"sha": base}, "head": {"sha": head}}}
    p = plan(cloned, event=event, name="pull_request")
    assert (p["mode"], p["base"], p["head"]) == ("merge-base", fork, head)
    assert p["affected"] == ["api"]
    # the README's `--base origin/main` in a single-branch clone: fetched by name
    p = plan(cloned, "--base", "origin/main", "--head", "HEAD")
    assert (p["mode"], p["base"], p["head"]) == ("merge-base", fork, head)
    subprocess.run(["git", "-C", str(clone), "update-ref", "-d", "refs/remotes/origin/main"])
    p = plan(cloned, "--base", "refs/remotes/origin/main", "--head", "HEAD")
    assert (p["mode"], p["base"], p["head"]) == ("merge-base", fork, head)
    p = plan(cloned, "--base", "origin/main~2", "--head", "HEAD")  # history fetched for it
    assert (p["mode"], p["base"], p["head"]) == ("merge-base", fork, head)
    p = plan(cloned, "--base", "v-main", "--head", "HEAD")  # a tag, fetched by name
    assert (p["mode"], p["base"], p["head"]) == ("merge-base", fork, head)


def test_unfetchable_base_means_everything_never_an_empty_plan(mono: GitRepo) -> None:
    event = {
        "pull_request": {
            "number": 3,
            "base": {"sha": "ab" * 20},
            "head": {"sha": mono.git("rev-parse", "HEAD")},
        }
    }
    p = plan(mono, event=event, name="pull_request")
    assert p["mode"] == "all"
    assert len(p["affected"]) == ALL
    assert "cannot be fetched" in p["reason"]


def test_renames_into_and_out_of_sources(mono: GitRepo) -> None:
    base = mono.git("rev-parse", "HEAD")
    mono.git("mv", "docs/architecture.md", "services/api/src/api/architecture.md")
    mono.commit("into")
    p = plan(mono, "--base", base, "--head", "HEAD")
    assert p["affected"] == ["api"]
    assert "changed: services/api/src/api/architecture.md" in p["layers"]["api"]["reasons"]
    base = mono.git("rev-parse", "HEAD")
    mono.git("mv", "web/admin/src/index.js", "docs/admin-index.js")
    mono.commit("out of")
    p = plan(mono, "--base", base, "--head", "HEAD")
    assert p["affected"] == ["admin"]
    assert p["layers"]["admin"]["reasons"] == ["changed: web/admin/src/index.js"]


def test_deleting_a_copied_file(mono: GitRepo) -> None:
    base = mono.git("rev-parse", "HEAD")
    mono.remove("services/api/poetry.lock")
    mono.commit("drop lock")
    p = plan(mono, "--base", base, "--head", "HEAD")
    assert p["affected"] == ["api-deps", "api"]
    assert p["layers"]["api-deps"]["reasons"] == ["changed: services/api/poetry.lock"]


def test_excluded_and_unread_files_rebuild_nothing(mono: GitRepo) -> None:
    base = mono.git("rev-parse", "HEAD")
    mono.write("vendor/libfoo/docs/design.md", "edited\n")
    mono.write("vendor/libfoo/README.md", "edited\n")
    mono.write("services/api/README.md", "edited\n")
    mono.write("docs/architecture.md", "edited\n")
    mono.commit("docs only")
    p = plan(mono, "--base", base, "--head", "HEAD")
    assert p["affected"] == []
    assert p["changed_paths"] == 4
    mono.write("vendor/libfoo/src/foo.c", "int foo(void) { return 7; }\n")
    mono.commit("code")
    p = plan(mono, "--base", base, "--head", "HEAD")
    assert p["affected"] == ["native-libs", "worker-deps", "worker"]
    assert p["layers"]["worker-deps"]["reasons"] == ["copies from 'native-libs', which is rebuilt"]


def test_a_wildcard_that_matches_a_new_file(mono: GitRepo) -> None:
    # web/*/package.json all land on /deps/package.json: the last match is what lands
    base = mono.git("rev-parse", "HEAD")
    mono.write("web/checkout/package.json", "{}\n")
    mono.commit("new web app, overwritten by web/storefront/package.json")
    assert plan(mono, "--base", base, "--head", "HEAD")["affected"] == []
    mono.write("web/zshop/package.json", "{}\n")
    mono.commit("new web app, copied last")
    assert plan(mono, "--base", base, "--head", "HEAD")["affected"] == [
        "web-deps",
        "admin",
        "storefront",
    ]


def test_global_input_rebuilds_everything(mono: GitRepo) -> None:
    base = mono.git("rev-parse", "HEAD")
    mono.write("ci/build.sh", '#!/bin/sh\nexec "$@" # v2\n', mode=0o755)
    mono.commit("build script")
    p = plan(mono, "--base", base, "--head", "HEAD")
    assert len(p["affected"]) == ALL
    assert p["layers"]["os-base"]["reasons"] == ["global input changed: ci/build.sh"]


def test_mode_change_counts(mono: GitRepo) -> None:
    base = mono.git("rev-parse", "HEAD")
    (mono.root / "services/api/src/api/routes.py").chmod(0o755)
    mono.commit("exec")
    assert plan(mono, "--base", base, "--head", "HEAD")["affected"] == ["api"]


def test_spec_edit_rebuilds_only_the_edited_layer(mono: GitRepo) -> None:
    base = mono.git("rev-parse", "HEAD")
    spec = (mono.root / "ci-layers.yaml").read_text()
    edited = spec.replace(
        'cmd: ["uvicorn", "api:app", "--app-dir", "src"]', 'cmd: ["uvicorn", "api:app"]'
    )
    edited = edited.replace("# a Go tool", "# a Go tool (reformatted comment)")
    edited += "\n  # a trailing comment\n"
    assert edited != spec
    mono.write("ci-layers.yaml", edited)
    mono.commit("edit api")
    p = plan(mono, "--base", base, "--head", "HEAD")
    assert p["affected"] == ["api"]
    assert p["layers"]["api"]["reasons"] == ["spec: cmd changed"]


def test_spec_edit_new_removed_and_renamed_layers(mono: GitRepo) -> None:
    base = mono.git("rev-parse", "HEAD")
    spec = (mono.root / "ci-layers.yaml").read_text()
    spec = spec.replace("  admin:\n    parent: web-deps", "  backoffice:\n    parent: web-deps")
    spec = spec.replace("admin: {layer: admin,", "admin: {layer: backoffice,")
    spec = spec.replace(
        "  cli:\n    parent: go-builder",
        "  linter:\n    parent: go-builder\n    run: go vet ./...\n\n  cli:\n    parent: go-builder",
    )
    spec = spec.replace("  native-libs:", "  old-native-libs:").replace(
        "from_layer: native-libs", "from_layer: old-native-libs"
    )
    mono.write("ci-layers.yaml", spec)
    mono.commit("rename and add")
    p = plan(mono, "--base", base, "--head", "HEAD")
    assert p["affected"] == ["linter"]
    assert p["layers"]["linter"]["reasons"] == ["new layer"]
    assert p["layers"]["backoffice"]["status"] == "unchanged"
    assert p["layers"]["backoffice"]["reasons"] == ["same content as 'admin' at base"]
    assert p["removed"] == ["admin", "native-libs"]


def test_odd_path_names(mono: GitRepo) -> None:
    base = mono.git("rev-parse", "HEAD")
    names = ["with space.py", 'quote"d.py', "new\nline.py", "ünï cødé.py", "tab\there.py"]
    for n in names:
        mono.write(f"services/api/src/api/{n}", "x\n")
    mono.commit("odd names")
    p = plan(mono, "--base", base, "--head", "HEAD")
    assert p["affected"] == ["api"]
    assert sorted(p["layers"]["api"]["reasons"]) == sorted(
        f"changed: services/api/src/api/{n}" for n in names
    )


def test_submodule_bump(mono: GitRepo, tmp_path: Path) -> None:
    lib = GitRepo(tmp_path / "libbar")
    lib.write("src/bar.c", "int bar;\n")
    lib.write("README.md", "bar\n")
    lib.commit("bar 1")
    mono.git(
        "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib.root), "vendor/libbar"
    )
    spec = (mono.root / "ci-layers.yaml").read_text()
    spec = spec.replace(
        "  api-deps:",
        "  bar:\n    parent: os-base\n    copy:\n      - {src: vendor/libbar/src, dest: /src/bar}\n\n  api-deps:",
    )
    mono.write("ci-layers.yaml", spec)
    base = mono.commit("add libbar")
    lib.write("src/bar.c", "int bar = 2;\n")
    lib.commit("bar 2")
    sub = mono.root / "vendor/libbar"
    subprocess.run(
        ["git", "-C", str(sub), "pull", "-q", "origin", "main"], check=True, capture_output=True
    )
    mono.commit("bump libbar")
    p = plan(mono, "--base", base, "--head", "HEAD")
    assert p["affected"] == ["bar"]
    assert p["layers"]["bar"]["reasons"] == ["changed: vendor/libbar"]


def test_text_and_markdown_formats(mono: GitRepo) -> None:
    mono.write("services/worker/src/worker/main.py", "# x\n")
    out = io.StringIO()
    assert main(["plan", "-C", str(mono.root)], out=out) == 0
    text = out.getvalue()
    assert text.startswith("1 of 13 layers to rebuild, 12 reused, in 1 stage\n")
    assert "    - changed: services/worker/src/worker/main.py" in text
    out = io.StringIO()
    assert main(["plan", "--format", "markdown", "-C", str(mono.root)], out=out) == 0
    md = out.getvalue()
    assert md.startswith("### ci-layers: 1 of 13 layers to rebuild")
    assert "| 1 | `worker` | changed: services/worker/src/worker/main.py |" in md


def test_bad_event_file_is_a_usage_error(mono: GitRepo) -> None:
    bad = mono.root.parent / "bad.json"
    bad.write_text("{not json")
    err = io.StringIO()
    code = main(
        ["plan", "-C", str(mono.root), "--event", str(bad), "--event-name", "push"],
        out=io.StringIO(),
        err=err,
    )
    assert code == 2
    assert "is not JSON" in err.getvalue()


def test_unknown_base_is_an_error(mono: GitRepo) -> None:
    err = io.StringIO()
    code = main(["plan", "-C", str(mono.root), "--base", "nope"], out=io.StringIO(), err=err)
    assert code == 1
    assert "unknown revision 'nope' (--base)" in err.getvalue()


def test_fixture_is_usable_outside_the_source_tree(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "monorepo", tmp_path / "m")
    out = io.StringIO()
    assert main(["validate", "-C", str(tmp_path / "m")], out=out) == 0


def test_a_symlinked_source_is_followed(mono: GitRepo) -> None:
    mono.git("mv", "services/api/src", "services/api/realsrc")
    (mono.root / "services/api/src").symlink_to("realsrc")
    base = mono.commit("src is a link")
    mono.write("services/api/realsrc/api/routes.py", "# through the link\n")
    mono.commit("edit the target")
    assert plan(mono, "--base", base, "--head", "HEAD")["affected"] == ["api"]


def test_exclude_on_a_from_layer_copy_is_part_of_the_key(mono: GitRepo) -> None:
    base = mono.git("rev-parse", "HEAD")
    spec = (mono.root / "ci-layers.yaml").read_text()
    mono.write(
        "ci-layers.yaml",
        spec.replace(
            "dest: /usr/local/lib/, from_layer: native-libs}",
            'dest: /usr/local/lib/, from_layer: native-libs, exclude: ["*.a"]}',
        ),
    )
    mono.commit("exclude")
    assert plan(mono, "--base", base, "--head", "HEAD")["affected"] == ["worker-deps", "worker"]


def test_a_symlinked_spec_is_read_through_the_link(mono: GitRepo) -> None:
    (mono.root / "infra").mkdir()
    mono.git("mv", "ci-layers.yaml", "infra/layers.yaml")
    (mono.root / "ci-layers.yaml").symlink_to("infra/layers.yaml")
    base = mono.commit("spec moved behind a link")
    assert plan(mono)["affected"] == []
    mono.write("services/api/src/api/routes.py", "# x\n")
    mono.commit("x")
    assert plan(mono, "--base", base, "--head", "HEAD")["affected"] == ["api"]


def test_an_edit_in_the_same_second_as_staging_is_seen(mono: GitRepo) -> None:
    target = "services/api/src/api/routes.py"
    original = (mono.root / target).read_text()
    mono.write(target, "AAAA\n")
    mono.git("add", target)
    mono.write(target, "BBBB\n")  # same size, same second: only content tells
    assert plan(mono)["affected"] == ["api"]
    mono.write(target, original)


def test_a_wildcard_reaching_into_a_submodule(mono: GitRepo, tmp_path: Path) -> None:
    lib = GitRepo(tmp_path / "libsub")
    lib.write("foo.c", "int foo;\n")
    lib.commit("1")
    mono.git(
        "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib.root), "vendor/sub"
    )
    spec = (
        (mono.root / "ci-layers.yaml")
        .read_text()
        .replace(
            "  api-deps:",
            "  globby:\n    parent: os-base\n    copy:\n      - {src: 'vendor/*/foo.c', dest: /src/}\n\n  api-deps:",
        )
    )
    mono.write("ci-layers.yaml", spec)
    base = mono.commit("submodule")
    lib.write("foo.c", "int foo = 2;\n")
    lib.commit("2")
    subprocess.run(
        ["git", "-C", str(mono.root / "vendor/sub"), "pull", "-q", "origin", "main"],
        check=True,
        capture_output=True,
    )
    mono.commit("bump")
    assert plan(mono, "--base", base, "--head", "HEAD")["affected"] == ["globby"]


def test_a_directory_input_pattern_reads_a_submodule(mono: GitRepo, tmp_path: Path) -> None:
    lib = GitRepo(tmp_path / "libdir")
    lib.write("foo.c", "int foo;\n")
    lib.commit("1")
    mono.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib.root), "libdir")
    extra = "".join(
        f"  {name}:\n    parent: os-base\n    inputs: ['{pattern}']\n\n"
        for name, pattern in [
            ("slash", "libdir/"),
            ("glob", "libd*/"),
            ("anchored", "/libdir/"),
            ("floating", "*.c"),  # may match inside the submodule, whose tree is unknown
        ]
    )
    spec = (mono.root / "ci-layers.yaml").read_text()
    mono.write("ci-layers.yaml", spec.replace("  api-deps:", extra + "  api-deps:"))
    base = mono.commit("submodule")
    lib.write("foo.c", "int foo = 2;\n")
    lib.commit("2")
    subprocess.run(
        ["git", "-C", str(mono.root / "libdir"), "pull", "-q", "origin", "main"],
        check=True,
        capture_output=True,
    )
    mono.commit("bump")
    affected = plan(mono, "--base", base, "--head", "HEAD")["affected"]
    assert sorted(affected) == ["anchored", "floating", "glob", "slash"]


def test_first_push_in_a_shallow_clone_fetches_the_parent(mono: GitRepo, tmp_path: Path) -> None:
    parent = mono.git("rev-parse", "HEAD")
    mono.git("checkout", "-q", "-b", "lonely")
    mono.write("tools/cli/main.go", "package main // lonely\n")
    first = mono.commit("first on lonely")
    clone = tmp_path / "shallow"
    subprocess.run(
        [
            "git",
            "clone",
            "-q",
            "--depth",
            "1",
            "--branch",
            "lonely",
            f"file://{mono.root}",
            str(clone),
        ],
        check=True,
    )
    cloned = GitRepo.__new__(GitRepo)
    cloned.root = clone
    event = {
        "ref": "refs/heads/lonely",
        "before": "0" * 40,
        "after": first,
        "commits": [{"id": first}],
        "repository": {"default_branch": "no-such-branch"},
    }
    p = plan(cloned, event=event, name="push")
    assert (p["mode"], p["base"]) == ("range", parent)
    assert p["affected"] == ["cli"]


def test_a_new_tag_or_an_image_moved_to_another_layer_is_pushed(mono: GitRepo) -> None:
    spec = (mono.root / "ci-layers.yaml").read_text()
    base = mono.git("rev-parse", "HEAD")
    mono.write(
        "ci-layers.yaml", spec.replace("shop/api]}", "shop/api, registry.example.com/shop/api:v2]}")
    )
    mono.commit("tag api:v2")
    p = plan(mono, "--base", base, "--head", "HEAD")
    assert p["affected"] == ["api"]
    assert p["layers"]["api"]["reasons"] == ["new tags: registry.example.com/shop/api:v2"]
    mono.write("ci-layers.yaml", spec.replace("cli: {layer: cli,", "cli: {layer: worker,"))
    mono.commit("the cli image is now the worker layer")
    p = plan(mono, "--base", base, "--head", "HEAD")
    assert p["affected"] == ["worker"]
    assert p["layers"]["worker"]["reasons"] == ["new tags: registry.example.com/shop/cli"]
    mono.write("ci-layers.yaml", spec)
    mono.commit("back")
    assert plan(mono, "--base", base, "--head", "HEAD")["affected"] == []


def test_an_event_file_nested_too_deeply_is_a_clear_error(mono: GitRepo, tmp_path: Path) -> None:
    event = tmp_path / "deep.json"
    event.write_text("[" * 100_000 + "]" * 100_000)
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["plan", "--event", str(event), "--event-name", "push", "-C", str(mono.root)],
        out=out,
        err=err,
    )
    assert code == 2
    assert "nested too deeply" in err.getvalue()


def test_head_given_with_an_event_that_has_no_base_is_still_that_head(mono: GitRepo) -> None:
    first = mono.git("rev-parse", "HEAD")
    mono.write("tools/cli/main.go", "package main // later\n")
    later = mono.commit("later")
    mono.git("checkout", "-q", first)
    event = {"pull_request": {"base": {"sha": "0" * 39 + "1"}, "head": {"sha": first}}}
    p = plan(mono, "--head", later, event=event, name="pull_request")
    assert p["head"] == later
    assert p["mode"] == "all"


def test_a_broken_spec_on_disk_does_not_stop_a_plan_between_commits(mono: GitRepo) -> None:
    base = mono.git("rev-parse", "HEAD")
    mono.write("services/api/poetry.lock", "fastapi==0.200\n")
    head = mono.commit("lock")
    mono.write("ci-layers.yaml", "version: 1\nlayers: {a: {parent: nope}}\n")  # not committed
    assert plan(mono, "--base", base, "--head", head)["affected"] == ["api-deps", "api"]
    out, err = io.StringIO(), io.StringIO()
    code = main(["plan", "-C", str(mono.root)], out=out, err=err)  # the working tree: it counts
    assert code == 2
    assert "unknown parent 'nope'" in err.getvalue()


@pytest.mark.parametrize(
    "event",
    [{}, {"ref": "refs/heads/main"}, {"ref": "refs/heads/main", "before": 5, "after": "x"}],
    ids=["empty", "no-before", "wrong-types"],
)
def test_a_push_payload_without_before_plans_everything(mono: GitRepo, event: dict) -> None:
    """A truncated payload read as a new branch planned nothing on main (issue 12, 12)."""
    p = plan(mono, event=event, name="push")
    assert p["mode"] == "all"
    assert "no usable before, after and ref" in p["reason"]
    assert len(p["affected"]) == len(p["layers"])


@pytest.mark.parametrize(
    "command", [["plan"], ["keys"], ["graph"], ["explain", "app", "--against", "HEAD"]]
)
def test_names_cannot_inject_workflow_commands(git_repo: GitRepo, monkeypatch, command) -> None:
    """A file named `x\\n::add-mask::…` printed raw became a live workflow command under
    Actions (issue 12, case 9): text output goes out between stop-commands."""
    import io

    from ci_layers.cli import main

    git_repo.write(
        "ci-layers.yaml",
        "version: 1\nlayers:\n  app:\n    from: scratch\n    copy: [{src: src/, dest: /src/}]\n",
    )
    git_repo.write("src/ok.txt", "1\n")
    git_repo.commit()
    git_repo.write("src/x\n::add-mask::secretvalue\n::error title=pwn::owned", "evil\n")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    out = io.StringIO()
    assert main([*command, "-C", str(git_repo.root)], out=out, err=io.StringIO()) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("::stop-commands::")
    token = lines[0].removeprefix("::stop-commands::")
    assert lines[-1] == f"::{token}::"
    assert not [line for line in lines[1:-1] if line.startswith(f"::{token}::")]


@pytest.mark.parametrize("links", [{"conf": "/etc"}, {"a": "b", "b": "a"}], ids=["leaves", "loops"])
def test_a_copy_source_through_a_broken_link_is_a_located_error(
    git_repo: GitRepo, links: dict
) -> None:
    """It silently copied nothing; Docker's COPY fails on it (issue 12, case 11)."""
    import io
    import os

    from ci_layers.cli import main

    first = next(iter(links))
    git_repo.write(
        "ci-layers.yaml",
        f"version: 1\nlayers:\n  app:\n    from: scratch\n    copy: [{{src: {first}/x, dest: /x}}]\n",
    )
    for name, target in links.items():
        os.symlink(target, git_repo.root / name)
    git_repo.commit()
    err = io.StringIO()
    assert main(["plan", "-C", str(git_repo.root)], out=io.StringIO(), err=err) == 2
    assert (
        f"layer 'app': copy source '{first}/x' goes through a link that leaves the repository"
        in err.getvalue()
    )


def test_twins_at_base_are_found_through_one_index_in_spec_order(git_repo: GitRepo) -> None:
    """Layers renamed at once, several base layers sharing a key: each renamed layer names
    the first base layer with its key (in the base's build order), and a Dockerfile-free
    plan of many such layers needs no scan per layer (plan._by_digest)."""
    layers = "".join(
        f"  old{i}:\n    from: scratch\n    copy: [{{src: same/, dest: /s/}}]\n" for i in range(30)
    )
    git_repo.write("ci-layers.yaml", f"version: 1\nlayers:\n{layers}")
    git_repo.write("same/f", "x\n")
    base = git_repo.commit("base")
    git_repo.write("ci-layers.yaml", f"version: 1\nlayers:\n{layers.replace('old', 'new')}")
    head = git_repo.commit("renamed")
    p = plan(git_repo, "--base", base, "--head", head)
    assert p["affected"] == []
    assert {tuple(v["reasons"]) for v in p["layers"].values()} == {
        ("same content as 'old0' at base",)
    }
