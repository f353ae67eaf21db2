"""Go's `filepath.Match` patterns, the dialect of Docker's COPY sources, as regexes."""

from __future__ import annotations

import re

__all__ = ["GLOB_CHARS", "compile_segments"]

GLOB_CHARS = re.compile(r"[*?\[\\]")


def _segment(segment: str) -> str:
    """One path segment: * and ? never cross '/', [^...] negates, \\ escapes."""
    out, i, n = [], 0, len(segment)
    while i < n:
        ch = segment[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(segment[i]))
        elif ch == "[":
            end = segment.find("]", i + 1)
            if end == -1:
                raise ValueError(f"unterminated character class in '{segment}'")
            body = segment[i + 1 : end]
            neg = body.startswith("^")
            body = body[1:] if neg else body
            if not body:
                raise ValueError(f"empty character class in '{segment}'")
            body = "".join("\\" + c if c in "\\[]^" else c for c in body)
            out.append(f"[{'^' if neg else ''}{body}]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def compile_segments(segments: list[str]) -> re.Pattern[str]:
    """A regex for the '/'-joined segments; ValueError for a malformed pattern."""
    try:
        return re.compile("/".join(_segment(s) for s in segments))
    except re.error as exc:  # e.g. a reversed range [z-a]
        raise ValueError(f"bad pattern '{'/'.join(segments)}': {exc.msg}") from None
