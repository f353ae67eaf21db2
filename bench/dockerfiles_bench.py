"""Discovery and planning over a generated tree of Dockerfiles, next to `git ls-files`.

2,000 Dockerfiles (`images/<name>/Dockerfile`, each FROM an earlier image or an external
base, each copying a few context files, some with a .dockerignore) and a commit that
changes 200 context files. Prints the time of `ci-layers plan` (a fresh process: discovery,
parsing, keys at both ends, the plan), of `git ls-files` on the same tree, and of
the floor any plan has: `git ls-tree -r` of head plus one `git cat-file --batch` of
every Dockerfile and .dockerignore (goal: plan <= 10x the floor, issue 25).

    .venv/bin/python bench/dockerfiles_bench.py [--images 2000]
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

from timing import PLAN, best, cache_env, fast_import, seeded

SPEC = """version: 1
dockerfiles:
  - path: "images/{name}/Dockerfile"
    image: "registry.example.com/bench/{name}"
"""


def generate(root: Path, images: int, changed: int, seed: int) -> None:
    rng = random.Random(seed)
    out: list[str] = []

    def blob(path: str, text: str) -> None:
        out.append(f"M 100644 inline {path}\ndata {len(text.encode())}\n{text}")

    out.append("commit refs/heads/main\ncommitter B <b@x> 1700000000 +0000\ndata 4\nbase\n")
    blob("ci-layers.yaml", SPEC)
    context_files = []
    for i in range(images):
        if i == 0 or rng.random() < 0.05:
            base = "debian:bookworm-slim@sha256:" + "a" * 64
        else:
            base = f"registry.example.com/bench/img{rng.randrange(max(0, i - 200), i)}"
        lines = [f"ARG BASE={base}", "FROM ${BASE}", "COPY app/ /app/", "COPY config.yaml /etc/"]
        lines.append(f"RUN make -C /app target-{i}")
        blob(f"images/img{i}/Dockerfile", "\n".join(lines) + "\n")
        if i % 3 == 0:
            blob(f"images/img{i}/.dockerignore", "**/*.md\ntests/\n")
        for f in range(4):
            path = f"images/img{i}/app/src{f}.py"
            blob(path, f"print({i}, {f})\n")
            context_files.append(path)
        blob(f"images/img{i}/config.yaml", f"id: {i}\n")
        blob(f"images/img{i}/README.md", "docs\n")
    out.append("\ncommit refs/heads/main\ncommitter B <b@x> 1700000100 +0000\ndata 7\nchange\n")
    for path in rng.sample(context_files, changed):
        blob(path, "changed\n")
    out.append("\n")
    fast_import(root, "".join(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--changed", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ci-layers-dfbench-") as tmp:
        root = Path(tmp) / "repo"
        generate(root, args.images, args.changed, seed=1)
        ls = best(["git", "ls-files"], root, args.repeat)
        floor = _best_floor(root, args.repeat)
        plan_cmd = PLAN
        t_plan = best(plan_cmd, root, args.repeat, env=cache_env(None))
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        kept = Path(tmp) / "cache"
        t_warm = best(plan_cmd, root, args.repeat, env=cache_env(kept), before=seeded(root, kept))
        out = subprocess.run(
            plan_cmd, cwd=root, check=True, capture_output=True, text=True, env=cache_env(None)
        )
        plan = json.loads(out.stdout)
        print(f"{args.images} Dockerfiles, {args.changed} changed context files")
        print(f"git ls-files:     {ls:.3f}s")
        print(
            f"ci-layers plan, none kept: {t_plan:.3f}s  ({len(plan['layers'])} images found, "
            f"{len(plan['affected'])} to rebuild)"
        )
        print(f"ci-layers plan, base kept: {t_warm:.3f}s  (what the base's own plan kept)")
        print(f"floor (ls-tree -r + one cat-file --batch of them): {floor:.3f}s")
        print(f"ratio plan/ls-files: {t_plan / ls:.1f}")
        print(
            f"ratio plan/floor:    {t_plan / floor:.2f} none kept, {t_warm / floor:.2f} base "
            "kept  (goal <= 10)"
        )
        print(f"peak memory (largest child process): {peak / 1024:.0f} MiB")


def _floor(root: Path) -> None:
    """What any plan must do: list head's tree, and read every Dockerfile and
    .dockerignore blob in one pipelined `git cat-file --batch`."""
    out = subprocess.run(
        ["git", "ls-tree", "-r", "-z", "HEAD"], cwd=root, check=True, capture_output=True
    ).stdout
    wanted = []
    for record in out.split(b"\0"):
        meta, _, path = record.partition(b"\t")
        name = path.rsplit(b"/", 1)[-1]
        if name == b"Dockerfile" or name == b".dockerignore" or name.endswith(b".Dockerfile"):
            wanted.append(meta.split(b" ")[2] + b"\n")
    subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=root,
        input=b"".join(wanted),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _best_floor(root: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        _floor(root)
        times.append(time.perf_counter() - start)
    return min(times)


if __name__ == "__main__":
    main()
