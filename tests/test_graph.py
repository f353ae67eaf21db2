from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ci_layers.errors import CycleError, DuplicateLayer, UnknownLayer, UnknownParent
from ci_layers.graph import CopySpec, ImageLayer, LayerGraph, find_cycles
from ci_layers.resolver import DependencyResolver

from .dags import brute_ancestors, brute_descendants, dags


def layer(name: str, parent: str | None = None, *copies_from: str) -> ImageLayer:
    return ImageLayer(
        name=name,
        parent=parent,
        base=None if parent else "scratch",
        copy=tuple(CopySpec(src=("/x",), dest="/x", from_layer=c) for c in copies_from),
    )


@pytest.fixture
def diamond() -> LayerGraph:
    # base -> py -> deps -> app, base -> node -> web, app copies from web
    return LayerGraph.from_layers(
        [
            layer("app", "deps", "web"),
            layer("deps", "py"),
            layer("web", "node"),
            layer("py", "base"),
            layer("node", "base"),
            layer("base"),
            layer("tools"),
        ]
    )


def test_queries(diamond: LayerGraph) -> None:
    assert diamond.parents("app") == ("deps", "web")
    assert diamond.children("base") == ("node", "py")
    assert diamond.ancestors("app") == {"deps", "py", "web", "node", "base"}
    assert diamond.descendants("node") == {"web", "app"}
    assert diamond.roots() == ["base", "tools"]
    assert diamond.leaves() == ["tools", "app"]
    assert diamond.topological_order() == ["base", "tools", "node", "py", "deps", "web", "app"]


def test_add_layer_refuses_duplicates_unknown_parents_and_self_loops() -> None:
    g = LayerGraph()
    g.add_layer(layer("base"))
    with pytest.raises(DuplicateLayer, match="'base' is defined twice"):
        g.add_layer(layer("base"))
    with pytest.raises(UnknownParent, match="'app' depends on unknown layer 'nope'"):
        g.add_layer(layer("app", "nope"))
    with pytest.raises(CycleError, match="loop -> loop"):
        g.add_layer(layer("loop", "loop"))
    assert len(g) == 1


def test_from_layers_reports_the_whole_cycle() -> None:
    with pytest.raises(CycleError) as info:
        LayerGraph.from_layers([layer("a", "c"), layer("b", "a"), layer("c", "b"), layer("r")])
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"a", "b", "c"}
    assert "dependency cycle: " in str(info.value)


def test_find_cycles_finds_each_independent_cycle() -> None:
    deps = {"a": ["b"], "b": ["a"], "x": ["z"], "y": ["x"], "z": ["y"], "ok": []}
    cycles = find_cycles(deps)
    assert sorted(sorted(set(c)) for c in cycles) == [["a", "b"], ["x", "y", "z"]]


def test_resolver(diamond: LayerGraph) -> None:
    r = DependencyResolver(diamond)
    assert r.build_order("web") == ["base", "node", "web"]
    assert r.rebuild_affected_layers("py") == ["py", "deps", "app"]
    assert r.rebuild_affected_layers(["node", "py"]) == ["node", "py", "deps", "web", "app"]
    assert r.stages(["node", "py", "deps", "web", "app"]) == [
        ["node", "py"],
        ["deps", "web"],
        ["app"],
    ]
    # a dependency outside the set counts as built: deps and web can both go first
    assert r.stages(["deps", "web", "app"]) == [["deps", "web"], ["app"]]
    with pytest.raises(UnknownLayer, match="did you mean 'deps'"):
        r.rebuild_affected_layers("dpes")


@given(dags(), st.data())
def test_affected_set_is_the_reachability_closure(
    layers: list[ImageLayer], data: st.DataObject
) -> None:
    graph = LayerGraph.from_layers(layers)
    names = [x.name for x in layers]
    changed = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=4))
    affected = DependencyResolver(graph).rebuild_affected_layers(changed)
    assert set(affected) == brute_descendants(layers, set(changed))
    assert len(affected) == len(set(affected))
    assert_respects_edges(graph, affected)


@given(dags(), st.data())
def test_build_order_is_exactly_what_the_target_needs(
    layers: list[ImageLayer], data: st.DataObject
) -> None:
    graph = LayerGraph.from_layers(layers)
    target = data.draw(st.sampled_from([x.name for x in layers]))
    order = DependencyResolver(graph).build_order(target)
    assert set(order) == brute_ancestors(layers, {target})
    assert order[-1] == target
    assert_respects_edges(graph, order)


@given(dags(), st.data())
def test_stages_partition_the_set_and_respect_every_edge(
    layers: list[ImageLayer], data: st.DataObject
) -> None:
    graph = LayerGraph.from_layers(layers)
    subset = data.draw(st.sets(st.sampled_from([x.name for x in layers]), min_size=1))
    stages = DependencyResolver(graph).stages(subset)
    flat = [n for stage in stages for n in stage]
    assert sorted(flat) == sorted(subset)
    wave = {n: i for i, stage in enumerate(stages) for n in stage}
    for n in subset:
        for dep in graph.parents(n):
            if dep in subset:
                assert wave[dep] < wave[n], (dep, n)
    # waves are as early as possible: a layer in wave k>0 has a dependency in wave k-1
    for n in subset:
        if wave[n]:
            assert any(wave.get(d) == wave[n] - 1 for d in graph.parents(n))


@given(dags())
def test_order_does_not_depend_on_definition_order(layers: list[ImageLayer]) -> None:
    a = LayerGraph.from_layers(layers).topological_order()
    b = LayerGraph.from_layers(list(reversed(layers))).topological_order()
    assert a == b
    assert_respects_edges(LayerGraph.from_layers(layers), a)


def assert_respects_edges(graph: LayerGraph, order: list[str]) -> None:
    pos = {n: i for i, n in enumerate(order)}
    for n in order:
        for dep in graph.parents(n):
            if dep in pos:
                assert pos[dep] < pos[n], (dep, n)
