"""Images between the store and a registry: push only what the registry lacks, pull
only what the store lacks, every byte verified on the way in.

Push order is blobs, then config, then manifest (a registry refuses a manifest whose
blobs it lacks, and a push stopped half way leaves blobs nobody references, never a
manifest that points at nothing); a rerun finds the blobs already there and finishes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, cast

from ..errors import RegistryError, StoreError
from ..platforms import PlatformError, parse_platform
from .digest import Descriptor, Digest
from .manifest import host_platform
from .registry import Registry
from .store import OciStore

__all__ = [
    "Locations",
    "TransferStats",
    "copy_image",
    "image_blobs",
    "pull_image",
    "push_image",
]

_INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


@dataclass
class TransferStats:
    """What a transfer moved, for the summary and the benchmark."""

    uploaded: int = 0
    uploaded_bytes: int = 0
    mounted: int = 0
    present: int = 0  # blobs the other side already had
    downloaded: int = 0
    downloaded_bytes: int = 0
    manifests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


class Locations:
    """Which repositories of a registry are known to hold a blob (pulled from or pushed
    to in this process): the candidates for a cross-repository mount."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, Digest], set[str]] = {}
        self._lock = threading.Lock()

    def add(self, host: str, repo: str, digest: Digest) -> None:
        with self._lock:
            self._seen.setdefault((host, digest), set()).add(repo)

    def holds(self, host: str, repo: str, digest: Digest) -> bool:
        with self._lock:
            return repo in self._seen.get((host, digest), ())

    def others(self, host: str, repo: str, digest: Digest) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(self._seen.get((host, digest), set()) - {repo}))[:3]


def _parse(data: bytes, where: str) -> dict[str, Any]:
    try:
        parsed = json.loads(data)
    except ValueError:
        raise RegistryError(f"{where}: the manifest is not JSON") from None
    if not isinstance(parsed, dict):
        raise RegistryError(f"{where}: the manifest is not a JSON object")
    return parsed


def image_blobs(manifest: dict[str, Any], where: str) -> list[Descriptor]:
    """The config and layers a manifest references (none for an index)."""
    try:
        found = [manifest["config"], *(manifest.get("layers") or [])]
        return [Descriptor.from_json(d, where=where) for d in found]
    except (KeyError, TypeError, StoreError) as exc:
        raise RegistryError(f"{where}: not an image manifest ({exc})") from None


# --- push --------------------------------------------------------------------------------


def push_image(
    store: OciStore,
    desc: Descriptor,
    registry: Registry,
    repo: str,
    tags: Iterable[str],
    *,
    stats: TransferStats,
    locations: Locations | None = None,
    jobs: int = 4,
) -> None:
    """Push the image `desc` names (a manifest, or an index and the manifests of it the
    store has) under each of `tags`; blobs the registry has are not sent again."""
    tags = list(tags) or [str(desc.digest)]
    locations = locations or Locations()
    current = [registry.manifest_descriptor(repo, t) for t in tags if not t.startswith("sha256:")]
    if len(current) == len(tags) and all(
        d is not None and d.digest == desc.digest for d in current
    ):
        return  # every tag already names this very manifest
    if registry.manifest_descriptor(repo, str(desc.digest)) is None:
        _push_tree(store, desc, registry, repo, stats, locations, jobs)
    data = store.read_bytes(desc.digest)
    for tag in tags:
        registry.put_manifest(repo, tag, data, desc.media_type)
        stats.add(manifests=1)


