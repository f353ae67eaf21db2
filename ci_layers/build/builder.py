"""LayerBuilder: build the planned layers of a spec, reusing every key the store has.

A layer is built on its parent's image: `copy` entries (written straight into a tar
when the layer has no `run`: no root, no runtime), then `run` through runc in the
parent's root under an overlay, whose upper directory is the layer. Each built layer is
recorded in the store as an image tagged `ci-layers-<key>` (the image as of that
layer), so the next build of that key, under any name or commit, reuses it.
"""

from __future__ import annotations

import errno
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, BinaryIO, cast

from ..errors import BuildError, RegistryError, StoreError, UsageError
from ..graph import ImageLayer
from ..keys import LayerKey
from ..oci.digest import Descriptor, Digest
from ..oci.layers import open_layer
from ..oci.manifest import (
    History,
    ImageConfig,
    ImageManifest,
    Layer,
    chain_id,
    host_platform,
)
from ..oci.reference import key_tag
from ..oci.registry import Registry
from ..oci.store import OciStore
from ..oci.transfer import TransferStats
from ..refs import same_image
from ..repo import RepoFiles
from ..resolver import DependencyResolver
from ..spec import Spec
from .copy import FromLayer, copy_entries, image_path
from .remote import RemoteCache, pull_external
from .rootfs import MAX_ROOT_BYTES, apply_layer, assemble_rootfs
from .run import DEFAULT_PATH, DEFAULT_RUN_TIMEOUT, find_runtime, mount_guard, run_commands
from .scratch import BUNDLE, scratch_dir
from .snapshot import changed_entries, overlay, overlay_works, record_tree, upper_entries
from .tarwriter import Entry, tar_stream, write_layer
from .users import user_ids
from .view import READ_LIMIT, ImageView, resolve_in_root

__all__ = ["BuildResult", "LayerBuilder", "cutoff_tag", "key_tag", "output_id"]

KEY_ANNOTATION = "dev.ci-layers.key"
EMPTY_ANNOTATION = "dev.ci-layers.empty"
CUTOFF_ANNOTATION = "dev.ci-layers.cutoff"
BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"
REVISION = "org.opencontainers.image.revision"
SOURCE = "org.opencontainers.image.source"
_KEEP_TIMES = (1 << 33) - 1  # an epoch that clamps no time: the guard keeps the parent's


def cutoff_tag(digest: str) -> str:
    """The tag of a layer's image by what it was built from (its parent's output)."""
    return "ci-layers-cutoff-" + Digest.parse(digest).hex


@dataclass(frozen=True, slots=True)
class BuildResult:
    name: str
    key: str
    status: str  # "built", "reused" (the store), "cached" (the registry) or "cut off"
    manifest: Descriptor
    layer: Layer | None  # the layer's own blob (None: it changes the config only)
    seconds: float


Progress = Callable[[str, str, BuildResult | None], None]  # (layer, event, result)


