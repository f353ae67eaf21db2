"""Multi-platform images (issue 23): one build per image and platform, keyed by what
BuildKit's platform args make of it, each on its platform's runner, joined by promote."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ci_layers.errors import SpecInvalid
from ci_layers.platforms import PlatformError, parse_platform, platform_args
from ci_layers.spec import parse_spec

from .conftest import require
from .gitrepo import GitRepo
from .test_dockerfiles import plan, run

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


# --- the matrix, the bake file -------------------------------------------------------


def test_matrix_entries_per_platform_on_their_runners(multi: GitRepo) -> None:
    from .test_gha import run_gha

    done, out, _ = run_gha(
        multi,
        "workflow_dispatch",
        {},
        runners="linux/arm64: [self-hosted, arm64]\nlinux/aarch64/v8: ignored-by-the-next",
        publish="true",
    )
    assert done.returncode != 0  # written twice, once as an alias
    done, out, _ = run_gha(
        multi,
        "workflow_dispatch",
        {},
        runners="linux/aarch64: [self-hosted, arm64]",
        publish="true",
    )
    assert done.returncode == 0, done.stderr
    matrix = {e["name"].removeprefix(R): e for e in json.loads(out["matrix"])["include"]}
    arm, amd = matrix["app (linux/arm64)"], matrix["app (linux/amd64)"]
    assert (arm["platform"], arm["runner"]) == ("linux/arm64", ["self-hosted", "arm64"])
    assert (amd["platform"], amd["runner"]) == ("linux/amd64", "ubuntu-24.04")
    assert matrix["single"]["platform"] == "linux/amd64"
    assert "platforms" not in matrix["single"]["docker"]  # no platforms: as before
    assert arm["docker"]["platforms"] == "linux/arm64"
    assert arm["image"] == R + "app"
    # each platform's build has its own hand-off tag; only promote puts the release tags
    # on the index of both, so no platform's build pushes them, published or not
    assert arm["hand-off-tag"] != amd["hand-off-tag"]
    assert arm["tags"] == [arm["hand-off-tag"]]
    assert amd["tags"] == [amd["hand-off-tag"]]
    assert arm["release-tags"] == amd["release-tags"] == [R + "app"]
    assert matrix["single"]["tags"] == [R + "single", matrix["single"]["hand-off-tag"]]
    # the arm64 child is pointed at its parent's arm64 build
    base_arm = matrix["base (linux/arm64)"]["hand-off-tag"]
    assert arm["docker"]["build-contexts"] == f"{R}base=docker-image://{base_arm}"
    stages = json.loads(out["stages"])
    for stage in stages:
        for job in stage:
            assert (
                len(
                    {
                        x["runner"] if isinstance(x["runner"], str) else tuple(x["runner"])
                        for x in job["layers"]
                    }
                )
                == 1
            )


def test_a_platform_no_runner_builds_fails_naming_the_input(git_repo: GitRepo) -> None:
    from .test_gha import run_gha

    git_repo.write(
        "ci-layers.yaml",
        f"version: 1\nplatforms: [linux/amd64, linux/s390x]\n"
        f"dockerfiles:\n  - path: images/{{n}}/Dockerfile\n    image: {R}{{n}}\n",
    )
    git_repo.write("images/base/Dockerfile", BASE)
    git_repo.commit("s390x")
    done, out, _ = run_gha(git_repo, "workflow_dispatch", {})
    assert done.returncode == 1
    assert (
        f"'{R}base' is built for linux/s390x, and no runner builds linux/s390x: add "
        "'linux/s390x: <runner label>' to the runners input"
    ) in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    done, out, _ = run_gha(git_repo, "workflow_dispatch", {}, runners="linux/s390x: z-runner")
    assert done.returncode == 0, done.stderr
    runners = {e["name"]: e["runner"] for e in json.loads(out["matrix"])["include"]}
    assert runners == {
        R + "base (linux/amd64)": "ubuntu-24.04",
        R + "base (linux/s390x)": "z-runner",
    }


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ("[linux/arm64]", "must be a mapping"),
        ("linux/arm65: x", "unknown architecture 'arm65'"),
        ("linux/arm64: ''", "must be what runs-on takes"),
        ("linux/arm64: [a, 1]", "must be what runs-on takes"),
        ("linux/arm64: {group: g, os: x}", "must be what runs-on takes"),
        ("linux/arm64: {}", "must be what runs-on takes"),
        ("{", "is not YAML"),
    ],
)
def test_a_bad_runners_input_is_a_usage_error(raw: str, said: str) -> None:
    from ci_layers.errors import UsageError
    from ci_layers.gha import inputs_from_env

    with pytest.raises(UsageError, match=said):
        inputs_from_env({"INPUT_RUNNERS": raw})


def test_bake_targets_one_per_platform_build(multi: GitRepo) -> None:
    code, out, err = run(multi, "bake", "--base", "HEAD", "--head", "HEAD")
    assert code == 0, err
    assert json.loads(out)["target"] == {}  # nothing changed: no platform's build
    before = multi.git("rev-parse", "HEAD")
    multi.write("images/base/Dockerfile", BASE + "RUN echo 2\n")
    multi.commit("base")
    code, out, err = run(multi, "bake", "--base", before, "--head", "HEAD")
    assert code == 0, err
    bake = json.loads(out)
    targets = bake["target"]
    by_platform = {t["platforms"][0] for t in targets.values() if "platforms" in t}
    assert by_platform == {"linux/amd64", "linux/arm64"}
    arm = next(
        t
        for t in targets.values()
        if t.get("platforms") == ["linux/arm64"]
        and t["dockerfile"] == "Dockerfile"
        and t["context"] == "images/app"
    )
    base_arm = next(
        n
        for n, t in targets.items()
        if t.get("platforms") == ["linux/arm64"] and t["context"] == "images/base"
    )
    assert arm["contexts"] == {f"{R}base": f"target:{base_arm}"}
    single = next(t for t in targets.values() if t["context"] == "images/single")
    assert "platforms" not in single


# --- promote: one index of every platform's build ------------------------------------


def _push_as(store, platform: str, host: str, tag: str) -> str:
    """busybox's image, its config saying `platform` (standing in for a native build on
    that platform's runner), pushed under `tag`; its manifest digest."""
    from dataclasses import replace

    from ci_layers.oci.manifest import ImageManifest
    from ci_layers.oci.registry import Registry
    from ci_layers.oci.transfer import TransferStats, push_image

    image = ImageManifest.load(store, store.resolve("ci-layers.local/busybox:latest"))
    os_name, arch, *variant = platform.split("/")
    config = replace(image.config, os=os_name, architecture=arch, variant="".join(variant))
    desc = replace(image, config=config).write(store)
    repo, _, ref = tag.removeprefix(host + "/").rpartition(":")
    push_image(store, desc, Registry(host), repo, [ref], stats=TransferStats())
    return str(desc.digest)