def _push_tree(
    store: OciStore,
    desc: Descriptor,
    registry: Registry,
    repo: str,
    stats: TransferStats,
    locations: Locations,
    jobs: int,
) -> None:
    """Everything under `desc` but `desc` itself: blobs, then child manifests."""
    manifest = store.read_json(desc)
    where = f"{store.path}: {desc.digest}"
    if desc.media_type in _INDEX_TYPES or "manifests" in manifest:
        for child in manifest.get("manifests") or []:
            cdesc = Descriptor.from_json(child, where=where)
            if not store.has(cdesc.digest):
                raise RegistryError(
                    f"{where}: an index whose image {cdesc.digest} is not in the store "
                    "(only one platform was pulled); push a platform's image instead"
                )
            if registry.manifest_descriptor(repo, str(cdesc.digest)) is None:
                _push_tree(store, cdesc, registry, repo, stats, locations, jobs)
                registry.put_manifest(
                    repo, str(cdesc.digest), store.read_bytes(cdesc.digest), cdesc.media_type
                )
                stats.add(manifests=1)
        return
    blobs = list({d.digest: d for d in image_blobs(manifest, where)}.values())
    for d in blobs:
        if store.size(d.digest) != d.size:
            raise StoreError(f"{where}: blob {d.digest} is not in the store at its size {d.size}")

    def one(d: Descriptor) -> None:
        if locations.holds(registry.host, repo, d.digest):
            stats.add(present=1)
            return
        if registry.blob_size(repo, d.digest) is not None:
            stats.add(present=1)
        else:
            how = registry.upload_blob(
                repo,
                d,
                lambda: store.open(d.digest, size=d.size),  # type: ignore[arg-type,return-value]
                mount_from=locations.others(registry.host, repo, d.digest),
            )
            if how == "mounted":
                stats.add(mounted=1)
            else:
                stats.add(uploaded=1, uploaded_bytes=d.size)
        locations.add(registry.host, repo, d.digest)

    _parallel(one, blobs, jobs)


def _parallel(fn: Any, items: list[Descriptor], jobs: int) -> None:
    if len(items) <= 1 or jobs <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(max_workers=min(jobs, len(items))) as pool:
        for f in [pool.submit(fn, item) for item in items]:
            f.result()  # the first failure is raised; the others finish or fail too


# --- pull --------------------------------------------------------------------------------


def pull_image(
    registry: Registry,
    repo: str,
    ref: str,
    store: OciStore,
    *,
    stats: TransferStats,
    locations: Locations | None = None,
    layers: bool = True,
    jobs: int = 4,
) -> Descriptor:
    """Fetch `repo:ref` (or `repo@digest`) into the store and return its descriptor (not
    tagged: the caller names it). An index brings the host platform's image only, as
    `skopeo copy` does without --all. With `layers=False`, only manifest and config."""
    data, media, digest = registry.get_manifest(repo, ref)
    where = f"{registry.host}/{repo}:{ref}"
    manifest = _parse(data, where)
    top = Descriptor(media, digest, len(data))
    image_data, image = data, top
    if media in _INDEX_TYPES or "manifests" in manifest:
        child = _platform_child(manifest, where)
        image_data, cmedia, cdigest = registry.get_manifest(repo, str(child.digest))
        image = Descriptor(cmedia, cdigest, len(image_data))
        manifest = _parse(image_data, where)
    blobs = image_blobs(manifest, where)
    wanted = blobs if layers else blobs[:1]
    missing = [d for d in {d.digest: d for d in wanted}.values() if store.size(d.digest) != d.size]

    def one(d: Descriptor) -> None:
        registry.fetch_blob(repo, d, store.writer)
        stats.add(downloaded=1, downloaded_bytes=d.size)

    _parallel(one, missing, jobs)
    stats.add(present=len(wanted) - len(missing))
    if locations is not None:
        for d in blobs:
            locations.add(registry.host, repo, d.digest)
    # manifests last: a store image is never named before its blobs are there
    if image is not top:
        _put(store, image_data, image)
    _put(store, data, top)
    stats.add(manifests=1)
    os_name, arch = host_platform()
    return Descriptor(
        top.media_type, top.digest, top.size, (), (("architecture", arch), ("os", os_name))
    )


def _put(store: OciStore, data: bytes, desc: Descriptor) -> None:
    got = store.put_bytes(data, media_type=desc.media_type)
    if got.digest != desc.digest:  # get_manifest verified it already; the store again
        raise StoreError(f"manifest {desc.digest} stored as {got.digest}")


def _platform_child(index: dict[str, Any], where: str) -> Descriptor:
    os_name, arch = host_platform()
    for m in index.get("manifests") or []:
        p = m.get("platform") or {} if isinstance(m, dict) else {}
        if p.get("os") == os_name and p.get("architecture") == arch:
            return Descriptor.from_json(m, where=where)
    raise RegistryError(f"{where}: an index with no image for {os_name}/{arch}")


# --- registry to registry -------------------------------------------------------------------


