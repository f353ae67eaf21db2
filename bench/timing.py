"""What the benchmarks share: the best of several timed runs, and a fast repository."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

# `ci-layers plan` of the last commit, in a fresh process as CI runs it
PLAN = [sys.executable, "-m", "ci_layers.cli", "plan", "--format", "json"]
PLAN += ["--base", "HEAD~1", "--head", "HEAD"]


def best(cmd: list[str], cwd: Path, repeat: int) -> float:
    """Seconds of the fastest of `repeat` runs of `cmd` (output discarded)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return min(times)


def fast_import(root: Path, stream: str) -> None:
    """A repository at `root` made from a `git fast-import` stream, main checked out."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    subprocess.run(["git", "fast-import", "--quiet"], cwd=root, input=stream.encode(), check=True)
    subprocess.run(["git", "checkout", "-q", "main"], cwd=root, check=True)