def _skopeo_raw(reference: str) -> dict:
    done = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{reference}"],
        capture_output=True,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.fixture
def pushed(git_repo: GitRepo, registry, busybox_store):
    """base for amd64 and arm64, app (on base) for both, pushed under their hand-off tags."""
    host = registry.host
    git_repo.write("README", "images\n")
    first = git_repo.commit("readme")
    git_repo.write(
        "ci-layers.yaml",
        f"version: 1\nplatforms: [linux/amd64, linux/arm64]\n"
        f"dockerfiles:\n  - path: images/{{n}}/Dockerfile\n    image: {host}/acme/{{n}}\n"
        f"image_overrides:\n  {host}/acme/app:\n    tags: [{host}/release/app:1]\n",
    )
    git_repo.write("images/base/Dockerfile", "FROM scratch\nCOPY motd /etc/motd\n")
    git_repo.write("images/base/motd", "1\n")
    git_repo.write("images/app/Dockerfile", f"FROM {host}/acme/base\nCOPY app /app\n")
    git_repo.write("images/app/app", "1\n")
    head = git_repo.commit("images")
    code, out, err = run(git_repo, "plan", "--head", head, "--format", "json")
    assert code == 0, err
    from ci_layers.docker import key_tag

    digests = {}
    for name, lp in json.loads(out)["layers"].items():
        image, _, platform = name.partition(" (")
        platform = platform.rstrip(")")
        digests[name] = _push_as(busybox_store, platform, host, key_tag(image, lp["key"]))
    return git_repo, first, head, host, digests


