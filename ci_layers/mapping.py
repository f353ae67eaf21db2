"""Changed paths -> the layers that read them, and definitions compared field by field.

Uses the same compiled sources as keys.py, over a snapshot of only the changed paths,
so a lookup costs a bisect per source, not a scan of every path per layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .graph import ImageLayer
from .repo import RepoFiles
from .sources import context_reads, copy_source, input_globs
from .spec import Spec

__all__ = ["cache_break", "definition_changes", "paths_read", "paths_read_at_either_end"]


def paths_read(layer: ImageLayer, changed: RepoFiles) -> list[str]:
    """The changed paths that `layer`'s copy sources or `inputs` read (for a Dockerfile:
    the file itself, its .dockerignore, and the context files it reads)."""
    found: set[str] = set()
    node = layer.dockerfile
    if node is not None:
        found.update(path for _i, path, _rel in context_reads(node, changed))
        found.update(p for p in (node.file, node.ignore_file) if p and p in changed)
        found.update(input_globs(layer.inputs).select(changed))
        return sorted(found)
    for c in layer.copy:
        if c.from_layer:
            continue
        for src in c.src:
            found.update(copy_source(src, c.exclude).paths(changed))
    found.update(input_globs(layer.inputs).select(changed))
    return sorted(found)


def paths_read_at_either_end(
    name: str, new_spec: Spec, old_spec: Spec, changed: RepoFiles
) -> list[str]:
    """The changed paths layer `name` reads at head or at base: a deleted file is read
    only by the spec as it was."""
    layer = new_spec.graph[name]
    found = set(paths_read(layer, changed))
    if name in old_spec.layers and (old := old_spec.graph[name]) != layer:  # else the same
        found.update(paths_read(old, changed))
    return sorted(found)


_NOT_DEFINITION = (
    "version",
    "parent",
    "global_inputs",
    "inputs",
    "kind",
    "deps",
    "context",
    "instructions",
)


def cache_break(layer: ImageLayer, old: ImageLayer | None, changed: RepoFiles) -> str | None:
    """The first instruction of a Dockerfile whose build cache the change breaks."""
    node = layer.dockerfile
    if node is None:
        return None
    candidates: list[tuple[int, str]] = []
    before = old.dockerfile.instructions if old is not None and old.dockerfile else ()
    for i, (line, text, heredocs) in enumerate(node.instructions):
        if i >= len(before) or before[i][1:] != (text, heredocs):
            candidates.append((line, text))
            break
    for index, _path, _rel in context_reads(node, changed):
        line, text = node.reads[index][:2]
        candidates.append((line, text))
    if not candidates:
        return None
    line, text = min(candidates)
    short = text if len(text) <= 80 else text[:77] + "..."
    return f"cache breaks at {node.file}:{line} {short}"


def definition_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The definition fields two key recipes differ in (files and parents aside)."""
    fields = []
    for name in sorted(set(old) | set(new)):
        if name in _NOT_DEFINITION or old.get(name) == new.get(name):
            continue
        if name == "copy":
            a, b = old.get("copy", []), new.get("copy", [])
            for i in range(max(len(a), len(b))):
                x = _without_content(a[i]) if i < len(a) else None
                y = _without_content(b[i]) if i < len(b) else None
                if x != y:
                    fields.append(f"copy[{i}]")
            continue
        fields.append(name)
    return fields


def _without_content(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in ("files", "from_layer")}
