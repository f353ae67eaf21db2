"""`ci-layers promote`: release what is built already, without building it again.

Every image at the planned commit is built under its content-addressed hand-off tag (a
Dockerfile image: `<image>:ci-layers-<16 hex>`, a spec layer:
`<cache>:ci-layers-<key>`). Promoting puts its release tags (the image's name and its extra tags, an
`images:` entry's tags) on the very manifest that tag names (an image built for several
platforms: on one index of every platform's build, each entry's platform read from its
config): a manifest `PUT` in the same repository, blobs mounted into another repository
of the same registry, only the missing blobs copied to another registry; each tag read
back and checked to name that digest. A tag already there is left alone, so a second run
changes nothing; a tag that named another image is moved, and said so. An image with no
build is listed, and fails the command unless `allow_missing`.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .docker import key_tag, release_tags
from .errors import RegistryError, UsageError
from .plan import Plan
from .spec import Spec

if TYPE_CHECKING:
    from .oci.registry import Registry
    from .oci.store import OciStore
    from .oci.transfer import TransferStats

__all__ = ["Promotion", "promote"]


@dataclass(frozen=True, slots=True)
class Promotion:
    image: str
    source: str  # the hand-off tag
    target: str  # a release tag
    done: str  # "put", "already", "moved from sha256:…", "missing"; "would …" in a dry run
    digest: str = ""


def promote(
    plan: Plan,
    spec: Spec,
    *,
    cache: str | None,
    dry_run: bool,
    allow_missing: bool,
    env: Mapping[str, str] | None,
    out: TextIO,
) -> int:
    """Promote every image of `plan`'s head; the exit code."""
    from .oci.reference import Reference
    from .oci.reference import key_tag as cache_tag
    from .oci.registry import Registry
    from .oci.store import OciStore
    from .oci.transfer import PlatformBuild, TransferStats, copy_image, join_index

    sources: dict[str, str] = {}
    for name, lp in plan.layers.items():
        layer = spec.graph[name]
        if layer.dockerfile is not None and layer.dockerfile.local:
            continue  # an untagged bake target: nothing to release
        if layer.dockerfile is not None:
            sources[name] = key_tag(layer.origin, lp.key)
        elif release_tags(spec, name):
            if cache is None:
                raise UsageError(
                    f"'{name}' has images: tags; promote takes its build from the cache "
                    "repository it was pushed to (--cache REGISTRY/REPO)"
                )
            sources[name] = f"{cache}:{cache_tag(lp.key)}"
    registries: dict[str, Registry] = {}

    def registry(host: str) -> Registry:
        if host not in registries:
            registries[host] = Registry(host, env=dict(env) if env is not None else None)
        return registries[host]

    stats = TransferStats()
    done: list[Promotion] = []
    joined: dict[str, list[str]] = {}  # an image built for several platforms: its builds
    for name in list(sources):
        if spec.graph[name].image is not None:
            joined.setdefault(spec.graph[name].origin, []).append(name)
    with tempfile.TemporaryDirectory(prefix="ci-layers-promote-") as tmp:
        staging = OciStore(Path(tmp))
        how: dict[str, Any] = {"registry": registry, "stats": stats, "staging": staging}
        for image, names in joined.items():
            builds = []
            for name in names:
                src = Reference.parse(sources.pop(name), what=f"{name}'s hand-off tag")
                builds.append(
                    PlatformBuild(
                        spec.graph[name].platform or "", registry(src.host), src.repository, src.ref
                    )
                )
            missing = [
                Promotion(name, f"{b.registry.host}/{b.repo}:{b.ref}", "", "missing")
                for name, b in zip(names, builds, strict=True)
                if b.registry.manifest_descriptor(b.repo, b.ref) is None
            ]
            if missing:
                done += missing  # no index of some platforms: the release tags stay
                continue
            shown = f"{len(builds)} platforms' builds"
            for target in release_tags(spec, names[0]):
                put = functools.partial(join_index, builds)
                done.append(_one(image, shown, target, put, dry_run=dry_run, **how))
        for name, source in sources.items():
            src = Reference.parse(source, what=f"{name}'s hand-off tag")
            put = functools.partial(copy_image, registry(src.host), src.repository, src.ref)
            for target in release_tags(spec, name):
                done.append(_one(name, source, target, put, dry_run=dry_run, **how))
                if done[-1].done == "missing":
                    break  # no build: its other tags say nothing more
    return _report(done, stats, allow_missing=allow_missing, dry_run=dry_run, out=out)


def _one(
    image: str,
    shown: str,
    target: str,
    put: Callable[..., tuple[Any, str]],
    *,
    registry: Callable[[str], Registry],
    stats: TransferStats,
    staging: OciStore,
    dry_run: bool,
) -> Promotion:
    """One release tag put (`put(dst registry, repository, tag, …)`): what was done, or
    "missing" when the build it comes from is not there."""
    from .oci.reference import Reference

    dst = Reference.parse(target, what=f"{image}'s release tag")
    try:
        digest, what = put(
            registry(dst.host),
            dst.repository,
            dst.ref,
            stats=stats,
            staging=staging,
            dry_run=dry_run,
        )
    except RegistryError as exc:
        if exc.status == 404 and "no such manifest" in str(exc):
            return Promotion(image, shown, target, "missing")
        raise RegistryError(f"{image}: {target}: {exc}") from None
    if dry_run and what != "already":
        what = f"would be {what}"
    return Promotion(image, shown, target, what, str(digest))


def _report(
    done: list[Promotion],
    stats: TransferStats,
    *,
    allow_missing: bool,
    dry_run: bool,
    out: TextIO,
) -> int:
    for p in done:
        if p.done == "missing":
            out.write(f"{p.image}: not built: {p.source} does not exist\n")
        else:
            out.write(f"{p.target}: {p.done} ({p.digest[:19]}, from {p.source})\n")
    missing = [p for p in done if p.done == "missing"]
    moved = sum(1 for p in done if p.done.startswith(("put", "moved", "would")))
    already = sum(1 for p in done if p.done == "already")
    verb = "would promote" if dry_run else "promoted"
    out.write(f"{verb} {moved} tags, {already} already there")
    if missing:
        out.write(f"; {len(missing)} images not built")
    out.write(f" ({_transfers(stats)})\n")
    if missing and not allow_missing:
        out.write("not built: build them first, or pass --allow-missing to promote the rest\n")
        return 1
    return 0


def _transfers(stats: TransferStats) -> str:
    return (
        f"{stats.manifests} manifests put, {stats.mounted} blobs mounted, "
        f"{stats.uploaded} uploaded, {stats.present} already there"
    )
