"""The registry repository that holds every built layer as `ci-layers-<key>`: how a
matrix job on one machine finds the parent a job on another machine built.

Look-ups are HEAD requests, remembered for the run; images come into the store
verified (transfer.pull_image) and go out with only the blobs the registry lacks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..errors import StoreError
from ..oci.digest import Descriptor
from ..oci.manifest import check_config, host_platform
from ..oci.reference import Reference
from ..oci.registry import Registry
from ..oci.store import OciStore
from ..oci.transfer import Locations, TransferStats, pull_image, push_image

__all__ = ["RemoteCache", "pull_external"]


def pull_external(
    reference: str,
    store: OciStore,
    *,
    stats: TransferStats,
    registries: dict[str, Registry],
    env: dict[str, str] | None = None,
) -> Descriptor:
    """A base image (`from:`) pulled from where its reference names, tagged by it in the
    store; a pinned digest is checked against what the registry sends."""
    ref = Reference.parse(reference, what=f"base image '{reference}'")
    registry = registries.setdefault(ref.host, Registry(ref.host, env=env))
    desc = pull_image(registry, ref.repository, ref.ref, store, stats=stats)
    store.tag(reference, desc)
    return desc


class RemoteCache:
    """`REGISTRY/REPO` given as `--cache`; `push` true when built layers go there."""

    def __init__(
        self,
        repository: str,
        store: OciStore,
        *,
        push: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.ref = Reference.parse(repository, what="--cache", repository_only=True)
        self.store, self.push_enabled = store, push
        env = dict(os.environ if env is None else env)
        if env.get("CI_LAYERS_REGISTRY_USERNAME"):  # the cache's: not for every base's host
            env.setdefault("CI_LAYERS_REGISTRY_HOST", self.ref.host)
        self.registry = Registry(self.ref.host, env=env)
        self.stats = TransferStats()
        self.locations = Locations()
        self._found: dict[str, Descriptor | None] = {}
        self._pushed: set[tuple[str, str]] = set()
        self._platforms: dict[str, tuple[str, str] | None] = {}
        self.registries: dict[str, Registry] = {self.ref.host: self.registry}

    def __str__(self) -> str:
        return self.ref.name

    def find(self, tag: str) -> Descriptor | None:
        if tag not in self._found:
            self._found[tag] = self.registry.manifest_descriptor(self.ref.repository, tag)
        return self._found[tag]

    def usable(self, tag: str) -> bool:
        """Whether the tag holds an image for this machine's platform. A key names its
        platform (but the default's), yet a cache an older ci-layers filled may hold an
        arm64 build under an amd64 key: such an image is not taken, nor overwritten."""
        return self.find(tag) is not None and self.platform(tag) == host_platform()

    def platform(self, tag: str) -> tuple[str, str] | None:
        if tag not in self._platforms:
            desc = self.fetch(tag, layers=False)
            manifest = self.store.read_json(desc)
            if not isinstance(manifest, dict):
                raise StoreError(f"{self}:{tag} is no image manifest")
            config = self.store.read_json(Descriptor.from_json(manifest.get("config"), where=tag))
            check_config(config, where=f"{self}:{tag}")  # a cache may hold anything
            self._platforms[tag] = (str(config.get("os")), str(config.get("architecture")))
        return self._platforms[tag]

    def fetch(self, tag: str, *, layers: bool = True) -> Descriptor:
        """The tagged image into the store (with `layers=False`: manifest and config)."""
        desc = pull_image(
            self.registry,
            self.ref.repository,
            tag,
            self.store,
            stats=self.stats,
            locations=self.locations,
            layers=layers,
        )
        if layers:
            self.store.tag(tag, desc)
        return desc

    def fetch_blob(self, desc: Descriptor) -> None:
        if self.store.size(desc.digest) != desc.size:
            self.registry.fetch_blob(self.ref.repository, desc, self.store.writer)
            self.stats.add(downloaded=1, downloaded_bytes=desc.size)

    def push(self, desc: Descriptor, tags: Sequence[str]) -> list[str]:
        """The store's image under `tags` in the cache repository; returns the tags left
        alone because they hold another platform's image."""
        todo = [t for t in tags if (str(desc.digest), t) not in self._pushed]
        other = [
            t
            for t in todo
            if (found := self.find(t)) is not None
            and found.digest != desc.digest
            and self.platform(t) != host_platform()
        ]
        todo = [t for t in todo if t not in other]
        if not todo:
            return other
        push_image(
            self.store,
            desc,
            self.registry,
            self.ref.repository,
            todo,
            stats=self.stats,
            locations=self.locations,
        )
        for t in todo:
            self._pushed.add((str(desc.digest), t))
            self._found[t] = desc
            self._platforms[t] = host_platform()
        return other

    def publish(self, desc: Descriptor, reference: str) -> None:
        """A release tag (`images:`), pushed to where it names; blobs the cache
        repository holds on the same registry are mounted, not uploaded."""
        ref = Reference.parse(reference, what=f"image tag '{reference}'")
        registry = self.registries.setdefault(ref.host, Registry(ref.host, env=self.registry.env))
        push_image(
            self.store,
            desc,
            registry,
            ref.repository,
            [ref.tag or "latest"],
            stats=self.stats,
            locations=self.locations,
        )
