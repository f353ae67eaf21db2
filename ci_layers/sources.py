"""Which repository paths a layer reads: `copy` sources and `inputs` globs.

Compiled once per pattern and shared by keys.py (which files go into a key) and the
change mapping (which layers a changed path touches), so both agree exactly.

- A copy source is a file, a directory (everything below it) or a wildcard in the
  dialect Docker's COPY uses: Go's `filepath.Match`, one path segment per `*`.
- `inputs` and `global_inputs` are gitignore-style globs (pathspec): `*.lock` matches
  at any depth, `/constraints.txt` only at the root, `dir/` a directory.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence

import pathspec
from cachetools import LRUCache, cached

from .repo import RepoFiles

__all__ = ["CopySource", "InputGlobs", "copy_source", "input_globs"]

_GLOB_CHARS = re.compile(r"[*?\[\\]")


def _segment_regex(segment: str) -> str:
    """Go filepath.Match for one segment: * and ? stay in the segment, [^...] negates."""
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
            body = "".join("\\" + c if c in "\\[]^" else c for c in body)
            out.append(f"[{'^' if neg else ''}{body}]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


class CopySource:
    """One copy `src`, compiled."""

    def __init__(self, src: str) -> None:
        norm = posixpath.normpath(src.lstrip("/")) if src.strip("/") else "."
        self.src = src
        self.norm = "" if norm == "." else norm
        segments = self.norm.split("/") if self.norm else []
        first_glob = next((i for i, s in enumerate(segments) if _GLOB_CHARS.search(s)), None)
        self.is_glob = first_glob is not None
        literal = segments if first_glob is None else segments[:first_glob]
        self.prefix = "/".join(literal)
        self._depth = len(segments)
        self._regex = (
            re.compile("/".join(_segment_regex(s) for s in segments)) if self.is_glob else None
        )

    def relative(self, path: str) -> str | None:
        """Where `path` lands below dest (relative), or None if this source does not take it."""
        if not self.norm:
            return path
        if self._regex is None:
            if path == self.norm:
                return posixpath.basename(path)
            if path.startswith(self.norm) and path[len(self.norm)] == "/":
                return path[len(self.norm) + 1 :]
            return None
        parts = path.split("/")
        if len(parts) < self._depth:
            return None
        if not self._regex.fullmatch("/".join(parts[: self._depth])):
            return None
        rest = parts[self._depth :]
        return "/".join(rest) if rest else parts[-1]

    def select(self, files: RepoFiles) -> list[tuple[str, str]]:
        """(repository path, path below dest) for every file this source copies."""
        key = ("copy", self.src)
        hit = files.selections.get(key)
        if hit is None:
            prefix = self.prefix
            if prefix and not self.is_glob:
                exact = [prefix] if prefix in files else []
                candidates: Iterable[str] = [*exact, *files.under(prefix + "/")]
            else:
                candidates = files.under(prefix + "/" if prefix else "")
            hit = [(p, rel) for p in candidates if (rel := self.relative(p)) is not None]
            files.selections[key] = hit
        return hit  # type: ignore[return-value]


class InputGlobs:
    """A list of gitignore-style globs, compiled into one pathspec."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        self._spec = pathspec.GitIgnoreSpec.from_lines(self.patterns)
        self._prefixes = _anchored_prefixes(self.patterns)

    def matches(self, path: str) -> bool:
        return bool(self.patterns) and self._spec.match_file(path)

    def select(self, files: RepoFiles) -> list[str]:
        if not self.patterns:
            return []
        key = ("inputs", self.patterns)
        hit = files.selections.get(key)
        if hit is None:
            if self._prefixes is None:
                candidates: Iterable[str] = files.paths
            else:
                candidates = sorted({p for pre in self._prefixes for p in files.under(pre)})
            hit = [p for p in candidates if self._spec.match_file(p)]
            files.selections[key] = hit
        return hit  # type: ignore[return-value]


def _anchored_prefixes(patterns: Sequence[str]) -> list[str] | None:
    """Literal leading directories that bound every match, or None if any pattern floats.

    A gitignore pattern is anchored when it has a slash before its last character; only
    then can the search be limited to the paths below its literal prefix.
    """
    prefixes: list[str] = []
    for pattern in patterns:
        body = pattern.rstrip("/")
        if pattern.startswith("!") or "/" not in body or body.startswith("**"):
            return None
        body = body.lstrip("/")
        literal = []
        for segment in body.split("/"):
            if _GLOB_CHARS.search(segment):
                break
            literal.append(segment)
        prefixes.append("/".join(literal))  # a file itself, or the directory it is in
    return prefixes


@cached(LRUCache(maxsize=16384))
def copy_source(src: str) -> CopySource:
    return CopySource(src)


@cached(LRUCache(maxsize=4096))
def input_globs(patterns: tuple[str, ...]) -> InputGlobs:
    return InputGlobs(patterns)
