"""The Plan: which layers to rebuild between two commits, why, and in which stages.

A layer is rebuilt exactly when its key at head is not the key of any layer at base:
content addressing makes "changed, or built on something changed" one test, and a
renamed or moved layer with the same content reuses what was built. Reasons come from
the changed paths each layer reads (with the spec as it was at base for deleted paths)
and from the definition fields its key recipe differs in.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import memo
from .changes import ChangeSet, Comparison, GitHistory, changes_between
from .discover import resolve_dockerfiles
from .errors import SpecInvalid
from .gcpause import paused_gc
from .graph import ImageLayer, LayerGraph
from .keys import LayerKey, compute_keys
from .lazytree import TreeStore, lazy_tree_files
from .mapping import cache_break, definition_changes, paths_read_at_either_end
from .platforms import DEFAULT_PLATFORM
from .refs import pushed_as
from .repo import RepoFiles, read_at, tree_files, worktree_files
from .resolver import DependencyResolver
from .sources import broken_links, input_globs
from .spec import Spec, parse_spec

__all__ = ["LayerPlan", "Plan", "build_plan", "make_plan"]

MAX_PATH_REASONS = 50


@dataclass(frozen=True, slots=True)
class LayerPlan:
    name: str
    key: str
    status: str  # "rebuild" | "unchanged" | "reused" (affected, but in the cache: cache.py)
    reasons: tuple[str, ...]
    parents: tuple[str, ...]
    stage: int | None  # 1-based wave among the rebuilt layers
    paths: tuple[str, ...] = ()  # the changed paths this layer reads
    file: str | None = None  # the Dockerfile, for a Dockerfile-built layer
    context: str | None = None  # its build context ("." for the repository root)
    notes: tuple[str, ...] = ()  # inputs no key can see (ADD <url>, git sources)


@dataclass(frozen=True)
class Plan:
    comparison: Comparison
    layers: Mapping[str, LayerPlan]  # in build order
    affected: tuple[str, ...]
    stages: tuple[tuple[str, ...], ...]
    removed: tuple[str, ...] = ()
    changed_paths: tuple[str, ...] = field(default=())
    spec: Spec | None = field(default=None, compare=False)  # the head spec it was made from
    reused: tuple[str, ...] = ()  # affected, but their key is in the cache (cache.py)
    cache: str | None = None  # the cache repository asked, if any
    cache_note: str | None = None  # why it could not be asked

    def to_json(self) -> dict[str, Any]:
        c = self.comparison
        return {
            "version": 1,
            "event": c.event,
            "base": c.base,
            "head": c.head,
            "mode": c.mode,
            "reason": c.reason,
            "affected": list(self.affected),
            "stages": [list(s) for s in self.stages],
            "removed": list(self.removed),
            "changed_paths": len(self.changed_paths),
            **(
                {
                    "cache": {
                        "repository": self.cache,
                        "reused": list(self.reused),
                        "note": self.cache_note,
                    }
                }
                if self.cache or self.reused or self.cache_note
                else {}
            ),
            "layers": {
                n: {
                    "key": lp.key,
                    "status": lp.status,
                    "stage": lp.stage,
                    "parents": list(lp.parents),
                    "reasons": list(lp.reasons),
                    **({"file": lp.file, "context": lp.context} if lp.file else {}),
                    **({"notes": list(lp.notes)} if lp.notes else {}),
                }
                for n, lp in self.layers.items()
            },
        }


def build_plan(
    *,
    spec: Spec,
    keys: Mapping[str, LayerKey],
    comparison: Comparison,
    base_spec: Spec | None = None,
    base_keys: Mapping[str, LayerKey] | None = None,
    changes: ChangeSet | None = None,
) -> Plan:
    """Decide every layer's status; `base_keys` None means everything is rebuilt."""
    graph = spec.graph
    order = graph.topological_order()
    if base_spec is not None and base_keys is not None:
        base_spec, base_keys = _same_builds(spec, base_spec, base_keys)
    rebuild: dict[str, tuple[list[str], list[str]]] = {}  # name -> (reasons, paths)
    at_base = _by_digest(base_keys) if base_keys is not None else {}
    if comparison.mode == "none":
        pass
    elif base_keys is None or base_spec is None:
        rebuild = {n: ([comparison.reason], []) for n in order}
    else:
        changed = changes.as_files() if changes else RepoFiles({})
        global_paths = input_globs(spec.global_inputs).select(changed)
        global_paths += input_globs(base_spec.global_inputs).select(changed)
        for name in order:
            if keys[name].digest in at_base and _published(
                name, spec, keys, base_spec, base_keys, at_base
            ):
                continue
            rebuild[name] = _why(
                name,
                spec,
                keys,
                base_spec,
                base_keys,
                changed,
                sorted(set(global_paths)),
                rebuild,
                at_base,
            )
    affected = [n for n in order if n in rebuild]
    stages = DependencyResolver(graph).stages(affected) if affected else []
    stage_of = {n: i for i, s in enumerate(stages, 1) for n in s}
    layers = {}
    for name in order:
        reasons, paths = rebuild.get(name, ([], []))
        if name not in rebuild and base_keys is not None and name not in base_keys:
            old = at_base[keys[name].digest][0]
            reasons = [f"same content as '{old}' at base"]
        layers[name] = LayerPlan(
            name=name,
            key=keys[name].digest,
            status="rebuild" if name in rebuild else "unchanged",
            reasons=tuple(reasons),
            parents=graph.parents(name),
            stage=stage_of.get(name),
            paths=tuple(paths),
            file=node.file if (node := graph[name].dockerfile) else None,
            context=(node.context or ".") if node else None,
            notes=node.notes if node else (),
        )
    removed = sorted(set(base_spec.layers) - set(spec.layers)) if base_spec else []
    return Plan(
        comparison=comparison,
        layers=layers,
        affected=tuple(affected),
        stages=tuple(tuple(s) for s in stages),
        removed=tuple(removed),
        changed_paths=tuple(sorted(changes.paths())) if changes else (),
        spec=spec,
    )


