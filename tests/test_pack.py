from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ci_layers.graph import ImageLayer, LayerGraph
from ci_layers.pack import pack_stages
from ci_layers.resolver import DependencyResolver

from .dags import dags


def check(graph: LayerGraph, affected: list[str], stages, k: int, p: int) -> None:
    placed = [n for stage in stages for job in stage for n in job]
    assert sorted(placed) == sorted(affected)  # every layer exactly once
    assert len(stages) <= k
    where = {}
    for s, stage in enumerate(stages):
        assert 1 <= len(stage) <= p
        for j, job in enumerate(stage):
            for i, n in enumerate(job):
                where[n] = (s, j, i)
    for n in affected:
        for d in graph.parents(n):
            if d in where:
                sd, jd, id_ = where[d]
                sn, jn, in_ = where[n]
                assert sd < sn or (sd == sn and jd == jn and id_ < in_), (d, n, stages)


@given(dags(max_layers=40), st.data(), st.integers(1, 6), st.integers(1, 5))
def test_packed_stages_hold_everything_once_and_respect_every_edge(
    layers: list[ImageLayer], data: st.DataObject, k: int, p: int
) -> None:
    graph = LayerGraph.from_layers(layers)
    changed = data.draw(st.lists(st.sampled_from([x.name for x in layers]), min_size=1, max_size=3))
    affected = DependencyResolver(graph).rebuild_affected_layers(changed)
    stages = pack_stages(affected, graph.parents, max_stages=k, max_parallel=p)
    check(graph, affected, stages, k, p)


def test_enough_stages_keep_one_layer_per_job() -> None:
    graph = LayerGraph.from_layers(
        [
            ImageLayer(name="base", base="scratch"),
            ImageLayer(name="a", parent="base"),
            ImageLayer(name="b", parent="base"),
            ImageLayer(name="c", parent="a"),
        ]
    )
    order = graph.topological_order()
    assert pack_stages(order, graph.parents, max_stages=3, max_parallel=256) == [
        [("base",)],
        [("a",), ("b",)],
        [("c",)],
    ]
    # two stages for three waves: the chain a -> c shares a job
    assert pack_stages(order, graph.parents, max_stages=2, max_parallel=256) == [
        [("base",)],
        [("a", "c"), ("b",)],
    ]
    assert pack_stages(order, graph.parents, max_stages=1, max_parallel=256) == [
        [("base", "a", "b", "c")],
    ]


def test_wide_stage_is_merged_not_dropped() -> None:
    layers = [ImageLayer(name="base", base="scratch")]
    layers += [ImageLayer(name=f"l{i:03}", parent="base") for i in range(300)]
    graph = LayerGraph.from_layers(layers)
    stages = pack_stages(graph.topological_order(), graph.parents, max_stages=2, max_parallel=256)
    assert len(stages[1]) == 256
    assert sum(len(j) for j in stages[1]) == 300


def test_a_wide_fan_out_is_not_chained_to_its_root() -> None:
    children = [f"c{i:03}" for i in range(300)]
    chain = [f"x{i:02}" for i in range(12)]
    parents = {"root": [], **{c: ["root"] for c in children}}
    parents.update({x: [chain[i - 1] if i else "c000"] for i, x in enumerate(chain)})
    order = ["root", *children, *chain]
    stages = pack_stages(order, parents.__getitem__, max_stages=4, max_parallel=256)
    assert stages[0] == [("root",)]
    assert max(len(job) for stage in stages for job in stage) < 20


@given(dags(max_layers=40), st.data(), st.integers(1, 6), st.integers(2, 5))
def test_packed_jobs_never_mix_runners_and_still_respect_every_edge(
    layers: list[ImageLayer], data: st.DataObject, k: int, p: int
) -> None:
    """Each layer's runner drawn at random (an edge may join two runners, as FROM
    --platform can): a job holds one runner's layers, an edge between runners crosses a
    stage, every edge is kept. Only such edges may need more than `k` stages."""
    graph = LayerGraph.from_layers(layers)
    runner = {x.name: data.draw(st.sampled_from(["amd64", "arm64"])) for x in layers}
    changed = data.draw(st.lists(st.sampled_from([x.name for x in layers]), min_size=1, max_size=3))
    affected = DependencyResolver(graph).rebuild_affected_layers(changed)
    stages = pack_stages(
        affected, graph.parents, max_stages=k, max_parallel=p, runner=runner.__getitem__
    )
    crossing = any(runner[d] != runner[n] for n in affected for d in graph.parents(n))
    check(graph, affected, stages, len(stages) if crossing else k, p)
    for stage in stages:
        for job in stage:
            assert len({runner[n] for n in job}) == 1, job
