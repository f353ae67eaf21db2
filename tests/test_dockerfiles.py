"""Plans over real histories of the Dockerfile fixture: discovery, edges, contexts."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ci_layers.cli import main
from ci_layers.discover import InRepoImages
from ci_layers.docker import context_name
from ci_layers.refs import same_image

from .conftest import FIXTURES
from .gitrepo import GitRepo

R = "registry.example.com/acme/"


@pytest.fixture
def dock(git_repo: GitRepo) -> GitRepo:
    git_repo.copy_fixture(FIXTURES / "dockerfiles")
    git_repo.commit("dockerfiles")
    return git_repo


def run(repo: GitRepo, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "-C", str(repo.root)], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def plan(repo: GitRepo, base: str, *extra: str) -> dict:
    code, out, err = run(repo, "plan", "--format", "json", "--base", base, "--head", "HEAD", *extra)
    assert code == 0, err
    return json.loads(out)


def short(names: list[str]) -> list[str]:
    return [n.removeprefix(R) for n in names]


def test_discovery_and_edges(dock: GitRepo) -> None:
    code, out, _ = run(dock, "graph", "--format", "json")
    assert code == 0
    layers = {x["name"].removeprefix(R): x for x in json.loads(out)["layers"]}
    assert sorted(layers) == sorted(
        [
            "base",
            "python:3.11",
            "python:3.12",
            "node:20",
            "builder",
            "api",
            "api:debug",
            "worker",
            "web",
            "web:slim",
            "tools",
        ]
    )
    assert layers["python:3.11"]["parents"] == [R + "base"]  # FROM ${BASE_IMAGE} built of ARGs
    assert layers["node:20"]["parents"] == [R + "base"]  # no host, implicit latest
    assert layers["builder"]["parents"] == [R + "base"]  # ${BASE:-...} default
    assert layers["api"]["parents"] == [R + "python:3.12", R + "builder"]  # multi-stage
    assert layers["worker"]["parents"] == [R + "python:3.11"]  # digest pin ignored
    assert layers["api:debug"]["parents"] == [R + "api"]
    assert layers["tools"]["parents"] == [R + "builder"]  # a Containerfile
    assert layers["base"]["from"].startswith("docker.io/library/debian:bookworm-slim@sha256:")


def test_a_file_the_image_reads(dock: GitRepo) -> None:
    base = dock.git("rev-parse", "HEAD")
    dock.write("images/api/requirements.txt", "fastapi==0.115.9\n")
    dock.commit("bump")
    p = plan(dock, base)
    assert short(p["affected"]) == ["api", "api:debug"]
    api = p["layers"][R + "api"]
    assert api["reasons"] == [
        "changed: images/api/requirements.txt",
        "cache breaks at images/api/Dockerfile:5 COPY requirements.txt /app/",
    ]
    assert (api["file"], api["context"]) == ("images/api/Dockerfile", "images/api")
    assert p["layers"][R + "api:debug"]["reasons"] == [f"parent '{R}api' is rebuilt"]
    assert p["layers"][R + "api:debug"]["context"] == "images/api"


def test_ignored_and_unread_files_rebuild_nothing(dock: GitRepo) -> None:
    base = dock.git("rev-parse", "HEAD")
    dock.write("images/api/docs/guide.md", "new docs\n")  # .dockerignore: docs
    dock.write("images/api/app/README.md", "x\n")  # .dockerignore: **/*.md
    dock.write("images/base/README.md", "x\n")  # .dockerignore: *.md
    dock.write("images/worker/tests/test_worker.py", "x\n")  # .dockerignore: tests/
    dock.write("images/web/src/legacy.js", "x\n")  # Dockerfile.dockerignore
    dock.write("images/web/notes.txt", "x\n")  # in the context, never copied
    dock.write("README.md", "x\n")
    dock.commit("noise")
    assert plan(dock, base)["affected"] == []


def test_a_middle_dockerfile_edit(dock: GitRepo) -> None:
    base = dock.git("rev-parse", "HEAD")
    path = dock.root / "images/python/3.12/Dockerfile"
    path.write_text(path.read_text() + "RUN pip install uv\n")
    dock.commit("uv")
    p = plan(dock, base)
    assert short(p["affected"]) == ["python:3.12", "api", "api:debug"]
    assert p["layers"][R + "python:3.12"]["reasons"] == [
        "changed: images/python/3.12/Dockerfile",
        "cache breaks at images/python/3.12/Dockerfile:4 RUN pip install uv",
    ]


def test_comments_and_layout_of_a_dockerfile_do_not_matter(dock: GitRepo) -> None:
    base = dock.git("rev-parse", "HEAD")
    path = dock.root / "images/base/Dockerfile"
    first, rest = path.read_text().split("\n", 1)  # the # syntax= directive stays first
    path.write_text(first + "\n# the base of everything\n\n" + rest.replace("COPY", "copy"))
    dock.commit("comment")
    assert plan(dock, base)["affected"] == []
    # a parser directive is part of the build: moving it below a comment disables it
    path.write_text("# a comment first\n" + path.read_text())
    dock.commit("directive lost")
    assert len(plan(dock, base)["affected"]) == 11


def test_base_change_reaches_every_image(dock: GitRepo) -> None:
    base = dock.git("rev-parse", "HEAD")
    dock.write("images/base/rootfs/etc/motd", "hello\n")
    dock.commit("motd")
    p = plan(dock, base)
    assert len(p["affected"]) == 11
    assert p["stages"][0] == [R + "base"]


def test_heredoc_edit(dock: GitRepo) -> None:
    base = dock.git("rev-parse", "HEAD")
    path = dock.root / "images/builder/Dockerfile"
    path.write_text(path.read_text().replace("echo built", "echo rebuilt"))
    dock.commit("heredoc")
    p = plan(dock, base)
    assert short(p["affected"]) == ["builder", "api", "tools", "api:debug"]
    assert (
        "cache breaks at images/builder/Dockerfile:3 RUN <<EOF"
        in p["layers"][R + "builder"]["reasons"]
    )


def test_wildcard_picks_up_a_new_file_and_copy_dot_reads_everything_not_ignored(
    dock: GitRepo,
) -> None:
    base = dock.git("rev-parse", "HEAD")
    dock.write("images/web/src/extra.js", "x\n")
    dock.write("images/worker/helpers.py", "x\n")
    dock.commit("new files")
    p = plan(dock, base)
    assert short(p["affected"]) == ["web", "worker", "web:slim"]
    assert (
        "cache breaks at images/worker/Dockerfile:4 COPY . ${APP_HOME}"
        in p["layers"][R + "worker"]["reasons"]
    )


def test_renaming_a_folder_builds_the_image_under_its_new_name(dock: GitRepo) -> None:
    base = dock.git("rev-parse", "HEAD")
    dock.git("mv", "images/tools", "images/devtools")
    dock.commit("rename")
    p = plan(dock, base)
    # same content, but nothing was ever pushed as .../devtools: pulling it would fail
    assert p["affected"] == [R + "devtools"]
    assert p["layers"][R + "devtools"]["reasons"] == [
        f"new name: same content as '{R}tools' at base, not pushed as this one"
    ]
    assert p["removed"] == [R + "tools"]


def test_moving_a_folder_that_keeps_the_image_name_reuses_the_build(dock: GitRepo) -> None:
    spec = (dock.root / "ci-layers.yaml").read_text()
    rule = (
        '  - path: "legacy/{name}/Containerfile"\n    image: "registry.example.com/acme/{name}"\n'
    )
    dock.write("ci-layers.yaml", spec.replace("\nimage_overrides:", rule + "\nimage_overrides:"))
    base = dock.commit("a second rule")
    (dock.root / "legacy").mkdir()
    dock.git("mv", "images/tools", "legacy/tools")
    dock.commit("move")
    p = plan(dock, base)
    assert p["affected"] == []
    assert p["layers"][R + "tools"]["file"] == "legacy/tools/Containerfile"


def test_two_images_that_swap_contents_are_both_built(dock: GitRepo) -> None:
    a, b = "images/api/Dockerfile", "images/worker/Dockerfile"
    text_a, text_b = (dock.root / a).read_text(), (dock.root / b).read_text()
    dock.write("images/api/Dockerfile", text_b)
    dock.write("images/worker/Dockerfile", text_a)
    base = dock.commit("api is worker")
    dock.write("images/api/Dockerfile", text_a)
    dock.write("images/worker/Dockerfile", text_b)
    dock.commit("swap back")
    p = plan(dock, base)
    assert {R + "api", R + "worker"} <= set(p["affected"])


def test_a_tag_spelled_another_way_is_no_new_tag(dock: GitRepo) -> None:
    spec = (dock.root / "ci-layers.yaml").read_text()
    dock.write("ci-layers.yaml", spec.replace("worker:stable]", "worker:stable, acme:1]"))
    base = dock.commit("tag acme:1")
    dock.write(
        "ci-layers.yaml", spec.replace("worker:stable]", "worker:stable, docker.io/library/acme:1]")
    )
    dock.commit("the same tag, spelled in full")
    assert plan(dock, base)["affected"] == []


def test_a_new_tag_of_an_unchanged_image_is_pushed(dock: GitRepo) -> None:
    spec = (dock.root / "ci-layers.yaml").read_text()
    dock.write("ci-layers.yaml", spec.replace("worker:stable]", "worker:stable, worker:v2]"))
    base = dock.git("rev-parse", "HEAD")
    dock.commit("tag v2")
    p = plan(dock, base)
    assert p["affected"] == [R + "worker"]
    assert p["layers"][R + "worker"]["reasons"] == ["new tags: worker:v2"]


def test_adding_an_image(dock: GitRepo) -> None:
    base = dock.git("rev-parse", "HEAD")
    dock.write(
        "images/cron/Dockerfile", "FROM registry.example.com/acme/python:3.11\nCOPY jobs /jobs\n"
    )
    dock.write("images/cron/jobs/a.sh", "echo\n")
    dock.commit("cron")
    p = plan(dock, base)
    assert short(p["affected"]) == ["cron"]
    assert p["layers"][R + "cron"]["parents"] == [R + "python:3.11"]
    assert p["layers"][R + "cron"]["reasons"] == ["new image"]


def test_build_args_from_the_spec_reach_the_key(dock: GitRepo) -> None:
    base = dock.git("rev-parse", "HEAD")
    spec = dock.root / "ci-layers.yaml"
    spec.write_text(spec.read_text().replace('WORKERS: "4"', 'WORKERS: "8"'))
    dock.commit("workers")
    p = plan(dock, base)
    assert short(p["affected"]) == ["worker"]
    assert p["layers"][R + "worker"]["reasons"] == ["spec: build_args changed"]


def test_spec_outside_the_repository(dock: GitRepo, tmp_path: Path) -> None:
    elsewhere = tmp_path / "try.yaml"
    elsewhere.write_text((dock.root / "ci-layers.yaml").read_text())
    dock.remove("ci-layers.yaml")
    base = dock.commit("no spec in the repo")
    dock.write("images/web/package.json", '{"v": 2}\n')
    dock.commit("web")
    p = plan(dock, base, "--spec", str(elsewhere))
    assert short(p["affected"]) == ["web", "web:slim"]


def test_bad_dockerfile_is_a_located_error(dock: GitRepo) -> None:
    dock.write("images/node/20/Dockerfile", "FROM ${BROKEN\n")
    code, _, err = run(dock, "validate")
    assert code == 2
    assert f"images/node/20/Dockerfile:1:1: error: layer '{R}node:20': unsupported modifier" in err


def test_two_dockerfiles_one_image_is_an_error(dock: GitRepo) -> None:
    dock.write("images/tools/Dockerfile", "FROM scratch\n")
    code, _, err = run(dock, "validate")
    assert code == 2
    assert f"both build image '{R}tools'" in err


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("registry.example.com/acme/base", "acme/base:latest", True),
        ("acme/base@sha256:" + "0" * 64, "acme/base", True),
        ("ubuntu", "docker.io/library/ubuntu:latest", True),
        ("localhost:5000/acme/x:1", "acme/x:1", True),
        ("registry.example.com/alpine", "alpine", False),  # "alpine" is Docker Hub's
        ("acme/base:1", "acme/base", False),
        ("acme/base", "other/base", False),
        ("index.docker.io/acme/a", "docker.io/acme/a", True),
        ("ubuntu:22.04", "harbor.corp.example/library/ubuntu:22.04", True),  # host unwritten
        ("docker.io/library/ubuntu:22.04", "harbor.corp.example/library/ubuntu:22.04", False),
        ("ghcr.io/acme/x", "registry.example.com/acme/x", False),  # two hosts disagree
    ],
)
def test_image_reference_matching(a: str, b: str, same: bool) -> None:
    assert same_image(a, b) is same
    assert same_image(b, a) is same


def test_an_image_is_never_its_own_base_and_an_exact_host_wins() -> None:
    images = InRepoImages()
    images.add("harbor.corp.example/library/ubuntu:22.04", "mirror")
    images.add("quay.io/acme/base", "quay-base")
    images.add("ghcr.io/acme/base", "ghcr-base")
    assert images.find("ubuntu:22.04", user="mirror") is None  # Docker Hub's, not itself
    assert images.find("ubuntu:22.04", user="python") == "mirror"
    assert images.find("docker.io/library/ubuntu:22.04", user="python") is None
    assert images.find("ghcr.io/acme/base", user="app") == "ghcr-base"
    assert images.find("acme/base", user="app") == "quay-base"  # unwritten host: first added


def test_a_mirror_built_from_the_image_it_mirrors_has_no_self_edge(git_repo: GitRepo) -> None:
    git_repo.write(
        "ci-layers.yaml",
        'version: 1\ndockerfiles:\n  - path: "images/{name}/{version}/Dockerfile"\n'
        '    image: "harbor.corp.example/library/{name}:{version}"\n',
    )
    git_repo.write("images/ubuntu/22.04/Dockerfile", "FROM ubuntu:22.04\nRUN apt-get update\n")
    git_repo.write("images/python/3.12/Dockerfile", "FROM docker.io/library/ubuntu:22.04\n")
    base = git_repo.commit("mirror")
    git_repo.write("images/ubuntu/22.04/Dockerfile", "FROM ubuntu:22.04\nRUN apt-get -y upgrade\n")
    git_repo.commit("upgrade")
    p = plan(git_repo, base)
    assert p["affected"] == ["harbor.corp.example/library/ubuntu:22.04"]
    code, out, _ = run(git_repo, "bake", "--base", base, "--head", "HEAD")
    assert code == 0
    assert all("contexts" not in t for t in json.loads(out)["target"].values())


def test_bake_file_builds_the_affected_dag_through_target_contexts(dock: GitRepo) -> None:
    base = dock.git("rev-parse", "HEAD")
    dock.write("images/builder/toolchain.cfg", "cc=clang\n")
    dock.commit("clang")
    code, out, err = run(dock, "bake", "--base", base, "--head", "HEAD")
    assert code == 0, err
    bake = json.loads(out)
    assert bake["group"]["default"]["targets"] == [
        "registry-example-com-acme-builder",
        "registry-example-com-acme-api",
        "registry-example-com-acme-tools",
        "registry-example-com-acme-api-debug",
    ]
    api = bake["target"]["registry-example-com-acme-api"]
    assert api["context"] == "images/api"
    assert api["dockerfile"] == "Dockerfile"
    assert api["contexts"] == {f"{R}builder": "target:registry-example-com-acme-builder"}
    assert bake["target"]["registry-example-com-acme-tools"]["dockerfile"] == "Containerfile"
    code, out, _ = run(dock, "plan", "--format", "json", "--base", base, "--head", "HEAD")
    assert json.loads(out)["layers"][R + "tools"]["notes"] == [
        "images/tools/Containerfile:2: ADD https://example.com/tool.tar.gz is not reproducible"
    ]
    assert bake["target"]["registry-example-com-acme-api-debug"]["contexts"] == {
        f"{R}api": "target:registry-example-com-acme-api"
    }
    # hand-off tags only, unless the run publishes: a pull request never moves a release
    [handoff] = api["tags"]
    assert handoff.startswith(f"{R}api:ci-layers-")
    code, out, err = run(dock, "bake", "--publish", "--base", base, "--head", "HEAD")
    assert code == 0, err
    assert json.loads(out)["target"]["registry-example-com-acme-api"]["tags"] == [
        f"{R}api",
        handoff,
    ]


def test_matrix_entries_carry_build_push_action_inputs(dock: GitRepo) -> None:
    from ci_layers.changes import GitHistory, choose_comparison
    from ci_layers.outputs import action_outputs, stage_jobs
    from ci_layers.plan import make_plan
    from ci_layers.spec import load_spec

    base = dock.git("rev-parse", "HEAD")
    dock.write("images/base/rootfs/etc/motd", "hi\n")
    dock.commit("base")
    history = GitHistory(dock.root)
    comparison = choose_comparison(history, event_name=None, payload={}, base=base, head="HEAD")
    spec = load_spec(dock.root / "ci-layers.yaml", display="ci-layers.yaml")
    plan = make_plan(
        root=dock.root, spec=spec, spec_rel="ci-layers.yaml", comparison=comparison, history=history
    )
    packed = stage_jobs(plan, plan.spec, max_stages=8, max_parallel=256)
    outputs = action_outputs(plan, plan.spec, packed=packed, plan_file=dock.root / "p.json").outputs
    matrix = {e["name"]: e for e in json.loads(outputs["matrix"])["include"]}
    base_key = plan.layers[R + "base"].key.removeprefix("sha256:")[:16]
    py311 = matrix[R + "python:3.11"]
    assert (py311["context"], py311["file"]) == (
        "images/python/3.11",
        "images/python/3.11/Dockerfile",
    )
    # FROM ${BASE_IMAGE}: both the named context and the ARG point at the rebuilt base
    assert (
        py311["docker"]["build-contexts"] == f"{R}base=docker-image://{R}base:ci-layers-{base_key}"
    )
    assert f"BASE_IMAGE={R}base:ci-layers-{base_key}" in py311["docker"]["build-args"].split("\n")
    assert "PYTHON_VERSION=3.11" in py311["docker"]["build-args"].split("\n")
    worker = matrix[R + "worker"]
    assert worker["kind"] == "dockerfile"
    assert worker["release-tags"] == [f"{R}worker", f"{R}worker:stable"]
    handoff = worker["hand-off-tag"]
    assert handoff.startswith(f"{R}worker:ci-layers-")
    # a run that does not publish pushes only the hand-off tag later stages pull
    assert worker["tags"] == [handoff]
    assert worker["docker"]["tags"] == handoff
    published = action_outputs(
        plan, plan.spec, packed=packed, plan_file=dock.root / "p.json", publish=True
    ).outputs
    worker = {e["name"]: e for e in json.loads(published["matrix"])["include"]}[R + "worker"]
    assert worker["tags"] == [f"{R}worker", f"{R}worker:stable", handoff]
    assert worker["docker"]["tags"].split("\n") == worker["tags"]


def test_symlinks_in_the_context_and_parent_paths(dock: GitRepo) -> None:
    dock.write(
        "images/ctx/Dockerfile",
        "FROM scratch\nCOPY cfg /etc/cfg\nCOPY dir/ /d/\nCOPY ../up.txt /u\n",
    )
    dock.write("images/ctx/real.cfg", "a\n")
    dock.write("images/ctx/real/x.txt", "x\n")
    dock.write("images/ctx/up.txt", "u\n")
    (dock.root / "images/ctx/cfg").symlink_to("real.cfg")
    (dock.root / "images/ctx/dir").symlink_to("real")
    base = dock.commit("ctx")
    for path in ("images/ctx/real.cfg", "images/ctx/real/x.txt", "images/ctx/up.txt"):
        dock.write(path, "changed\n")
        dock.commit(path)
        assert short(plan(dock, base)["affected"]) == ["ctx"], path
        base = dock.git("rev-parse", "HEAD")


def test_a_symlinked_folder_on_a_source_path_is_followed(dock: GitRepo) -> None:
    dock.write(
        "images/via/Dockerfile",
        "FROM scratch\nCOPY ld/f /x\nCOPY ld/*.txt /t/\nCOPY ld/deep/ /d/\n",
    )
    for name in ("f", "a.txt", "deep/g", "other"):
        dock.write(f"images/via/real/{name}", "1\n")
    (dock.root / "images/via/ld").symlink_to("real")
    base = dock.commit("via a link")
    for name in ("f", "a.txt", "deep/g"):
        dock.write(f"images/via/real/{name}", "2\n")
        dock.commit(name)
        p = plan(dock, base)
        assert short(p["affected"]) == ["via"], name
        base = dock.git("rev-parse", "HEAD")
    dock.write("images/via/real/other", "2\n")  # read by no instruction
    dock.commit("other")
    assert plan(dock, base)["affected"] == []


def test_a_symlinked_dockerfile(dock: GitRepo) -> None:
    (dock.root / "images/lnk").mkdir()
    (dock.root / "images/lnk/Dockerfile").symlink_to("../builder/Dockerfile")
    dock.write("images/lnk/toolchain.cfg", "cc=tcc\n")
    base = dock.commit("lnk")
    dock.write("images/lnk/toolchain.cfg", "cc=zig\n")
    dock.commit("zig")
    assert short(plan(dock, base)["affected"]) == ["lnk"]


def test_a_bad_dockerignore_and_an_unused_override(dock: GitRepo) -> None:
    spec = dock.root / "ci-layers.yaml"
    spec.write_text(spec.read_text() + "  registry.example.com/acme/wroker:\n    tags: [x]\n")
    code, _, err = run(dock, "validate")
    assert code == 0
    assert (
        "warning: image_overrides names 'registry.example.com/acme/wroker', which no Dockerfile builds"
        in err
    )
    dock.write("images/web/Dockerfile.dockerignore", "[\n")
    code, _, err = run(dock, "validate")
    assert code == 2
    assert "images/web/Dockerfile.dockerignore: error:" in err


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("docker.io/library/buildpack-deps:bookworm-curl", "buildpack-deps:bookworm-curl"),
        ("quay.io/cilium/cilium-runtime:latest", "quay.io/cilium/cilium-runtime"),
        ("index.docker.io/acme/x", "acme/x"),
        ("ubuntu:latest", "ubuntu"),
        ("library/ubuntu:22.04", "ubuntu:22.04"),
        ("localhost:5000/a:1", "localhost:5000/a:1"),
        ("localhost/a:latest", "localhost/a"),
        ("docker.io/acme/x:latest@sha256:" + "0" * 64, "acme/x:latest@sha256:" + "0" * 64),
    ],
)
def test_context_names_are_what_buildkit_looks_up(ref: str, name: str) -> None:
    # dockerui NamedContext: TrimSuffix(FamiliarString(ParseNormalizedNamed(ref)), ":latest")
    assert context_name(ref) == name


def test_bake_names_contexts_as_buildkit_looks_them_up(dock: GitRepo) -> None:
    spec = dock.root / "ci-layers.yaml"
    spec.write_text(spec.read_text() + "  registry.example.com/acme/tools:\n    context: images\n")
    base = dock.commit("tools built from images/")
    dock.write("images/base/rootfs/etc/motd", "x\n")
    dock.commit("base")
    code, out, err = run(dock, "bake", "--base", base, "--head", "HEAD")
    assert code == 0, err
    targets = json.loads(out)["target"]
    worker = targets["registry-example-com-acme-worker"]
    assert list(worker["contexts"]) == [f"{R}python:3.11@sha256:" + "0" * 64]
    assert targets["registry-example-com-acme-python-3-12"]["contexts"] == {
        f"{R}base": "target:registry-example-com-acme-base"  # written base:latest
    }
    tools = targets["registry-example-com-acme-tools"]
    assert (tools["context"], tools["dockerfile"]) == ("images", "tools/Containerfile")


def test_docker_library_layout(git_repo: GitRepo) -> None:
    """The issue's own example: {family}/{version}/{os}/{variant}/Dockerfile."""
    git_repo.write(
        "ci-layers.yaml",
        'version: 1\ndockerfiles:\n  - path: "{family}/{version}/{os}/{variant}/Dockerfile"\n'
        '    image: "{family}:{version}-{variant}-{os}"\n',
    )
    git_repo.write("python/3.12/bookworm/slim/Dockerfile", "FROM debian:bookworm-slim\nCOPY x /\n")
    git_repo.write("python/3.12/bookworm/slim/x", "1\n")
    git_repo.write("python/3.12/bookworm/full/Dockerfile", "FROM python:3.12-slim-bookworm\n")
    git_repo.write(
        "tools/1/bookworm/base/Dockerfile",
        "FROM python:3.12-full-bookworm@sha256:" + "1" * 64 + "\n",
    )
    base = git_repo.commit("library")
    git_repo.write("python/3.12/bookworm/slim/x", "2\n")
    git_repo.commit("x")
    p = plan(git_repo, base)
    assert p["affected"] == [
        "python:3.12-slim-bookworm",
        "python:3.12-full-bookworm",
        "tools:1-base-bookworm",
    ]
    assert p["layers"]["python:3.12-slim-bookworm"]["parents"] == []


