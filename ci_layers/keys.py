"""Content-addressed layer keys, and why two keys differ.

A key is sha256 over a versioned recipe: what the layer is built on (the parent's key,
or the base image reference), its canonical definition, and the digests of every file it
reads. The layer's name is not in it, and copied files are recorded by where they land,
not where they sit in the repository: renaming a layer, or a source folder along with
its `copy` entry, keeps the key. A copied directory is its git tree id. The recipe is
kept as the key's pre-image so a change can be explained field by field (explain.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .gcpause import paused_gc
from .graph import ImageLayer
from .pickling import slotted_reduce
from .platforms import DEFAULT_PLATFORM
from .repo import RepoFiles
from .sources import context_reads, copy_source, input_globs, read_digest
from .spec import Spec

__all__ = ["KEY_VERSION", "LayerKey", "compute_keys"]

KEY_VERSION = 1


@dataclass(frozen=True, slots=True)
class LayerKey:
    __reduce__ = slotted_reduce

    name: str
    digest: str  # "sha256:<hex>"
    recipe: Mapping[str, Any]


def _canonical(recipe: Mapping[str, Any]) -> bytes:
    return json.dumps(recipe, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def compute_keys(spec: Spec, files: RepoFiles) -> dict[str, LayerKey]:
    """The key of every layer of `spec` over the file snapshot `files`."""
    with paused_gc():
        return _compute_keys(spec, files)


def _compute_keys(spec: Spec, files: RepoFiles) -> dict[str, LayerKey]:
    global_files = _inputs(spec.global_inputs, files)
    keys: dict[str, LayerKey] = {}
    for name in spec.graph.topological_order():
        recipe = _recipe(spec.graph[name], keys, files, global_files)
        digest = "sha256:" + hashlib.sha256(_canonical(recipe)).hexdigest()
        keys[name] = LayerKey(name=name, digest=digest, recipe=recipe)
    return keys


def _dockerfile_recipe(
    layer: ImageLayer, keys: Mapping[str, LayerKey], files: RepoFiles
) -> dict[str, Any]:
    """A Dockerfile's instructions (not its comments or layout), the in-repo images it
    builds on, the external ones, its build args and the context files it reads."""
    node = layer.dockerfile
    assert node is not None
    context = sorted({(rel, files.digest(path)) for _i, path, rel in context_reads(node, files)})
    return {
        "version": KEY_VERSION,
        "kind": "dockerfile",
        "instructions": [[text, *heredocs] for _line, text, heredocs in node.instructions],
        "deps": [keys[d].digest for d in layer.dependencies],
        "externals": list(node.externals),
        # a build arg no ARG declares does not reach the build (BuildKit warns, that is all)
        "build_args": {k: v for k, v in layer.build_args if k in node.declared},
        "context": [list(item) for item in context],
    }


def _inputs(patterns: tuple[str, ...], files: RepoFiles) -> dict[str, str]:
    globs = input_globs(patterns)
    found = {p: read_digest(files, p) for p in globs.select(files)}
    return {**found, **globs.through_links(files)} if patterns else found


def _recipe(
    layer: ImageLayer,
    keys: Mapping[str, LayerKey],
    files: RepoFiles,
    global_files: Mapping[str, str],
) -> dict[str, Any]:
    recipe = _definition(layer, keys, files, global_files)
    # Built for another platform than the default, the same definition is another image;
    # the default platform's key stays as it was before `platforms:` was written.
    if layer.platform not in (None, DEFAULT_PLATFORM):
        recipe["platform"] = layer.platform
    return recipe


def _definition(
    layer: ImageLayer,
    keys: Mapping[str, LayerKey],
    files: RepoFiles,
    global_files: Mapping[str, str],
) -> dict[str, Any]:
    if layer.dockerfile is not None:
        built = _dockerfile_recipe(layer, keys, files)
        # a rule's `inputs` and `build_args_file`: left out when they match nothing, as
        # a spec layer's empty fields are, so keys stay as they were without them
        if layer.inputs and (found := _inputs(layer.inputs, files)):
            built["inputs"] = found
        if global_files:
            built["global_inputs"] = dict(global_files)
        if layer.labels:  # a bake target's labels: left out when none, as the others
            built["labels"] = dict(layer.labels)
        return built
    recipe: dict[str, Any] = {"version": KEY_VERSION}
    if layer.parent:
        recipe["parent"] = keys[layer.parent].digest
    else:
        recipe["from"] = layer.base
        if global_files:  # descendants inherit them through the parent key
            recipe["global_inputs"] = dict(global_files)
    copies = []
    for c in layer.copy:
        entry: dict[str, Any] = {"dest": c.dest}
        if c.chmod:
            entry["chmod"] = c.chmod
        if c.chown:
            entry["chown"] = c.chown
        if c.from_layer:
            entry["from_layer"] = keys[c.from_layer].digest
            entry["src"] = list(c.src)
            if c.exclude:
                entry["exclude"] = list(c.exclude)
        else:
            # In source order: where two sources land on one path, the later one wins.
            entry["files"] = [
                item for src in c.src for item in copy_source(src, c.exclude).entries(files)
            ]
        copies.append(entry)
    fields: dict[str, Any] = {
        "run": list(layer.run),
        "copy": copies,
        "env": dict(layer.env),
        "workdir": layer.workdir,
        "user": layer.user,
        "entrypoint": None if layer.entrypoint is None else list(layer.entrypoint),
        "cmd": None if layer.cmd is None else list(layer.cmd),
        "labels": dict(layer.labels),
        "build_args": dict(layer.build_args),
        "inputs": _inputs(layer.inputs, files),
        "network": layer.network if layer.network not in (None, "default") else None,
    }
    # Absent and empty fields are left out, so a field added in a later version does not
    # change the key of a layer that does not use it.
    recipe.update((k, v) for k, v in fields.items() if v not in (None, [], {}))
    return recipe
