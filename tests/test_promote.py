"""`ci-layers promote`: release tags put on the manifests the hand-off tags name, with no
rebuild: a manifest PUT in the same repository (no blob uploaded), blobs mounted into
another repository, copied to another registry; digests read back with skopeo; a second
run changes nothing; a missing build fails unless allowed."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from ci_layers.docker import key_tag
from ci_layers.oci.registry import Registry
from ci_layers.oci.transfer import TransferStats, push_image

from .conftest import require
from .gitrepo import GitRepo
from .registry import proxy_to, start_registry
from .test_cli_build import run


def _repo(repo: GitRepo, host: str, other: str) -> tuple[str, str]:
    """base <- api, base <- worker under `host`; api also released as `host`/release/api:1
    (another repository) and `other`/acme/api:1 (another registry)."""
    repo.write(
        "ci-layers.yaml",
        f'version: 1\ndockerfiles:\n  - path: "images/{{name}}/Dockerfile"\n'
        f'    image: "{host}/acme/{{name}}"\n'
        f"image_overrides:\n  {host}/acme/api:\n"
        f"    tags: [{host}/acme/api:stable, {host}/release/api:1, {other}/acme/api:1]\n",
    )
    repo.write("images/base/Dockerfile", "FROM scratch\nCOPY motd /etc/motd\n")
    repo.write("images/base/motd", "1\n")
    for name in ("api", "worker"):
        repo.write(f"images/{name}/Dockerfile", f"FROM {host}/acme/base\nCOPY app /app\n")
        repo.write(f"images/{name}/app", f"{name}\n")
    base = repo.commit("images")
    repo.write("images/base/motd", "2\n")
    return base, repo.commit("base 2")


@pytest.fixture
def two(registry, tmp_path):
    """A second registry, to release to."""
    require("docker-registry")
    other = start_registry(tmp_path / "other")
    yield other
    other.stop()


@pytest.fixture
def built(git_repo, registry, two, busybox_store):
    """Every image's hand-off tag pushed (busybox standing in for BuildKit's builds);
    the requests to the first registry go through a recording proxy."""
    with proxy_to(registry.host) as proxy:
        base, head = _repo(git_repo, proxy.host, two.host)
        code, out, err = run(
            "plan", "-C", str(git_repo.root), "--base", base, "--head", head, "--format", "json"
        )
        assert code == 0, err
        layers = json.loads(out)["layers"]
        handoff = {n: key_tag(n, lp["key"]) for n, lp in layers.items()}
        desc = busybox_store.resolve("ci-layers.local/busybox:latest")
        for tag in handoff.values():
            host, _, rest = tag.partition("/")
            repo, _, t = rest.rpartition(":")
            push_image(busybox_store, desc, Registry(host), repo, [t], stats=TransferStats())
        proxy.clear()
        yield git_repo, head, proxy, handoff, str(desc.digest)


def _promote(repo: GitRepo, head: str, *more: str) -> tuple[int, str, str]:
    return run("promote", "-C", str(repo.root), "--head", head, *more)


def _raw_digest(reference: str) -> str:
    done = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{reference}"],
        capture_output=True,
        check=True,
    )
    import hashlib

    return "sha256:" + hashlib.sha256(done.stdout).hexdigest()


def test_promote_puts_manifests_mounts_and_copies_and_changes_nothing_twice(built, two):
    require("skopeo")
    repo, head, proxy, _handoff, digest = built
    code, out, err = _promote(repo, head)
    assert code == 0, err
    api = f"{proxy.host}/acme/api"
    for target in (
        f"{proxy.host}/acme/base",
        api,
        f"{api}:stable",
        f"{proxy.host}/acme/worker",
        f"{proxy.host}/release/api:1",
        f"{two.host}/acme/api:1",
    ):
        assert f"{target}: put ({digest[:19]}" in out
        assert _raw_digest(target.replace(proxy.host, proxy.upstream)) == digest
    # the same repository: manifests only; another repository: mounted, never sent
    sends = [r for r in proxy.uploads() if "mount=" not in r.path]
    assert sends == []
    assert any("/v2/release/api/blobs/uploads/?mount=" in r.path for r in proxy.uploads())
    assert "promoted 6 tags, 0 already there" in out
    proxy.clear()
    code, out, err = _promote(repo, head)
    assert code == 0, err
    assert "promoted 0 tags, 6 already there" in out
    assert proxy.manifest_puts() == []
    assert proxy.uploads() == []


def test_a_dry_run_puts_nothing(built):
    repo, head, proxy, _handoff, _digest = built
    code, out, err = _promote(repo, head, "--dry-run")
    assert code == 0, err
    assert "would promote 6 tags" in out
    assert f"{proxy.host}/acme/base: would be put" in out
    assert proxy.manifest_puts() == []
    assert proxy.uploads() == []


def test_a_missing_build_is_listed_and_fails_unless_allowed(built, registry):
    repo, head, proxy, handoff, _digest = built
    worker = f"{proxy.host}/acme/worker"
    tag = handoff[worker].rpartition(":")[2]
    reg = Registry(registry.host)
    desc = reg.manifest_descriptor("acme/worker", tag)
    assert reg.delete_manifest("acme/worker", desc.digest)
    code, out, _ = _promote(repo, head)
    assert code == 1
    assert f"{worker}: not built: {handoff[worker]} does not exist" in out
    assert "promoted 5 tags, 0 already there; 1 images not built" in out
    code, out, _ = _promote(repo, head, "--allow-missing")
    assert code == 0
    assert "promoted 0 tags, 5 already there; 1 images not built" in out


def test_a_release_tag_naming_another_image_is_moved_and_said(built, registry, busybox_store):
    repo, head, proxy, _handoff, digest = built
    from ci_layers.build.tarwriter import FILE, Entry, write_layer
    from ci_layers.oci.manifest import ImageManifest

    base = ImageManifest.load(
        busybox_store, busybox_store.resolve("ci-layers.local/busybox:latest")
    )
    other = ImageManifest(
        base.config, (*base.layers, write_layer([Entry("x", FILE, data=b"x")], busybox_store))
    ).write(busybox_store)
    push_image(
        busybox_store,
        other,
        Registry(registry.host),
        "acme/base",
        ["latest"],
        stats=TransferStats(),
    )
    code, out, err = _promote(repo, head)
    assert code == 0, err
    assert f"{proxy.host}/acme/base: moved from {other.digest} ({digest[:19]}" in out


def test_spec_layers_with_images_are_promoted_from_their_cache_key_tags(
    git_repo, registry, tmp_path
):
    from .test_registry import SPEC, _build

    git_repo.write(
        "ci-layers.yaml",
        SPEC + f"images:\n  app:\n    layer: top\n    tags: [{registry.host}/acme/app:1]\n",
    )
    for path, text in (("notes/base.md", "v1\n"), ("base/a", "a\n"), ("mid/b", "b\n")):
        git_repo.write(path, text)
    git_repo.write("top/run", "#!/bin/sh\necho top\n", mode=0o755)
    head = git_repo.commit("layers")
    cache = f"{registry.host}/acme/cache"
    _build(git_repo.root, tmp_path / "store", cache, "--push")
    code, out, err = _promote(git_repo, head)
    assert code == 2
    assert "'top' has images: tags; promote takes its build from the cache repository" in err
    code, out, err = _promote(git_repo, head, "--cache", cache)
    assert code == 0, err
    keys = json.loads(run("keys", "-C", str(git_repo.root), "--format", "json")[1])["layers"]
    source = f"{cache}:ci-layers-{keys['top']['key'].removeprefix('sha256:')}"
    reg = Registry(registry.host)
    cached = reg.manifest_descriptor("acme/cache", source.rpartition(":")[2])
    assert f"{registry.host}/acme/app:1: put ({str(cached.digest)[:19]}, from {source})" in out
    assert reg.manifest_descriptor("acme/app", "1").digest == cached.digest


def test_an_index_under_the_hand_off_tag_is_copied_whole_with_its_digest(
    registry, two, busybox_store
):
    """BuildKit pushes an index (an image and its attestation): promoted to another
    registry it keeps its digest, every manifest it lists copied first."""
    from ci_layers.oci.store import OciStore
    from ci_layers.oci.transfer import copy_image

    desc = busybox_store.resolve("ci-layers.local/busybox:latest")
    reg, other = Registry(registry.host), Registry(two.host)
    push_image(busybox_store, desc, reg, "acme/app", [str(desc.digest)], stats=TransferStats())
    child = {"mediaType": desc.media_type, "digest": str(desc.digest), "size": desc.size}
    child["platform"] = {"os": "linux", "architecture": "amd64"}
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [child],
        }
    ).encode()
    reg.put_manifest(
        "acme/app", "ci-layers-0123456789abcdef", index, json.loads(index)["mediaType"]
    )
    stats = TransferStats()
    with tempfile.TemporaryDirectory() as tmp:
        digest, done = copy_image(
            reg,
            "acme/app",
            "ci-layers-0123456789abcdef",
            other,
            "acme/app",
            "1",
            stats=stats,
            staging=OciStore(Path(tmp)),
        )
    assert done == "put"
    assert other.manifest_descriptor("acme/app", "1").digest == digest
    assert other.manifest_descriptor("acme/app", str(desc.digest)) is not None  # the child
    assert stats.uploaded == 2  # the image's config and layer, nothing else
    assert stats.manifests == 2


def test_check_and_promote_behind_token_auth(git_repo, tmp_path, busybox_store):
    """A registry that trusts a token server (anonymous: pull only), as the suite runs it."""
    from ci_layers.registry_check import check_registry

    from .registry import token_server

    require("docker-registry")
    with token_server(tmp_path / "tok", user="ci", password="pw", service="tests") as tokens:
        reg = start_registry(tmp_path / "reg", token=(tokens.url, "tests", tokens.root_bundle))
        try:
            base, head = _repo(git_repo, reg.host, reg.host)
            code, out, err = run(
                "plan", "-C", str(git_repo.root), "--base", base, "--head", head, "--format", "json"
            )
            layers = json.loads(out)["layers"]
            handoff = {n: key_tag(n, lp["key"]) for n, lp in layers.items()}
            env = {
                "HOME": str(tmp_path),
                "CI_LAYERS_REGISTRY_USERNAME": "ci",
                "CI_LAYERS_REGISTRY_PASSWORD": "pw",
            }
            desc = busybox_store.resolve("ci-layers.local/busybox:latest")
            for tag in handoff.values():
                host, _, rest = tag.partition("/")
                repo, _, t = rest.rpartition(":")
                push_image(
                    busybox_store, desc, Registry(host, env=env), repo, [t], stats=TransferStats()
                )
            assert set(check_registry(handoff, env={"HOME": str(tmp_path)}).found) == set(handoff)
            old = dict(os.environ)
            os.environ.update(env)
            try:
                code, out, err = _promote(git_repo, head)
            finally:
                os.environ.clear()
                os.environ.update(old)
            assert code == 0, err
            assert "promoted 6 tags, 0 already there" in out
            assert "repository:release/api:pull,push" in tokens.scopes
        finally:
            reg.stop()
