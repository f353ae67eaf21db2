"""Fit a plan's stages into a fixed number of CI jobs.

GitHub matrix jobs cannot depend on one another, so a workflow declares K stage jobs.
When the affected DAG is deeper than K, consecutive waves are folded into one stage and
layers that depend on each other inside a stage go to the same job, built in sequence.
When a stage has more jobs than may run (GitHub's matrix limit is 256), jobs are merged
into fewer, longer ones. Nothing is ever dropped, and no layer is built before what it
is built on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

__all__ = ["pack_stages"]


def pack_stages(
    order: Sequence[str],
    dependencies: Callable[[str], Iterable[str]],
    *,
    max_stages: int,
    max_parallel: int,
    runner: Callable[[str], str] | None = None,
) -> list[list[tuple[str, ...]]]:
    """Stages of jobs; a job is a tuple of layers built in that order.

    `order` is the affected set in build order; `dependencies(name)` may name layers
    outside it, which count as built already. `runner(name)` is where a layer must be
    built (its platform's runner): a job never holds two runners' layers.
    """
    if max_stages < 1 or max_parallel < 1:
        raise ValueError("max_stages and max_parallel must be at least 1")
    position = {n: i for i, n in enumerate(order)}
    deps = {n: [d for d in dependencies(n) if d in position] for n in order}
    depth: dict[str, int] = {}
    for n in order:  # build order: every dependency's depth is known
        depth[n] = 1 + max((depth[d] for d in deps[n]), default=-1)
    waves = 1 + max(depth.values(), default=-1)
    stage_of = {n: _fold(d, waves, max_stages) for n, d in depth.items()}
    if runner is not None:  # an edge between runners (FROM --platform) crosses a stage
        for n in order:
            for d in deps[n]:
                step = 1 if runner(d) != runner(n) else 0
                stage_of[n] = max(stage_of[n], stage_of[d] + step)
    stages: list[list[tuple[str, ...]]] = []
    for s in sorted(set(stage_of.values())):
        members = [n for n in order if stage_of[n] == s]
        jobs = _components(members, deps, stage_of, s)
        if len(jobs) > max_parallel:
            jobs = _merge_by(jobs, max_parallel, position, runner)
        stages.append(jobs)
    return stages


def _fold(wave: int, waves: int, stages: int) -> int:
    """The stage of a wave. The roots keep the first stage to themselves: their fan-out
    is the widest, and folding their children in would chain them all into one job. The
    other waves share the other stages evenly; the stage never decreases along an edge."""
    if waves <= stages:
        return wave
    if stages == 1:
        return 0
    if wave == 0:
        return 0
    return 1 + (wave - 1) * (stages - 1) // (waves - 1)


def _components(
    members: list[str], deps: dict[str, list[str]], stage_of: dict[str, int], s: int
) -> list[tuple[str, ...]]:
    """Layers joined by a dependency inside the stage share a job (union-find)."""
    root = {n: n for n in members}

    def find(n: str) -> str:
        while root[n] != n:
            root[n] = root[root[n]]
            n = root[n]
        return n

    for n in members:
        for d in deps[n]:
            if stage_of[d] == s:
                root[find(n)] = find(d)
    groups: dict[str, list[str]] = {}
    for n in members:  # members are in build order, and so is each group
        groups.setdefault(find(n), []).append(n)
    return [tuple(g) for g in groups.values()]


def _merge_by(
    jobs: list[tuple[str, ...]],
    limit: int,
    position: dict[str, int],
    runner: Callable[[str], str] | None,
) -> list[tuple[str, ...]]:
    """`_merge` within each runner's jobs (a job's layers share one: an edge joins two
    builds for one platform), the `limit` shared by their number of jobs, each runner at
    least one."""
    groups: dict[str, list[tuple[str, ...]]] = {}
    for job in jobs:
        groups.setdefault(runner(job[0]) if runner else "", []).append(job)
    if len(groups) == 1:
        return _merge(jobs, limit, position)
    share = {g: max(1, limit * len(js) // len(jobs)) for g, js in groups.items()}
    while sum(share.values()) > limit and max(share.values()) > 1:
        share[max(share, key=lambda g: share[g])] -= 1
    merged = [job for g, js in groups.items() for job in _merge(js, share[g], position)]
    return sorted(merged, key=lambda job: position[job[0]])


def _merge(
    jobs: list[tuple[str, ...]], limit: int, position: dict[str, int]
) -> list[tuple[str, ...]]:
    """Largest first into the shortest bin; each bin keeps build order."""
    bins: list[list[str]] = [[] for _ in range(limit)]
    for job in sorted(jobs, key=len, reverse=True):
        min(bins, key=len).extend(job)
    return [tuple(sorted(b, key=position.__getitem__)) for b in bins if b]