def test_promote_joins_each_platforms_build_into_one_index(pushed) -> None:
    require("skopeo")
    repo, _first, head, host, digests = pushed
    code, out, err = run(repo, "promote", "--head", head)
    assert code == 0, err
    for target, image in (
        (f"{host}/acme/base", "base"),
        (f"{host}/acme/app", "app"),
        (f"{host}/release/app:1", "app"),  # another repository: the manifests go along
    ):
        index = _skopeo_raw(target)
        assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
        listed = {
            f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
            for m in index["manifests"]
        }
        assert listed == {
            p: digests[f"{host}/acme/{image} ({p})"] for p in ("linux/amd64", "linux/arm64")
        }
        assert f"{target}: put (" in out
    # each platform's manifest is there by digest, in the other repository too
    arm = digests[f"{host}/acme/app (linux/arm64)"]
    assert _skopeo_raw(f"{host}/release/app@{arm}")["config"]["mediaType"]
    code, out, err = run(repo, "promote", "--head", head)
    assert code == 0, err
    assert "promoted 0 tags, 3 already there" in out


def test_promote_reports_a_platform_not_built(pushed, busybox_store) -> None:
    repo, _first, head, host, _digests = pushed
    from ci_layers.oci.registry import Registry

    reg = Registry(host)
    code, out, _ = run(repo, "plan", "--head", head, "--format", "json")
    key = json.loads(out)["layers"][f"{host}/acme/app (linux/arm64)"]["key"]
    from ci_layers.docker import key_tag

    tag = key_tag(f"{host}/acme/app", key).rpartition(":")[2]
    found = reg.manifest_descriptor("acme/app", tag)
    assert found is not None
    assert reg.delete_manifest("acme/app", found.digest)
    code, out, err = run(repo, "promote", "--head", head)
    assert code == 1
    assert f"{host}/acme/app (linux/arm64): not built: {host}/acme/app:{tag} does not exist" in out
    assert reg.manifest_descriptor("acme/app", "latest") is None  # no index of one platform
    assert reg.manifest_descriptor("acme/base", "latest") is not None  # the others are promoted
    code, out, err = run(repo, "promote", "--head", head, "--allow-missing")
    assert code == 0, err


def test_promote_refuses_a_build_of_another_platform(pushed, busybox_store) -> None:
    repo, _first, head, host, _digests = pushed
    code, out, _ = run(repo, "plan", "--head", head, "--format", "json")
    key = json.loads(out)["layers"][f"{host}/acme/base (linux/arm64)"]["key"]
    from ci_layers.docker import key_tag

    _push_as(busybox_store, "linux/amd64", host, key_tag(f"{host}/acme/base", key))
    code, out, err = run(repo, "promote", "--head", head)
    assert code != 0
    assert "holds a linux/amd64 image, not linux/arm64: it was built on a linux/amd64 runner" in err
    assert "Traceback" not in err