def copy_image(
    src: Registry,
    src_repo: str,
    ref: str,
    dst: Registry,
    dst_repo: str,
    tag: str,
    *,
    stats: TransferStats,
    staging: OciStore,
    dry_run: bool = False,
) -> tuple[Digest, str]:
    """Put the image `src_repo:ref` names under `dst_repo:tag`, as the same manifest (an
    index with all it lists): nothing but the manifest `PUT` in the same repository,
    blobs mounted from `src_repo` in another repository of the same registry, only the
    missing blobs copied (through `staging`, verified) to another registry. Returns the
    digest and what was done: "already", "moved from sha256:…", or "put"."""
    data, media, digest = src.get_manifest(src_repo, ref)
    where = f"{src.host}/{src_repo}:{ref}"

    def first() -> None:  # what the manifest references, where the tag goes
        if src.host != dst.host or src_repo != dst_repo:
            tree = _parse(data, where)
            _copy_tree(src, src_repo, dst, dst_repo, tree, media, where, stats, staging)

    return _tag(dst, dst_repo, tag, (data, media, digest), first, stats=stats, dry_run=dry_run)


def _tag(
    dst: Registry,
    dst_repo: str,
    tag: str,
    manifest: tuple[bytes, str, Digest],
    first: Callable[[], None],
    *,
    stats: TransferStats,
    dry_run: bool,
) -> tuple[Digest, str]:
    """Put `manifest` (bytes, media type, digest) under `dst_repo:tag` after `first()`
    copied what it references; a tag naming it already is left alone, and the tag is
    read back. Returns the digest and "already", "put" or "moved from sha256:…"."""
    data, media, digest = manifest
    current = dst.manifest_descriptor(dst_repo, tag)
    if current is not None and current.digest == digest:
        return digest, "already"
    done = "put" if current is None else f"moved from {current.digest}"
    if dry_run:
        return digest, done
    first()
    dst.put_manifest(dst_repo, tag, data, media)
    stats.add(manifests=1)
    now = dst.manifest_descriptor(dst_repo, tag)
    if now is None or now.digest != digest:
        got = now.digest if now is not None else "nothing"
        raise RegistryError(f"{dst.host}/{dst_repo}:{tag}: names {got} after the PUT, not {digest}")
    return digest, done


def _copy_tree(
    src: Registry,
    src_repo: str,
    dst: Registry,
    dst_repo: str,
    manifest: dict[str, Any],
    media: str,
    where: str,
    stats: TransferStats,
    staging: OciStore,
) -> None:
    """What a manifest references, into `dst_repo`: an index's manifests (each by its
    digest, after what it references), an image's config and layers."""
    if media in _INDEX_TYPES or "manifests" in manifest:
        for child in manifest.get("manifests") or []:
            cdesc = Descriptor.from_json(child, where=where)
            if dst.manifest_descriptor(dst_repo, str(cdesc.digest)) is not None:
                continue
            data, cmedia, _ = src.get_manifest(src_repo, str(cdesc.digest))
            _copy_tree(
                src, src_repo, dst, dst_repo, _parse(data, where), cmedia, where, stats, staging
            )
            dst.put_manifest(dst_repo, str(cdesc.digest), data, cmedia)
            stats.add(manifests=1)
        return
    for d in {d.digest: d for d in image_blobs(manifest, where)}.values():
        if dst.blob_size(dst_repo, d.digest) is not None:
            stats.add(present=1)
            continue
        # one registry: mounted from the repository that has it (never sent again);
        # else, or if it will not mount, the bytes, fetched once and verified
        one_registry = src.host == dst.host
        how = dst.upload_blob(
            dst_repo,
            d,
            _fetched(src, src_repo, d, staging, stats),
            mount_from=(src_repo,) if one_registry else (),
        )
        if how == "mounted":
            stats.add(mounted=1)
        else:
            stats.add(uploaded=1, uploaded_bytes=d.size)


def _fetched(
    src: Registry, repo: str, d: Descriptor, staging: OciStore, stats: TransferStats
) -> Callable[[], IO[bytes]]:
    def opener() -> IO[bytes]:
        if staging.size(d.digest) != d.size:
            src.fetch_blob(repo, d, staging.writer)
            stats.add(downloaded=1, downloaded_bytes=d.size)
        return cast(IO[bytes], staging.open(d.digest, size=d.size))

    return opener


# --- join --------------------------------------------------------------------------------

_UNKNOWN = "unknown/unknown"  # BuildKit's attestation manifests in an index
_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


