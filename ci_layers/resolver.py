"""DependencyResolver: what to build, in what order, in which parallel waves."""

from __future__ import annotations

import difflib
import graphlib
from collections.abc import Iterable

from .errors import UnknownLayer
from .graph import LayerGraph

__all__ = ["DependencyResolver"]


class DependencyResolver:
    """Answers ordering questions over one LayerGraph."""

    def __init__(self, graph: LayerGraph) -> None:
        self.graph = graph

    def build_order(self, target: str | Iterable[str]) -> list[str]:
        """What `target` needs, roots first, ending with the target(s); nothing else."""
        names = self._known(target)
        return self.graph.sort(self.graph.closure_up(names))

    def rebuild_affected_layers(self, changed: str | Iterable[str]) -> list[str]:
        """The changed layers and everything built on them, in build order; nothing else."""
        names = self._known(changed)
        return self.graph.sort(self.graph.closure_down(names))

    def stages(self, layers: Iterable[str]) -> list[list[str]]:
        """Split `layers` into waves: each layer comes after every dependency it has in the set.

        Dependencies outside the set are taken as already built. Each wave is one
        `graphlib` ready batch, i.e. a layer's wave is the longest chain below it.
        """
        subset = set(self._known(layers))
        sorter = graphlib.TopologicalSorter(
            {n: [d for d in self.graph.parents(n) if d in subset] for n in subset}
        )
        sorter.prepare()
        waves: list[list[str]] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready())
            waves.append(ready)
            sorter.done(*ready)
        return waves

    def _known(self, names: str | Iterable[str]) -> list[str]:
        items = [names] if isinstance(names, str) else list(names)
        unknown = [
            (name, next(iter(difflib.get_close_matches(name, list(self.graph.layers), n=1)), None))
            for name in dict.fromkeys(items)
            if name not in self.graph
        ]
        if unknown:
            raise UnknownLayer(unknown)
        return items
