"""`ci-layers impacted`: what is built on a layer, a base image, or a blob."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ci_layers.impacted import impacted_by_base, impacted_by_layer
from ci_layers.spec import load_spec

from .buildhelp import BASE, build
from .conftest import FIXTURES
from .test_cli_build import run

DEBIAN = "docker.io/library/debian:bookworm-slim"


def _mono():
    return load_spec(FIXTURES / "monorepo" / "ci-layers.yaml")


def _descendants(spec, name: str) -> set[str]:
    """The brute-force oracle: follow children until nothing new."""
    found, todo = {name}, [name]
    while todo:
        n = todo.pop()
        for child in spec.graph.children(n):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def test_a_base_layers_impact_is_every_descendant_and_its_images():
    spec = _mono()
    impact = impacted_by_layer(spec, "os-base")
    assert set(impact.layers) == _descendants(spec, "os-base") == set(spec.layers)
    published = {t for img in spec.images.values() for t in img.tags}
    assert set(impact.images) == published
    assert list(impact.layers) == [n for n in spec.graph.topological_order() if n in impact.layers]


@given(st.sampled_from(sorted(load_spec(FIXTURES / "monorepo" / "ci-layers.yaml").layers)))
def test_every_layers_impact_is_its_closure(name):
    spec = _mono()
    impact = impacted_by_layer(spec, name)
    assert set(impact.layers) == _descendants(spec, name)
    own = {t for img in spec.images.values() if img.layer in impact.layers for t in img.tags}
    assert set(impact.images) == own


@pytest.mark.parametrize(
    "spelling",
    [
        "debian:bookworm-slim",
        "docker.io/library/debian:bookworm-slim",
        "index.docker.io/library/debian:bookworm-slim",
        "library/debian:bookworm-slim",
        "debian",  # no tag: every tag of the repository
        "debian@sha256:ad86386827b083b3d71139050b47ffb32bbd9559ea9b1345a739b14fec2d9ecf",
    ],
)
def test_a_base_image_is_found_by_any_spelling(spelling):
    spec = _mono()
    impact = impacted_by_base(spec, spelling)
    assert impact.direct == ("os-base",)
    assert len(impact.layers) == len(spec.layers)


@pytest.mark.parametrize(
    "other",
    ["debian:bookworm", "ubuntu:bookworm-slim", "debian@sha256:" + "1" * 64, "ghcr.io/x/debian"],
)
def test_another_base_impacts_nothing(other):
    assert impacted_by_base(_mono(), other).direct == ()


def _dockerfiles_repo(git_repo):
    git_repo.copy_fixture(FIXTURES / "dockerfiles")
    git_repo.commit("dockerfiles")
    return git_repo


@pytest.mark.parametrize(
    "spelling", [DEBIAN, "debian:bookworm-slim", "index.docker.io/library/debian"]
)
def test_dockerfile_images_are_found_by_their_external_base(git_repo, spelling):
    repo = _dockerfiles_repo(git_repo)
    code, out, err = run(
        "impacted", "--base-image", spelling, "-C", str(repo.root), "--format", "json"
    )
    assert code == 0, err
    found = json.loads(out)
    code, graph, _ = run("graph", "-C", str(repo.root), "--format", "json")
    layers = {x["name"]: x for x in json.loads(graph)["layers"]}
    assert found["direct"] == ["registry.example.com/acme/base"]
    # everything built on base, read off the graph's own children lists
    todo, seen = ["registry.example.com/acme/base"], set()
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += layers[n]["children"]
    assert set(found["layers"]) == seen
    assert set(found["images"]) >= seen  # a Dockerfile image is published under its name


def test_impacted_plan_rebuilds_everything_impacted_in_stages(git_repo):
    git_repo.copy_fixture(FIXTURES / "monorepo")
    git_repo.commit("mono")
    code, out, err = run(
        "impacted",
        "--layer",
        "python-runtime",
        "--plan",
        "--format",
        "json",
        "-C",
        str(git_repo.root),
    )
    assert code == 0, err
    plan = json.loads(out)
    expected = _descendants(_mono(), "python-runtime")
    assert set(plan["affected"]) == expected
    assert plan["stages"][0] == ["python-runtime"]
    assert plan["layers"]["python-runtime"]["reasons"] == ["impacted: matches python-runtime"]
    assert plan["layers"]["os-base"]["status"] == "unchanged"
    assert all(plan["layers"][n]["status"] == "rebuild" for n in expected)


def test_impacted_by_digest_looks_the_blob_up_in_the_store(git_repo, busybox_store):
    git_repo.write(
        "ci-layers.yaml",
        f"""version: 1
layers:
  os: {{from: "{BASE}", copy: [{{src: etc/, dest: /etc/}}]}}
  app: {{parent: os, copy: [{{src: app/, dest: /app/}}]}}
  other: {{from: scratch, copy: [{{src: app/, dest: /x/}}]}}
""",
    )
    git_repo.write("etc/motd", "hi\n")
    git_repo.write("app/main.sh", "echo\n")
    results = build(git_repo.root, busybox_store)
    os_blob = str(results["os"].layer.descriptor.digest)
    store = str(busybox_store.path)

    def impacted(digest: str) -> dict:
        argv = ["impacted", "--digest", digest, "-C", str(git_repo.root), "--store", store]
        code, out, err = run(*argv, "--format", "json")
        assert code == 0, err
        return json.loads(out)

    assert impacted(os_blob)["layers"] == ["os", "app"]
    base_blob = busybox_store.read_json(busybox_store.resolve(BASE))["layers"][0]["digest"]
    assert impacted(base_blob)["direct"] == ["os", "app"]  # the base's blob is in both
    diff_id = str(results["app"].layer.diff_id)
    code, out, _ = run("impacted", "--digest", diff_id, "-C", str(git_repo.root), "--store", store)
    assert code == 0
    assert "app" in out
    assert "other" not in out


def test_impacted_refuses_unclear_questions(git_repo):
    git_repo.copy_fixture(FIXTURES / "monorepo")
    git_repo.commit("mono")
    code, _out, err = run("impacted", "-C", str(git_repo.root))
    assert code == 2
    assert "exactly one of" in err
    code, _out, err = run("impacted", "--layer", "nope", "-C", str(git_repo.root))
    assert code == 2
    assert "no such layer" in err
    code, _out, err = run("impacted", "--digest", "sha256:xyz", "-C", str(git_repo.root))
    assert code != 0
    assert "no sha256 digest" in err
    code, out, _ = run("impacted", "--base-image", "alpine:3", "-C", str(git_repo.root))
    assert code == 0
    assert "nothing is built on alpine:3" in out
