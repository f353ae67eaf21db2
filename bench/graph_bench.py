"""Core benchmark: load+validate, keys, affected and order on random DAGs.

Prints per-layer cost at 1k, 10k and 100k layers, and ratios against networkx
(`descendants`, `topological_sort`) measured in the same run on the same DAG:
ratio < 1 means ci-layers is faster. networkx is the baseline only.

    .venv/bin/python bench/graph_bench.py [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import random
import time

import networkx as nx
import yaml
from timing import best_of

from ci_layers.keys import compute_keys
from ci_layers.repo import RepoFiles, blob_id
from ci_layers.resolver import DependencyResolver
from ci_layers.spec import parse_spec


def make_spec(n: int, rng: random.Random) -> tuple[str, RepoFiles]:
    """A layered random DAG: ~1% roots, each other layer on a recent earlier layer, and
    one in ten copying from another; each layer copies its own directory of 3 files."""
    layers: dict[str, dict] = {}
    entries: dict[str, str] = {}
    for i in range(n):
        d: dict = {}
        if i == 0 or rng.random() < 0.01:
            d["from"] = "debian@sha256:" + "a" * 64
        else:
            d["parent"] = f"layer-{rng.randrange(max(0, i - 50), i)}"
        copies = [{"src": f"src/l{i}", "dest": "/app"}]
        if i > 1 and rng.random() < 0.1:
            copies.append(
                {"src": "/out", "dest": "/opt", "from_layer": f"layer-{rng.randrange(i)}"}
            )
        d["copy"] = copies
        d["run"] = [f"make -C /app target-{i}"]
        layers[f"layer-{i}"] = d
        for f in range(3):
            entries[f"src/l{i}/f{f}.txt"] = "100644 " + blob_id(f"{i}/{f}".encode())
    text = yaml.safe_dump({"version": 1, "layers": layers}, sort_keys=False)
    return text, RepoFiles(entries)


def run_size(n: int, seed: int) -> None:
    rng = random.Random(seed)
    text, files = make_spec(n, rng)
    repeat = 3 if n <= 10000 else 1
    t0 = time.perf_counter()
    spec = parse_spec(text)
    t_load = time.perf_counter() - t0
    t_keys = best_of(lambda: compute_keys(spec, RepoFiles(files.entries)), repeat)
    graph = spec.graph
    resolver = DependencyResolver(graph)
    root = "layer-0"
    g = nx.DiGraph()
    for name in spec.layers:
        g.add_node(name)
        for dep in graph.parents(name):
            g.add_edge(dep, name)
    repeat = 5
    t_aff = best_of(lambda: resolver.rebuild_affected_layers(root), repeat)
    t_nx_desc = best_of(lambda: nx.descendants(g, root), repeat)
    affected = resolver.rebuild_affected_layers(root)
    assert set(affected) == nx.descendants(g, root) | {root}

    def order() -> None:
        graph._order = None  # measure the sort itself, not the cached result
        graph.topological_order()

    t_order = best_of(order, repeat)
    t_nx_topo = best_of(lambda: list(nx.topological_sort(g)), repeat)
    us = 1e6 / n
    print(
        f"{n:>8} {t_load * us:>11.1f}µs/l {t_keys * us:>7.1f}µs/l {t_aff * us:>7.2f}µs/l "
        f"{t_nx_desc * us:>7.2f}µs/l {t_aff / t_nx_desc:>6.2f} {t_order * us:>7.2f}µs/l "
        f"{t_nx_topo * us:>7.2f}µs/l {t_order / t_nx_topo:>6.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"{'layers':>8} {'load+validate':>14} {'keys':>10} {'affected':>10} {'nx.desc':>10} "
        f"{'ratio':>6} {'order':>10} {'nx.topo':>10} {'ratio':>6}"
    )
    for n in sizes:
        run_size(n, args.seed)
    print("ratio = ci-layers time / networkx time on the same DAG (below 1: faster)")


if __name__ == "__main__":
    main()
