"""`.dockerignore`, exactly as Docker reads and applies it (not gitignore's rules).

The reader is moby/patternmatcher's `ignorefile.ReadAll`; matching is its
PatternMatcher as BuildKit's context walk uses it: each directory on the way down keeps
which patterns matched it (`MatchesUsingParentResults`), the last matching pattern wins,
`!` re-includes, `**` spans directories, and `*`/`?` stay within one segment. Checked
against the upstream vectors in tests/data/dockerignore.json.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["DockerIgnore", "DockerignoreError", "go_clean", "read_dockerignore"]

_ESCAPE = set(".+()|{}$")


class DockerignoreError(ValueError):
    """A pattern Docker would reject (filepath.ErrBadPattern)."""


def go_clean(path: str) -> str:
    """Go's filepath.Clean on Unix."""
    if not path:
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    cleaned = "/".join(out)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def read_dockerignore(text: str) -> list[str]:
    """ignorefile.ReadAll: the pattern list of a .dockerignore file."""
    patterns = []
    for i, line in enumerate(text.splitlines()):
        if i == 0 and line.startswith("\ufeff"):
            line = line[1:]
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append(("!" if invert else "") + pattern)
    return patterns


def _go_match_syntax_ok(pattern: str) -> bool:
    """Whether Go's filepath.Match accepts `pattern` (it checks the whole pattern)."""
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                return False
            i += 2
            continue
        if ch == "[":
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            ranges = 0
            while True:
                if i < n and pattern[i] == "]" and ranges:
                    i += 1
                    break
                i = _class_char(pattern, i)
                if i < 0:
                    return False
                if pattern[i] == "-":
                    i = _class_char(pattern, i + 1)
                    if i < 0:
                        return False
                ranges += 1
            continue
        i += 1
    return True


def _class_char(pattern: str, i: int) -> int:
    """Go's getEsc: the index after one class character, or -1 when malformed."""
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        return -1
    if pattern[i] == "\\":
        i += 1
        if i >= n:
            return -1
    i += 1
    return i if i < n else -1


@dataclass
class _Pattern:
    text: str
    exclusion: bool
    kind: str = ""  # exact | prefix | suffix | regexp | error
    regex: re.Pattern[str] | None = None

    def compile(self) -> None:
        out, kind = "^", "exact"
        p, i, n = self.text, 0, len(self.text)
        first = True
        while i < n:
            ch = p[i]
            i += 1
            if ch == "*":
                if i < n and p[i] == "*":
                    i += 1
                    if i < n and p[i] == "/":
                        i += 1
                    if i >= n:
                        if kind == "exact":
                            kind = "prefix"
                        else:
                            out += ".*"
                            kind = "regexp"
                    else:
                        out += "(.*/)?"
                        kind = "regexp"
                    if first:
                        kind = "suffix"
                else:
                    out += "[^/]*"
                    kind = "regexp"
            elif ch == "?":
                out += "[^/]"
                kind = "regexp"
            elif ch in _ESCAPE:
                out += "\\" + ch
            elif ch == "\\":
                if i < n:
                    out += "\\" + p[i]
                    i += 1
                    kind = "regexp"
                else:
                    out += "\\\\"
            elif ch in "[]":
                out += ch
                kind = "regexp"
            else:
                out += ch
            first = False
        self.kind = kind
        if kind == "regexp":
            try:
                self.regex = re.compile(out + "$", re.DOTALL)
            except re.error:
                self.kind = "error"

    def match(self, path: str) -> bool:
        if not self.kind:
            self.compile()
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        if self.kind == "regexp" and self.regex is not None:
            return self.regex.match(path) is not None
        raise DockerignoreError(f"bad .dockerignore pattern: {self.text!r}")


@dataclass
class DockerIgnore:
    """A compiled pattern list; `ignored(path)` answers as BuildKit's context walk does."""

    patterns: list[str]
    _compiled: list[_Pattern] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        for raw in self.patterns:
            p = raw.strip()
            if not p:
                continue
            p = go_clean(p)
            exclusion = p.startswith("!")
            if exclusion:
                if len(p) == 1:
                    raise DockerignoreError('illegal exclusion pattern: "!"')
                p = p[1:]
            if not _go_match_syntax_ok(p):
                raise DockerignoreError(f"bad .dockerignore pattern: {p!r}")
            self._compiled.append(_Pattern(p, exclusion))

    @classmethod
    def from_text(cls, text: str) -> DockerIgnore:
        return cls(read_dockerignore(text))

    def _step(self, path: str, parent: list[bool] | None) -> tuple[bool, list[bool]]:
        """MatchesUsingParentResults for one path, given its parent directory's state."""
        matched = False
        state = []
        for i, pattern in enumerate(self._compiled):
            match = bool(parent) and parent[i]  # type: ignore[index]
            if not match:
                if pattern.exclusion != matched:
                    state.append(False)
                    continue
                match = pattern.match(path)
                if not match and not parent and "/" in path:
                    dirs = path.split("/")[:-1]
                    match = any(pattern.match("/".join(dirs[: j + 1])) for j in range(len(dirs)))
            state.append(match)
            if match:
                matched = not pattern.exclusion
        return matched, state

    def ignored(self, path: str) -> bool:
        """Whether file `path` (slash-separated, relative to the context) is left out."""
        if not self._compiled:
            return False
        parts = path.split("/")
        state: list[bool] | None = None
        matched = False
        for depth in range(1, len(parts) + 1):
            matched, state = self._step("/".join(parts[:depth]), state)
        return matched

    def matches_or_parent_matches(self, path: str) -> bool:
        """The stateless MatchesOrParentMatches (differs from the walk in rare cases)."""
        return self._step(path, None)[0]
