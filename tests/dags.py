"""Hypothesis strategies for random layer DAGs, and brute-force oracles."""

from __future__ import annotations

from hypothesis import strategies as st

from ci_layers.graph import CopySpec, ImageLayer


@st.composite
def dags(draw: st.DrawFn, *, max_layers: int = 25) -> list[ImageLayer]:
    """Layers with a parent (or a base image) and sometimes copies from other layers.

    Names are shuffled so the order of definition says nothing about the order of build.
    """
    n = draw(st.integers(1, max_layers))
    names = draw(st.permutations([f"l{i}" for i in range(n)]))
    layers = []
    for i in range(n):
        parent = draw(st.one_of(st.none(), st.integers(0, i - 1))) if i else None
        extra = draw(st.lists(st.integers(0, i - 1), max_size=2, unique=True)) if i else []
        copies = tuple(
            CopySpec(src=("/out",), dest=f"/from-{j}", from_layer=names[j]) for j in extra
        )
        layers.append(
            ImageLayer(
                name=names[i],
                parent=None if parent is None else names[parent],
                base="scratch" if parent is None else None,
                run=(f"build {i}",),
                copy=copies,
            )
        )
    return draw(st.permutations(layers))


def brute_descendants(layers: list[ImageLayer], start: set[str]) -> set[str]:
    """Fixed point of "x is affected if any dependency of x is affected"."""
    affected = set(start)
    changed = True
    while changed:
        changed = False
        for layer in layers:
            if layer.name not in affected and set(layer.dependencies) & affected:
                affected.add(layer.name)
                changed = True
    return affected


def brute_ancestors(layers: list[ImageLayer], start: set[str]) -> set[str]:
    by_name = {x.name: x for x in layers}
    needed = set(start)
    changed = True
    while changed:
        changed = False
        for name in list(needed):
            for dep in by_name[name].dependencies:
                if dep not in needed:
                    needed.add(dep)
                    changed = True
    return needed
