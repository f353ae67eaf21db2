"""Go's `filepath.Match`, the dialect of Docker's COPY sources, matched as Go matches.

Go's algorithm, not a backtracking regex: a pattern is split into chunks, each a run of
literals, `?` and classes led by a `*`; a chunk is matched at its earliest place, and
only the last one looks further, so matching is linear in the name for each chunk
(Python's `re` took O(n^k) for k stars: `**********b` kept a plan busy for minutes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["GLOB_CHARS", "GoPattern", "compile_segments"]

GLOB_CHARS = re.compile(r"[*?\[\\]")

# A chunk's items: ("lit", c), ("any",), ("class", negated, ((lo, hi), ...)).
_Item = tuple[object, ...]


def _items(chunk: str, whole: str) -> list[_Item]:
    out: list[_Item] = []
    i, n = 0, len(chunk)
    while i < n:
        ch = chunk[i]
        if ch == "?":
            out.append(("any",))
        elif ch == "\\":
            if i + 1 >= n:
                raise ValueError(f"bad pattern '{whole}': trailing backslash")
            i += 1
            out.append(("lit", chunk[i]))
        elif ch == "[":
            i, item = _class(chunk, i, whole)
            out.append(item)
            continue
        else:
            out.append(("lit", ch))
        i += 1
    return out


def _class(chunk: str, i: int, whole: str) -> tuple[int, _Item]:
    """A `[...]` class at `i`: (the index after it, the item)."""
    i += 1
    negated = i < len(chunk) and chunk[i] == "^"
    i += negated
    ranges: list[tuple[str, str]] = []
    while True:
        if i >= len(chunk):
            raise ValueError(f"unterminated character class in '{whole}'")
        if chunk[i] == "]" and ranges:
            return i + 1, ("class", negated, tuple(ranges))
        lo, i = _class_char(chunk, i, whole)
        hi = lo
        if i < len(chunk) and chunk[i] == "-":
            hi, i = _class_char(chunk, i + 1, whole)
            if hi < lo:
                raise ValueError(f"bad pattern '{whole}': bad character range {lo}-{hi}")
        ranges.append((lo, hi))


def _class_char(chunk: str, i: int, whole: str) -> tuple[str, int]:
    if i >= len(chunk) or chunk[i] in "-]":
        raise ValueError(
            f"empty character class in '{whole}'"
            if i < len(chunk) and chunk[i] == "]"
            else f"bad pattern '{whole}'"
        )
    if chunk[i] == "\\":
        i += 1
        if i >= len(chunk):
            raise ValueError(f"bad pattern '{whole}': trailing backslash")
    return chunk[i], i + 1


def _match_chunk(items: list[_Item], name: str, at: int) -> int:
    """Where `items` matched at `at` end, or -1."""
    for item in items:
        if at >= len(name):
            return -1
        c = name[at]
        if item[0] == "lit":
            if c != item[1]:
                return -1
        elif item[0] == "any":
            if c == "/":
                return -1
        else:
            hit = any(lo <= c <= hi for lo, hi in item[2])  # type: ignore[attr-defined]
            if hit == item[1] or c == "/":
                return -1
        at += 1
    return at


def _split(segment: str) -> list[tuple[bool, str]]:
    """(led by a star, chunk) pairs; runs of stars are one."""
    chunks: list[tuple[bool, str]] = []
    i, n = 0, len(segment)
    while i < n:
        star = False
        while i < n and segment[i] == "*":
            star, i = True, i + 1
        start, in_class = i, False
        while i < n:
            ch = segment[i]
            if ch == "\\" and not in_class:
                i += 2
                continue
            if ch == "[":
                in_class = True
            elif ch == "]":
                in_class = False
            elif ch == "*" and not in_class:
                break
            i += 1
        chunks.append((star, segment[start:i]))
    return chunks


@dataclass(frozen=True)
class _Segment:
    chunks: tuple[tuple[bool, tuple[_Item, ...]], ...]

    def matches(self, name: str) -> bool:
        at, last = 0, len(self.chunks) - 1
        for k, (star, items) in enumerate(self.chunks):
            if star and not items:  # a trailing star: the rest of the segment
                return "/" not in name[at:]
            end = _match_chunk(list(items), name, at)
            if end >= 0 and (end == len(name) or k < last):
                at = end
                continue
            if not star:
                return False
            for i in range(at, len(name)):
                if name[i] == "/":
                    return False
                end = _match_chunk(list(items), name, i + 1)
                if end >= 0 and not (k == last and end < len(name)):
                    at = end
                    break
            else:
                return False
        return at == len(name)


class GoPattern:
    """Segments matched one by one; `*` and `?` never cross `/`."""

    def __init__(self, segments: list[str]) -> None:
        whole = "/".join(segments)
        self._segments = [
            _Segment(tuple((star, tuple(_items(c, whole))) for star, c in _split(s)))
            for s in segments
        ]

    def fullmatch(self, path: str) -> bool:
        parts = path.split("/")
        return len(parts) == len(self._segments) and all(
            seg.matches(part) for seg, part in zip(self._segments, parts, strict=True)
        )


def compile_segments(segments: list[str]) -> GoPattern:
    """A matcher for the '/'-joined segments; ValueError for a malformed pattern."""
    return GoPattern(segments)
