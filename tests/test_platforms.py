"""Multi-platform images (issue 23): one build per image and platform, keyed by what
BuildKit's platform args make of it, each on its platform's runner, joined by promote."""

from __future__ import annotations

import io
import json

import pytest

from ci_layers.cli import main
from ci_layers.errors import SpecInvalid
from ci_layers.platforms import PlatformError, parse_platform, platform_args
from ci_layers.spec import parse_spec

from .gitrepo import GitRepo

R = "registry.example.com/acme/"

SPEC = f"""\
version: 1
dockerfiles:
  - path: images/{{name}}/Dockerfile
    image: {R}{{name}}
image_overrides:
  {R}base:
    platforms: [linux/amd64, linux/arm64]
  {R}tool:
    platforms: [linux/amd64, linux/arm64]
  {R}app:
    platforms: [linux/amd64, linux/arm64]
"""

BASE = "FROM debian:bookworm-slim\nRUN echo base > /base\n"
# uses TARGETARCH in FROM (a per-arch base of its own) and in RUN (the file it copies)
TOOL = (
    "ARG TARGETARCH\n"
    "FROM busybox:1.36-${TARGETARCH} AS fetch\n"
    f"FROM {R}base\n"
    "ARG TARGETARCH\n"
    "COPY bin/tool-${TARGETARCH} /usr/bin/tool\n"
    "COPY --from=fetch /bin/busybox /bin/busybox\n"
    "RUN echo built for $TARGETARCH\n"
)
APP = f"FROM {R}base\nCOPY app.txt /app.txt\n"  # never names the platform


def run(repo: GitRepo, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "-C", str(repo.root)], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def plan(repo: GitRepo, base: str, *extra: str) -> dict:
    code, out, err = run(repo, "plan", "--format", "json", "--base", base, "--head", "HEAD", *extra)
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def multi(git_repo: GitRepo) -> GitRepo:
    git_repo.write("ci-layers.yaml", SPEC)
    git_repo.write("images/base/Dockerfile", BASE)
    git_repo.write("images/tool/Dockerfile", TOOL)
    git_repo.write("images/tool/bin/tool-amd64", "x86 build\n")
    git_repo.write("images/tool/bin/tool-arm64", "arm build\n")
    git_repo.write("images/app/Dockerfile", APP)
    git_repo.write("images/app/app.txt", "v1\n")
    git_repo.write("images/single/Dockerfile", f"FROM {R}base\nRUN true\n")
    git_repo.commit("images")
    return git_repo


def graph(repo: GitRepo) -> dict[str, dict]:
    code, out, err = run(repo, "graph", "--format", "json")
    assert code == 0, err
    return {x["name"].removeprefix(R): x for x in json.loads(out)["layers"]}


# --- platforms as written ---------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "normal"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/arm64", "linux/arm64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("arm64", "linux/arm64"),
        ("Linux/AMD64", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("windows/amd64", "windows/amd64"),
    ],
)
def test_platforms_are_normalised_as_containerd_does(written: str, normal: str) -> None:
    assert parse_platform(written) == normal


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("", "is not a platform"),
        ("linux/", "is not a platform"),
        ("linux/amd64/v3/x", "is not a platform"),
        ("linux amd64", "is not a platform"),
        ("linux", "names no architecture"),
        ("lnux/amd64", "did you mean 'linux'"),
        ("linux/amd46", "did you mean 'amd64'"),
        ("linux/arm64/v7", "unknown variant 'v7' of arm64"),
        ("linux/386/v2", "unknown variant"),
    ],
)
def test_a_bad_platform_says_what_to_write(written: str, said: str) -> None:
    with pytest.raises(PlatformError, match=said):
        parse_platform(written)


def test_bad_platforms_in_the_spec_are_located_errors() -> None:
    text = (
        "version: 1\n"
        "platforms: [linux/amd64, linux/amd46]\n"
        "layers:\n"
        "  base: {from: scratch, platforms: [linux/arm64, linux/aarch64]}\n"
        "dockerfiles:\n"
        "  - path: x/Dockerfile\n"
        "    image: x\n"
        "    platforms: [plan9/amd64]\n"
        "image_overrides:\n"
        "  x:\n"
        "    platforms: [linux/arm64/v9.9]\n"
    )
    with pytest.raises(SpecInvalid) as err:
        parse_spec(text)
    said = str(err.value)
    assert "ci-layers.yaml:2:26: error: unknown architecture 'amd46'" in said
    assert (
        "ci-layers.yaml:4:50: error: layer 'base': platform linux/arm64 is listed twice "
        "('linux/aarch64' is linux/arm64)" in said
    )
    assert "ci-layers.yaml:8:17: error: unknown operating system 'plan9'" in said
    assert "ci-layers.yaml:11:17: error: unknown variant 'v9.9' of arm64" in said