def test_env_of_an_in_repo_parent_reaches_the_childs_copy_sources(dock: GitRepo) -> None:
    dock.write("images/envbase/Dockerfile", "FROM scratch\nENV CONF_DIR=settings\n")
    dock.write(
        "images/envkid/Dockerfile",
        "FROM registry.example.com/acme/envbase\nCOPY $CONF_DIR/app.ini /etc/\n",
    )
    dock.write("images/envkid/settings/app.ini", "a=1\n")
    dock.write("images/envkid/app.ini", "unrelated\n")
    base = dock.commit("env")
    dock.write("images/envkid/settings/app.ini", "a=2\n")
    dock.commit("setting")
    assert short(plan(dock, base)["affected"]) == ["envkid"]
    base = dock.git("rev-parse", "HEAD")
    dock.write("images/envkid/app.ini", "still unrelated\n")
    dock.commit("unrelated")
    assert plan(dock, base)["affected"] == []


def test_onbuild_triggers_of_an_in_repo_parent_read_the_childs_context(dock: GitRepo) -> None:
    dock.write("images/obase/Dockerfile", "FROM scratch\nONBUILD COPY app/ /srv/\n")
    dock.write("images/okid/Dockerfile", "FROM registry.example.com/acme/obase\nRUN true\n")
    dock.write("images/okid/app/main.py", "print(1)\n")
    dock.write("images/okid/README.md", "kid\n")
    dock.write("images/ogrand/Dockerfile", "FROM registry.example.com/acme/okid\n")
    dock.write("images/ogrand/app/main.py", "print(1)\n")
    base = dock.commit("onbuild")
    dock.write("images/okid/app/main.py", "print(2)\n")
    dock.write("images/okid/README.md", "kid, read by no instruction\n")
    dock.write("images/ogrand/app/main.py", "print(2)\n")  # triggers do not reach it
    dock.commit("edit the kid's app")
    p = plan(dock, base)
    assert short(p["affected"]) == ["okid", "ogrand"]
    reasons = p["layers"][R + "okid"]["reasons"]
    assert any("ONBUILD COPY app/ /srv/" in r for r in reasons), reasons
    assert p["layers"][R + "ogrand"]["reasons"] == [f"parent '{R}okid' is rebuilt"]