def _same_builds(
    spec: Spec, base_spec: Spec, base_keys: Mapping[str, LayerKey]
) -> tuple[Spec, Mapping[str, LayerKey]]:
    """Base's nodes under head's names where only the naming of platforms changed: an
    image given a second platform has its default platform's build renamed `x
    (linux/amd64)`, which is still the build base pushed (same image, same platform)."""
    head = {(x.origin, x.platform or DEFAULT_PLATFORM): n for n, x in spec.layers.items()}
    renamed = {
        n: new
        for n, x in base_spec.layers.items()
        if (new := head.get((x.origin, x.platform or DEFAULT_PLATFORM), n)) != n
        and new not in base_spec.layers
    }
    if not renamed:
        return base_spec, base_keys

    def r(name: str) -> str:
        return renamed.get(name, name)

    def moved(x: ImageLayer) -> ImageLayer:
        node = x.dockerfile
        if node is not None:
            node = replace(node, bases=tuple((ref, r(dep)) for ref, dep in node.bases))
        return replace(
            x,
            name=r(x.name),
            parent=x.parent and r(x.parent),
            copy=tuple(replace(c, from_layer=c.from_layer and r(c.from_layer)) for c in x.copy),
            needs=tuple(r(n) for n in x.needs),
            dockerfile=node,
        )

    layers = {r(n): moved(x) for n, x in base_spec.layers.items()}
    graph = LayerGraph.from_layers(layers.values())
    keys = {r(n): replace(k, name=r(n)) for n, k in base_keys.items()}
    return replace(base_spec, layers=layers, graph=graph), keys


def _by_digest(keys: Mapping[str, LayerKey]) -> dict[str, list[str]]:
    """Layer names by key digest, in the keys' order: built once per plan, so that
    asking "who had this key at base" is not a scan per layer (O(layers²) before)."""
    index: dict[str, list[str]] = {}
    for n, k in keys.items():
        index.setdefault(k.digest, []).append(n)
    return index


def _published(
    name: str,
    spec: Spec,
    keys: Mapping[str, LayerKey],
    base_spec: Spec,
    base_keys: Mapping[str, LayerKey],
    at_base: Mapping[str, list[str]],
) -> bool:
    """Whether a layer whose key was built at base is there to use under its name.

    A spec layer's build is found by its key, whatever the layer is called, but a tag
    of an `images:` entry that base did not push for that key must be pushed. A
    Dockerfile image is pulled by its name and tags: one that was not built under this
    name with this key (a new or renamed image, two images that swapped contents), or
    that has a new tag, must be built and pushed.
    """
    tags = _pushed_tags(spec, name)
    if spec.graph[name].dockerfile is None:
        digest = keys[name].digest
        before = {t for n in at_base.get(digest, ()) for t in _pushed_tags(base_spec, n)}
        return not _unpushed(tags, before)
    old, old_layer = base_keys.get(name), base_spec.layers.get(name)
    return (
        old is not None
        and old.digest == keys[name].digest
        and old_layer is not None
        and old_layer.dockerfile is not None
        and not _unpushed(tags, _pushed_tags(base_spec, name))
    )


