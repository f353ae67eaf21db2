"""`ci-layers build` and `ci-layers export`: the chain read top to bottom is
spec -> keys over the working tree -> LayerBuilder into the store -> summary."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TextIO

from ..errors import BuildError, UsageError
from ..keys import compute_keys
from ..oci.archive import export_archive
from ..oci.digest import Descriptor
from ..oci.reference import Reference
from ..oci.registry import Registry
from ..oci.store import OciStore
from ..oci.transfer import TransferStats, pull_image, push_image
from ..platforms import DEFAULT_PLATFORM
from ..repo import RepoFiles
from ..spec import Spec, declared_platforms, platform_node
from .builder import LayerBuilder, key_tag
from .progress import BuildProgress, human_bytes, summary_table
from .remote import RemoteCache
from .rootfs import MAX_ROOT_BYTES
from .run import DEFAULT_RUN_TIMEOUT
from .scratch import sweep
from .tarwriter import COMPRESSIONS

__all__ = [
    "cmd_build",
    "cmd_export",
    "cmd_gc",
    "cmd_pull",
    "cmd_push",
    "cmd_squash",
    "job_layers",
    "transfer_line",
]


def job_layers(job: str) -> list[tuple[str, str | None]]:
    """(layer, planned key) of a matrix job (the `stages` output's entry, as JSON)."""
    try:
        data = json.loads(job)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--job: not JSON ({exc.msg} at {exc.pos})") from None
    if isinstance(data, dict) and data.get("compact") is True:
        raise UsageError(
            f"--job: the entry of job {data.get('job')} holds its id only (the plan's "
            "outputs would have passed GitHub's 1 MB): pass the entry the job sub-action "
            'reads (uses: ci-layers/ci-layers/job, then --job "$ENTRY" with ENTRY: '
            "${{ steps.<its id>.outputs.entry }})"
        )
    entries = data.get("layers") if isinstance(data, dict) else None
    if entries is None and isinstance(data, dict) and "name" in data:
        entries = [data]
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("name"), str) for e in entries
    ):
        raise UsageError('--job: expected a matrix entry, {"name": …} or {"layers": [{"name": …}]}')
    for e in entries:
        if e.get("key") is not None and not isinstance(e.get("key"), str):
            raise UsageError(f"--job: layer '{e['name']}' has a key that is no string")
    return [(e["name"], e.get("key")) for e in entries]


def _target(spec: Spec, written: str, platform: str) -> str:
    """The layer a `build` target names, for `platform`: a layer, an `images:` entry or
    a tag, and of a layer built for several platforms, its build for this one."""
    name = spec.layer_named(written) or written
    if name in spec.layers:
        return name
    declared = declared_platforms(spec.layers)
    if name not in declared:
        return name  # the builder says it is unknown
    node = platform_node(name, platform, declared)
    if node is None:
        raise UsageError(
            f"'{name}' is not built for {platform} (its platforms: "
            f"{', '.join(declared[name])}): build it on a machine of one of them"
        )
    return node


