"""Push, pull and the matrix job path against a real registry (docker-registry on
loopback), counted and disturbed by a proxy in front of it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from ci_layers.build.builder import key_tag
from ci_layers.oci.digest import Digest
from ci_layers.oci.manifest import ImageManifest
from ci_layers.oci.registry import Registry
from ci_layers.oci.store import OciStore

from .buildhelp import unpack
from .conftest import require
from .test_cli_build import run

SPEC = """
version: 1
layers:
  base:
    from: scratch
    copy: [{src: base/, dest: /base/}]
    inputs: [notes/base.md]
  mid:
    parent: base
    copy: [{src: mid/, dest: /mid/}]
  top:
    parent: mid
    copy: [{src: top/, dest: /top/}]
    cmd: ["/top/run"]
"""


def _repo(git_repo):
    git_repo.write("ci-layers.yaml", SPEC)
    git_repo.write("notes/base.md", "v1\n")
    git_repo.write("base/os-release", "ID=test\n")
    git_repo.write("mid/lib.txt", "lib\n" * 100)
    git_repo.write("top/run", "#!/bin/sh\necho top\n", mode=0o755)
    git_repo.commit()
    return git_repo


def _keys(root: Path) -> dict[str, str]:
    code, out, _err = run("keys", "-C", str(root), "--format", "json")
    assert code == 0
    return {n: v["key"] for n, v in json.loads(out)["layers"].items()}


def _build(root: Path, store: Path, cache: str, *more: str) -> str:
    code, out, err = run("build", "-C", str(root), "--store", str(store), "--cache", cache, *more)
    assert code == 0, err + out
    return out


def _uploaded_digests(proxy) -> set[str]:
    """The digests of the blobs whose upload was completed (the closing PUT)."""
    found = set()
    for r in proxy.uploads():
        if r.method == "PUT" and r.status == 201:
            found.update(parse_qs(urlparse(r.path).query)["digest"])
    return found


def test_push_sends_only_what_the_registry_lacks(git_repo, tmp_path, proxy):
    repo = _repo(git_repo)
    cache = f"{proxy.host}/acme/cache"
    store = tmp_path / "store"
    out = _build(repo.root, store, cache, "--push")
    assert "3 built" in out
    registry = Registry(proxy.host)
    keys = _keys(repo.root)
    for name in ("base", "mid", "top"):
        assert registry.manifest_descriptor("acme/cache", key_tag(keys[name])) is not None, name
    assert len(_uploaded_digests(proxy)) == 6  # three layers and three configs

    proxy.clear()  # the same push again: nothing is sent
    out = _build(repo.root, store, cache, "--push")
    assert "0 built, 3 reused" in out
    assert proxy.uploads() == []
    assert proxy.manifest_puts() == []

    proxy.clear()  # one top layer changed: its blob, its config, its manifest
    repo.write("top/run", "#!/bin/sh\necho top v2\n", mode=0o755)
    out = _build(repo.root, store, cache, "--push")
    assert "1 built, 2 reused" in out
    local = OciStore(store)
    top = ImageManifest.load(local, local.resolve(key_tag(_keys(repo.root)["top"])))
    config = local.read_json(local.resolve(key_tag(_keys(repo.root)["top"])))["config"]["digest"]
    assert _uploaded_digests(proxy) == {str(top.layers[-1].descriptor.digest), config}
    assert len({r.path.split("/manifests/")[0] for r in proxy.manifest_puts()}) == 1
    assert "1 blobs uploaded" not in out  # 2: the layer and its config
    assert "2 blobs uploaded" in out


def test_pull_into_an_empty_store_verifies_every_digest(git_repo, tmp_path, proxy):
    require("skopeo", "umoci")
    repo = _repo(git_repo)
    cache = f"{proxy.host}/acme/cache"
    _build(repo.root, tmp_path / "a", cache, "--push")
    tag = key_tag(_keys(repo.root)["top"])
    code, out, err = run(
        "pull",
        f"{cache}:{tag}",
        "--tag",
        "top",
        "-C",
        str(repo.root),
        "--store",
        str(tmp_path / "b"),
    )
    assert code == 0, err
    assert "3 downloaded" not in out
    assert "4 downloaded" in out
    fresh = OciStore(tmp_path / "b")
    assert fresh.verify() == []
    assert fresh.resolve("top").digest == OciStore(tmp_path / "a").resolve(tag).digest
    root = unpack(fresh, "top", tmp_path / "unpacked")
    assert (root / "top" / "run").read_text() == "#!/bin/sh\necho top\n"
    assert (root / "base" / "os-release").exists()
    seen = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{cache}:{tag}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert seen.returncode == 0, seen.stderr
    assert len(json.loads(seen.stdout)["Layers"]) == 3


def test_pull_by_layer_name_from_the_cache(git_repo, tmp_path, proxy):
    repo = _repo(git_repo)
    cache = f"{proxy.host}/acme/cache"
    _build(repo.root, tmp_path / "a", cache, "--push")
    code, _out, err = run(
        "pull", "mid", "--cache", cache, "-C", str(repo.root), "--store", str(tmp_path / "b")
    )
    assert code == 0, err
    assert OciStore(tmp_path / "b").resolve(key_tag(_keys(repo.root)["mid"])) is not None


def test_a_child_job_on_a_fresh_machine_pulls_its_parent_and_builds(git_repo, tmp_path, proxy):
    repo = _repo(git_repo)
    cache = f"{proxy.host}/acme/cache"
    keys = _keys(repo.root)
    stage1 = json.dumps(
        {"layers": [{"name": "base", "key": keys["base"]}, {"name": "mid", "key": keys["mid"]}]}
    )
    out = _build(repo.root, tmp_path / "machine1", cache, "--push", "--job", stage1)
    assert "2 built" in out
    proxy.clear()
    stage2 = json.dumps({"name": "top", "key": keys["top"]})
    out = _build(repo.root, tmp_path / "machine2", cache, "--push", "--job", stage2)
    assert "1 built, 2 reused (2 from the registry)" in out
    fresh = OciStore(tmp_path / "machine2")
    assert fresh.verify() == []
    # the parent came whole; the grandparent's image was only looked at
    gets = [r.path for r in proxy.requests if r.method == "GET" and "/blobs/" in r.path]
    mid = ImageManifest.load(fresh, fresh.resolve(key_tag(keys["mid"])))
    assert {p.rsplit("/", 1)[1] for p in gets} >= {str(x.descriptor.digest) for x in mid.layers}
    assert Registry(proxy.host).manifest_descriptor("acme/cache", key_tag(keys["top"])) is not None
    top = ImageManifest.load(fresh, fresh.resolve(key_tag(keys["top"])))
    assert [x.diff_id for x in top.layers[:2]] == [x.diff_id for x in mid.layers]


def test_early_cutoff_skips_children_of_a_parent_rebuilt_to_the_same_bytes(
    git_repo, tmp_path, proxy
):
    repo = _repo(git_repo)
    cache = f"{proxy.host}/acme/cache"
    _build(repo.root, tmp_path / "machine1", cache, "--push")
    before = _keys(repo.root)
    repo.write("notes/base.md", "v2: an input of base that none of its files come from\n")
    repo.commit()
    after = _keys(repo.root)
    assert all(before[n] != after[n] for n in ("base", "mid", "top"))  # every key moved
    proxy.clear()
    out = _build(repo.root, tmp_path / "machine2", cache, "--push")
    assert "mid: cut off" in out
    assert "top: cut off" in out
    assert "1 built, 0 reused, 2 cut off" in out
    store = OciStore(tmp_path / "machine2")
    old = OciStore(tmp_path / "machine1")
    for name in ("base", "mid", "top"):
        new_image = ImageManifest.load(store, store.resolve(key_tag(after[name])))
        old_image = ImageManifest.load(old, old.resolve(key_tag(before[name])))
        assert [x.diff_id for x in new_image.layers] == [x.diff_id for x in old_image.layers]
        assert new_image.history[-1].comment == f"ci-layers {after[name]}"
    # no layer bytes were uploaded again: the new images are new configs and manifests
    layer_digests = {
        str(x.descriptor.digest)
        for x in ImageManifest.load(store, store.resolve(key_tag(after["top"]))).layers
    }
    assert not _uploaded_digests(proxy) & layer_digests


def test_a_corrupted_blob_from_the_registry_never_enters_the_store(git_repo, tmp_path, proxy):
    repo = _repo(git_repo)
    cache = f"{proxy.host}/acme/cache"
    _build(repo.root, tmp_path / "a", cache, "--push")
    proxy.corrupt = lambda path: "/blobs/sha256:" in path
    tag = key_tag(_keys(repo.root)["mid"])
    code, _out, err = run(
        "pull", f"{cache}:{tag}", "-C", str(repo.root), "--store", str(tmp_path / "b")
    )
    assert code != 0
    assert "hash to" in err
    assert "refused" in err
    assert "Traceback" not in err
    fresh = OciStore(tmp_path / "b")
    assert list((fresh.path / "blobs" / "sha256").iterdir()) == []
    assert fresh.resolve(f"{cache}:{tag}") is None


def test_a_push_cut_off_by_dropped_connections_is_finished_by_a_rerun(
    git_repo, tmp_path, proxy, monkeypatch
):
    monkeypatch.setenv("CI_LAYERS_REGISTRY_ATTEMPTS", "2")
    repo = _repo(git_repo)
    cache = f"{proxy.host}/acme/cache"
    keys = _keys(repo.root)
    uploads = 0

    def drop(method: str, path: str) -> bool:
        nonlocal uploads
        if method == "PUT" and "/blobs/uploads/" in path:
            uploads += 1
            return uploads >= 3  # the first two blobs land, then the link is cut
        return False

    proxy.drop = drop
    code, _out, err = run(
        "build", "-C", str(repo.root), "--store", str(tmp_path / "s"), "--cache", cache, "--push"
    )
    assert code != 0
    assert "run again to finish the push" in err
    registry = Registry(proxy.host)
    # consistent: no manifest names a blob the registry lacks
    for name in keys:
        desc = registry.manifest_descriptor("acme/cache", key_tag(keys[name]))
        if desc is not None:
            data, _media, _d = registry.get_manifest("acme/cache", str(desc.digest))
            for blob in [json.loads(data)["config"], *json.loads(data)["layers"]]:
                assert registry.blob_size("acme/cache", Digest.parse(blob["digest"])) is not None
    assert registry.manifest_descriptor("acme/cache", key_tag(keys["top"])) is None
    proxy.drop = lambda _m, _p: False
    before = len(_uploaded_digests(proxy))
    out = _build(repo.root, tmp_path / "s", cache, "--push")
    # the store kept what was built before the push failed; the rest is built now
    assert "reused" in out
    assert "base: reused" in out
    assert len(_uploaded_digests(proxy)) - before == 6 - 2  # only what had not landed
    for name in keys:
        assert registry.manifest_descriptor("acme/cache", key_tag(keys[name])) is not None


def test_one_dropped_connection_is_retried(git_repo, tmp_path, proxy):
    repo = _repo(git_repo)
    cache = f"{proxy.host}/acme/cache"
    dropped = []

    def drop(method: str, path: str) -> bool:
        if method == "PUT" and "/blobs/uploads/" in path and not dropped:
            dropped.append(path)
            return True
        return False

    proxy.drop = drop
    out = _build(repo.root, tmp_path / "s", cache, "--push")
    assert dropped
    assert "6 blobs uploaded" in out


def test_push_and_pull_commands_move_a_store_image(git_repo, tmp_path, proxy):
    repo = _repo(git_repo)
    store = tmp_path / "s"
    code, _out, err = run("build", "-C", str(repo.root), "--store", str(store))
    assert code == 0, err
    push = ["push", "top", "--to", f"{proxy.host}/acme/app:1", "-C", str(repo.root)]
    code, out, err = run(*push, "--store", str(store))
    assert code == 0, err
    assert "4 blobs uploaded" in out  # three layers and a config
    code, out, err = run(*push, "--store", str(store))
    assert code == 0, err
    assert "0 blobs uploaded" in out
    assert "0 manifests" in out
    code, _out, err = run("push", "top", "-C", str(repo.root), "--store", str(store))
    assert code != 0
    assert "--cache" in err


def test_unreachable_registry_is_a_clear_error(git_repo, tmp_path):
    from .registry import free_port

    repo = _repo(git_repo)
    code, _out, err = run(
        "pull",
        f"127.0.0.1:{free_port()}/acme/x:1",
        "-C",
        str(repo.root),
        "--store",
        str(tmp_path / "s"),
    )
    assert code != 0
    assert "no answer" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("bad", ["Acme/Cache", "host/repo:tag", "host/re po"])
def test_a_bad_cache_reference_is_refused(git_repo, tmp_path, bad):
    repo = _repo(git_repo)
    code, _out, err = run(
        "build", "-C", str(repo.root), "--store", str(tmp_path / "s"), "--cache", bad
    )
    assert code != 0
    assert "--cache" in err
    assert "Traceback" not in err


def test_publish_mounts_blobs_the_cache_repository_holds(git_repo, tmp_path, proxy):
    repo = _repo(git_repo)
    repo.write(
        "ci-layers.yaml",
        SPEC + f"images:\n  app:\n    layer: top\n    tags: [{proxy.host}/acme/app:1]\n",
    )
    repo.commit("publish")
    cache = f"{proxy.host}/acme/cache"
    out = _build(repo.root, tmp_path / "s", cache, "--push", "--publish")
    mounts = [r for r in proxy.requests if r.method == "POST" and "mount=" in r.path]
    assert mounts
    assert all(r.status == 201 for r in mounts)
    assert all("/v2/acme/app/" in r.path for r in mounts)
    assert "mounted from another repository" in out
    desc = Registry(proxy.host).manifest_descriptor("acme/app", "1")
    assert desc is not None
    data, _media, _digest = Registry(proxy.host).get_manifest("acme/app", "1")
    assert "org.opencontainers.image.revision" in json.loads(data)["annotations"]


def test_large_blobs_go_up_in_chunks(tmp_path, proxy):
    from ci_layers.oci.transfer import TransferStats, pull_image, push_image

    store = OciStore(tmp_path / "s")
    payload = bytes(range(256)) * 40  # 10,240 bytes
    layer = store.put_bytes(payload, media_type="application/octet-stream")
    config = store.put_bytes(b"{}", media_type="application/vnd.oci.image.config.v1+json")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config.to_json(),
            "layers": [layer.to_json()],
        }
    ).encode()
    desc = store.put_bytes(manifest, media_type="application/vnd.oci.image.manifest.v1+json")
    registry = Registry(proxy.host, chunk_threshold=4096, chunk_size=3000)
    push_image(store, desc, registry, "acme/big", ["1"], stats=TransferStats())
    patches = [r for r in proxy.requests if r.method == "PATCH"]
    assert len(patches) == 4  # 3000 + 3000 + 3000 + 1240 bytes
    assert all(r.status == 202 for r in patches)
    fresh = OciStore(tmp_path / "fresh")
    pull_image(Registry(proxy.host), "acme/big", "1", fresh, stats=TransferStats())
    assert fresh.read_bytes(layer.digest) == payload


def test_a_missing_base_image_is_pulled_from_its_registry(git_repo, tmp_path, proxy):
    from ci_layers.build.busybox import busybox_image
    from ci_layers.oci.transfer import TransferStats, push_image

    require("busybox")
    seed = OciStore(tmp_path / "seed")
    busybox_image(seed)
    desc = seed.resolve("ci-layers.local/busybox:latest")
    push_image(seed, desc, Registry(proxy.host), "lib/busybox", ["1"], stats=TransferStats())
    base = f"{proxy.host}/lib/busybox"
    spec = "version: 1\nlayers:\n  app:\n    from: {base}\n    copy: [{{src: top/, dest: /top/}}]\n"
    for ref in (f"{base}:1", f"{base}@{desc.digest}"):
        git_repo.write("ci-layers.yaml", spec.format(base=ref))
        git_repo.write("top/run", "echo\n")
        store = tmp_path / ref.rsplit("/", 1)[1].replace(":", "_").replace("@", "_")
        code, out, err = run("build", "-C", str(git_repo.root), "--store", str(store))
        assert code == 0, err
        assert "base images pulled: 0 blobs uploaded" in out
        assert "2 downloaded" in out
        image = ImageManifest.load(OciStore(store), OciStore(store).resolve(ref))
        assert dict(image.annotations) == {}
    wrong = f"{base}@sha256:{'0' * 64}"
    git_repo.write("ci-layers.yaml", spec.format(base=wrong))
    code, _out, err = run("build", "-C", str(git_repo.root), "--store", str(tmp_path / "w"))
    assert code != 0
    assert "could not be pulled" in err
    assert "Traceback" not in err
    code, _out, err = run(
        "build", "--no-pull", "-C", str(git_repo.root), "--store", str(tmp_path / "n")
    )
    assert code != 0
    assert "could not be pulled" not in err