def _pushed_tags(spec: Spec, name: str) -> set[str]:
    """The tags a layer is pushed as: a Dockerfile image's own, a spec layer's `images:`."""
    layer = spec.layers.get(name)
    if layer is None or layer.image is not None:
        return set()  # one of several platforms' builds: promote tags their index
    if layer.dockerfile is not None:
        return set(layer.dockerfile.tags)
    return {t for img in spec.images.values() if img.layer == name for t in img.tags}


def _unpushed(tags: Iterable[str], before: Iterable[str]) -> set[str]:
    """Tags not pushed before, however either is spelled (`a:1` is docker.io/library/a:1)."""
    pushed = {pushed_as(t) for t in before}
    return {t for t in tags if pushed_as(t) not in pushed}


def _why(
    name: str,
    spec: Spec,
    keys: Mapping[str, LayerKey],
    base_spec: Spec,
    base_keys: Mapping[str, LayerKey],
    changed: RepoFiles,
    global_paths: list[str],
    rebuilt: Mapping[str, object],
    at_base: Mapping[str, list[str]],
) -> tuple[list[str], list[str]]:
    layer = spec.graph[name]
    old = base_keys.get(name)
    if old is None and layer.dockerfile is not None:
        twin = next(iter(at_base.get(keys[name].digest, ())), None)
        if twin is not None:
            return [f"new name: same content as '{twin}' at base, not pushed as this one"], []
        return ["new image"], []
    if old is None:
        return ["new layer"], []
    reasons = []
    if new := _unpushed(_pushed_tags(spec, name), _pushed_tags(base_spec, name)):
        reasons.append("new tags: " + ", ".join(sorted(new)))
    for dep in layer.dependencies:
        if dep in rebuilt:
            if dep == layer.parent:
                reasons.append(f"parent '{dep}' is rebuilt")
            else:
                what = "uses image" if dep in layer.needs else "copies from"
                reasons.append(f"{what} '{dep}', which is rebuilt")
    recipe = keys[name].recipe
    if old.recipe.get("parent") != recipe.get("parent") and layer.parent not in rebuilt:
        reasons.append(f"now built on '{layer.parent}'")
    reasons += [f"spec: {f} changed" for f in definition_changes(old.recipe, recipe)]
    paths = paths_read_at_either_end(name, spec, base_spec, changed)
    for p in paths[:MAX_PATH_REASONS]:
        reasons.append(f"changed: {p}")
    if len(paths) > MAX_PATH_REASONS:
        reasons.append(f"and {len(paths) - MAX_PATH_REASONS} more changed paths")
    old_layer = base_spec.layers.get(name)
    if (where := cache_break(layer, old_layer, changed)) is not None:
        reasons.append(where)
    if layer.dockerfile is None and old_layer is not None and old_layer.dockerfile is not None:
        reasons.append("was built from a Dockerfile")
    if old.recipe.get("global_inputs") != recipe.get("global_inputs"):
        reasons += [f"global input changed: {p}" for p in global_paths] or ["global inputs changed"]
    if not reasons:
        reasons.append("the files it reads changed")
    return reasons, paths


def make_plan(
    *,
    root: Path,
    spec: Spec | Callable[[], Spec],
    spec_rel: str | None,
    comparison: Comparison,
    history: GitHistory,
) -> Plan:
    """Load the spec and files at both ends of `comparison` and build the Plan."""
    with paused_gc():  # a plan makes no cycles; collecting cost 10% of it
        if comparison.base is not None and comparison.head is not None:
            # Two commits: each tree is read only as far as the plan looks (lazytree.py),
            # and what changed comes from git's diff, run while the spec is read.
            with TreeStore(root) as store, ThreadPoolExecutor(max_workers=1) as pool:
                diff = pool.submit(history.diff, comparison)
                head = lazy_tree_files(root, comparison.head, store)
                base = lazy_tree_files(root, comparison.base, store)
                return _plan_ends(root, spec, spec_rel, comparison, head, base, diff.result)
        # Against the working tree, both ends are listed and compared.
        with ThreadPoolExecutor(max_workers=2) as pool:
            head_job = pool.submit(worktree_files, root)
            base_job = pool.submit(tree_files, root, comparison.base) if comparison.base else None
            head_files = head_job.result()
            base_files = base_job.result() if base_job else None
        return _plan_ends(root, spec, spec_rel, comparison, head_files, base_files, None)