class LayerBuilder:
    """Builds spec layers into an OciStore, in plan order, each on its parent."""

    def __init__(
        self,
        *,
        spec: Spec,
        keys: Mapping[str, LayerKey],
        files: RepoFiles,
        root: Path,
        store: OciStore,
        compression: str = "gzip",
        epoch: int = 0,
        runtime: str | None = None,
        log: IO[bytes] | None = None,
        progress: Progress | None = None,
        annotations: Mapping[str, str] | None = None,
        warn: Callable[[str], None] | None = None,
        cache: RemoteCache | None = None,
        publish: bool = False,
        pull: bool = True,
        run_timeout: int = DEFAULT_RUN_TIMEOUT,
        max_root_bytes: int = MAX_ROOT_BYTES,
    ) -> None:
        self.spec, self.keys, self.files, self.root = spec, keys, files, root
        self.run_timeout = run_timeout  # seconds, for a layer that sets no `timeout`
        self.max_root_bytes = max_root_bytes  # what one extracted root may take
        self.store, self.compression, self.epoch = store, compression, epoch
        self._runtime_arg = runtime
        self._runtime: str | None = None
        self.log = log
        self.progress = progress or (lambda _n, _e, _r: None)
        self.annotations = dict(annotations or {})  # revision, source: published images only
        self.warn = warn or (lambda _message: None)
        self.cache, self.publish, self.pull = cache, publish, pull
        self.stats = cache.stats if cache else TransferStats()  # base images pulled too
        self._registries: dict[str, Registry] = cache.registries if cache else {}
        self._where: dict[str, str] = {}  # name -> "store" | "registry" | "build"
        self._needed: set[str] = set()  # layers whose image a build here reads

    # --- the plan ------------------------------------------------------------------------

    def order(self, targets: Sequence[str]) -> list[str]:
        return DependencyResolver(self.spec.graph).build_order(list(targets))

    def missing(self, names: Sequence[str]) -> list[str]:
        """Of `names`, those whose key the store does not have."""
        return [n for n in names if self.store.resolve(key_tag(self.keys[n].digest)) is None]

    def locate(self, names: Sequence[str]) -> dict[str, str]:
        """Where each layer's image is: the store, the registry (`--cache`), or nowhere
        yet ("build"); and so which images the layers to build read (parents, `from`
        layers), which are the only ones pulled whole."""
        for name in names:
            if name in self._where:
                continue
            found = self.store.resolve(key_tag(self.keys[name].digest))
            if found is not None and self._complete(found):
                self._where[name] = "store"
            elif self.cache is not None and self.cache.usable(key_tag(self.keys[name].digest)):
                self._where[name] = "registry"
            else:
                self._where[name] = "build"
        for name in names:
            layer = self.spec.graph[name]
            if self._where[name] == "build":
                self._needed.update(layer.dependencies)
            if self._tags(name):
                self._needed.add(name)  # its `images:` tags name it in the store
        return dict(self._where)

    def check(self, names: Sequence[str]) -> None:
        """Fail before building anything that cannot be built here."""
        where = self.locate(names)
        todo = [n for n in names if where[n] == "build"]
        for name in todo:
            layer = self.spec.graph[name]
            if layer.dockerfile is not None:
                raise BuildError(
                    f"is built from {layer.dockerfile.file}; Dockerfile images are built by "
                    "BuildKit: ci-layers bake > docker-bake.json && docker buildx bake "
                    "-f docker-bake.json",
                    layer=name,
                )
            if layer.base and layer.base != "scratch":
                self._base(name, layer.base)
        if any(self.spec.graph[n].run for n in todo):
            self._runtime = find_runtime(self._runtime_arg)

    def build(self, targets: Sequence[str]) -> list[BuildResult]:
        """Every layer the targets need, built or reused, in build order."""
        names = self.order(targets)
        with self.store.lease():
            self.check(names)
            return [self.build_layer(n) for n in names]

    # --- one layer -----------------------------------------------------------------------

    def build_layer(self, name: str) -> BuildResult:
        """Reuse the key's image or build it. The umask is fixed while building, so no
        folder the build (or runc) makes takes the caller's."""
        old = os.umask(0o022)
        try:
            return self._build_layer(name)
        except BuildError as exc:
            if exc.layer is None:
                raise BuildError(str(exc), layer=name) from None
            raise
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            raise BuildError(
                f"{exc.strerror}{where} while building it; the store {self.store.path} is "
                "as it was (what was half written is removed): free space there, or use "
                "--store on a larger disk",
                layer=name,
            ) from None
        finally:
            os.umask(old)

    def _complete(self, desc: Descriptor) -> bool:
        """Whether every blob the image needs is in the store, at its size (a reuse must
        not hand on an image with a layer gone; the bytes are verified where read)."""
        try:
            manifest = self.store.read_json(desc)
            needed = [manifest["config"], *manifest["layers"]]
            descs = [Descriptor.from_json(d, where=str(desc.digest)) for d in needed]
        except (StoreError, KeyError, TypeError):
            return False
        return all(self.store.size(d.digest) == d.size for d in descs)

    def _build_layer(self, name: str) -> BuildResult:
        key = self.keys[name].digest
        start = time.monotonic()
        where = self.locate([name])[name]
        found = self.store.resolve(key_tag(key)) if where == "store" else None
        if found is not None and not self._complete(found):
            found, where = None, "build"  # a blob went missing since: build it again
        if found is not None:
            found = replace(found, annotations=())  # the manifest's, not the tag's
            return self._done(name, "reused", found, start, push=True)
        if where == "registry":
            assert self.cache is not None
            found = self.cache.fetch(key_tag(key), layers=name in self._needed)
            return self._done(name, "cached", found, start, push=False)
        self.progress(name, "building", None)
        layer = self.spec.graph[name]
        parent, base_notes = self._parent(name, layer)
        config = _config(parent.config, layer, epoch=self.epoch)
        cutoff = self._cutoff_key(name, layer, parent)
        earlier = self._built_before(cutoff)
        if earlier is not None:
            own, history = earlier
            status = "cut off"
        else:
            own = self._layer(name, layer, parent, config)
            history = History(created_by=_created_by(layer), empty_layer=own is None)
            status = "built"
        history = replace(history, comment=f"ci-layers {key}")
        notes = {
            **base_notes,
            KEY_ANNOTATION: key,
            EMPTY_ANNOTATION: str(own is None).lower(),
            CUTOFF_ANNOTATION: cutoff,
        }
        image = ImageManifest(
            config=config,
            layers=parent.layers + ((own,) if own else ()),
            history=(*parent.history, history),
            annotations=tuple(sorted(notes.items())),
        )
        desc = image.write(self.store)
        self.store.tag(key_tag(key), desc)
        self.store.tag(cutoff_tag(cutoff), desc)
        self._where[name] = "store"
        return self._done(name, status, desc, start, push=True)

    def _done(
        self, name: str, status: str, desc: Descriptor, start: float, *, push: bool
    ) -> BuildResult:
        """Record, push (`--cache … --push`) and publish a layer's image; report it."""
        key = self.keys[name].digest
        if push and self.cache is not None and self.cache.push_enabled:
            tags = [key_tag(key)]
            if cutoff := dict(ImageManifest.load(self.store, desc).annotations).get(
                CUTOFF_ANNOTATION
            ):
                tags.append(cutoff_tag(cutoff))
            for tag in self.cache.push(desc, tags):
                self.warn(
                    f"{self.cache}:{tag} holds another platform's image (a key names its "
                    "platform now; an older ci-layers' did not); not replaced"
                )
        self._publish(name, desc)
        took = time.monotonic() - start if status in ("built", "cut off") else 0.0
        result = BuildResult(name, key, status, desc, self._own_layer(desc), took)
        self.progress(name, status, result)
        return result

    def _cutoff_key(self, name: str, layer: ImageLayer, parent: ImageManifest) -> str:
        """The layer's key with every other layer's key in it replaced by that layer's
        output (its files and config): a parent rebuilt to the same bytes gives the same
        cutoff key, and its child's earlier build serves (early cutoff)."""
        recipe = dict(self.keys[name].recipe)
        recipe.pop("parent", None)
        recipe.pop("from", None)
        root = name
        while self.spec.graph[root].parent:
            root = self.spec.graph[root].parent or root
        # the spec's global inputs rebuild every layer (README): a child has them only
        # through its parent's key, which the output replaces, so they are named here
        if "global_inputs" in self.keys[root].recipe:
            recipe["global_inputs"] = self.keys[root].recipe["global_inputs"]
        recipe["built_on"] = output_id(parent)
        if "copy" in recipe:  # one entry per `copy`, in order
            recipe["copy"] = [
                {**entry, "from_layer": output_id(self.image(c.from_layer))}
                if c.from_layer
                else entry
                for entry, c in zip(recipe["copy"], layer.copy, strict=True)
            ]
        body = json.dumps({"cutoff": 1, "recipe": recipe}, sort_keys=True, separators=(",", ":"))
        return str(Digest.of(body.encode()))

    def _built_before(self, cutoff: str) -> tuple[Layer | None, History] | None:
        """The layer and history entry an earlier build with this cutoff key made."""
        tag = cutoff_tag(cutoff)
        desc = self.store.resolve(tag)
        if desc is not None and not self._complete(desc):
            desc = None
        if desc is None and self.cache is not None and self.cache.usable(tag):
            desc = self.cache.fetch(tag, layers=False)
        if desc is None:
            return None
        image = ImageManifest.load(self.store, desc)
        if (image.config.os, image.config.architecture) != host_platform():
            return None  # built for another platform
        own = self._own_layer(desc)
        if own is not None and self.cache is not None:
            self.cache.fetch_blob(own.descriptor)
        if own is not None and self.store.size(own.descriptor.digest) != own.descriptor.size:
            return None
        return own, image.history[-1]

    def image(self, name: str) -> ImageManifest:
        """The image as of layer `name`, from the store (pulled whole from the cache
        registry when only its manifest is here)."""
        tag = key_tag(self.keys[name].digest)
        desc = self.store.resolve(tag)
        if (desc is None or not self._complete(desc)) and self.cache and self.cache.usable(tag):
            desc = self.cache.fetch(tag)
        if desc is None:
            raise BuildError("is not built yet", layer=name)
        return ImageManifest.load(self.store, desc)

    def _own_layer(self, desc: Descriptor) -> Layer | None:
        image = ImageManifest.load(self.store, desc)
        if dict(image.annotations).get(EMPTY_ANNOTATION) == "true" or not image.layers:
            return None
        return image.layers[-1]

    def _tags(self, name: str) -> list[str]:
        return [t for img in self.spec.images.values() if img.layer == name for t in img.tags]

    def _publish(self, name: str, desc: Descriptor) -> None:
        """Tag the spec's `images:` that end at this layer, with revision and source, in
        the store and, with `--publish`, where each tag names."""
        tags = self._tags(name)
        if not tags:
            return
        if self.annotations:
            desc = ImageManifest.annotate(self.store, desc, self.annotations)
        for tag in tags:
            self.store.tag(tag, desc)
            if self.publish and self.cache is not None:
                self.cache.publish(desc, tag)

    def _parent(self, name: str, layer: ImageLayer) -> tuple[ImageManifest, dict[str, str]]:
        if layer.parent:
            parent = self.image(layer.parent)
            notes = {k: v for k, v in parent.annotations if k in (BASE_NAME, BASE_DIGEST)}
            return parent, notes
        if not layer.base or layer.base == "scratch":
            return ImageManifest.scratch(created=self.epoch), {}
        desc = self._base(name, layer.base)
        try:
            base = ImageManifest.load(self.store, desc)
        except StoreError as exc:
            raise BuildError(f"base image {layer.base}: {exc}", layer=name) from None
        return replace(base, annotations=()), {BASE_NAME: layer.base, BASE_DIGEST: str(desc.digest)}

    def _base(self, name: str, ref: str) -> Descriptor:
        """The external base image, found in the store by digest or by name."""
        pinned = ref.partition("@")[2]
        if pinned:
            digest = Digest.parse(pinned)
            for d in self.store.index():
                if d.digest == digest:
                    return d
            if self.store.has(digest):
                return Descriptor("application/vnd.oci.image.manifest.v1+json", digest, 0)
        for d in reversed(self.store.index()):
            tag = d.annotation("org.opencontainers.image.ref.name") or ""
            if tag and not pinned and same_image(tag, ref):
                return d
        where = self.store.path
        why = ""
        if self.pull:
            try:
                return pull_external(ref, self.store, stats=self.stats, registries=self._registries)
            except (RegistryError, StoreError, UsageError) as exc:
                why = f" and could not be pulled ({exc})"
        raise BuildError(
            f"base image {ref} is not in the store {where}{why}; copy it in first, e.g. "
            f"skopeo copy {'--all ' if pinned else ''}docker://{ref} "
            f"oci:{where}:{ref.partition('@')[0]}",
            layer=name,
        )

    # --- entries -------------------------------------------------------------------------

    def _layer(
        self, name: str, layer: ImageLayer, parent: ImageManifest, config: ImageConfig
    ) -> Layer | None:
        """The layer's blob, written while the files it is read from still exist."""
        with scratch_dir(self.store.path) as scratch:
            if not layer.run:
                view = ImageView(parent, lambda x: open_layer(self.store, x))
                return self._write(self._copies(layer, parent, view, scratch))
            return self._run(name, layer, parent, scratch)

    def _write(self, entries: list[Entry]) -> Layer | None:
        if not entries:
            return None
        return write_layer(entries, self.store, compression=self.compression, epoch=self.epoch)

    def _copies(
        self, layer: ImageLayer, parent: ImageManifest, view: ImageView | _DiskRoot, scratch: Path
    ) -> list[Entry]:
        from_layers: dict[str, FromLayer] = {}
        for c in layer.copy:
            if c.from_layer and c.from_layer not in from_layers:
                image = self.image(c.from_layer)
                if os.geteuid() == 0:  # read only: the store's extracted root serves
                    where = self._root_of(image)
                else:
                    where = scratch / f"from-{len(from_layers)}"
                    self._extract(image, where, privileged=False)
                headers = ImageView(image, lambda x: open_layer(self.store, x))
                from_layers[c.from_layer] = FromLayer(where, headers.meta)
        return copy_entries(
            layer,
            self.files,
            root=self.root,
            workdir=_workdir(parent.config, layer),
            parent_read=view.read,
            parent_is_dir=view.is_dir,
            parent_realpath=view.realpath,
            from_layers=from_layers,
            scratch=scratch,
            epoch=self.epoch,
        )

    def _run(
        self, name: str, layer: ImageLayer, parent: ImageManifest, scratch: Path
    ) -> Layer | None:
        runtime = self._runtime or find_runtime(self._runtime_arg)
        config = _config(parent.config, layer, epoch=self.epoch)
        if overlay_works(scratch):
            lower = self._root_of(parent)
            guard = scratch / "guard"  # the mount points, over the parent (run.mount_guard)
            guard.mkdir()
            self._apply(guard, mount_guard(lower), layer=name, epoch=_KEEP_TIMES)
            with overlay([guard, lower], scratch / "ovl") as (merged, _upper):
                self._run_in(name, layer, parent, merged, scratch, runtime, config)
            return self._write(upper_entries(scratch / "ovl" / "upper", lower))
        lower = scratch / "lower"  # the tree compare changes its root: a fresh copy
        self._extract(parent, lower, privileged=True)
        self._apply(lower, mount_guard(lower), layer=name, epoch=_KEEP_TIMES)
        before = record_tree(lower)
        self._run_in(name, layer, parent, lower, scratch, runtime, config)
        return self._write(changed_entries(lower, before))

    def _apply(self, rootfs: Path, entries: list[Entry], *, layer: str, epoch: int) -> None:
        """Entries written into a root as a layer is applied (nothing outside it)."""
        with tempfile.TemporaryFile(dir=rootfs.parent) as tar:
            tar_stream(entries, tar, epoch=epoch)
            tar.seek(0)
            apply_layer(rootfs, tar, layer=layer, privileged=True)

    def _run_in(
        self,
        name: str,
        layer: ImageLayer,
        parent: ImageManifest,
        rootfs: Path,
        scratch: Path,
        runtime: str,
        config: ImageConfig,
    ) -> None:
        view = _DiskRoot(rootfs)
        entries = self._copies(layer, parent, view, scratch)
        if entries:
            self._apply(rootfs, entries, layer=name, epoch=self.epoch)
        cwd = "/" + image_path("", config.workdir) if config.workdir else "/"
        for made in view.missing(cwd, what="workdir"):  # links resolved inside the root
            (rootfs / made).mkdir(mode=0o755)
        try:
            uid, gid, groups = user_ids(config.user, view.read)
        except BuildError as exc:
            raise BuildError(str(exc), layer=name) from None
        env = dict(config.env)
        env.setdefault("PATH", DEFAULT_PATH)
        env.update({k: v for k, v in layer.build_args if k not in dict(layer.env)})
        run_commands(
            rootfs,
            layer.run,
            runtime=runtime,
            bundle=scratch / BUNDLE,
            env=[f"{k}={v}" for k, v in env.items()],
            cwd=cwd,
            uid=uid,
            gid=gid,
            groups=groups,
            network=layer.network != "none",
            timeout=layer.timeout or self.run_timeout,
            log=self.log,
            layer=name,
        )

    def _root_of(self, image: ImageManifest) -> Path:
        """The image's root, extracted once per layer stack (its ChainID) and kept in the
        store: an overlay only reads its lower folder, so every child built on the same
        parent mounts the same one, and a run layer's cost does not grow with its parent."""
        cache = self.store.path / "rootfs"
        final = cache / chain_id(image.layers).hex
        if final.is_dir():
            cache.chmod(0o700)
            return final
        cache.mkdir(mode=0o700, exist_ok=True)
        cache.chmod(0o700)  # the roots keep their setuid files: for root's eyes only
        with scratch_dir(self.store.path, prefix="root-") as scratch:
            tmp = scratch / "root"
            self._extract(image, tmp, privileged=True)
            try:
                os.rename(tmp, final)  # only a whole root gets its name
            except OSError:
                if not final.is_dir():
                    raise  # else another build named it first; this one goes with scratch
        return final

    def _extract(self, image: ImageManifest, where: Path, *, privileged: bool) -> None:
        where.mkdir(parents=True, exist_ok=True)
        where.chmod(0o755)  # the image's / (a scratch folder is 0700)
        openers = [(str(x.descriptor.digest), _opener(self.store, x)) for x in image.layers]
        try:
            for warning in assemble_rootfs(
                where, openers, privileged=privileged, max_bytes=self.max_root_bytes
            ):
                self.warn(warning)
        except tarfile.TarError as exc:
            raise StoreError(f"a layer of the parent image is no valid tar: {exc}") from None


