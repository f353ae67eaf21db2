"""Why a layer's key differs between two snapshots: field by field, then the changed
paths it reads, following a changed parent down to where the change came in."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .changes import ChangeSet
from .graph import LayerGraph
from .keys import LayerKey
from .mapping import paths_read_at_either_end
from .spec import Spec

__all__ = ["explain_difference", "explain_layer"]


def explain_layer(
    name: str,
    *,
    spec: Spec,
    keys: Mapping[str, LayerKey],
    old_spec: Spec,
    old_keys: Mapping[str, LayerKey],
    changes: ChangeSet,
) -> list[str]:
    """explain_difference with the changed paths each layer reads, at either end."""
    changed = changes.as_files()

    def changed_paths(layer: str) -> list[str]:
        return paths_read_at_either_end(layer, spec, old_spec, changed)

    return explain_difference(name, keys, old_keys, graph=spec.graph, changed_paths=changed_paths)


def explain_difference(
    name: str,
    new: Mapping[str, LayerKey],
    old: Mapping[str, LayerKey],
    *,
    graph: LayerGraph,
    changed_paths: Callable[[str], list[str]] = lambda name: [],
) -> list[str]:
    """Lines saying which inputs of `name`'s key differ between `old` and `new`."""
    lines: list[str] = []
    current, pad = name, ""
    while True:
        if current not in old:
            same = next((n for n, k in old.items() if k.digest == new[current].digest), None)
            what = f"same key as '{same}' there" if same else "not defined at the other commit"
            lines.append(f"{pad}{current}: {what}")
            return lines
        a, b = old[current].recipe, new[current].recipe
        if a == b:
            lines.append(f"{pad}{current}: same key {new[current].digest[:19]}")
            return lines
        lines.append(f"{pad}{current}: {old[current].digest[:19]} -> {new[current].digest[:19]}")
        for field in sorted(set(a) | set(b)):
            if field != "parent" and a.get(field) != b.get(field):
                lines.extend(f"{pad}  {x}" for x in _diff(field, a.get(field), b.get(field)))
        lines.extend(f"{pad}  changed: {p}" for p in changed_paths(current))
        parent = graph[current].parent
        if parent is None or a.get("parent") == b.get("parent"):
            return lines
        lines.append(f"{pad}  parent '{parent}' has a different key:")
        current, pad = parent, pad + "    "


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
                where = f" {rel}" if rel else " (directory)"
                yield f"{path}{where}: {_short(before.get(rel))} -> {_short(after.get(rel))}"
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
    if isinstance(value, str) and value[:6].isdigit() and value[6:7] == " ":  # a digest
        mode, _, oid = value.partition(" ")
        return f"{oid.rpartition(' ')[2][:12]} ({mode})"
    if isinstance(value, str) and len(value) > 60:
        return repr(value[:57] + "...")
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
