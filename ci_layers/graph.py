"""ImageLayer and LayerGraph: the definitions and the DAG they form.

A LayerGraph only ever holds a DAG: `add_layer` refuses a layer whose dependencies are
not in the graph yet, so a cycle cannot be built one layer at a time. `from_layers`
takes definitions in any order, finds every cycle with `graphlib`, and adds them in a
topological order.
"""

from __future__ import annotations

import graphlib
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from .errors import CycleError, DuplicateLayer, Location, UnknownParent
from .pickling import slotted_reduce

__all__ = ["CopySpec", "DockerfileNode", "ImageLayer", "LayerGraph", "find_cycles"]


@dataclass(frozen=True, slots=True)
class CopySpec:
    """One `copy` entry: repository paths (or paths in `from_layer`) to `dest`."""

    __reduce__ = slotted_reduce

    src: tuple[str, ...]
    dest: str
    chmod: str | None = None
    chown: str | None = None
    from_layer: str | None = None
    exclude: tuple[str, ...] = ()  # gitignore-style, relative to each src
    src_where: tuple[Location, ...] = field(default=(), compare=False)  # each src's place


@dataclass(frozen=True, slots=True)
class DockerfileNode:
    """What a Dockerfile-built layer reads and says (see discover.py)."""

    __reduce__ = slotted_reduce

    file: str  # repository path of the Dockerfile
    context: str  # repository path of the build context ("" is the root)
    instructions: tuple[tuple[int, str, tuple[str, ...]], ...]  # (line, text, heredocs)
    reads: tuple[tuple[int, str, tuple[str, ...], tuple[str, ...]], ...]  # + --exclude
    ignore_file: str | None = None
    ignore: tuple[str, ...] = ()  # .dockerignore patterns, as Docker reads them
    externals: tuple[str, ...] = ()  # images from outside the repository
    notes: tuple[str, ...] = ()  # non-reproducible inputs (ADD <url>, git sources)
    tags: tuple[str, ...] = ()
    bases: tuple[tuple[str, str], ...] = ()  # (reference as written, in-repo image it names)
    base_args: tuple[tuple[str, str], ...] = ()  # (reference, the global ARG that wrote it)
    env: tuple[tuple[str, str], ...] = ()  # the ENV the built image carries
    onbuild: tuple[str, ...] = ()  # the ONBUILD triggers it carries, for images built on it
    warnings: tuple[tuple[int, str], ...] = ()  # (line, message) found while reading it
    target: str | None = None  # the stage built; None: the last
    declared: frozenset[str] = frozenset()  # the build args an ARG (or BuildKit) declares
    contexts: tuple[tuple[str, str], ...] = ()  # a bake target's named contexts
    inline: str | None = None  # a bake target's dockerfile-inline text
    local: bool = False  # a bake target with no tags: built where it is used, never pushed