def test_an_unresolved_from_is_a_located_warning(dock: GitRepo) -> None:
    dock.write("images/tagless/Dockerfile", "ARG TAG\nFROM python:${TAG}\nRUN true\n")
    dock.commit("tagless")
    code, _, err = run(dock, "validate")
    assert code == 0
    assert "images/tagless/Dockerfile:2:1: warning:" in err
    assert "expands to 'python:'" in err


def test_a_dockerfile_that_is_not_utf8_keys_its_bytes(dock: GitRepo) -> None:
    (dock.root / "images/latin").mkdir()
    (dock.root / "images/latin/Dockerfile").write_bytes(b"FROM scratch\nRUN echo caf\xe9\n")
    base = dock.commit("latin-1")
    (dock.root / "images/latin/Dockerfile").write_bytes(b"FROM scratch\nRUN echo caf\xe8\n")
    dock.commit("another byte")
    assert short(plan(dock, base)["affected"]) == ["latin"]
    code, out, err = run(dock, "plan", "--base", base, "--head", "HEAD")
    assert code == 0, err
    assert "Dockerfile:2" in out


def test_the_final_stage_is_built_on_what_its_stages_start_from(dock: GitRepo) -> None:
    dock.write(
        "images/chain/Dockerfile",
        f"FROM {R}base AS rootfs\nRUN true\nFROM rootfs AS release\nRUN true\n",
    )
    dock.write("images/deb/Dockerfile", "FROM debian:12 AS b\nRUN true\nFROM b\n")
    dock.commit("stage chains")
    code, out, _ = run(dock, "graph", "--format", "json")
    assert code == 0
    layers = {layer["name"]: layer for layer in json.loads(out)["layers"]}
    assert (layers[R + "chain"]["parents"], layers[R + "chain"]["from"]) == ([R + "base"], None)
    assert (layers[R + "deb"]["parents"], layers[R + "deb"]["from"]) == ([], "debian:12")