def cmd_build(
    *,
    spec: Spec,
    root: Path,
    files: RepoFiles,
    targets: Sequence[str],
    job: str | None,
    store: Path,
    platform: str = DEFAULT_PLATFORM,
    compression: str,
    epoch: int,
    runtime: str | None,
    annotations: Mapping[str, str],
    actions: bool,
    out: TextIO,
    log: IO[bytes] | None,
    cache: str | None = None,
    push: bool = False,
    publish: bool = False,
    pull: bool = True,
    run_timeout: int = DEFAULT_RUN_TIMEOUT,
    max_root_bytes: int = MAX_ROOT_BYTES,
) -> int:
    if (push or publish) and cache is None:
        flag = "--push" if push else "--publish"
        raise UsageError(f"{flag} needs --cache REGISTRY/REPO (where the layers' images go)")
    if compression not in COMPRESSIONS:
        raise UsageError(f"--compression {compression}: one of {', '.join(COMPRESSIONS)}")
    keys = compute_keys(spec, files)
    names = [_target(spec, t, platform) for t in targets]
    if job is not None:
        planned = job_layers(job)
        for name, key in planned:
            if name in keys and key is not None and keys[name].digest != key:
                raise BuildError(
                    f"the checkout gives key {keys[name].digest}, the job was planned with "
                    f"{key}: build the commit the plan was made for",
                    layer=name,
                )
        names += [n for n, _key in planned]
    if not names:  # everything the spec builds itself, for this machine's platform
        names = [
            n
            for n in spec.graph.topological_order()
            if spec.graph[n].dockerfile is None
            and (spec.graph[n].platform or DEFAULT_PLATFORM) == platform
        ]
    below = spec.graph.closure_up([n for n in names if n in spec.graph])  # what they need
    for name in [*names, *sorted(below - set(names))]:
        layer = spec.layers.get(name)
        built = (layer.platform if layer else None) or DEFAULT_PLATFORM
        if layer is not None and layer.dockerfile is None and built != platform:
            needed = "" if name in names else " (a layer it builds on)"
            raise UsageError(
                f"'{name}'{needed} is built for {built}, and this machine builds {platform} "
                f"(`run` runs natively): build it on a {built} machine (its matrix entry's "
                "runner)"
            )
    oci = OciStore(store)
    remote = RemoteCache(cache, oci, push=push) if cache else None
    builder = LayerBuilder(
        spec=spec,
        keys=keys,
        files=files,
        root=root,
        store=oci,
        cache=remote,
        publish=publish,
        pull=pull,
        run_timeout=run_timeout,
        max_root_bytes=max_root_bytes,
        compression=compression,
        epoch=epoch,
        runtime=runtime,
        log=log,
        annotations=annotations,
        warn=lambda message: print(f"warning: {message}", file=out),
    )
    order = builder.order(names)
    progress = BuildProgress(out, actions=actions, total=len(order))
    builder.progress = progress
    results = []
    with oci.lease():  # gc waits for this build: its blobs are tagged only at the end
        if cleared := sweep(store, runtime=runtime):
            out.write(f"cleared what {len(cleared)} interrupted builds left in {store}/tmp\n")
        builder.check(order)
        try:
            for name in order:
                results.append(builder.build_layer(name))
        except BaseException:
            progress.failed()
            raise
    out.write("\n" + summary_table(results) + "\n")
    out.write(f"store: {store}\n")
    if remote is not None:
        out.write(f"registry {remote}: {transfer_line(remote.stats)}\n")
    elif builder.stats.manifests:
        out.write(f"base images pulled: {transfer_line(builder.stats)}\n")
    return 0


def transfer_line(stats: TransferStats) -> str:
    parts = [
        f"{stats.uploaded} blobs uploaded ({human_bytes(stats.uploaded_bytes)})",
        f"{stats.present} already there",
    ]
    if stats.mounted:
        parts.append(f"{stats.mounted} mounted from another repository")
    if stats.downloaded:
        parts.append(f"{stats.downloaded} downloaded ({human_bytes(stats.downloaded_bytes)})")
    parts.append(f"{stats.manifests} manifests")
    return ", ".join(parts)


def cmd_export(
    *,
    store: Path,
    image: str,
    archive: Path,
    keys: Mapping[str, str] | None,
    out: TextIO,
) -> int:
    """IMAGE is a tag in the store or, with a spec, a layer name (its key's image)."""
    oci = OciStore(store)
    with oci.lease():  # gc waits: the image's blobs are read while it runs
        return _export(oci, image=image, archive=archive, keys=keys, out=out)