def _plan_ends(
    root: Path,
    spec: Spec | Callable[[], Spec],
    spec_rel: str | None,
    comparison: Comparison,
    head_files: RepoFiles,
    base_files: RepoFiles | None,
    diff: Callable[[], ChangeSet] | None,
) -> Plan:
    """The plan from both ends' files (and git's diff between two commits, asked for
    once it is needed)."""
    head_text = None
    if comparison.head is not None and spec_rel is not None:
        head_text = read_at(root, comparison.head, spec_rel)
    head_end = _End(head_text, spec_rel, head_files.trees.get(""))
    if (kept := head_end.load()) is not None:  # the text is the one parsed before
        spec, keys = kept
        raw_spec = spec
    else:
        at_head = None
        if head_text is not None and spec_rel is not None:
            at_head = parse_spec(head_text, filename=spec_rel)
        # the one on disk only where the commit has none: a broken edit on disk does not
        # stop a plan between two commits
        spec = at_head or (spec() if callable(spec) else spec)
        raw_spec = spec
        spec = resolve_dockerfiles(spec, head_files)
        if problems := broken_links(spec.layers.values(), head_files):  # at head only: base
            raise SpecInvalid(problems)  # was built (or not) already; head is what will build
        keys = compute_keys(spec, head_files)
        head_end.store(spec, keys)
    if comparison.base is None or base_files is None:
        return build_plan(spec=spec, keys=keys, comparison=comparison)
    base_text = _text_at_base(root, comparison, spec_rel)
    base_end = _End(base_text, spec_rel, base_files.trees.get(""))
    base_spec: Spec | None
    base_keys = None
    if (kept := base_end.load()) is not None:
        base_spec, base_keys = kept
    elif (base_spec := _spec_at_base(base_text, raw_spec, spec_rel)) is not None:
        try:
            base_spec = resolve_dockerfiles(base_spec, base_files)
        except SpecInvalid:
            base_spec = None
    if base_spec is None:
        why = f"the spec does not load at base {comparison.base[:12]}: everything is rebuilt"
        comparison = Comparison(
            comparison.base, comparison.head, comparison.mode, why, comparison.event
        )
        return build_plan(spec=spec, keys=keys, comparison=comparison)
    changes = diff() if diff else changes_between(base_files, head_files, comparison)
    if base_keys is None:
        base_keys = compute_keys(base_spec, base_files)
        base_end.store(base_spec, base_keys)
    return build_plan(
        spec=spec,
        keys=keys,
        comparison=comparison,
        base_spec=base_spec,
        base_keys=base_keys,
        changes=changes,
    )


@dataclass(frozen=True)
class _End:
    """One end of a plan as kept between runs (memo.py): the spec resolved over a tree
    and its keys, named by the spec's text and the tree's id, which determine them. So
    a pull request's base is what its own plan computed when it was the head. An end
    without a spec text in the repository, or without a tree id, is not kept."""

    text: str | None
    spec_rel: str | None
    tree: str | None

    def _parts(self) -> tuple[str, ...] | None:
        if self.text is None or self.spec_rel is None or not self.tree:
            return None
        if re.search(r"^bake\s*:", self.text, re.M):
            return None  # bake files read the environment: their reading is kept instead
        digest = hashlib.sha256(self.text.encode("utf-8", "surrogatepass")).hexdigest()
        return (digest, self.spec_rel, self.tree)

    def load(self) -> tuple[Spec, dict[str, LayerKey]] | None:
        parts = self._parts()
        kept = memo.load("end", *parts) if parts else None
        if isinstance(kept, tuple) and len(kept) == 2 and isinstance(kept[0], Spec):
            return kept
        return None

    def store(self, spec: Spec, keys: dict[str, LayerKey]) -> None:
        if (parts := self._parts()) is not None:
            memo.store("end", (spec, keys), *parts)


def _text_at_base(root: Path, comparison: Comparison, spec_rel: str | None) -> str | None:
    """The spec's text at base (an empty spec where it has none); None for a spec kept
    outside the repository."""
    if spec_rel is None:
        return None
    assert comparison.base is not None
    text = read_at(root, comparison.base, spec_rel)
    return "version: 1\nlayers: {}\n" if text is None else text


def _spec_at_base(text: str | None, spec: Spec, spec_rel: str | None) -> Spec | None:
    """The spec at base; None for one that does not load."""
    if spec_rel is None or text is None:
        return spec  # kept outside the repository: the same at both ends
    try:
        return parse_spec(text, filename=spec_rel)
    except SpecInvalid:
        return None