@dataclass(frozen=True, slots=True)
class ImageLayer:
    """One layer definition. Its name is not part of what it builds (see keys.py)."""

    __reduce__ = slotted_reduce

    name: str
    parent: str | None = None
    base: str | None = None  # `from:` in the spec: an external image reference or "scratch"
    run: tuple[str, ...] = ()
    copy: tuple[CopySpec, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    workdir: str | None = None
    user: str | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    labels: tuple[tuple[str, str], ...] = ()
    build_args: tuple[tuple[str, str], ...] = ()
    inputs: tuple[str, ...] = ()
    network: str | None = None  # `run`'s network: None (the default) or "none"
    timeout: int | None = None  # seconds `run` may take (None: the build's default)
    needs: tuple[str, ...] = ()  # other layers it reads (a Dockerfile's other stages' images)
    dockerfile: DockerfileNode | None = None
    where: Location | None = field(default=None, compare=False)
    # built for a declared platform (None: no `platforms:`, the default one); `image` is
    # what it is one platform's build of, when the node is named for its platform
    platform: str | None = None
    image: str | None = None

    @property
    def origin(self) -> str:
        """The layer or image this node builds, named without its platform."""
        return self.image or self.name

    @property
    def dependencies(self) -> tuple[str, ...]:
        """Layers that must be built first: the parent, then every `copy.from_layer`."""
        deps = [self.parent] if self.parent else []
        for c in self.copy:
            if c.from_layer and c.from_layer not in deps:
                deps.append(c.from_layer)
        deps += [n for n in self.needs if n not in deps]
        return tuple(deps)


class LayerGraph:
    """A DAG of ImageLayers, read-only once built.

    The topological order is by depth (longest path from a root), then by name: the
    order `graphlib` hands out ready layers in, made independent of the spec's order.
    """

    def __init__(self) -> None:
        self._layers: dict[str, ImageLayer] = {}
        self._children: dict[str, list[str]] = {}
        self._depth: dict[str, int] = {}
        self._order: list[str] | None = None
        self._position: dict[str, int] | None = None

    @classmethod
    def from_layers(cls, layers: Iterable[ImageLayer]) -> LayerGraph:
        """Build a graph from definitions in any order; raise the first problem found."""
        by_name: dict[str, ImageLayer] = {}
        for layer in layers:
            if layer.name in by_name:
                raise DuplicateLayer(layer.name)
            by_name[layer.name] = layer
        for layer in by_name.values():
            for dep in layer.dependencies:
                if dep not in by_name:
                    raise UnknownParent(layer.name, dep)
        sorter = graphlib.TopologicalSorter({n: x.dependencies for n, x in by_name.items()})
        try:
            order = list(sorter.static_order())
        except graphlib.CycleError as exc:
            raise CycleError(_cycle_path(exc)) from None
        graph = cls()
        for name in order:
            graph.add_layer(by_name[name])
        return graph

    def add_layer(self, layer: ImageLayer) -> None:
        """Add a layer whose dependencies are all in the graph already."""
        if layer.name in self._layers:
            raise DuplicateLayer(layer.name)
        deps = layer.dependencies
        for dep in deps:
            if dep == layer.name:
                raise CycleError([layer.name, layer.name])
            if dep not in self._layers:
                raise UnknownParent(layer.name, dep)
        self._layers[layer.name] = layer
        self._children[layer.name] = []
        for dep in deps:
            self._children[dep].append(layer.name)
        self._depth[layer.name] = 1 + max((self._depth[d] for d in deps), default=-1)
        self._order = self._position = None

    def __contains__(self, name: object) -> bool:
        return name in self._layers

    def __len__(self) -> int:
        return len(self._layers)

    def __iter__(self) -> Iterator[str]:
        return iter(self.topological_order())

    def __getitem__(self, name: str) -> ImageLayer:
        return self._layers[name]

    @property
    def layers(self) -> Mapping[str, ImageLayer]:
        return self._layers

    def parents(self, name: str) -> tuple[str, ...]:
        return self._layers[name].dependencies

    def children(self, name: str) -> tuple[str, ...]:
        return tuple(sorted(self._children[name]))

    def depth(self, name: str) -> int:
        return self._depth[name]

    def ancestors(self, name: str) -> set[str]:
        """Every layer `name` is built on, transitively (not `name` itself)."""
        return self._reach([name], lambda n: self._layers[n].dependencies) - {name}

    def descendants(self, name: str) -> set[str]:
        """Every layer built on `name`, transitively (not `name` itself)."""
        return self._reach([name], self._children.__getitem__) - {name}

    def closure_down(self, names: Iterable[str]) -> set[str]:
        """`names` and all their descendants."""
        return self._reach(names, self._children.__getitem__)

    def closure_up(self, names: Iterable[str]) -> set[str]:
        """`names` and all their ancestors."""
        return self._reach(names, lambda n: self._layers[n].dependencies)

    def roots(self) -> list[str]:
        return [n for n in self.topological_order() if not self._layers[n].dependencies]

    def leaves(self) -> list[str]:
        return [n for n in self.topological_order() if not self._children[n]]

    def topological_order(self) -> list[str]:
        if self._order is None:
            depth = self._depth
            self._order = sorted(self._layers, key=lambda n: (depth[n], n))
        return list(self._order)

    def sort(self, names: Iterable[str]) -> list[str]:
        """`names` in the graph's topological order."""
        if self._order is None:
            self.topological_order()
        assert self._order is not None
        wanted = names if isinstance(names, set | frozenset) else set(names)
        if len(wanted) * 8 > len(self._order):  # a large share: one pass beats a sort
            return [n for n in self._order if n in wanted]
        if self._position is None:
            self._position = {n: i for i, n in enumerate(self._order)}
        return sorted(wanted, key=self._position.__getitem__)

    @staticmethod
    def _reach(start: Iterable[str], step: object) -> set[str]:
        seen = set(start)
        queue = deque(seen)
        pop, push, add = queue.popleft, queue.append, seen.add
        while queue:
            for nxt in step(pop()):  # type: ignore[operator]
                if nxt not in seen:
                    add(nxt)
                    push(nxt)
        return seen


def _cycle_path(exc: graphlib.CycleError) -> list[str]:
    # graphlib lists the cycle parent-first (each node is depended on by the next), the
    # way layers are built: a -> b means b is built on a.
    return list(exc.args[1])


def find_cycles(deps: Mapping[str, Iterable[str]], *, limit: int = 20) -> list[list[str]]:
    """Every independent cycle among `deps` (name -> dependency names), up to `limit`.

    graphlib reports one cycle per run; cutting one edge of it and running again finds
    the next, so a spec with several cycles is reported in one pass.
    """
    edges = {n: [d for d in ds if d in deps] for n, ds in deps.items()}
    cycles: list[list[str]] = []
    while len(cycles) < limit:
        try:
            graphlib.TopologicalSorter(edges).prepare()
            return cycles
        except graphlib.CycleError as exc:
            cycle = _cycle_path(exc)
            cycles.append(cycle)
            # cycle is parent-first: cycle[1] depends on cycle[0]; cut that edge.
            edges[cycle[1]] = [d for d in edges[cycle[1]] if d != cycle[0]]
    return cycles
