"""Squashing a stack of layers: time against the number of files (goal: linear).

A stack of four layers over N files in folders of 100: the files, then a quarter of them
rewritten, a tenth removed (whiteouts) and a folder made opaque, then links to a tenth
(which a last layer replaces). `squash_image` merges the four into one layer; so does
the baseline, `write_layer` of the merged result's entries as one layer (the cost of
writing the output, which no merge avoids), in the same run. Printed: both times at N and
4N, the merge's growth for 4x the files (linear: about 4; quadratic: 16) and its ratio to
the baseline.

    .venv/bin/python bench/squash_bench.py [--files 6000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from timing import best_of

from ci_layers.build.squash import squash_image
from ci_layers.build.tarwriter import DIR, FILE, HARDLINK, OPAQUE, WHITEOUT, Entry, write_layer
from ci_layers.oci.manifest import History, ImageManifest
from ci_layers.oci.store import OciStore


def _stack(n: int) -> list[list[Entry]]:
    folders = [f"d{i // 100}" for i in range(n)]
    paths = [f"{folders[i]}/f{i}" for i in range(n)]
    dirs = [Entry(d, DIR, 0o755) for d in sorted(set(folders))]
    first = [*dirs, *(Entry(p, FILE, data=b"v1 " + p.encode()) for p in paths)]
    second = [
        *dirs,
        *(Entry(p, FILE, data=b"v2 " + p.encode()) for p in paths[::4]),
        *(Entry(p, WHITEOUT) for p in paths[1::10]),
        Entry(folders[-1], OPAQUE),
    ]
    linked = [p for p in paths[2::10] if not p.startswith(folders[-1] + "/")]
    third = [
        *dirs,
        *(Entry(p, FILE, data=b"v3 " + p.encode()) for p in linked),
        *(Entry(p + ".link", HARDLINK, target=p) for p in linked),
    ]
    fourth = [*dirs, *(Entry(p, FILE, data=b"v4") for p in linked)]
    return [first, second, third, fourth]


def _image(store: OciStore, stack: list[list[Entry]]) -> tuple:
    layers = tuple(write_layer(entries, store) for entries in stack)
    base = ImageManifest.scratch()
    history = tuple(History(created_by=f"layer {i}") for i in range(len(layers)))
    image = ImageManifest(base.config, layers, history)
    return image.write(store)


def measure(n: int, repeat: int) -> tuple[float, float]:
    """(squash seconds, baseline seconds) at n files."""
    with tempfile.TemporaryDirectory() as tmp:
        store = OciStore(Path(tmp) / "s")
        stack = _stack(n)
        desc = _image(store, stack)

        def squash() -> None:
            squash_image(store, desc, shared=0, sizes_changes=None, max_layers=1)

        entries = {e.name: e for layer in stack for e in layer if e.kind in (DIR, FILE)}
        squashed = best_of(squash, repeat)
        baseline = best_of(lambda: write_layer(list(entries.values()), store), repeat)
        return squashed, baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=6000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    small, small_base = measure(args.files, args.repeat)
    big, big_base = measure(4 * args.files, args.repeat)
    print(f"{'files':>8}  {'squash':>8}  {'one write_layer':>15}  ratio")
    for n, s, b in ((args.files, small, small_base), (4 * args.files, big, big_base)):
        print(f"{n:>8}  {s:>7.2f}s  {b:>14.2f}s  {s / b:5.2f}")
    print(f"growth for 4x the files: squash {big / small:.2f} (linear 4, quadratic 16), ", end="")
    print(f"baseline {big_base / small_base:.2f}")


if __name__ == "__main__":
    main()