def test_a_platform_list_that_is_not_a_list_of_strings_is_a_schema_error() -> None:
    for bad in ("linux/amd64", "[]", "[1]"):
        with pytest.raises(SpecInvalid, match=r"ci-layers.yaml:2:\d+: error"):
            parse_spec(f"version: 1\nplatforms: {bad}\nlayers:\n  a: {{from: scratch}}\n")


def test_platform_args_are_the_platform_for_target_and_build() -> None:
    assert platform_args("linux/arm/v7") == {
        "TARGETPLATFORM": "linux/arm/v7",
        "TARGETOS": "linux",
        "TARGETARCH": "arm",
        "TARGETVARIANT": "v7",
        "BUILDPLATFORM": "linux/arm/v7",
        "BUILDOS": "linux",
        "BUILDARCH": "arm",
        "BUILDVARIANT": "v7",
    }


# --- the graph and the keys ---------------------------------------------------------


def test_one_node_per_image_and_platform_each_on_its_platforms_parent(multi: GitRepo) -> None:
    nodes = graph(multi)
    assert sorted(nodes) == sorted(
        [
            "base (linux/amd64)",
            "base (linux/arm64)",
            "tool (linux/amd64)",
            "tool (linux/arm64)",
            "app (linux/amd64)",
            "app (linux/arm64)",
            "single",
        ]
    )
    assert nodes["app (linux/arm64)"]["parents"] == [R + "base (linux/arm64)"]
    assert nodes["app (linux/amd64)"]["parents"] == [R + "base (linux/amd64)"]
    # an image with no platforms is the default platform's, built on that build
    assert nodes["single"]["parents"] == [R + "base (linux/amd64)"]


def test_target_args_reach_from_and_run_of_each_platform(multi: GitRepo) -> None:
    code, out, err = run(multi, "keys", "--format", "json", "--recipe")
    assert code == 0, err
    keys = {k.removeprefix(R): v for k, v in json.loads(out)["layers"].items()}
    arm = keys["tool (linux/arm64)"]["recipe"]
    amd = keys["tool (linux/amd64)"]["recipe"]
    assert arm["externals"] == ["busybox:1.36-arm64"]  # FROM with ${TARGETARCH}
    assert amd["externals"] == ["busybox:1.36-amd64"]
    assert arm["context"] == [["bin/tool-arm64", arm["context"][0][1]]]  # COPY with it
    assert amd["context"][0][0] == "bin/tool-amd64"
    assert arm["platform"] == "linux/arm64"
    assert "platform" not in amd  # the default platform keys as without `platforms:`
    assert keys["app (linux/arm64)"]["key"] != keys["app (linux/amd64)"]["key"]


def test_the_default_platform_keeps_its_key_when_platforms_are_declared(git_repo: GitRepo) -> None:
    rule = f"dockerfiles:\n  - path: images/{{n}}/Dockerfile\n    image: {R}{{n}}\n"
    git_repo.write("ci-layers.yaml", "version: 1\n" + rule)
    git_repo.write("images/base/Dockerfile", BASE)
    git_repo.commit("one platform")
    code, out, err = run(git_repo, "keys", "--format", "json")
    assert code == 0, err
    before = json.loads(out)["layers"][R + "base"]
    git_repo.write("ci-layers.yaml", "version: 1\nplatforms: [linux/amd64, linux/arm64]\n" + rule)
    code, out, err = run(git_repo, "keys", "--format", "json")
    assert code == 0, err
    after = json.loads(out)["layers"]
    assert after[R + "base (linux/amd64)"] == before
    assert after[R + "base (linux/arm64)"] != before


