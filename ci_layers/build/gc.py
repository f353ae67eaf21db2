"""Garbage collection (`ci-layers gc`): mark and sweep over the store, and stale key tags
in a cache repository.

Roots in the store: every tag that is not a layer's record (`images:` tags, base
images, what `pull --tag` named), the records of the current spec's keys (and their
cutoff tags), and what `--keep-last N` / `--keep-days D` protect among the other
records (by when their manifest was written). Everything a root reaches (an index's
manifests, configs, layers) is kept; the rest is untagged and deleted, and so are the
extracted roots (`rootfs/<chain id>`) no kept image is built of, and what killed builds
left (scratch folders with their mounts and containers, half-written blobs). The sweep holds the
store's lease exclusively: while a build runs, gc refuses, so it never deletes a blob a
build has written but not yet tagged.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import StoreError
from ..oci.digest import Descriptor, Digest
from ..oci.manifest import ImageManifest, chain_id
from ..oci.reference import key_tag
from ..oci.store import REF_NAME, OciStore
from .rootfs import remove_tree
from .scratch import sweep

__all__ = ["GcResult", "collect", "registry_gc"]

RECORD = "ci-layers-"


@dataclass
class GcResult:
    untagged: list[str] = field(default_factory=list)
    blobs: list[Digest] = field(default_factory=list)
    freed: int = 0
    roots: list[str] = field(default_factory=list)  # extracted roots removed (chain ids)
    kept_tags: int = 0
    scratch: list[str] = field(default_factory=list)  # what killed builds left in tmp/


def _reach(store: OciStore, desc: Descriptor, marked: set[Digest]) -> None:
    """Mark `desc` and all it references that the store holds."""
    if desc.digest in marked or not store.has(desc.digest):
        return
    marked.add(desc.digest)
    try:
        data = store.read_json(desc)
    except StoreError:
        return  # not JSON: a layer blob, a leaf
    if not isinstance(data, dict):
        return
    where = f"{store.path}: {desc.digest}"
    refs = [*(data.get("manifests") or []), *(data.get("layers") or [])]
    if isinstance(data.get("config"), dict):
        refs.append(data["config"])
    for ref in refs:
        try:
            _reach(store, Descriptor.from_json(ref, where=where), marked)
        except StoreError:
            continue


def _written(store: OciStore, desc: Descriptor) -> float:
    try:
        return store.blob_path(desc.digest).stat().st_mtime
    except OSError:
        return 0.0


def collect(
    store: OciStore,
    *,
    keys: Iterable[str],
    keep_last: int = 0,
    keep_days: float | None = None,
    dry_run: bool = False,
    now: float | None = None,
) -> GcResult:
    """Mark from the roots, sweep the rest (or, with `dry_run`, only say what would go)."""
    result = GcResult()
    with store.lease(exclusive=True):
        index = store.index(fresh=True)
        current = {key_tag(k) for k in keys}
        records = [d for d in index if (d.annotation(REF_NAME) or "").startswith(RECORD)]
        keep = {id(d) for d in index if not (d.annotation(REF_NAME) or "").startswith(RECORD)}
        keep |= {id(d) for d in records if d.annotation(REF_NAME) in current}
        by_age = sorted(records, key=lambda d: _written(store, d), reverse=True)
        keep |= {id(d) for d in by_age[: max(0, keep_last)]}
        if keep_days is not None:
            limit = (now or time.time()) - keep_days * 86400
            keep |= {id(d) for d in records if _written(store, d) >= limit}
        kept_digests = {d.digest for d in index if id(d) in keep}
        # a kept record's cutoff tag names the same manifest: it stays with it
        keep |= {id(d) for d in records if d.digest in kept_digests}
        marked: set[Digest] = set()
        for d in index:
            if id(d) in keep:
                _reach(store, d, marked)
        result.kept_tags = len(keep)
        result.untagged = [d.annotation(REF_NAME) or "" for d in index if id(d) not in keep]
        result.blobs = sorted(set(store.blobs()) - marked)
        chains = _chains(store, [d for d in index if id(d) in keep])
        cache = store.path / "rootfs"
        stale = [p for p in cache.iterdir() if p.name not in chains] if cache.is_dir() else []
        result.roots = sorted(p.name for p in stale)
        if dry_run:
            result.freed = sum(store.size(b) or 0 for b in result.blobs)
            return result
        for tag in result.untagged:
            store.untag(tag)
        for blob in result.blobs:
            result.freed += store.remove_blob(blob)
        for path in stale:
            with contextlib.suppress(OSError):
                remove_tree(path)  # iterative: a root may be thousands of folders deep
        # what killed builds left: their scratch folders (mounts and containers too) and
        # half-written blobs; no build runs now (the lease), so nothing is on its way in
        result.scratch = sweep(store.path)
        for leftover in (store.path / "ingest").iterdir():
            try:
                result.freed += leftover.stat().st_size
                leftover.unlink()
            except OSError:
                continue
    return result


def _chains(store: OciStore, kept: list[Descriptor]) -> set[str]:
    """The chain ids of every layer stack a kept image is built of (its parents' too)."""
    chains = set()
    for desc in kept:
        try:
            image = ImageManifest.load(store, desc)
        except StoreError:
            continue
        for i in range(1, len(image.layers) + 1):
            chains.add(chain_id(image.layers[:i]).hex)
    return chains


def registry_gc(
    cache: object, *, keys: Iterable[str], dry_run: bool = False
) -> tuple[list[str], list[str]]:
    """(deleted, refused) stale `ci-layers-*` tags of the cache repository: every record
    whose manifest no current key's tag names. Deleting is by manifest digest (the
    distribution API deletes manifests, not tags), so a manifest a current tag also
    names is never deleted."""
    from .remote import RemoteCache

    assert isinstance(cache, RemoteCache)
    registry, repo = cache.registry, cache.ref.repository
    tags = [t for t in registry.tags(repo) if t.startswith(RECORD)]
    current = {key_tag(k) for k in keys}
    digests: dict[str, Digest] = {}
    for tag in tags:
        desc = registry.manifest_descriptor(repo, tag)
        if desc is not None:
            digests[tag] = desc.digest
    needed = {digests[t] for t in tags if t in current and t in digests}
    stale: dict[Digest, list[str]] = {}
    for tag, digest in digests.items():
        if digest not in needed:
            stale.setdefault(digest, []).append(tag)
    deleted, refused = [], []
    for digest, names in sorted(stale.items()):
        if dry_run or registry.delete_manifest(repo, digest):
            deleted += names
        else:
            refused += names
    return sorted(deleted), sorted(refused)
