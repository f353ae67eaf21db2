"""What the benchmarks share: the best of several timed runs, and a fast repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# `ci-layers plan` of the last commit, in a fresh process as CI runs it
PLAN = [sys.executable, "-m", "ci_layers.cli", "plan", "--format", "json"]
PLAN += ["--base", "HEAD~1", "--head", "HEAD"]


def best(
    cmd: list[str],
    cwd: Path,
    repeat: int,
    *,
    env: dict[str, str] | None = None,
    before: Callable[[], None] | None = None,
) -> float:
    """Seconds of the fastest of `repeat` runs of `cmd` (output discarded); `before`
    runs, untimed, ahead of each."""
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - start)
    return min(times)


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Seconds of the fastest of `repeat` calls of `fn`, in this process."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def fast_import(root: Path, stream: str) -> None:
    """A repository at `root` made from a `git fast-import` stream, main checked out."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    subprocess.run(["git", "fast-import", "--quiet"], cwd=root, input=stream.encode(), check=True)
    subprocess.run(["git", "checkout", "-q", "main"], cwd=root, check=True)


def cache_env(folder: Path | None) -> dict[str, str]:
    """The environment of a plan keeping its work in `folder` (memo.py); None: none kept."""
    return {**os.environ, "CI_LAYERS_CACHE_DIR": str(folder) if folder else "off"}


def seeded(root: Path, folder: Path) -> Callable[[], None]:
    """An empty `folder` holding only what the base's own plan kept (as CI restores it
    with actions/cache): a pull request's base was once a head."""

    def seed() -> None:
        shutil.rmtree(folder, ignore_errors=True)
        base_only = [*PLAN[:-4], "--base", "HEAD~1", "--head", "HEAD~1"]
        subprocess.run(
            base_only, cwd=root, check=True, stdout=subprocess.DEVNULL, env=cache_env(folder)
        )

    return seed
