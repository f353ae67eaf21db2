"""`ci-layers gc`: mark and sweep over the store and the cache repository."""

from __future__ import annotations

import pytest

from ci_layers.build.gc import collect
from ci_layers.errors import StoreError
from ci_layers.oci.manifest import ImageManifest
from ci_layers.oci.registry import Registry
from ci_layers.oci.store import OciStore

from .buildhelp import BASE, build, builder, tag_of
from .test_cli_build import run
from .test_registry import _build, _keys, _repo

TWO = f"""
version: 1
layers:
  os:
    from: {BASE}
    copy: [{{src: etc/, dest: /etc/}}]
  app1:
    parent: os
    copy: [{{src: app1/, dest: /app1/}}]
  app2:
    parent: os
    copy: [{{src: app2/, dest: /app2/}}]
"""


def _two(git_repo):
    git_repo.write("ci-layers.yaml", TWO)
    git_repo.write("etc/motd", "hi\n")
    git_repo.write("app1/a", "one\n" * 50)
    git_repo.write("app2/b", "two\n" * 50)
    return git_repo


def _blobs_of(store: OciStore, tag: str) -> set[str]:
    desc = store.resolve(tag)
    data = store.read_json(desc)
    return {str(desc.digest), data["config"]["digest"], *(x["digest"] for x in data["layers"])}


def test_gc_after_an_image_is_dropped_keeps_the_others_blobs_and_frees_the_rest(
    git_repo, busybox_store
):
    repo = _two(git_repo)
    build(repo.root, busybox_store)
    app1, app2 = tag_of(repo.root, busybox_store, "app1"), tag_of(repo.root, busybox_store, "app2")
    keep = _blobs_of(busybox_store, app1) | _blobs_of(busybox_store, BASE)
    app2_blobs = _blobs_of(busybox_store, app2)
    (busybox_store.path / "ingest" / "blob-killed").write_bytes(b"half")  # a killed build's
    repo.write("ci-layers.yaml", TWO.split("  app2:")[0])  # app2 is dropped from the spec
    code, out, err = run("gc", "-C", str(repo.root), "--store", str(busybox_store.path))
    assert code == 0, err
    assert app2 in out
    on_disk = {f"sha256:{p.name}" for p in (busybox_store.path / "blobs" / "sha256").iterdir()}
    assert keep <= on_disk
    gone = app2_blobs - keep  # app2's own layer, config and manifests (os's are shared)
    assert gone
    assert not gone & on_disk
    assert busybox_store.resolve(app2) is None
    assert busybox_store.verify() == []
    assert list((busybox_store.path / "ingest").iterdir()) == []
    ImageManifest.load(busybox_store, busybox_store.resolve(app1))  # whole, and readable
    again = build(repo.root, busybox_store)
    assert {r.status for r in again.values()} == {"reused"}  # nothing current was lost


def test_gc_dry_run_deletes_nothing_and_keep_rules_protect(git_repo, busybox_store):
    repo = _two(git_repo)
    build(repo.root, busybox_store)
    before = sorted(p.name for p in (busybox_store.path / "blobs" / "sha256").iterdir())
    dry = collect(busybox_store, keys=[], dry_run=True)
    assert dry.untagged
    assert dry.freed > 0
    assert sorted(p.name for p in (busybox_store.path / "blobs" / "sha256").iterdir()) == before
    kept = collect(busybox_store, keys=[], keep_days=1)  # all written just now
    assert kept.untagged == []
    assert kept.blobs == []
    last = collect(busybox_store, keys=[], keep_last=1, dry_run=True)
    records = [t for t in last.untagged if t.startswith("ci-layers-") and "cutoff" not in t]
    assert len(records) == 2  # of three key records, the newest is kept


def test_gc_while_a_build_holds_the_store_deletes_nothing(git_repo, busybox_store):
    repo = _two(git_repo)
    build(repo.root, busybox_store)
    before = sorted(p.name for p in (busybox_store.path / "blobs" / "sha256").iterdir())
    with busybox_store.lease():  # what a running build holds
        with pytest.raises(StoreError, match="in use by a build"):
            collect(busybox_store, keys=[])
        code, _out, err = run("gc", "-C", str(repo.root), "--store", str(busybox_store.path))
        assert code == 1
        assert "in use by a build" in err
    assert sorted(p.name for p in (busybox_store.path / "blobs" / "sha256").iterdir()) == before
    keys = [k.digest for k in builder(repo.root, busybox_store).keys.values()]
    assert collect(busybox_store, keys=keys).untagged == []  # after it: all current


def test_gc_of_the_cache_deletes_stale_key_tags_only(git_repo, tmp_path, registry):
    repo = _repo(git_repo)
    cache = f"{registry.host}/acme/cache"
    _build(repo.root, tmp_path / "s", cache, "--push")
    old = _keys(repo.root)
    repo.write("top/run", "#!/bin/sh\necho v2\n", mode=0o755)
    _build(repo.root, tmp_path / "s", cache, "--push")
    new = _keys(repo.root)
    code, out, err = run(
        "gc", "--cache", cache, "--dry-run", "-C", str(repo.root), "--store", str(tmp_path / "s")
    )
    assert code == 0, err
    assert "would remove" in out
    reg = Registry(registry.host)
    assert reg.manifest_descriptor("acme/cache", "ci-layers-" + old["top"][7:]) is not None
    code, out, err = run(
        "gc", "--cache", cache, "-C", str(repo.root), "--store", str(tmp_path / "s")
    )
    assert code == 0, err
    assert reg.manifest_descriptor("acme/cache", "ci-layers-" + old["top"][7:]) is None
    for name in ("base", "mid", "top"):
        assert reg.manifest_descriptor("acme/cache", "ci-layers-" + new[name][7:]) is not None