def test_copy_exclude_drops_only_what_lies_below_the_source(dock: GitRepo) -> None:
    # fsutil matches --exclude against paths inside a copied folder, relative to it; the
    # file a source names or a wildcard matches is copied whatever the patterns say.
    dock.write(
        "images/ex/Dockerfile",
        "FROM scratch\nCOPY --exclude=*.md src/a.md /d/\nCOPY --exclude=*.md *.md /e/\n"
        "COPY --exclude=*.md docs/ /f/\n",
    )
    for name in ("src/a.md", "top.md", "docs/x.md", "docs/sub/y.md", "docs/z.txt"):
        dock.write(f"images/ex/{name}", "1\n")
    base = dock.commit("excludes")
    for name, rebuilt in [
        ("src/a.md", True),
        ("top.md", True),
        ("docs/x.md", False),
        ("docs/sub/y.md", True),
        ("docs/z.txt", True),
    ]:
        dock.write(f"images/ex/{name}", "2\n")
        dock.commit(name)
        assert (short(plan(dock, base)["affected"]) == ["ex"]) is rebuilt, name
        base = dock.git("rev-parse", "HEAD")


def test_a_stage_the_image_never_reaches_rebuilds_nothing_unless_it_is_the_target(
    dock: GitRepo,
) -> None:
    dock.write(
        "images/multi/Dockerfile",
        "FROM scratch AS test\nCOPY tests/ /t/\nFROM scratch AS prod\nCOPY app/ /app/\n"
        "FROM scratch AS dev\nCOPY dev/ /d/\n",
    )
    for name in ("tests/t.py", "app/a.py", "dev/d.py"):
        dock.write(f"images/multi/{name}", "1\n")
    spec = (dock.root / "ci-layers.yaml").read_text()
    dock.write("ci-layers.yaml", spec + "  registry.example.com/acme/multi:\n    target: prod\n")
    base = dock.commit("multi-stage")
    for name, rebuilt in [("tests/t.py", False), ("dev/d.py", False), ("app/a.py", True)]:
        dock.write(f"images/multi/{name}", "2\n")
        dock.commit(name)
        assert (short(plan(dock, base)["affected"]) == ["multi"]) is rebuilt, name
        base = dock.git("rev-parse", "HEAD")
    code, out, _ = run(dock, "bake", "--base", "HEAD~1", "--head", "HEAD")
    assert code == 0
    assert json.loads(out)["target"]["registry-example-com-acme-multi"]["target"] == "prod"


