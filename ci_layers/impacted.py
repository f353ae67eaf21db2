"""Impact queries (`ci-layers impacted`): which layers and published images are built on
a layer, an external base image, or a blob, for the day a CVE lands in one of them.

A layer's impact is itself and everything built on it (the resolver's closure). A base
image is matched the way `FROM` references are matched when the DAG is built
(`refs.same_image`: any spelling of the same repository and tag), on spec layers' `from:`
and on Dockerfile images' external bases; a query without a tag means every tag of that
repository. A digest is looked up in the store: the layers whose key image holds it (as
a manifest, config, layer blob or diff_id), and the layers built on a base image the
store holds under a tag.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .changes import Comparison
from .errors import UsageError
from .keys import LayerKey
from .plan import LayerPlan, Plan
from .refs import image_key, same_image
from .resolver import DependencyResolver
from .spec import Spec

__all__ = ["Impact", "impact_plan", "impacted_by_base", "impacted_by_digest", "impacted_by_layer"]


@dataclass(frozen=True, slots=True)
class Impact:
    query: str
    direct: tuple[str, ...]  # the layers the query names or matches
    layers: tuple[str, ...]  # those and everything built on them, in build order
    images: tuple[str, ...]  # the references they are published as

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "direct": list(self.direct),
            "layers": list(self.layers),
            "images": list(self.images),
        }


def _impact(spec: Spec, query: str, direct: list[str]) -> Impact:
    graph = spec.graph
    layers = DependencyResolver(graph).rebuild_affected_layers(direct) if direct else []
    images: list[str] = []
    for name in layers:  # a build for one of several platforms: its image's references
        layer = graph[name]
        if layer.dockerfile is not None:
            images += [layer.origin, *layer.dockerfile.tags]
        images += [t for img in spec.images.values() if img.layer == layer.origin for t in img.tags]
    return Impact(query, tuple(graph.sort(direct)), tuple(layers), tuple(dict.fromkeys(images)))


def impacted_by_layer(spec: Spec, name: str) -> Impact:
    """What a change to layer `name` rebuilds: of a layer built for several platforms,
    every platform's build."""
    builds = [n for n, x in spec.layers.items() if x.origin == name]
    if name not in spec.graph and not builds:
        raise UsageError(f"--layer {name}: no such layer in the spec")
    return _impact(spec, name, [name] if name in spec.graph else builds)


def _base_matches(written: str, query: str) -> bool:
    """`written` (a `from:` or an external base) is the queried image: same repository and
    tag by Docker's spelling rules, any tag when the query has none, and the same digest
    when the query pins one."""
    q_name, _, q_digest = query.partition("@")
    w_name, _, w_digest = written.partition("@")
    if q_digest and q_digest != w_digest:
        return False
    last = q_name.rsplit("/", 1)[-1]
    if ":" in last:
        return same_image(w_name, q_name)
    (qh, qp, _qt), (wh, wp, _wt) = image_key(q_name), image_key(w_name)
    return qp == wp and (qh is None or wh is None or qh == wh)


def impacted_by_base(spec: Spec, ref: str) -> Impact:
    direct = []
    for name, layer in spec.graph.layers.items():
        written = [layer.base] if layer.base and layer.base != "scratch" else []
        if layer.dockerfile is not None:
            written += list(layer.dockerfile.externals)
        if any(_base_matches(w, ref) for w in written):
            direct.append(name)
    return _impact(spec, ref, direct)


def impacted_by_digest(
    spec: Spec,
    digest: str,
    keys: Mapping[str, LayerKey],
    holders: Callable[[str], list[str]],
) -> Impact:
    """`holders(digest)` names the store's tags whose image holds the digest (the store
    is the build path's; the caller reads it)."""
    by_key: dict[str, list[str]] = {}
    for name, key in keys.items():
        by_key.setdefault("ci-layers-" + key.digest.removeprefix("sha256:"), []).append(name)
    direct: set[str] = set()
    for tag in holders(digest):
        if tag in by_key:
            direct.update(by_key[tag])
        elif not tag.startswith("ci-layers-"):
            direct.update(impacted_by_base(spec, tag).direct)
    return _impact(spec, digest, sorted(direct))


def impact_plan(spec: Spec, keys: Mapping[str, LayerKey], impact: Impact) -> Plan:
    """The plan that rebuilds everything impacted, for the same outputs as `plan`."""
    graph = spec.graph
    todo = set(impact.layers)
    stages = DependencyResolver(graph).stages(impact.layers) if impact.layers else []
    stage_of = {n: i for i, s in enumerate(stages, 1) for n in s}
    direct = set(impact.direct)
    layers = {}
    for name in graph.topological_order():
        if name in direct:
            reasons: tuple[str, ...] = (f"impacted: matches {impact.query}",)
        elif name in todo:
            on = [d for d in graph[name].dependencies if d in todo]
            reasons = (f"impacted: built on '{on[0]}'",) if on else ("impacted",)
        else:
            reasons = ()
        node = graph[name].dockerfile
        layers[name] = LayerPlan(
            name=name,
            key=keys[name].digest,
            status="rebuild" if name in todo else "unchanged",
            reasons=reasons,
            parents=graph.parents(name),
            stage=stage_of.get(name),
            file=node.file if node else None,
            context=(node.context or ".") if node else None,
            notes=node.notes if node else (),
        )
    comparison = Comparison(None, None, "all", f"everything impacted by {impact.query}")
    return Plan(
        comparison=comparison,
        layers=layers,
        affected=tuple(impact.layers),
        stages=tuple(tuple(s) for s in stages),
        spec=spec,
    )
