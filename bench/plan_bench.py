"""`ci-layers plan` on a large generated repository, next to `git diff` of the same range.

5,000 layers and 200,000 files; the head commit changes 20,000 of them. Prints the time
of the plan (a fresh process, as CI runs it), of `git diff --name-status -z` on the same
range in the same run, their ratio (goal: <= 1.5, the diff itself being the floor), and
the plan's peak memory.

    .venv/bin/python bench/plan_bench.py [--layers 5000 --files 200000 --changed 20000]
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
from timing import PLAN, best, fast_import


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=5000)
    ap.add_argument("--files", type=int, default=200_000)
    ap.add_argument("--changed", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ci-layers-bench-") as tmp:
        root = Path(tmp) / "repo"
        t = time.perf_counter()
        generate(root, args.layers, args.files, args.changed, seed=1)
        print(
            f"generated {args.layers} layers, {args.files} files, {args.changed} changed "
            f"in {time.perf_counter() - t:.1f}s"
        )
        diff = ["git", "diff", "--name-status", "-z", "HEAD~1", "HEAD"]
        t_diff = best(diff, root, args.repeat)
        plan = PLAN
        t_plan = best(plan, root, args.repeat)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, largest child
        out = subprocess.run(plan, cwd=root, check=True, capture_output=True, text=True).stdout
        affected = len(json.loads(out)["affected"])
        print(f"git diff --name-status -z: {t_diff:.3f}s")
        print(f"ci-layers plan:            {t_plan:.3f}s  ({affected} layers to rebuild)")
        print(f"ratio plan/diff:           {t_plan / t_diff:.2f}  (goal <= 1.5)")
        print(f"peak memory (largest child process): {peak / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