def test_a_build_arg_no_arg_declares_does_not_rebuild(dock: GitRepo) -> None:
    spec = (dock.root / "ci-layers.yaml").read_text()
    dock.write("ci-layers.yaml", spec.replace('{WORKERS: "4"}', '{WORKERS: "4", UNUSED: "a"}'))
    base = dock.commit("an undeclared build arg")
    spec = (dock.root / "ci-layers.yaml").read_text()
    dock.write("ci-layers.yaml", spec.replace('UNUSED: "a"', 'UNUSED: "b"'))
    dock.commit("change it")
    assert plan(dock, base)["affected"] == []
    base = dock.git("rev-parse", "HEAD")
    dock.write("ci-layers.yaml", spec.replace('WORKERS: "4"', 'WORKERS: "8"'))
    dock.commit("a declared one")
    assert short(plan(dock, base)["affected"]) == ["worker"]


def test_a_copy_source_from_a_parent_env_is_not_taken_for_a_missing_argument(
    dock: GitRepo,
) -> None:
    dock.write("images/penv/Dockerfile", "FROM scratch\nENV F=x.txt\n")
    dock.write("images/cenv/Dockerfile", f"FROM {R}penv\nCOPY $F /f\n")
    dock.write("images/cenv/x.txt", "1\n")
    base = dock.commit("env from the parent")
    dock.write("images/cenv/x.txt", "2\n")
    dock.commit("x")
    assert short(plan(dock, base)["affected"]) == ["cenv"]


def test_a_context_folder_named_like_a_pattern_is_taken_literally(dock: GitRepo) -> None:
    dock.write("images/[v1]/Dockerfile", "FROM scratch\nCOPY *.txt /t/\nCOPY app/ /app/\n")
    dock.write("images/[v1]/a.txt", "1\n")
    dock.write("images/[v1]/app/main.py", "1\n")
    dock.write("images/v/a.txt", "1\n")  # what [v1] would match as a pattern
    base = dock.commit("bracketed folder")
    for name in ("images/[v1]/a.txt", "images/[v1]/app/main.py"):
        dock.write(name, "2\n")
        dock.commit(name)
        assert short(plan(dock, base)["affected"]) == ["[v1]"], name
        base = dock.git("rev-parse", "HEAD")
    dock.write("images/v/a.txt", "2\n")
    dock.commit("not in the context")
    assert plan(dock, base)["affected"] == []


def test_spacing_in_a_copy_line_rebuilds_nothing_in_a_run_line_it_does(dock: GitRepo) -> None:
    dock.write("images/ws/Dockerfile", "FROM scratch\nCOPY f /x\nRUN echo a\n")
    dock.write("images/ws/f", "1\n")
    base = dock.commit("spacing")
    dock.write("images/ws/Dockerfile", "FROM scratch\nCOPY  f\t  /x\nRUN echo a\n")
    dock.commit("copy spacing")
    assert plan(dock, base)["affected"] == []
    dock.write("images/ws/Dockerfile", "FROM scratch\nCOPY f /x\nRUN echo  a\n")
    dock.commit("run spacing: part of the command BuildKit runs and caches")
    assert short(plan(dock, base)["affected"]) == ["ws"]


def test_a_context_written_from_the_root_or_through_a_link(dock: GitRepo) -> None:
    spec = (dock.root / "ci-layers.yaml").read_text()
    rules = (
        '  - path: "ctx/{name}/Dockerfile"\n    image: "registry.example.com/acme/{name}"\n'
        '    context: "/ctx/{name}"\n'
        '  - path: "linked/{name}/Dockerfile"\n    image: "registry.example.com/acme/{name}"\n'
        '    context: "linked/{name}/ctx"\n'
    )
    dock.write("ci-layers.yaml", spec.replace("\nimage_overrides:", rules + "\nimage_overrides:"))
    dock.write("ctx/slash/Dockerfile", "FROM scratch\nCOPY app/ /app/\n")
    dock.write("ctx/slash/app/a.py", "1\n")
    dock.write("linked/ln/Dockerfile", "FROM scratch\nCOPY . /src/\n")
    dock.write("src/ln/main.py", "1\n")
    dock.write("src/ln/notes.md", "1\n")
    dock.write("src/ln/.dockerignore", "*.md\n")
    (dock.root / "linked/ln/ctx").symlink_to("../../src/ln")
    base = dock.commit("contexts")
    dock.write("ctx/slash/app/a.py", "2\n")
    dock.write("src/ln/notes.md", "2\n")  # the linked context's .dockerignore leaves it out
    dock.commit("edit")
    assert short(plan(dock, base)["affected"]) == ["slash"]
    base = dock.git("rev-parse", "HEAD")
    dock.write("src/ln/main.py", "2\n")
    dock.commit("main")
    assert short(plan(dock, base)["affected"]) == ["ln"]


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ("../x", "build context '../x' is outside the repository"),
        ("nope", "build context 'nope' is not a folder of the repository"),
        ("out/o/Dockerfile", "build context 'out/o/Dockerfile' is not a folder of the repository"),
    ],
)
def test_a_context_that_is_no_folder_of_the_repository_is_an_error(
    dock: GitRepo, context: str, message: str
) -> None:
    spec = (dock.root / "ci-layers.yaml").read_text()
    rule = f'  - path: "out/{{name}}/Dockerfile"\n    image: "r.example/{{name}}"\n    context: "{context}"\n'
    dock.write("ci-layers.yaml", spec.replace("\nimage_overrides:", rule + "\nimage_overrides:"))
    dock.write("out/o/Dockerfile", "FROM scratch\n")
    dock.commit("outside")
    code, _, err = run(dock, "validate")
    assert code == 2
    assert message in err