@dataclass(frozen=True, slots=True)
class PlatformBuild:
    """One platform's build of an image, where its hand-off tag put it."""

    platform: str  # normalised, as `platforms:` says it
    registry: Registry
    repo: str
    ref: str


def join_index(
    builds: list[PlatformBuild],
    dst: Registry,
    dst_repo: str,
    tag: str,
    *,
    stats: TransferStats,
    staging: OciStore,
    dry_run: bool = False,
) -> tuple[Digest, str]:
    """One index of every platform's build under `dst_repo:tag`, as `docker buildx
    imagetools create` makes it: each build's manifest (or the manifests of the index a
    build pushed, its attestations included) listed with the platform its config says,
    which must be the platform it was built for. Returns the digest and what was done,
    as `copy_image` does."""
    entries: dict[str, dict[str, Any]] = {}
    sources: list[tuple[PlatformBuild, dict[str, Any], str, bytes, Digest]] = []
    docker = True
    for b in builds:
        where = f"{b.registry.host}/{b.repo}:{b.ref}"
        data, media, digest = b.registry.get_manifest(b.repo, b.ref)
        manifest = _parse(data, where)
        media = manifest.get("mediaType") or media
        docker = docker and media.startswith("application/vnd.docker.")
        sources.append((b, manifest, media, data, digest))
        if media in _INDEX_TYPES or "manifests" in manifest:
            children = [c for c in manifest.get("manifests") or [] if isinstance(c, dict)]
            said = {_said(c.get("platform")) for c in children} - {_UNKNOWN}
            if said != {b.platform}:
                listed = ", ".join(sorted(said)) or "none"
                raise RegistryError(
                    f"{where} lists {listed}, not {b.platform} alone: it is not "
                    f"{b.platform}'s build (was it built on another runner?)"
                )
            entries.update((str(c.get("digest")), c) for c in children)
            continue
        config = _config(b, manifest, where, staging)
        found = _normal(
            str(config.get("os")), str(config.get("architecture")), config.get("variant")
        )
        if found != b.platform:
            raise RegistryError(
                f"{where} holds a {found} image, not {b.platform}: it was built on a {found} runner"
            )
        platform = {"architecture": config.get("architecture"), "os": config.get("os")}
        if config.get("variant"):
            platform["variant"] = config["variant"]
        entries[str(digest)] = {
            "mediaType": media,
            "digest": str(digest),
            "size": len(data),
            "platform": platform,
        }
    index_media = _DOCKER_LIST if docker else _OCI_INDEX
    index = {"schemaVersion": 2, "mediaType": index_media, "manifests": list(entries.values())}
    body = json.dumps(index, separators=(",", ":")).encode()

    def first() -> None:  # every build's manifest, by digest, where the index goes
        for b, manifest, media, data, child in sources:
            if (b.registry.host, b.repo) == (dst.host, dst_repo):
                continue  # the manifests are there, by digest
            where = f"{b.registry.host}/{b.repo}:{b.ref}"
            _copy_tree(b.registry, b.repo, dst, dst_repo, manifest, media, where, stats, staging)
            if dst.manifest_descriptor(dst_repo, str(child)) is None:
                dst.put_manifest(dst_repo, str(child), data, media)
                stats.add(manifests=1)

    made = (body, index_media, Digest.of(body))
    return _tag(dst, dst_repo, tag, made, first, stats=stats, dry_run=dry_run)


def _said(platform: Any) -> str:
    """The platform an index entry names, normalised; BuildKit's attestations name none."""
    if not isinstance(platform, dict) or platform.get("os") in (None, "unknown"):
        return _UNKNOWN
    return _normal(
        str(platform.get("os")), str(platform.get("architecture")), platform.get("variant")
    )


def _normal(os_name: str, arch: str, variant: Any = None) -> str:
    written = "/".join(str(x) for x in (os_name, arch, variant) if x)
    try:
        return parse_platform(written)
    except PlatformError:
        return written


def _config(b: PlatformBuild, manifest: dict[str, Any], where: str, staging: OciStore) -> Any:
    desc = image_blobs(manifest, where)[0]
    if not staging.has(desc.digest):
        b.registry.fetch_blob(b.repo, desc, staging.writer)
    try:
        return json.loads(staging.read_bytes(desc.digest))
    except ValueError:
        raise RegistryError(f"{where}: its config is not JSON") from None