def test_check_registry_looks_for_each_platforms_build(pushed) -> None:
    repo, first, head, host, _digests = pushed
    from ci_layers.docker import key_tag
    from ci_layers.oci.registry import Registry

    code, out, _ = run(repo, "plan", "--head", head, "--format", "json")
    key = json.loads(out)["layers"][f"{host}/acme/app (linux/arm64)"]["key"]
    tag = key_tag(f"{host}/acme/app", key).rpartition(":")[2]
    reg = Registry(host)
    found = reg.manifest_descriptor("acme/app", tag)
    assert found is not None
    assert reg.delete_manifest("acme/app", found.digest)
    code, out, err = run(
        repo, "plan", "--base", first, "--head", head, "--format", "json", "--check-registry"
    )
    assert code == 0, err
    p = json.loads(out)
    assert p["affected"] == [f"{host}/acme/app (linux/arm64)"]
    assert sorted(p["cache"]["reused"]) == sorted(
        f"{host}/acme/{i} ({pl})"
        for i, pl in (("base", "linux/amd64"), ("base", "linux/arm64"), ("app", "linux/amd64"))
    )


# --- spec layers: build --platform --------------------------------------------------


def _spec_layers(git_repo: GitRepo) -> GitRepo:
    from .buildhelp import BASE

    git_repo.write(
        "ci-layers.yaml",
        f"version: 1\nplatforms: [linux/amd64, linux/arm64]\nlayers:\n"
        f"  os:\n    from: {BASE}\n    copy: [{{src: etc/, dest: /etc/}}]\n"
        f"  app:\n    parent: os\n    copy: [{{src: app/, dest: /app/}}]\n"
        f"    run: [echo built > /built]\n"
        f'  tools:\n    parent: os\n    platforms: [linux/amd64]\n    run: ["true"]\n'
        f"images:\n  app:\n    layer: app\n    tags: [registry.example.com/app:1]\n",
    )
    git_repo.write("etc/motd", "hi\n")
    git_repo.write("app/main.sh", "echo app\n")
    git_repo.commit("spec layers for two platforms")
    return git_repo


def test_spec_layers_get_a_node_per_platform_and_keys_that_name_it(git_repo: GitRepo) -> None:
    repo = _spec_layers(git_repo)
    nodes = graph(repo)
    assert nodes["app (linux/arm64)"]["parents"] == ["os (linux/arm64)"]
    assert nodes["tools"]["parents"] == ["os (linux/amd64)"]
    code, out, err = run(repo, "keys", "--format", "json", "--recipe")
    assert code == 0, err
    keys = json.loads(out)["layers"]
    assert keys["app (linux/arm64)"]["recipe"]["platform"] == "linux/arm64"
    assert "platform" not in keys["app (linux/amd64)"]["recipe"]
    assert keys["app (linux/arm64)"]["key"] != keys["app (linux/amd64)"]["key"]


def test_build_builds_this_machines_platform_and_says_it_cannot_build_another(
    git_repo: GitRepo, busybox_store
) -> None:
    from ci_layers.oci.manifest import host_platform

    from .test_cli_build import run as run_cli

    require("runc", root=True)
    repo = _spec_layers(git_repo)
    host = "/".join(host_platform())
    other = "linux/arm64" if host == "linux/amd64" else "linux/amd64"
    store = str(busybox_store.path)
    root = str(repo.root)
    code, out, err = run_cli("build", "-C", root, "--store", store, "--platform", other)
    assert code == 2
    assert f"--platform {other}: this machine is {host}" in err
    assert "runs natively under runc (no emulation)" in err
    code, out, err = run_cli("build", "-C", root, "--store", store, "--platform", "linux/amd46")
    assert code == 2
    assert "--platform: unknown architecture 'amd46'" in err
    code, out, err = run_cli("build", "app", "-C", root, "--store", store)
    assert code == 0, err
    assert f"app ({host})" in out
    assert "2 built" in out
    code, out, err = run_cli("build", f"app ({other})", "-C", root, "--store", store)
    assert code == 2
    assert f"'app ({other})' is built for {other}, and this machine builds {host}" in err
    code, out, err = run_cli("build", "-C", root, "--store", store, "--platform", host)
    assert code == 0, err
    assert "1 built, 2 reused" in out  # tools (this platform's only), os and app again
    code, out, err = run_cli("keys", "-C", root, "--format", "json")
    key = json.loads(out)["layers"][f"app ({host})"]["key"]
    from ci_layers.oci.reference import key_tag
    from ci_layers.oci.store import OciStore

    built = OciStore(busybox_store.path).resolve(key_tag(key))
    assert built is not None
    # a layer built for several platforms gets no release tag from one platform's build
    assert OciStore(busybox_store.path).resolve("registry.example.com/app:1") is None


