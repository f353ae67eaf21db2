"""Cache-aware plans (`plan --cache REGISTRY/REPO`): git says what changed, the cache
repository says what is built already.

A layer's image is tagged `ci-layers-<key>` in the cache by whichever job built it, on
any branch. So an affected layer whose key is there needs no job (a revert, a re-run
after a cancelled job, a change built on another branch): it is `reused`. And an
unchanged layer whose key is *not* there was never finished (its job at base failed or
was cancelled): it is rebuilt, which closes the gap between "key at base" and "image
exists". Layers that carry release tags (`images:`) keep their job when affected, since
the job also pushes those tags. Dockerfile images are built and cached by BuildKit and
are planned from git alone. If the registry cannot be asked, the plan is git's, and
says so; it never becomes empty for want of an answer.
"""

from __future__ import annotations

from dataclasses import replace

from .errors import RegistryError
from .plan import Plan
from .resolver import DependencyResolver
from .spec import Spec

__all__ = ["with_cache"]


def with_cache(plan: Plan, spec: Spec, cache: str, *, env: dict[str, str] | None = None) -> Plan:
    """`plan` with what the cache repository holds taken into account."""
    from .oci.reference import Reference, key_tag  # the registry client: only with --cache
    from .oci.registry import Registry

    ref = Reference.parse(cache, what="--cache", repository_only=True)
    try:
        tags = set(Registry(ref.host, env=env).tags(ref.repository))
    except RegistryError as exc:
        note = f"cache {ref.name} not checked ({exc}): this plan is git's alone"
        return replace(plan, cache=ref.name, cache_note=note)
    layers = dict(plan.layers)
    reused = []
    for name, lp in plan.layers.items():
        layer = spec.graph[name]
        if layer.dockerfile is not None:
            continue
        there = key_tag(lp.key) in tags
        tagged = any(img.layer == name and img.tags for img in spec.images.values())
        if lp.status == "rebuild" and there and not tagged:
            why = f"built before: {key_tag(lp.key)[:26]}… is in {ref.name}"
            layers[name] = replace(lp, status="reused", reasons=(why, *lp.reasons), stage=None)
            reused.append(name)
        elif lp.status == "rebuild" and there:
            why = f"built before ({ref.name}); its job pushes its `images:` tags only"
            layers[name] = replace(lp, reasons=(*lp.reasons, why))
        elif lp.status == "unchanged" and not there and plan.comparison.mode != "none":
            why = f"not in {ref.name}: its build at base did not finish, or was never pushed"
            layers[name] = replace(lp, status="rebuild", reasons=(why,))
    affected = [n for n, lp in layers.items() if lp.status == "rebuild"]
    stages = DependencyResolver(spec.graph).stages(affected) if affected else []
    stage_of = {n: i for i, s in enumerate(stages, 1) for n in s}
    layers = {n: replace(lp, stage=stage_of.get(n)) for n, lp in layers.items()}
    return replace(
        plan,
        layers=layers,
        affected=tuple(affected),
        stages=tuple(tuple(s) for s in stages),
        reused=tuple(reused),
        cache=ref.name,
    )