def _export(
    oci: OciStore, *, image: str, archive: Path, keys: Mapping[str, str] | None, out: TextIO
) -> int:
    store = oci.path
    ref = image
    desc = oci.resolve(image)
    if desc is None and keys is not None and image in keys:
        ref = key_tag(keys[image])
        desc = oci.resolve(ref)
        if desc is None:
            raise BuildError("is not built yet: ci-layers build " + image, layer=image)
    if desc is None:
        tags = sorted(
            {d.annotation("org.opencontainers.image.ref.name") or "" for d in oci.index()} - {""}
        )
        shown = ", ".join(t for t in tags if not t.startswith("ci-layers-")) or "none"
        raise UsageError(f"no image '{image}' in the store {store} (tagged there: {shown})")
    n = export_archive(oci, desc, archive, ref=ref)
    out.write(f"{archive}: {ref} ({n} blobs, manifest {desc.digest})\n")
    return 0


def _layer_ref(name: str, keys: Mapping[str, str] | None, cache: str | None) -> str | None:
    """A spec layer named on the command line: its key image in the cache repository."""
    if keys is None or name not in keys:
        return None
    if cache is None:
        raise UsageError(f"'{name}' is a layer: name the repository its image is in (--cache)")
    return f"{cache}:{key_tag(keys[name])}"


def cmd_pull(
    *,
    store: Path,
    image: str,
    tag: str | None,
    cache: str | None,
    keys: Mapping[str, str] | None,
    out: TextIO,
) -> int:
    """IMAGE is a registry reference or, with --cache, a layer name (its key's image)."""
    oci = OciStore(store)
    layer_ref = _layer_ref(image, keys, cache)
    ref = Reference.parse(layer_ref or image, what="image")
    stats = TransferStats()
    with oci.lease():  # gc waits: blobs come in before the tag that names them
        desc = pull_image(Registry(ref.host), ref.repository, ref.ref, oci, stats=stats)
        name = tag or (key_tag(keys[image]) if layer_ref and keys else image)
        oci.tag(name, desc)
    out.write(f"{ref} -> {store}:{name} ({desc.digest})\n{transfer_line(stats)}\n")
    return 0


def cmd_push(
    *,
    store: Path,
    image: str,
    to: str | None,
    cache: str | None,
    keys: Mapping[str, str] | None,
    out: TextIO,
) -> int:
    """IMAGE is a tag in the store (pushed to --to, else to where it names) or, with
    --cache, a layer name (its key's image, pushed there as ci-layers-<key>)."""
    oci = OciStore(store)
    is_layer = keys is not None and image in keys
    layer_ref = _layer_ref(image, keys, cache) if is_layer and to is None else None
    source = key_tag(keys[image]) if is_layer and keys else image
    desc = oci.resolve(source)
    if desc is None:
        if is_layer:
            raise BuildError(f"is not built yet: ci-layers build {image}", layer=image)
        raise UsageError(f"no image '{image}' in the store {store}")
    desc = Descriptor(desc.media_type, desc.digest, desc.size)
    ref = Reference.parse(to or layer_ref or image, what="destination")
    stats = TransferStats()
    with oci.lease():  # gc waits: the image's blobs are read while it runs
        push_image(oci, desc, Registry(ref.host), ref.repository, [ref.ref], stats=stats)
    out.write(f"{store}:{source} -> {ref} ({desc.digest})\n{transfer_line(stats)}\n")
    return 0


def cmd_gc(
    *,
    store: Path,
    keys: Sequence[str],
    keep_last: int,
    keep_days: float | None,
    cache: str | None,
    dry_run: bool,
    out: TextIO,
) -> int:
    """Sweep the store (and, with --cache, stale key tags of the cache repository)."""
    from .gc import collect, registry_gc

    if keep_last < 0 or (keep_days is not None and keep_days < 0):
        raise UsageError("--keep-last and --keep-days take numbers of 0 or more")
    verb = "would remove" if dry_run else "removed"
    if not (store / "index.json").is_file():
        raise UsageError(f"no store at {store} (--store)")
    result = collect(
        OciStore(store), keys=keys, keep_last=keep_last, keep_days=keep_days, dry_run=dry_run
    )
    out.write(
        f"{store}: {verb} {len(result.untagged)} tags, {len(result.blobs)} blobs "
        f"({human_bytes(result.freed)}) and {len(result.roots)} extracted roots; "
        f"{result.kept_tags} tags kept\n"
    )
    if result.scratch:
        out.write(f"{store}: cleared what {len(result.scratch)} interrupted builds left\n")
    for tag in result.untagged:
        out.write(f"  {tag}\n")
    if cache is not None:
        deleted, refused = registry_gc(
            RemoteCache(cache, OciStore(store)), keys=keys, dry_run=dry_run
        )
        out.write(f"{cache}: {verb} {len(deleted)} stale key tags\n")
        for tag in deleted:
            out.write(f"  {tag}\n")
        if refused:
            out.write(
                f"{cache}: the registry does not allow deleting {len(refused)} of them "
                "(deletes disabled, or not this token's right)\n"
            )
    return 0