def test_the_image_build_script_passes_each_images_docker_inputs_to_buildx(
    multi: GitRepo, tmp_path
) -> None:
    """scripts/build-images-from-matrix, as example-images' stage jobs run it, under a
    `docker` that records its argv (no Docker here): each image of a packed job in order,
    its platform, tags, args and contexts as buildx flags."""
    import os
    import sys
    from pathlib import Path

    from .test_gha import run_gha

    done, out, _ = run_gha(multi, "workflow_dispatch", {}, max_stages="1")
    assert done.returncode == 0, done.stderr
    jobs = [job for stage in json.loads(out["stages"]) for job in stage]
    arm = next(j for j in jobs if j["platform"] == "linux/arm64" and len(j["layers"]) > 1)
    fake = tmp_path / "bin"
    fake.mkdir()
    record = tmp_path / "argv"
    (fake / "docker").write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(record)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    (fake / "docker").chmod(0o755)
    script = Path(__file__).resolve().parents[1] / "scripts/build-images-from-matrix"
    subprocess.run(
        [str(script), "--push"],
        env={**os.environ, "JOB": json.dumps(arm), "PATH": f"{fake}:{os.environ['PATH']}"},
        cwd=multi.root,
        check=True,
        capture_output=True,
    )
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(calls) == len(arm["layers"])
    for argv, layer in zip(calls, arm["layers"], strict=True):
        docker = layer["docker"]
        assert argv[:4] == ["buildx", "build", "--file", docker["file"]]
        assert argv[argv.index("--platform") + 1] == "linux/arm64"
        tags = [argv[i + 1] for i, a in enumerate(argv) if a == "--tag"]
        assert tags == docker["tags"].splitlines() == [layer["hand-off-tag"]]
        contexts = [argv[i + 1] for i, a in enumerate(argv) if a == "--build-context"]
        assert contexts == docker["build-contexts"].splitlines()
        assert argv[-2:] == ["--push", docker["context"]]
    base, *children = arm["layers"]
    assert base["name"] == R + "base (linux/arm64)"
    assert all(
        f"docker-image://{base['hand-off-tag']}" in c["docker"]["build-contexts"] for c in children
    )


def test_the_comment_says_one_cause_per_image_whatever_its_platforms(multi: GitRepo) -> None:
    before = multi.git("rev-parse", "HEAD")
    multi.write("images/base/Dockerfile", "FROM debian:trixie-slim\n")
    multi.commit("base on trixie")
    code, out, err = run(multi, "plan", "--base", before, "--head", "HEAD", "--format", "markdown")
    assert code == 0, err
    why = out.split("**Why:**\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert why == [
        "- `base`: spec: externals changed, `images/base/Dockerfile` changed "
        "→ **7** images to rebuild"
    ]


