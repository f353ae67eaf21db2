"""`plan --check-registry`: an affected Dockerfile image whose hand-off tag its own
repository holds is built already, and gets no job.

Each Dockerfile image is pushed under its content-addressed hand-off tag
(`<repository>:ci-layers-<16 hex of its key>`, docker.key_tag), by the run that built
it, on any branch. So a re-run after a cancelled job, a revert, or the push to main
right after the pull request that built the same content finds it there: `reused`.
Its children still build, pointed at that tag as at a parent rebuilt in the same run.

One paginated tag list per repository, the repositories asked at once; where listing
is refused, a HEAD of each image's tag. A repository that does not exist holds nothing
(not built). A registry that cannot be asked is a note, and those images keep their
jobs: the plan is never emptier for want of an answer. Like `cache.py`, a pass after
the git plan, which the property tests compare with their models unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .docker import handoff_tag
from .errors import RegistryError, UsageError
from .plan import Plan
from .resolver import DependencyResolver
from .spec import Spec

if TYPE_CHECKING:
    from .oci.registry import Registry

__all__ = ["RegistryCheck", "with_registry"]

_AT_ONCE = 16  # repositories asked at once


@dataclass(frozen=True, slots=True)
class RegistryCheck:
    found: dict[str, str]  # image -> the hand-off tag found
    notes: tuple[str, ...]  # what could not be asked, image and registry named


def with_registry(plan: Plan, spec: Spec, *, env: Mapping[str, str] | None = None) -> Plan:
    """`plan` with the affected Dockerfile images that are built already `reused`."""
    images = [n for n in plan.affected if spec.graph[n].dockerfile is not None]
    handoff = {n: tag for n in images if (tag := handoff_tag(spec, plan, n)) is not None}
    check = check_registry(handoff, env=env)
    layers = dict(plan.layers)
    for name, tag in check.found.items():
        why = f"built before: {tag} exists"
        layers[name] = replace(
            layers[name], status="reused", reasons=(why, *layers[name].reasons), stage=None
        )
    affected = [n for n in plan.affected if layers[n].status == "rebuild"]
    stages = DependencyResolver(spec.graph).stages(affected) if affected else []
    stage_of = {n: i for i, s in enumerate(stages, 1) for n in s}
    layers = {n: replace(lp, stage=stage_of.get(n)) for n, lp in layers.items()}
    notes = [plan.cache_note] if plan.cache_note else []
    return replace(
        plan,
        layers=layers,
        affected=tuple(affected),
        stages=tuple(tuple(s) for s in stages),
        reused=(*plan.reused, *check.found),
        cache_note="; ".join([*notes, *check.notes]) or None,
    )


def check_registry(
    handoff: Mapping[str, str], *, env: Mapping[str, str] | None = None
) -> RegistryCheck:
    """Which of the images' hand-off tags (image -> `repository:tag`) exist."""
    from .oci.reference import Reference  # the registry client loads only for a check
    from .oci.registry import Registry

    by_repo: dict[tuple[str, str], dict[str, str]] = {}
    notes: list[str] = []
    for image, tag in handoff.items():
        try:
            ref = Reference.parse(tag, what=image)
        except UsageError as exc:
            notes.append(f"{image}: not checked ({exc})")
            continue
        by_repo.setdefault((ref.host, ref.repository), {})[image] = ref.ref
    given = dict(env) if env is not None else None
    registries = {host: Registry(host, env=given) for host in {h for h, _ in by_repo}}

    def ask(repo: tuple[str, str]) -> tuple[dict[str, str], list[str]]:
        host, path = repo
        wanted = by_repo[repo]
        registry = registries[host]
        try:
            tags = set(registry.tags(path))
        except RegistryError as exc:
            if exc.status not in (401, 403):
                return {}, [f"{host}/{path} not checked ({exc}): its images keep their jobs"]
            return _by_head(registry, path, wanted)
        return {image: f"{host}/{path}:{t}" for image, t in wanted.items() if t in tags}, []

    found: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=_AT_ONCE) as pool:
        for got, said in pool.map(ask, list(by_repo)):
            found.update(got)
            notes += said
    ordered = {image: found[image] for image in handoff if image in found}
    return RegistryCheck(ordered, tuple(notes))


def _by_head(
    registry: Registry, path: str, wanted: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """The tags one by one, where the registry refuses to list them."""
    found, notes = {}, []
    for image, tag in wanted.items():
        try:
            if registry.manifest_descriptor(path, tag) is not None:
                found[image] = f"{registry.host}/{path}:{tag}"
        except RegistryError as exc:
            notes.append(f"{image} not checked in {registry.host}/{path} ({exc}): keeps its job")
    return found, notes