def test_adding_a_platform_builds_that_platform_only(git_repo: GitRepo) -> None:
    """The default platform's build is the one base pushed (same image, same key), even
    though its node is now named for its platform; the new platform's is built, and so
    are the children that now exist for it."""
    rule = f"dockerfiles:\n  - path: images/{{n}}/Dockerfile\n    image: {R}{{n}}\n"
    git_repo.write("ci-layers.yaml", "version: 1\n" + rule)
    git_repo.write("images/base/Dockerfile", BASE)
    git_repo.write("images/app/Dockerfile", APP)
    git_repo.write("images/app/app.txt", "v1\n")
    before = git_repo.commit("amd64 only")
    git_repo.write("ci-layers.yaml", "version: 1\nplatforms: [linux/amd64, linux/arm64]\n" + rule)
    git_repo.commit("and arm64")
    p = plan(git_repo, before)
    assert [n.removeprefix(R) for n in p["affected"]] == ["base (linux/arm64)", "app (linux/arm64)"]
    assert p["layers"][R + "app (linux/amd64)"]["status"] == "unchanged"
    assert p["removed"] == []
    # and back: the amd64 builds are named for the image again, still unchanged
    after = git_repo.git("rev-parse", "HEAD")
    git_repo.write("ci-layers.yaml", "version: 1\n" + rule)
    git_repo.commit("amd64 only again")
    p = plan(git_repo, after)
    assert p["affected"] == []
    assert sorted(p["removed"]) == [R + "app (linux/arm64)", R + "base (linux/arm64)"]


def test_a_file_one_platform_reads_rebuilds_that_platform(multi: GitRepo) -> None:
    before = multi.git("rev-parse", "HEAD")
    multi.write("images/tool/bin/tool-arm64", "arm build 2\n")
    multi.commit("arm64 binary")
    p = plan(multi, before)
    assert [n.removeprefix(R) for n in p["affected"]] == ["tool (linux/arm64)"]
    assert p["layers"][R + "tool (linux/arm64)"]["reasons"] == [
        "changed: images/tool/bin/tool-arm64",
        "cache breaks at images/tool/Dockerfile:5 COPY bin/tool-${TARGETARCH} /usr/bin/tool",
    ]


def test_a_file_every_platform_reads_rebuilds_each(multi: GitRepo) -> None:
    before = multi.git("rev-parse", "HEAD")
    multi.write("images/app/app.txt", "v2\n")
    multi.commit("app")
    p = plan(multi, before)
    assert sorted(n.removeprefix(R) for n in p["affected"]) == [
        "app (linux/amd64)",
        "app (linux/arm64)",
    ]


def test_a_change_to_a_multi_platform_parent_rebuilds_each_platforms_children(
    multi: GitRepo,
) -> None:
    before = multi.git("rev-parse", "HEAD")
    multi.write("images/base/Dockerfile", BASE + "RUN echo 2\n")
    multi.commit("base")
    p = plan(multi, before)
    affected = [n.removeprefix(R) for n in p["affected"]]
    assert sorted(affected) == sorted(
        [
            "base (linux/amd64)",
            "base (linux/arm64)",
            "tool (linux/amd64)",
            "tool (linux/arm64)",
            "app (linux/amd64)",
            "app (linux/arm64)",
            "single",
        ]
    )
    layers = p["layers"]
    assert layers[R + "app (linux/arm64)"]["reasons"] == [
        f"parent '{R}base (linux/arm64)' is rebuilt"
    ]


def test_a_child_on_a_platform_its_parent_lacks_is_a_located_error(git_repo: GitRepo) -> None:
    git_repo.write(
        "ci-layers.yaml",
        f"version: 1\ndockerfiles:\n  - path: images/{{n}}/Dockerfile\n    image: {R}{{n}}\n"
        f"image_overrides:\n  {R}app:\n    platforms: [linux/arm64]\n",
    )
    git_repo.write("images/base/Dockerfile", BASE)
    git_repo.write("images/app/Dockerfile", APP)
    git_repo.commit("app on arm64, base on amd64 only")
    code, _out, err = run(git_repo, "validate")
    assert code != 0
    assert (
        f"ci-layers.yaml:3:5: error: layer '{R}app': '{R}app' is built for linux/arm64 on "
        f"'{R}base', but '{R}base' is not built for linux/arm64 (it is built for linux/amd64): "
        "add linux/arm64 to its platforms"
    ) in err