def test_from_platform_names_that_platforms_build_of_an_in_repo_image(multi: GitRepo) -> None:
    """`FROM --platform=$BUILDPLATFORM` is the build's own platform; a literal one is
    that platform's build, also in an arm64 build: its change rebuilds the arm64 child."""
    multi.write(
        "images/app/Dockerfile",
        f"FROM --platform=linux/amd64 {R}base AS gen\nRUN echo gen > /gen\n"
        f"FROM --platform=$BUILDPLATFORM {R}tool AS native\n"
        f"FROM {R}base\nCOPY --from=gen /gen /gen\nCOPY --from=native /x /x\n",
    )
    multi.commit("app generates on amd64")
    nodes = graph(multi)
    assert nodes["app (linux/arm64)"]["parents"] == [
        R + "base (linux/arm64)",
        R + "base (linux/amd64)",
        R + "tool (linux/arm64)",
    ]
    before = multi.git("rev-parse", "HEAD")
    multi.write("images/base/Dockerfile", BASE + "RUN echo 2\n")
    multi.commit("base")
    affected = {n.removeprefix(R) for n in plan(multi, before)["affected"]}
    assert {"app (linux/arm64)", "app (linux/amd64)"} <= affected
    from .test_gha import run_gha

    after = multi.git("rev-parse", "HEAD")
    event = {"ref": "refs/heads/main", "before": before, "after": after}
    done, out, _ = run_gha(multi, "push", event)
    assert done.returncode == 0, done.stderr
    matrix = {e["name"].removeprefix(R): e for e in json.loads(out["matrix"])["include"]}
    contexts = matrix["app (linux/arm64)"]["docker"]["build-contexts"].splitlines()
    # one name, one build: the arm64 build's own parent
    base_arm = matrix["base (linux/arm64)"]["hand-off-tag"]
    assert f"{R}base=docker-image://{base_arm}" in contexts


# --- what the review found ----------------------------------------------------------


def test_a_dockerfile_child_of_a_spec_layer_is_pointed_at_its_platforms_cache_build(
    git_repo: GitRepo,
) -> None:
    """No platform's build pushes a multi-platform layer's `images:` tag (promote puts
    it, after every stage): the child's build context names the parent's key tag in the
    cache, the one its own platform's job pushed."""
    from .buildhelp import BASE as BUSYBOX
    from .test_gha import run_gha

    git_repo.write(
        "ci-layers.yaml",
        f"version: 1\nplatforms: [linux/amd64, linux/arm64]\nlayers:\n"
        f"  base:\n    from: {BUSYBOX}\n    copy: [{{src: etc/, dest: /etc/}}]\n"
        f"images:\n  basei:\n    layer: base\n    tags: [{R}base:1]\n"
        f"dockerfiles:\n  - path: images/{{n}}/Dockerfile\n    image: {R}{{n}}\n",
    )
    git_repo.write("etc/motd", "1\n")
    git_repo.write("images/app/Dockerfile", f"FROM {R}base:1\nRUN true\n")
    before = git_repo.commit("spec base, Dockerfile app")
    git_repo.write("etc/motd", "2\n")
    git_repo.commit("motd")
    cache = "127.0.0.1:9/acme/cache"  # nothing listens: the plan says so and goes on
    done, out, _ = run_gha(
        git_repo,
        "push",
        {"ref": "refs/heads/main", "before": before, "after": git_repo.git("rev-parse", "HEAD")},
        cache=cache,
        publish="true",
    )
    assert done.returncode == 0, done.stderr
    matrix = {e["name"].removeprefix(R): e for e in json.loads(out["matrix"])["include"]}
    for platform in ("linux/amd64", "linux/arm64"):
        base = matrix[f"base ({platform})"]
        assert base["tags"] == [base["hand-off-tag"]]  # never the release tag alone
        app = matrix[f"app ({platform})"]
        assert app["docker"]["build-contexts"] == (
            f"{R}base:1=docker-image://{base['hand-off-tag']}"
        )
    bake = json.loads(Path(out["bake-file"]).read_text())
    contexts = [t.get("contexts") for t in bake["target"].values()]
    assert {f"{R}base:1": f"docker-image://{matrix['base (linux/arm64)']['hand-off-tag']}"} in (
        contexts
    )