def cmd_squash(
    *,
    store: Path,
    image: str,
    spec: Spec,
    keys: Mapping[str, str],
    max_layers: int,
    tag: str | None,
    history: tuple[dict[str, frozenset[int]], int],
    compression: str,
    out: TextIO,
) -> int:
    """A published image (a store tag, or a layer name) with fewer layers, tagged anew."""
    from ..oci.manifest import ImageManifest
    from .builder import CUTOFF_ANNOTATION, EMPTY_ANNOTATION, KEY_ANNOTATION
    from .squash import squash_image

    oci = OciStore(store)
    with oci.lease():  # gc waits: the squashed layers are written before their tag
        ref = key_tag(keys[image]) if image in keys and oci.resolve(image) is None else image
        desc = oci.resolve(ref)
        if desc is None:
            raise UsageError(f"no image '{image}' in the store {store} (build it first)")
        desc = Descriptor(desc.media_type, desc.digest, desc.size)
        loaded = ImageManifest.load(oci, desc)
        names = {k: n for n, k in keys.items()}
        layer_names: list[str | None] = []  # the spec layer of each image layer, or None
        for h in loaded.history:
            if not h.empty_layer:
                key = h.comment.removeprefix("ci-layers ").split(" ")[0]
                layer_names.append(names.get(key) if h.comment.startswith("ci-layers ") else None)
        if len(layer_names) != len(loaded.layers):
            layer_names = [None] * len(loaded.layers)
        graph = spec.graph
        shared = 0  # up to and including the last layer another image may share
        for i, name in enumerate(layer_names):
            if name is None or len(graph.children(name)) > 1 or name not in graph:
                shared = i + 1
        changed, commits = history
        changes = [changed.get(n, frozenset()) if n else frozenset() for n in layer_names]
        new, plan, squashed = squash_image(
            oci,
            desc,
            shared=shared,
            sizes_changes=(changes, commits),
            max_layers=max_layers,
            compression=compression,
        )
        own = {KEY_ANNOTATION, EMPTY_ANNOTATION, CUTOFF_ANNOTATION}
        kept = {k: v for k, v in loaded.annotations if k not in own}
        data = oci.read_json(new)
        data["annotations"] = kept
        if not kept:
            data.pop("annotations")
        body = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        new = oci.put_bytes(body, media_type=new.media_type)
        name = tag or _squashed_tag(image if oci.resolve(image) is not None else ref)
        oci.tag(name, new)
        share = (
            f"over {commits} commits" if commits else "no history: every layer counted as changing"
        )
        out.write(
            f"{image}: {len(loaded.layers)} layers -> {len(squashed.layers)} "
            f"({shared} shared, kept as they are); tagged {name} ({new.digest})\n"
            f"expected bytes re-uploaded per change ({share}): "
            f"{human_bytes(int(plan.cost_before))} -> {human_bytes(int(plan.cost_after))}\n"
        )
        for group in plan.groups:
            if len(group) > 1:
                merged = ", ".join(layer_names[i] or f"#{i}" for i in group)
                out.write(f"  merged: {merged}\n")
        return 0


def _squashed_tag(image: str) -> str:
    slash, colon = image.rfind("/"), image.rfind(":")
    return f"{image}-squashed" if colon > slash else f"{image}:latest-squashed"