def test_args_only_an_unreachable_stage_uses_rebuild_nothing(dock: GitRepo) -> None:
    dock.write(
        "images/argy/Dockerfile",
        "ARG TEST_BASE=python:3.12\nARG RUNTIME=scratch\n"
        "FROM ${TEST_BASE} AS test\nARG PYTEST=8\nRUN pip install pytest==$PYTEST\n"
        "FROM ${RUNTIME}\nARG APP=1\nRUN echo $APP\n",
    )
    base = dock.commit("argy")
    spec = (dock.root / "ci-layers.yaml").read_text()
    override = (
        "  registry.example.com/acme/argy:\n"
        '    build_args: {PYTEST: "9", TEST_BASE: "python:3.13"}\n'
    )
    dock.write("ci-layers.yaml", spec + override)
    text = (dock.root / "images/argy/Dockerfile").read_text()
    dock.write("images/argy/Dockerfile", text.replace("python:3.12", "python:3.11"))
    dock.commit("only the test stage's arguments")
    assert plan(dock, base)["affected"] == []
    base = dock.git("rev-parse", "HEAD")
    dock.write("images/argy/Dockerfile", text.replace("APP=1", "APP=2"))
    dock.commit("the built stage's")
    assert short(plan(dock, base)["affected"]) == ["argy"]


def test_copy_exclude_applies_through_a_symlinked_folder(dock: GitRepo) -> None:
    dock.write("images/exl/Dockerfile", "FROM scratch\nCOPY --exclude=*.md ld/ /x/\n")
    dock.write("images/exl/real/a.md", "1\n")
    dock.write("images/exl/real/b.txt", "1\n")
    (dock.root / "images/exl/ld").symlink_to("real")
    base = dock.commit("exclude via a link")
    dock.write("images/exl/real/a.md", "2\n")
    dock.commit("excluded")
    assert plan(dock, base)["affected"] == []
    dock.write("images/exl/real/b.txt", "2\n")
    dock.commit("copied")
    assert short(plan(dock, base)["affected"]) == ["exl"]


def test_two_images_pushing_one_reference_is_an_error(dock: GitRepo) -> None:
    spec = (dock.root / "ci-layers.yaml").read_text()
    rule = '  - path: "other/{name}/Dockerfile"\n    image: "registry.example.com/acme/{name}:latest"\n'
    dock.write("ci-layers.yaml", spec.replace("\nimage_overrides:", rule + "\nimage_overrides:"))
    dock.write("other/base/Dockerfile", "FROM scratch\n")
    dock.commit("a second base:latest")
    code, _, err = run(dock, "validate")
    assert code == 2
    assert "pushes 'registry.example.com/acme/base:latest', which image" in err


def test_a_dockerfile_built_on_a_tag_a_spec_layer_pushes_depends_on_it(git_repo: GitRepo) -> None:
    spec = (
        'version: 1\nlayers:\n  base: {from: "alpine@sha256:' + "0" * 64 + '", run: "echo 1"}\n'
        "images:\n  base: {layer: base, tags: [reg.example/base:1]}\n"
        'dockerfiles:\n  - path: "images/{name}/Dockerfile"\n    image: "reg.example/{name}"\n'
    )
    git_repo.write("ci-layers.yaml", spec)
    git_repo.write("images/app/Dockerfile", "FROM reg.example/base:1\nRUN true\n")
    base = git_repo.commit("mixed")
    git_repo.write("ci-layers.yaml", spec.replace("echo 1", "echo 2"))
    git_repo.commit("base changes")
    p = plan(git_repo, base)
    assert p["affected"] == ["base", "reg.example/app"]
    assert p["layers"]["reg.example/app"]["parents"] == ["base"]


def test_symlinks_in_a_context_resolve_inside_it(dock: GitRepo) -> None:
    # BuildKit resolves links with the context as root: `..` stops there, `/x` is its x
    dock.write("images/scoped/Dockerfile", "FROM scratch\nCOPY up/f /x\nCOPY abs/g /y\n")
    dock.write("images/scoped/f", "1\n")
    dock.write("images/scoped/g", "1\n")
    dock.write("images/f", "1\n")  # outside the context
    (dock.root / "images/scoped/up").symlink_to("..")
    (dock.root / "images/scoped/abs").symlink_to("/")
    base = dock.commit("scoped links")
    dock.write("images/f", "2\n")
    dock.commit("outside")
    assert plan(dock, base)["affected"] == []
    for name in ("images/scoped/f", "images/scoped/g"):
        base = dock.git("rev-parse", "HEAD")
        dock.write(name, "2\n")
        dock.commit(name)
        assert short(plan(dock, base)["affected"]) == ["scoped"], name


def test_a_placeholder_of_many_segments_names_images_by_their_folder(git_repo: GitRepo) -> None:
    git_repo.write(
        "ci-layers.yaml",
        "version: 1\ndockerfiles:\n"
        '  - path: "{dir**}/Dockerfile"\n    image: "reg.example/{dir}"\n'
        '  - path: "svc/**/{name}/Containerfile"\n    image: "reg.example/svc-{name}"\n',
    )
    git_repo.write("base/Dockerfile", "FROM scratch\nCOPY os.txt /\n")
    git_repo.write("base/os.txt", "1\n")
    git_repo.write("apps/web/Dockerfile", "FROM reg.example/base\n")
    git_repo.write("apps/web/admin/Dockerfile", "FROM reg.example/apps/web\n")
    git_repo.write("svc/deep/er/api/Containerfile", "FROM reg.example/apps/web\n")
    base = git_repo.commit("nested")
    code, out, _ = run(git_repo, "graph", "--format", "json")
    assert code == 0
    names = sorted(layer["name"] for layer in json.loads(out)["layers"])
    assert names == [
        "reg.example/apps/web",
        "reg.example/apps/web/admin",
        "reg.example/base",
        "reg.example/svc-api",
    ]
    git_repo.write("base/os.txt", "2\n")
    git_repo.commit("base")
    assert plan(git_repo, base)["affected"] == [
        "reg.example/base",
        "reg.example/apps/web",
        "reg.example/apps/web/admin",
        "reg.example/svc-api",
    ]


def test_an_image_name_docker_would_refuse_is_a_located_warning(dock: GitRepo) -> None:
    dock.write("images/MyApp/Dockerfile", "FROM scratch\n")
    dock.commit("upper case")
    code, _, err = run(dock, "validate")
    assert code == 0
    assert (
        "images/MyApp/Dockerfile: warning: layer 'registry.example.com/acme/MyApp': image "
        "'registry.example.com/acme/MyApp' is not a valid image reference" in err
    )


def test_a_rule_of_any_depth_is_less_specific_than_one_of_one_folder(git_repo: GitRepo) -> None:
    git_repo.write(
        "ci-layers.yaml",
        "version: 1\ndockerfiles:\n"
        '  - path: "images/**/{name}/Dockerfile"\n    image: "reg.example/nested-{name}"\n'
        '  - path: "{dir**}/Dockerfile"\n    image: "reg.example/any/{dir}"\n'
        '  - path: "images/{name}/Dockerfile"\n    image: "reg.example/{name}"\n',
    )
    git_repo.write("images/a/Dockerfile", "FROM scratch\n")
    git_repo.write("images/x/b/Dockerfile", "FROM reg.example/a\n")
    git_repo.write("other/c/Dockerfile", "FROM scratch\n")
    git_repo.commit("rules")
    code, out, _ = run(git_repo, "graph", "--format", "json")
    assert code == 0
    layers = {layer["name"]: layer for layer in json.loads(out)["layers"]}
    assert sorted(layers) == ["reg.example/a", "reg.example/any/other/c", "reg.example/nested-b"]
    assert layers["reg.example/nested-b"]["parents"] == ["reg.example/a"]


def test_a_wide_placeholder_in_an_image_template_is_an_error(git_repo: GitRepo) -> None:
    git_repo.write(
        "ci-layers.yaml",
        'version: 1\ndockerfiles:\n  - path: "{dir**}/Dockerfile"\n    image: "reg/{dir**}"\n',
    )
    git_repo.write("a/Dockerfile", "FROM scratch\n")
    git_repo.commit("typo")
    code, _, err = run(git_repo, "validate")
    assert code == 2
    assert "write {dir} here: {dir**} is only for the path" in err