def test_a_new_tag_on_a_multi_platform_image_rebuilds_nothing(multi: GitRepo) -> None:
    """Promote puts release tags on the index; no platform's build pushes them."""
    before = multi.git("rev-parse", "HEAD")
    multi.write("ci-layers.yaml", SPEC + f"    tags: [{R}app:stable]\n")
    multi.commit("app:stable")
    assert plan(multi, before)["affected"] == []


def test_impacted_names_images_not_their_builds(multi: GitRepo) -> None:
    code, out, err = run(multi, "impacted", "--layer", R + "base", "--format", "json")
    assert code == 0, err
    found = json.loads(out)
    assert R + "base" in found["images"]
    assert not [i for i in found["images"] if "(" in i]
    assert R + "app (linux/arm64)" in found["layers"]


def test_an_arm64_machine_builds_a_layer_without_platforms_on_its_parents_arm64_build(
    git_repo: GitRepo, monkeypatch
) -> None:
    """On a machine of another platform a layer with no `platforms:` is built for it,
    on its parent's build for it; a parent not built for it is an error, not a build of
    another platform's image."""
    import ci_layers.cli as cli_module

    from .buildhelp import BASE as BUSYBOX
    from .test_cli_build import run as run_cli

    git_repo.write(
        "ci-layers.yaml",
        f"version: 1\nlayers:\n"
        f"  p:\n    from: {BUSYBOX}\n    platforms: [linux/amd64, linux/arm64]\n"
        f"  c:\n    parent: p\n"
        f"  q:\n    from: {BUSYBOX}\n    platforms: [linux/amd64]\n"
        f"  d:\n    parent: q\n",
    )
    git_repo.commit("p for both, c for the machine's")
    spec = cli_module.load_spec(git_repo.root / "ci-layers.yaml")
    on_arm = cli_module.built_for(spec, "linux/arm64")
    assert on_arm.layers["c"].parent == "p (linux/arm64)"
    assert on_arm.layers["c"].platform == "linux/arm64"
    assert on_arm.layers["d"].parent == "q"  # q has no arm64 build: left for build to say
    monkeypatch.setattr(cli_module, "_host_platform", lambda: "linux/arm64")
    code, _out, err = run_cli("build", "d", "-C", str(git_repo.root), "--platform", "linux/arm64")
    assert code == 2
    assert "'q' (a layer it builds on) is built for linux/amd64, and this machine builds " in err


@pytest.mark.parametrize(
    ("written", "normal"), [("linux/arm64/8", "linux/arm64"), ("linux/arm/7", "linux/arm/v7")]
)
def test_numeric_arm_variants_are_containerds(written: str, normal: str) -> None:
    assert parse_platform(written) == normal


def test_a_runner_may_be_a_group_as_runs_on_takes_it() -> None:
    from ci_layers.gha import inputs_from_env

    inputs = inputs_from_env({"INPUT_RUNNERS": "linux/arm64: {group: arm, labels: [big]}"})
    assert inputs.runners == {"linux/arm64": {"group": "arm", "labels": ["big"]}}


def test_order_and_affected_take_an_image_built_for_several_platforms(multi: GitRepo) -> None:
    code, out, err = run(multi, "affected", R + "base", "--format", "json")
    assert code == 0, err
    found = json.loads(out)
    assert found["changed"] == [R + "base (linux/amd64)", R + "base (linux/arm64)"]
    assert R + "app (linux/arm64)" in found["affected"]
    code, out, err = run(multi, "order", R + "app", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["order"][-2:] == [R + "app (linux/amd64)", R + "app (linux/arm64)"]


def test_explain_asks_which_build_of_a_multi_platform_image(multi: GitRepo) -> None:
    code, _out, err = run(multi, "explain", R + "app", "--against", "HEAD")
    assert code == 2
    assert f"'{R}app (linux/amd64)', '{R}app (linux/arm64)'" in err
    code, out, err = run(multi, "explain", R + "app (linux/arm64)", "--against", "HEAD")
    assert code == 0, err
    assert "app (linux/arm64)" in out