def output_id(image: ImageManifest) -> str:
    """What an image is to a layer built on it: its files (diff_ids) and config, not its
    history or creation time."""
    config = replace(image.config, created=0).to_json()
    config["rootfs"] = [str(x.diff_id) for x in image.layers]
    return str(Digest.of(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()))


def _opener(store: OciStore, layer: Layer) -> Callable[[], BinaryIO]:
    return lambda: cast(BinaryIO, open_layer(store, layer))


class _DiskRoot:
    """An assembled root on disk, looked up the way ImageView looks up an image."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def _parts(self, rel: str) -> list[str] | None:
        """`rel` resolved in the root as the container would; None for a link loop."""

        def link_of(path: str) -> str | None:
            full = self._root / path
            return os.readlink(full) if full.is_symlink() else None

        done, left = resolve_in_root(rel, link_of)
        return None if left else done

    def _inside(self, rel: str) -> Path | None:
        parts = self._parts(rel)
        return None if parts is None else self._root.joinpath(*parts)

    def realpath(self, rel: str) -> str:
        """`rel` with its links followed inside the root (missing parts kept)."""
        path = self._inside(rel)
        found = "." if path is None else path.relative_to(self._root).as_posix()
        return "" if found == "." else found

    def read(self, rel: str) -> bytes | None:
        path = self._inside(rel)
        try:
            if path is None or not path.is_file():
                return None
            if path.stat().st_size > READ_LIMIT:
                raise BuildError(f"the image's /{rel} is over {READ_LIMIT >> 20} MiB")
            return path.read_bytes()
        except OSError:
            return None

    def is_dir(self, rel: str) -> bool:
        path = self._inside(rel)
        return path is not None and path.is_dir()

    def missing(self, rel: str, *, what: str) -> list[str]:
        """The in-root paths (links followed) that creating `rel` would make, outermost
        first; a file on the way is an error."""
        shown = "/" + rel.lstrip("/")
        parts = self._parts(rel)
        if parts is None:
            raise BuildError(f"{what} {shown}: too many levels of symbolic links")
        for i in range(len(parts)):
            path = self._root.joinpath(*parts[: i + 1])
            if not os.path.lexists(path):
                return ["/".join(parts[: j + 1]) for j in range(i, len(parts))]
            if not path.is_dir():
                if i + 1 < len(parts):
                    raise BuildError(f"{what} {shown}: /{'/'.join(parts[: i + 1])} is not a folder")
                if what == "workdir":
                    raise BuildError(f"workdir {shown} is a file in the parent image")
        return []


def _workdir(parent: ImageConfig, layer: ImageLayer) -> str:
    if layer.workdir is None:
        return parent.workdir
    return "/" + image_path(layer.workdir, parent.workdir)


def _config(parent: ImageConfig, layer: ImageLayer, *, epoch: int) -> ImageConfig:
    """The parent's config with this layer's fields over it, as Docker applies ENV,
    WORKDIR, USER, ENTRYPOINT, CMD and LABEL."""
    env = dict(parent.env)
    env.update(layer.env)
    labels = dict(parent.labels)
    labels.update(layer.labels)
    cmd = parent.cmd
    if layer.entrypoint is not None and layer.cmd is None:
        cmd = None  # Docker: a new ENTRYPOINT drops the CMD inherited from the base
    if layer.cmd is not None:
        cmd = layer.cmd
    return replace(
        parent,
        env=tuple(env.items()),
        labels=tuple(sorted(labels.items())),
        workdir=_workdir(parent, layer),
        user=layer.user if layer.user is not None else parent.user,
        entrypoint=layer.entrypoint if layer.entrypoint is not None else parent.entrypoint,
        cmd=cmd,
        created=epoch,
    )


def _created_by(layer: ImageLayer) -> str:
    """What built the layer, in Dockerfile words (the name is no part of it)."""
    parts = []
    for c in layer.copy:
        source = f"--from={c.from_layer} " if c.from_layer else ""
        parts.append(f"COPY {source}{' '.join(c.src)} {c.dest}")
    parts += [f"RUN /bin/sh -c {cmd}" for cmd in layer.run]
    if not parts:
        fields = [
            k
            for k in ("env", "workdir", "user", "entrypoint", "cmd", "labels")
            if getattr(layer, k)
        ]
        parts.append("ci-layers: " + (", ".join(fields) or "no change"))
    return "; ".join(parts)