# One image per folder of images/, named acme/<folder>.
ACME_RULES = (
    'version: 1\ndockerfiles:\n  - path: "images/{name}/Dockerfile"\n    image: "acme/{name}"\n'
)


# --- per-image inputs and build args from a file (a Makefile-driven repository) -----------

MAKEFILE_SPEC = """
version: 1
dockerfiles:
  - path: "images/{name}/Dockerfile"
    image: "registry.example.com/acme/{name}"
    build_args_file: "images/{name}/build.env"
    inputs: ["images/{name}/Makefile", "/images/common.mk"]
"""


def _makefile_image(repo: GitRepo, name: str, parent: str | None) -> None:
    repo.write(
        f"images/{name}/Dockerfile", "ARG BASE_IMG=placeholder\nFROM ${BASE_IMG}\nCOPY . /src\n"
    )
    base = f"{R}{parent}:latest" if parent else "alpine@sha256:" + "a" * 64
    repo.write(f"images/{name}/build.env", f"# read by the Makefile too\nBASE_IMG={base}\n")
    repo.write(f"images/{name}/Makefile", "include build.env\ninclude ../common.mk\n")


@pytest.fixture
def makefiles(git_repo: GitRepo) -> GitRepo:
    git_repo.write("ci-layers.yaml", MAKEFILE_SPEC)
    git_repo.write("images/common.mk", "REGISTRY := registry.example.com/acme\n")
    _makefile_image(git_repo, "base", None)
    _makefile_image(git_repo, "app", "base")
    _makefile_image(git_repo, "web", "app")
    _makefile_image(git_repo, "other", "base")
    git_repo.commit("images")
    return git_repo


def test_build_args_file_gives_the_parent_edges(makefiles: GitRepo) -> None:
    code, out, err = run(makefiles, "graph", "--format", "json")
    assert code == 0, err
    parents = {short([x["name"]])[0]: short(x["parents"]) for x in json.loads(out)["layers"]}
    assert parents == {"base": [], "app": ["base"], "web": ["app"], "other": ["base"]}


def test_one_images_makefile_rebuilds_it_and_its_descendants(makefiles: GitRepo) -> None:
    base = makefiles.git("rev-parse", "HEAD")
    makefiles.write("images/app/Makefile", "include build.env\ninclude ../common.mk\nX := 1\n")
    makefiles.commit("app's Makefile")
    p = plan(makefiles, base)
    assert short(p["affected"]) == ["app", "web"]
    assert "changed: images/app/Makefile" in p["layers"][f"{R}app"]["reasons"]


def test_a_new_image_with_its_own_makefile_rebuilds_only_itself(makefiles: GitRepo) -> None:
    base = makefiles.git("rev-parse", "HEAD")
    _makefile_image(makefiles, "tool", "base")
    makefiles.commit("a new image")
    assert short(plan(makefiles, base)["affected"]) == ["tool"]


def test_the_shared_makefile_rebuilds_all_that_read_it(makefiles: GitRepo) -> None:
    base = makefiles.git("rev-parse", "HEAD")
    makefiles.write("images/common.mk", "REGISTRY := registry.example.com/other\n")
    makefiles.commit("common.mk")
    assert sorted(short(plan(makefiles, base)["affected"])) == ["app", "base", "other", "web"]


def test_a_changed_args_file_moves_the_edge(makefiles: GitRepo) -> None:
    base = makefiles.git("rev-parse", "HEAD")
    makefiles.write("images/web/build.env", f"BASE_IMG={R}other:latest\n")
    makefiles.commit("web on other")
    p = plan(makefiles, base)
    assert short(p["affected"]) == ["web"]
    assert short(p["layers"][f"{R}web"]["parents"]) == ["other"]


def test_rule_build_args_win_over_the_file(makefiles: GitRepo) -> None:
    makefiles.write(
        "ci-layers.yaml",
        MAKEFILE_SPEC + f"image_overrides:\n  {R}web:\n    build_args: {{BASE_IMG: '{R}base'}}\n",
    )
    code, out, err = run(makefiles, "graph", "--format", "json")
    assert code == 0, err
    parents = {short([x["name"]])[0]: short(x["parents"]) for x in json.loads(out)["layers"]}
    assert parents["web"] == ["base"]


def test_a_missing_args_file_is_no_args_and_still_an_input(makefiles: GitRepo) -> None:
    makefiles.remove("images/other/build.env")
    makefiles.write("images/other/Dockerfile", "FROM alpine@sha256:" + "b" * 64 + "\n")
    makefiles.commit("other without an args file")
    base = makefiles.git("rev-parse", "HEAD")
    makefiles.write("images/other/build.env", "UNUSED=1\n")
    makefiles.commit("an args file appears")
    assert short(plan(makefiles, base)["affected"]) == ["other"]


def test_a_bad_args_file_line_is_located(makefiles: GitRepo) -> None:
    makefiles.write("images/app/build.env", "BASE_IMG := x\n")
    code, _out, err = run(makefiles, "validate")
    assert code == 2
    assert "images/app/build.env:1:1: error:" in err
    assert "write KEY=value with no spaces around = (make reads that too)" in err


def test_a_rule_placeholder_unknown_in_inputs_is_an_error(git_repo: GitRepo) -> None:
    git_repo.write(
        "ci-layers.yaml",
        'version: 1\ndockerfiles:\n  - path: "images/{name}/Dockerfile"\n    image: "x/{name}"\n'
        '    inputs: ["images/{nmae}/Makefile"]\n',
    )
    git_repo.commit()
    code, _out, err = run(git_repo, "validate")
    assert code == 2
    assert "{nmae} is not a placeholder of path 'images/{name}/Dockerfile'" in err


def test_the_readmes_placeholder_rules_hold(git_repo: GitRepo) -> None:
    """Mixed placeholders in a tag, a matched placeholder left unused, and a rename by a
    rule with a literal path (the most specific wins), as the README says."""
    git_repo.write(
        "ci-layers.yaml",
        "version: 1\ndockerfiles:\n"
        '  - path: "{os}/{distro}-{flavor}/Dockerfile"\n'
        '    image: "ros:{distro}-{flavor}"\n'
        '  - path: "linux/legacy-old/Dockerfile"\n'
        '    image: "acme/modern"\n',
    )
    for folder in ("linux/humble-core", "linux/legacy-old"):
        git_repo.write(f"{folder}/Dockerfile", "FROM alpine@sha256:" + "c" * 64 + "\n")
    git_repo.commit()
    code, out, err = run(git_repo, "graph", "--format", "json")
    assert code == 0, err
    assert sorted(x["name"] for x in json.loads(out)["layers"]) == [
        "acme/modern",
        "ros:humble-core",
    ]


def test_an_args_file_through_a_linked_folder_is_read(makefiles: GitRepo) -> None:
    """`ci -> real`: the args file is read through the link, so the edge is there and a
    change to the parent reaches the child (it was missed)."""
    import os

    makefiles.write(
        "ci-layers.yaml", MAKEFILE_SPEC.replace("images/{name}/build.env", "ci/{name}.env")
    )
    for name, parent in (("app", "base"), ("web", "app"), ("other", "base")):
        makefiles.write(f"real/{name}.env", f"BASE_IMG={R}{parent}:latest\n")
    os.symlink("real", makefiles.root / "ci")
    makefiles.commit("args files behind a linked folder")
    base = makefiles.git("rev-parse", "HEAD")
    makefiles.write("images/app/Dockerfile", "ARG BASE_IMG=x\nFROM ${BASE_IMG}\nRUN true\n")
    makefiles.commit("app changes")
    assert short(plan(makefiles, base)["affected"]) == ["app", "web"]


