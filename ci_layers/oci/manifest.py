"""ImageManifest: an image's layers, in order, and its config, as OCI JSON.

Written canonically (sorted keys, no spaces), so the same layers and config always give
the same config and manifest digests. Images pulled into the store by other tools
(skopeo) may be Docker schema 2 or an index of platforms; `load` reads those too.
"""

from __future__ import annotations

import json
import platform as _platform
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from ..errors import StoreError
from .digest import Descriptor, Digest
from .store import OciStore

__all__ = [
    "CONFIG",
    "LAYER_GZIP",
    "LAYER_TAR",
    "LAYER_ZSTD",
    "MANIFEST",
    "History",
    "ImageConfig",
    "ImageManifest",
    "Layer",
    "chain_id",
    "check_config",
    "host_platform",
]

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
_MANIFESTS = (MANIFEST, _DOCKER_MANIFEST)
_INDEXES = (INDEX, _DOCKER_LIST)
_KNOWN_CONFIG = {"Env", "Entrypoint", "Cmd", "WorkingDir", "User", "Labels"}


def host_platform() -> tuple[str, str]:
    """(os, architecture) in Go's names, as images record them."""
    machine = _platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}
    return "linux", arch.get(machine, machine)


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer blob: its descriptor (compressed bytes) and diff_id (the tar's digest)."""

    descriptor: Descriptor
    diff_id: Digest


@dataclass(frozen=True, slots=True)
class History:
    created_by: str
    empty_layer: bool = False
    comment: str = ""
    created: str | None = None  # a base image's own; ours are the config's `created`


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The image config fields ci-layers sets; `extra` keeps the rest of a base's."""

    architecture: str
    os: str
    env: tuple[tuple[str, str], ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    workdir: str = ""
    user: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    created: int = 0
    extra: str = "{}"  # other keys of `config`, as canonical JSON
    variant: str = ""

    def to_json(self) -> dict[str, Any]:
        conf: dict[str, Any] = json.loads(self.extra)
        if self.env:
            conf["Env"] = [f"{k}={v}" for k, v in self.env]
        if self.entrypoint is not None:
            conf["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            conf["Cmd"] = list(self.cmd)
        if self.workdir:
            conf["WorkingDir"] = self.workdir
        if self.user:
            conf["User"] = self.user
        if self.labels:
            conf["Labels"] = dict(self.labels)
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        out["created"] = _rfc3339(self.created)
        out["config"] = conf
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImageConfig:
        """From a config `check_config` accepted."""
        conf = dict(data.get("config") or {})
        env = []
        for item in conf.get("Env") or []:
            k, _, v = str(item).partition("=")
            env.append((k, v))
        extra = {k: v for k, v in conf.items() if k not in _KNOWN_CONFIG}
        entry, cmd = _strslice(conf.get("Entrypoint")), _strslice(conf.get("Cmd"))
        return cls(
            architecture=str(data.get("architecture") or ""),
            os=str(data.get("os") or ""),
            variant=str(data.get("variant") or ""),
            env=tuple(env),
            entrypoint=None if entry is None else tuple(map(str, entry)),
            cmd=None if cmd is None else tuple(map(str, cmd)),
            workdir=str(conf.get("WorkingDir") or ""),
            user=str(conf.get("User") or ""),
            labels=tuple(sorted((conf.get("Labels") or {}).items())),
            extra=json.dumps(extra, sort_keys=True, separators=(",", ":")),
        )


@dataclass(frozen=True, slots=True)
class ImageManifest:
    """The ordered layers of an image (base first), its config and history."""

    config: ImageConfig
    layers: tuple[Layer, ...] = ()
    history: tuple[History, ...] = ()
    annotations: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def scratch(cls, *, created: int = 0) -> ImageManifest:
        os_name, arch = host_platform()
        return cls(ImageConfig(architecture=arch, os=os_name, created=created))

    def config_bytes(self) -> bytes:
        data = self.config.to_json()
        data["rootfs"] = {"type": "layers", "diff_ids": [str(x.diff_id) for x in self.layers]}
        data["history"] = [_history(h, self.config.created) for h in self.history]
        return _canonical(data)

    def manifest_bytes(self, config: Descriptor) -> bytes:
        data: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": config.to_json(),
            "layers": [x.descriptor.to_json() for x in self.layers],
        }
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        return _canonical(data)

    def write(self, store: OciStore) -> Descriptor:
        """Config, then manifest, into the store (layers must be there already)."""
        for x in self.layers:
            if not store.has(x.descriptor.digest):
                raise StoreError(f"layer {x.descriptor.digest} is not in the store {store.path}")
        config = store.put_bytes(self.config_bytes(), media_type=CONFIG)
        desc = store.put_bytes(self.manifest_bytes(config), media_type=MANIFEST)
        return replace(
            desc,
            platform=(("architecture", self.config.architecture), ("os", self.config.os)),
        )

    @staticmethod
    def annotate(store: OciStore, desc: Descriptor, annotations: Mapping[str, str]) -> Descriptor:
        """The manifest `desc` names with more annotations: config and layers unchanged."""
        data = store.read_json(desc)
        data["annotations"] = {**(data.get("annotations") or {}), **annotations}
        new = store.put_bytes(_canonical(data), media_type=desc.media_type)
        return replace(new, platform=desc.platform)

    @classmethod
    def load(cls, store: OciStore, desc: Descriptor) -> ImageManifest:
        """The image `desc` names: a manifest, or the host's platform in an index."""
        data = _object(store.read_json(desc), desc)
        media = data.get("mediaType") or desc.media_type
        if media in _INDEXES or "manifests" in data:
            desc = _pick_platform(data, desc)
            data = _object(store.read_json(desc), desc)
            media = data.get("mediaType") or desc.media_type
        if media not in _MANIFESTS and "layers" not in data:
            raise StoreError(f"{desc.digest} is a {media}, not an image manifest")
        where = f"manifest {desc.digest}"
        if not isinstance(data.get("layers") or [], list):
            raise StoreError(f"{where}: layers is not a list")
        config_desc = Descriptor.from_json(data.get("config"), where=where)
        config = store.read_json(config_desc)
        check_config(config, where=f"image {desc.digest}")
        diff_ids = [Digest.parse(d) for d in (config.get("rootfs") or {}).get("diff_ids") or []]
        layer_descs = [
            _oci_layer(Descriptor.from_json(x, where=where)) for x in data.get("layers") or []
        ]
        if len(diff_ids) != len(layer_descs):
            raise StoreError(f"{where}: {len(layer_descs)} layers but {len(diff_ids)} diff_ids")
        history = tuple(
            History(
                created_by=str(h.get("created_by") or ""),
                empty_layer=bool(h.get("empty_layer")),
                comment=str(h.get("comment") or ""),
                created=str(h["created"]) if h.get("created") else None,
            )
            for h in config.get("history") or []
        )
        return cls(
            config=ImageConfig.from_json(config),
            layers=tuple(Layer(d, i) for d, i in zip(layer_descs, diff_ids, strict=True)),
            history=history,
            annotations=tuple(sorted((data.get("annotations") or {}).items())),
        )


_STRINGS = "a list of strings"
# The fields of a config as Docker and containerd type them (image-spec config.md, moby's
# container.Config): a value of another type fails their JSON decoding, so it fails here,
# named, where the config is read. null is absent; a command may be one string (StrSlice).
_CONFIG_FIELDS: dict[str, str] = {
    "Env": _STRINGS,
    "Entrypoint": "a string or a list of strings",
    "Cmd": "a string or a list of strings",
    "Shell": "a string or a list of strings",
    "OnBuild": _STRINGS,
    "WorkingDir": "a string",
    "User": "a string",
    "StopSignal": "a string",
    "Labels": "a map of strings",
    "ExposedPorts": "a map",
    "Volumes": "a map",
    "Healthcheck": "a map",
    "ArgsEscaped": "true or false",
}
_TOP_FIELDS = {"architecture": "a string", "os": "a string", "variant": "a string"}
_TOP_FIELDS |= {"created": "a string", "author": "a string", "os.version": "a string"}
_HISTORY_FIELDS = {"created": "a string", "created_by": "a string", "author": "a string"}
_HISTORY_FIELDS |= {"comment": "a string", "empty_layer": "true or false"}


def _is(value: Any, kind: str) -> bool:
    if value is None:
        return True
    if kind == "a string":
        return isinstance(value, str)
    if kind == _STRINGS:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "a string or a list of strings":
        return _is(value, "a string") or _is(value, _STRINGS)
    if kind == "a map of strings":
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if kind == "a map":
        return isinstance(value, dict)
    return isinstance(value, bool)  # true or false


def check_config(config: Any, *, where: str) -> None:
    """Refuse a config Docker could not decode, naming the field: read as it is, its
    values would reach a child's config, or end the build with a traceback."""

    def bad(field: str, value: Any, kind: str) -> StoreError:
        shown = json.dumps(value)[:60]
        return StoreError(f"{where}: config field {field} is {shown}, not {kind}")

    if not isinstance(config, dict):
        raise bad("(the config)", config, "a map")
    for name, kind in _TOP_FIELDS.items():
        if not _is(config.get(name), kind):
            raise bad(name, config[name], kind)
    conf = config.get("config")
    if not _is(conf, "a map"):
        raise bad("config", conf, "a map")
    for name, kind in _CONFIG_FIELDS.items():
        if conf and not _is(conf.get(name), kind):
            raise bad(name, conf[name], kind)
    rootfs = config.get("rootfs")
    if not _is(rootfs, "a map"):
        raise bad("rootfs", rootfs, "a map")
    diff_ids = (rootfs or {}).get("diff_ids")
    if not _is(diff_ids, _STRINGS):
        raise bad("rootfs.diff_ids", diff_ids, "a list of digests")
    for d in diff_ids or []:
        try:
            Digest.parse(d)
        except StoreError:
            raise bad("rootfs.diff_ids", d, "a digest") from None
    history = config.get("history")
    if not isinstance(history, list | None):
        raise bad("history", history, "a list")
    for i, h in enumerate(history or []):
        if not isinstance(h, dict):
            raise bad(f"history[{i}]", h, "a map")
        for name, kind in _HISTORY_FIELDS.items():
            if not _is(h.get(name), kind):
                raise bad(f"history[{i}].{name}", h[name], kind)


def _strslice(value: Any) -> list[str] | None:
    return [value] if isinstance(value, str) else value


def chain_id(layers: tuple[Layer, ...]) -> Digest:
    """The OCI ChainID of a layer stack (config.md): what a root assembled from these
    layers is, whatever image or name they came under."""
    chain = Digest.of(b"")
    for i, layer in enumerate(layers):
        chain = layer.diff_id if i == 0 else Digest.of(f"{chain} {layer.diff_id}".encode())
    return chain


_DOCKER_LAYERS = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": LAYER_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar": LAYER_TAR,
}


def _oci_layer(desc: Descriptor) -> Descriptor:
    """A Docker schema 2 layer under its OCI media type: the same bytes, so an image
    built on a Docker base is a plain OCI image."""
    media = _DOCKER_LAYERS.get(desc.media_type)
    return desc if media is None else replace(desc, media_type=media)


def _object(data: Any, desc: Descriptor) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise StoreError(f"{desc.digest} is no manifest (not a JSON object)")
    return data


def _pick_platform(index: Mapping[str, Any], desc: Descriptor) -> Descriptor:
    os_name, arch = host_platform()
    found = []
    listed = index.get("manifests") or []
    if not isinstance(listed, list) or not all(isinstance(m, dict) for m in listed):
        raise StoreError(f"index {desc.digest}: manifests is not a list of descriptors")
    for m in listed:
        p = m.get("platform") or {}
        if not isinstance(p, dict):
            raise StoreError(f"index {desc.digest}: a platform is not a map")
        if p.get("os") == os_name and p.get("architecture") == arch:
            found.append(Descriptor.from_json(m, where=f"index {desc.digest}"))
    if not found:
        raise StoreError(f"index {desc.digest} has no image for {os_name}/{arch}")
    return found[0]


def _history(h: History, created: int) -> dict[str, Any]:
    out: dict[str, Any] = {"created": h.created or _rfc3339(created), "created_by": h.created_by}
    if h.comment:
        out["comment"] = h.comment
    if h.empty_layer:
        out["empty_layer"] = True
    return out


def _rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def tags_holding(store: OciStore, digest: Digest) -> list[str]:
    """The store's tags whose image holds `digest`: as its manifest (or index), its
    config, one of its layer blobs or one of their diff_ids (an index's platform images
    that the store has count too)."""
    seen: dict[Digest, bool] = {}

    def holds(desc: Descriptor) -> bool:
        if desc.digest not in seen:
            seen[desc.digest] = False  # a manifest loop, however unlikely, ends here
            seen[desc.digest] = _holds(desc)
        return seen[desc.digest]

    def _holds(desc: Descriptor) -> bool:
        if desc.digest == digest:
            return True
        try:
            data = store.read_json(desc)
        except StoreError:
            return False
        where = f"manifest {desc.digest}"
        for child in data.get("manifests") or []:
            cdesc = Descriptor.from_json(child, where=where)
            if store.has(cdesc.digest) and holds(cdesc):
                return True
        found = [data["config"], *(data.get("layers") or [])] if "config" in data else []
        descs = [Descriptor.from_json(d, where=where) for d in found]
        if any(d.digest == digest for d in descs):
            return True
        if descs and store.has(descs[0].digest):
            rootfs = store.read_json(descs[0]).get("rootfs") or {}
            return str(digest) in (rootfs.get("diff_ids") or [])
        return False

    tags = []
    for desc in store.index():
        tag = desc.annotation("org.opencontainers.image.ref.name")
        if tag and holds(desc):
            tags.append(tag)
    return tags
