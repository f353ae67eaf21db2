"""`ci-layers plan` on a large generated repository, next to `git diff` of the same range.

5,000 layers and 200,000 files; the head commit changes 20,000 of them. Prints the time
of the plan (a fresh process, as CI runs it) with nothing kept from earlier runs and
with what the base's own plan kept (memo.py, as `actions/cache` restores it), of
`git diff --name-status -z` on the same range in the same run, their ratios (goal: <= 3),
and the plan's peak memory (goal: <= 200 MiB). `--sweep` runs 1k, 5k, 20k and 50k
layers and prints the time per layer (goal: the 50k run <= 12x the 5k run).

    .venv/bin/python bench/plan_bench.py [--layers 5000 --files 200000 --changed 20000]
    .venv/bin/python bench/plan_bench.py --sweep
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from timing import PLAN, best, cache_env, fast_import, seeded


def generate(root: Path, layers: int, files: int, changed: int, seed: int) -> None:
    rng = random.Random(seed)
    spec: dict = {"version": 1, "global_inputs": ["/ci/*.sh"], "layers": {}}
    for i in range(layers):
        d: dict = {"run": [f"make layer-{i}"]}
        if i == 0 or rng.random() < 0.02:
            d["from"] = "debian@sha256:" + "a" * 64
        else:
            d["parent"] = f"l{rng.randrange(max(0, i - 100), i)}"
        d["copy"] = [{"src": f"layers/l{i}/src", "dest": "/app"}]
        if i % 10 == 0:
            d["inputs"] = [f"/layers/l{i}/lock.txt"]
        spec["layers"][f"l{i}"] = d
    out: list[str] = []
    w = out.append

    def blob(path: str, text: str) -> None:
        data = text.encode()
        w(f"M 100644 inline {path}\ndata {len(data)}\n{text}")

    w("commit refs/heads/main\ncommitter B <b@x> 1700000000 +0000\ndata 4\nbase\n")
    text = yaml.safe_dump(spec, sort_keys=False)
    blob("ci-layers.yaml", text)
    blob("ci/build.sh", "#!/bin/sh\n")
    paths = []
    for f in range(files):
        layer = f % layers
        p = f"layers/l{layer}/src/d{f % 7}/f{f}.txt"
        paths.append(p)
        blob(p, f"content {f}\n")
    w("\ncommit refs/heads/main\ncommitter B <b@x> 1700000100 +0000\ndata 7\nchange\n")
    for f in rng.sample(range(files), changed):
        blob(paths[f], f"changed {f}\n")
    w("\n")
    fast_import(root, "".join(out))


def run(layers: int, files: int, changed: int, repeat: int) -> tuple[float, float, float]:
    """(seconds of git diff, of a plan with nothing kept, of a plan with the base kept)."""
    with tempfile.TemporaryDirectory(prefix="ci-layers-bench-") as tmp:
        root = Path(tmp) / "repo"
        t = time.perf_counter()
        generate(root, layers, files, changed, seed=1)
        print(
            f"generated {layers} layers, {files} files, {changed} changed "
            f"in {time.perf_counter() - t:.1f}s"
        )
        diff = ["git", "diff", "--name-status", "-z", "HEAD~1", "HEAD"]
        t_diff = best(diff, root, repeat)
        t_cold = best(PLAN, root, repeat, env=cache_env(None))
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, largest child
        kept = Path(tmp) / "cache"
        t_warm = best(PLAN, root, repeat, env=cache_env(kept), before=seeded(root, kept))
        out = subprocess.run(
            PLAN, cwd=root, check=True, capture_output=True, text=True, env=cache_env(None)
        ).stdout
        affected = len(json.loads(out)["affected"])
        print(f"git diff --name-status -z:  {t_diff:.3f}s")
        print(f"ci-layers plan, none kept:  {t_cold:.3f}s  ({affected} layers to rebuild)")
        print(f"ci-layers plan, base kept:  {t_warm:.3f}s  (what the base's own plan kept)")
        print(
            f"ratio plan/diff:            {t_cold / t_diff:.2f} none kept, "
            f"{t_warm / t_diff:.2f} base kept  (goal <= 3)"
        )
        print(f"peak memory (largest child process): {peak / 1024:.0f} MiB  (goal <= 200)")
        return t_diff, t_cold, t_warm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=5000)
    ap.add_argument("--files", type=int, default=200_000)
    ap.add_argument("--changed", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--sweep", action="store_true", help="1k, 5k, 20k and 50k layers: time per layer"
    )
    args = ap.parse_args()
    if not args.sweep:
        run(args.layers, args.files, args.changed, args.repeat)
        return
    results = {n: run(n, args.files, args.changed, args.repeat) for n in SWEEP}
    print("layers  none kept  per layer    base kept  per layer")
    for n, (_diff, cold, warm) in results.items():
        print(
            f"{n:6d}  {cold:8.2f}s  {cold / n * 1e6:6.0f} us  "
            f"{warm:8.2f}s  {warm / n * 1e6:6.0f} us"
        )
    print(
        f"50k run / 5k run: {results[50_000][1] / results[5_000][1]:.1f} none kept, "
        f"{results[50_000][2] / results[5_000][2]:.1f} base kept  (goal <= 12)"
    )


SWEEP = (1_000, 5_000, 20_000, 50_000)

if __name__ == "__main__":
    main()
