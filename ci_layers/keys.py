"""Content-addressed layer keys, and why two keys differ.

A key is sha256 over a versioned recipe: what the layer is built on (the parent's key,
or the base image reference), its canonical definition, and the digests of every file it
reads. The layer's name is not in it, and copied files are recorded by where they land,
not where they sit in the repository: renaming a layer, or a source folder along with
its `copy` entry, keeps the key. The recipe is kept as the key's pre-image so a change
can be explained field by field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .gcpause import paused_gc
from .graph import ImageLayer
from .repo import RepoFiles
from .sources import copy_source, input_globs
from .spec import Spec

__all__ = ["KEY_VERSION", "LayerKey", "compute_keys", "explain_difference"]

KEY_VERSION = 1


@dataclass(frozen=True, slots=True)
class LayerKey:
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
    global_files = {p: files.digest(p) for p in input_globs(spec.global_inputs).select(files)}
    keys: dict[str, LayerKey] = {}
    for name in spec.graph.topological_order():
        recipe = _recipe(spec.graph[name], keys, files, global_files)
        digest = "sha256:" + hashlib.sha256(_canonical(recipe)).hexdigest()
        keys[name] = LayerKey(name=name, digest=digest, recipe=recipe)
    return keys


def _recipe(
    layer: ImageLayer,
    keys: Mapping[str, LayerKey],
    files: RepoFiles,
    global_files: Mapping[str, str],
) -> dict[str, Any]:
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
        else:
            entry["files"] = sorted(
                item for src in c.src for item in copy_source(src, c.exclude).entries(files)
            )
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
        "inputs": {p: files.digest(p) for p in input_globs(layer.inputs).select(files)},
    }
    # Absent and empty fields are left out, so a field added in a later version does not
    # change the key of a layer that does not use it.
    recipe.update((k, v) for k, v in fields.items() if v not in (None, [], {}))
    return recipe


def explain_difference(
    name: str,
    new: Mapping[str, LayerKey],
    old: Mapping[str, LayerKey],
    *,
    depth: int = 0,
) -> list[str]:
    """Lines saying which inputs of `name`'s key differ between `old` and `new`."""
    pad = "  " * depth
    if name not in old:
        return [f"{pad}{name}: not defined at the other commit"]
    a, b = old[name].recipe, new[name].recipe
    if a == b:
        return [f"{pad}{name}: same key {new[name].digest[:19]}"]
    lines = [f"{pad}{name}: {old[name].digest[:19]} -> {new[name].digest[:19]}"]
    parent = _parent_name(new, name)
    for field in sorted(set(a) | set(b)):
        if a.get(field) == b.get(field):
            continue
        if field == "parent" and parent is not None:
            lines.append(f"{pad}  parent '{parent}' has a different key:")
            lines.extend(explain_difference(parent, new, old, depth=depth + 2))
            continue
        lines.extend(f"{pad}  {line}" for line in _diff(field, a.get(field), b.get(field)))
    return lines


def _parent_name(keys: Mapping[str, LayerKey], name: str) -> str | None:
    want = keys[name].recipe.get("parent")
    return next((k.name for k in keys.values() if k.digest == want and k.name != name), None)


def _diff(path: str, a: Any, b: Any) -> Iterator[str]:
    if a is None or b is None:  # an absent field reads as an empty one of the other's kind
        empty = type(b if a is None else a)() if isinstance(a or b, dict | list) else None
        a, b = (empty, b) if a is None else (a, empty)
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                sub = f"{path} {k}" if path in _FILE_MAPS else f"{path}.{k}"
                yield from _diff(sub, a.get(k), b.get(k))
    elif path.endswith("files") and isinstance(a, list) and isinstance(b, list):
        before, after = dict(map(tuple, a)), dict(map(tuple, b))
        for rel in sorted(set(before) | set(after)):
            if before.get(rel) != after.get(rel):
                yield f"{path} {rel}: {_short(before.get(rel))} -> {_short(after.get(rel))}"
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                yield from _diff(f"{path}[{i}]", x, y)
    else:
        yield f"{path}: {_short(a)} -> {_short(b)}"


_FILE_MAPS = ("inputs", "global_inputs")


def _short(value: Any) -> str:
    if value is None:
        return "(absent)"
    if isinstance(value, str) and len(value) == 47 and value[6] == " ":  # "<mode> <blob id>"
        return f"{value[7:19]} ({value[:6]})"
    if isinstance(value, str) and len(value) > 60:
        return repr(value[:57] + "...")
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