def test_an_args_file_leaving_the_repository_is_an_error(
    makefiles: GitRepo, tmp_path: Path
) -> None:
    import os

    outside = tmp_path / "outside.env"
    outside.write_text("BASE_IMG=x\n")
    makefiles.remove("images/web/build.env")
    os.symlink(outside, makefiles.root / "images/web/build.env")
    code, _out, err = run(makefiles, "validate")
    assert code == 2
    assert "build_args_file 'images/web/build.env' leads outside the repository" in err


def test_placeholder_values_are_literal_in_inputs(git_repo: GitRepo) -> None:
    """A folder `v[12]` fills `{name}` as text, not as a class matching v1 and v2."""
    git_repo.write(
        "ci-layers.yaml",
        ACME_RULES + '    inputs: ["ci/{name}/Makefile"]\n',
    )
    git_repo.write("images/v[12]/Dockerfile", "FROM alpine@sha256:" + "d" * 64 + "\n")
    git_repo.write("ci/v[12]/Makefile", "a\n")
    git_repo.write("ci/v1/Makefile", "a\n")
    git_repo.commit()
    base = git_repo.git("rev-parse", "HEAD")
    git_repo.write("ci/v1/Makefile", "b\n")
    git_repo.commit("v1")
    assert plan(git_repo, base)["affected"] == []
    base = git_repo.git("rev-parse", "HEAD")
    git_repo.write("ci/v[12]/Makefile", "b\n")
    git_repo.commit("v[12]")
    assert plan(git_repo, base)["affected"] == ["acme/v[12]"]


def test_inputs_that_match_nothing_change_no_key(makefiles: GitRepo) -> None:
    base = makefiles.git("rev-parse", "HEAD")
    makefiles.write(
        "ci-layers.yaml",
        MAKEFILE_SPEC.replace('"/images/common.mk"]', '"/images/common.mk", "nothing-here.mk"]'),
    )
    makefiles.commit("an input that matches nothing")
    assert plan(makefiles, base)["affected"] == []


def test_args_file_lines_split_on_newlines_only(makefiles: GitRepo) -> None:
    """A form feed is part of a value, as Docker reads the file; CRLF is one line end."""
    makefiles.write("images/other/build.env", f"BASE_IMG={R}app:latest\r\nEXTRA=a\x0cB=b\n")
    makefiles.write(
        "images/other/Dockerfile", "ARG BASE_IMG=x\nFROM ${BASE_IMG}\nARG EXTRA\nARG B\n"
    )
    makefiles.commit()
    code, out, err = run(makefiles, "keys", "--recipe")
    assert code == 0, err
    args = json.loads(out)["layers"][f"{R}other"]["recipe"]["build_args"]
    assert args["EXTRA"] == "a\x0cB=b"
    assert "B" not in args


@pytest.mark.parametrize(
    "dockerfile",
    [
        # a form feed inside a line is no line break for BuildKit (issue 12, case 1)
        'FROM alpine@sha256:{a}\nRUN echo "x\fy"\nRUN <<EOF\necho hi\nEOF\nCOPY a /a\n',
        # `# check=` before `# escape=`: the escape directive still counts (case 2)
        "# check=skip=all\n# escape=`\nFROM alpine@sha256:{a}\nRUN dir C:\\\nCOPY a /a\n",
    ],
    ids=["form-feed", "check-before-escape"],
)
def test_copy_after_odd_lines_is_still_read(git_repo: GitRepo, dockerfile: str) -> None:
    git_repo.write(
        "ci-layers.yaml",
        ACME_RULES,
    )
    git_repo.write("images/t/Dockerfile", dockerfile.replace("{a}", "a" * 64))
    git_repo.write("images/t/a", "1\n")
    git_repo.commit()
    base = git_repo.git("rev-parse", "HEAD")
    git_repo.write("images/t/a", "2\n")
    git_repo.commit("a changes")
    assert plan(git_repo, base)["affected"] == ["acme/t"]


def test_deeply_nested_variables_are_a_located_error(git_repo: GitRepo) -> None:
    """3,000 nested `${A:-…}` ended in a RecursionError traceback (issue 12, case 5)."""
    git_repo.write(
        "ci-layers.yaml",
        ACME_RULES,
    )
    deep = "${A:-" * 3000 + "x" + "}" * 3000
    git_repo.write("images/t/Dockerfile", f"FROM alpine@sha256:{'a' * 64}\nENV B={deep}\n")
    git_repo.commit()
    code, _out, err = run(git_repo, "validate")
    assert code == 2
    assert "images/t/Dockerfile:2:1: error: layer 'acme/t': variables are nested too deeply" in err


@pytest.mark.parametrize(
    "line",
    ["COPY --from= a /a", "RUN --mount=from=,source=a,target=/a cat /a"],
    ids=["copy", "mount"],
)
def test_an_empty_from_reads_the_context(git_repo: GitRepo, line: str) -> None:
    """BuildKit takes an empty --from= (or mount from=) as the build context: a change to
    `a` was missed (issue 12, case 10b)."""
    git_repo.write(
        "ci-layers.yaml",
        ACME_RULES,
    )
    git_repo.write("images/t/Dockerfile", f"FROM alpine@sha256:{'a' * 64}\n{line}\n")
    git_repo.write("images/t/a", "1\n")
    git_repo.commit()
    base = git_repo.git("rev-parse", "HEAD")
    git_repo.write("images/t/a", "2\n")
    git_repo.commit("a changes")
    assert plan(git_repo, base)["affected"] == ["acme/t"]


def _rule_regex(text: str):
    """A rule path as the single regex discover used before: the oracle."""
    import re

    from ci_layers.discover import _glob
    from ci_layers.spec import PATH_PLACEHOLDER

    out, pos = [], 0
    for m in PATH_PLACEHOLDER.finditer(text):
        out.append(_glob(text[pos : m.start()]))
        out.append(f"(?P<{m.group(1)}>{'[^/]+(?:/[^/]+)*' if m.group(2) else '[^/]+'})")
        pos = m.end()
    out.append(_glob(text[pos:]))
    return re.compile("".join(out))


_RULE_SEGMENT = st.sampled_from(["**", "{a}", "{b**}", "x", "x*", "{c}-y", "*", "Dockerfile"])
_PATH_SEGMENT = st.sampled_from(["x", "xa", "q-y", "Dockerfile", "z"])


@given(
    st.lists(_RULE_SEGMENT, min_size=1, max_size=5), st.lists(_PATH_SEGMENT, min_size=1, max_size=6)
)
def test_rule_paths_match_as_the_regex_did(rule: list[str], path: list[str]) -> None:
    """Segment by segment, the same answer and the same placeholder values."""
    from ci_layers.discover import _segments

    names = [s for s in rule if s.startswith("{")]
    if len(names) != len(set(names)):
        return  # a placeholder twice is a spec error
    text, name = "/".join(rule), "/".join(path)
    matcher = _segments(text)
    assert matcher is not None
    want = _rule_regex(text).fullmatch(name)
    got = matcher.fullmatch(name)
    assert (got is None) == (want is None)
    if want is not None:
        assert got.groupdict() == want.groupdict()


def test_deep_wildcard_rules_do_not_backtrack() -> None:
    """`**/` eight times, or four {x**}, over a 40-deep path took seconds to minutes."""
    from ci_layers.discover import _segments

    deep = "/".join(["d"] * 40)
    assert _segments("/".join(["**"] * 8) + "/Dockerfile").fullmatch(deep + "/Dockerfile")
    assert (
        _segments("{a**}/{b**}/{c**}/{d**}/Dockerfile").fullmatch(deep + "/Containerfile") is None
    )
