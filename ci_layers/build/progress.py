"""What `ci-layers build` prints: a line per layer as it starts and ends (inside a
`::group::` fold under GitHub Actions, so the runtime's output folds with it), then a
summary table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from .builder import BuildResult

__all__ = ["BuildProgress", "human_bytes", "summary_table"]

STATUSES = ("built", "reused", "cached", "cut off")


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


class BuildProgress:
    def __init__(self, out: TextIO, *, actions: bool, total: int) -> None:
        self.out, self.actions, self.total = out, actions, total
        self.done = 0

    def __call__(self, name: str, event: str, result: BuildResult | None) -> None:
        if event == "building":
            if self.actions:
                self.out.write(f"::group::build {name}\n")
            self.out.write(f"[{self.done + 1}/{self.total}] building {name}\n")
        else:
            assert result is not None
            self.done += 1
            size = human_bytes(result.layer.descriptor.size) if result.layer else "no layer"
            if event in ("reused", "cached"):
                where = "from the registry" if event == "cached" else "reused"
                self.out.write(f"[{self.done}/{self.total}] {name}: {where} ({size})\n")
            elif event == "cut off":
                self.out.write(
                    f"[{self.done}/{self.total}] {name}: cut off: its parent was rebuilt to the "
                    f"same bytes, so the earlier build of this layer serves ({size}, no run)\n"
                )
                if self.actions:
                    self.out.write("::endgroup::\n")
            else:
                self.out.write(
                    f"[{self.done}/{self.total}] {name}: built, {size} in {result.seconds:.1f} s\n"
                )
                if self.actions:
                    self.out.write("::endgroup::\n")
        self.out.flush()

    def failed(self) -> None:
        if self.actions:
            self.out.write("::endgroup::\n")


def summary_table(results: Sequence[BuildResult]) -> str:
    rows = [("layer", "status", "layer size", "seconds", "image")]
    for r in results:
        size = human_bytes(r.layer.descriptor.size) if r.layer else "-"
        seconds = f"{r.seconds:.1f}" if r.status in ("built", "cut off") else "-"
        rows.append((r.name, r.status, size, seconds, f"sha256:{r.manifest.digest.short}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    counts = {s: sum(1 for r in results if r.status == s) for s in STATUSES}
    line = f"{counts['built']} built, {counts['reused'] + counts['cached']} reused"
    if counts["cached"]:
        line += f" ({counts['cached']} from the registry)"
    if counts["cut off"]:
        line += f", {counts['cut off']} cut off (parent rebuilt to the same bytes)"
    lines.append(line)
    return "\n".join(lines)
