"""Which repository paths a layer reads: `copy` sources and `inputs` globs.

Compiled once per pattern and shared by keys.py (what goes into a key) and mapping.py
(which layers a changed path touches), so both agree exactly.

- A copy source is a file, a directory (everything below it) or a wildcard in the
  dialect Docker's COPY uses: Go's `filepath.Match`, `*` within one path segment. An
  optional `exclude` list (gitignore-style, relative to the source) leaves files out.
- `inputs` and `global_inputs` are gitignore-style globs (pathspec): `*.lock` matches
  at any depth, `/constraints.txt` only at the root, `dir/` a directory.
- A source inside a submodule reads the submodule's commit: its files are not in the
  parent's tree, and a gitlink bump changes all of them.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence

import pathspec
from cachetools import LRUCache, cached

from .dockerignore import DockerIgnore
from .errors import Location, SpecError
from .gomatch import GLOB_CHARS, compile_segments
from .graph import DockerfileNode, ImageLayer
from .repo import GITLINK, TREE, RepoFiles

__all__ = [
    "CopySource",
    "InputGlobs",
    "broken_links",
    "context_reads",
    "copy_source",
    "follow_symlinks",
    "input_globs",
    "literal_pattern",
    "read_digest",
    "resolve_path",
]


class CopySource:
    """One copy `src` with its `exclude` patterns, compiled. `src` is a pattern below
    `root`, a directory taken literally (a build context named `[x]` is no pattern).
    With a `scope` (a build context), symlinks resolve inside it, as BuildKit's do."""

    def __init__(
        self, src: str, exclude: tuple[str, ...] = (), root: str = "", scope: str | None = None
    ) -> None:
        norm = posixpath.normpath(src.lstrip("/")) if src.strip("/") else "."
        self.src = src
        self.exclude = exclude
        self.root = root
        self.scope = scope
        fixed = root.split("/") if root else []
        below = [] if norm == "." else norm.split("/")
        segments = fixed + below
        self.norm = "/".join(segments)
        first_glob = next((i for i, s in enumerate(below) if GLOB_CHARS.search(s)), None)
        self.is_glob = first_glob is not None
        literal = segments if first_glob is None else segments[: len(fixed) + first_glob]
        self.prefix = "/".join(literal)
        self._depth = len(segments)
        patterns = [literal_pattern(s) for s in fixed] + below
        self._regex = compile_segments(patterns) if self.is_glob else None
        self._segments = [compile_segments([s]) for s in patterns] if self.is_glob else []
        self._excluded = pathspec.GitIgnoreSpec.from_lines(exclude) if exclude else None

    def relative(self, path: str) -> str | None:
        """Where file `path` lands below dest, or None if this source does not copy it."""
        rel = self._relative(path)
        if rel is not None and self._excluded is not None and self._excluded.match_file(rel):
            return None
        return rel

    def below(self, path: str) -> str | None:
        """Where `path` lies inside the folder this source names or a wildcard matches;
        None for the named or matched item itself, or a path it does not copy. COPY
        --exclude is matched against this: fsutil never excludes the item itself."""
        rel = self._relative(path)
        if rel is None or path == self.norm:
            return None
        if self.is_glob and path.count("/") + 1 <= self._depth:
            return None
        return rel

    def _relative(self, path: str) -> str | None:
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

    def reads(self, path: str, *, gitlink: bool = False) -> bool:
        """Whether a change to `path` changes what this source copies.

        `gitlink` marks a submodule path: a bump changes every file below it.
        """
        if self.relative(path) is not None:
            return True
        return gitlink and (self.prefix + "/").startswith(path + "/")

    def entries(self, files: RepoFiles) -> list[list[str]]:
        """[path below dest, digest] for what this source copies; a whole directory
        without exclusions is one entry, its git tree id."""
        key = ("copy", self.root, self.src, self.exclude, self.scope)
        hit = files.selections.get(key)
        if hit is None:
            hit = self._entries(files)
            files.selections[key] = hit
        return hit  # type: ignore[return-value]

    def _through_links(self, files: RepoFiles) -> CopySource | None:
        """This source with the symlinked directories on its literal path followed, as
        BuildKit resolves every part of a source path; None when there are none."""
        prefix = self.prefix
        if not prefix or prefix in files.trees or (prefix in files and not self.is_glob):
            return None  # found as it is (a link as the whole source is followed below)
        resolved = _resolve_dirs(files, prefix, last=self.is_glob, scope=self.scope)
        if resolved is None or resolved == prefix:
            return None
        rest = self.norm[len(prefix) :].lstrip("/") or "."
        return copy_source(rest, self.exclude, resolved, self.scope)

    def followed(self, files: RepoFiles) -> CopySource:
        """The source COPY reads in `files`: through the symlinks on its path, or the
        link it names; itself when there are none."""
        if (linked := self._through_links(files)) is not None:
            return linked
        prefix = self.prefix
        if (
            not self.is_glob
            and (target := follow_symlinks(files, prefix, self.scope)) != prefix
            and target
        ):
            return copy_source(".", self.exclude, target, self.scope)
        return self

    def _entries(self, files: RepoFiles) -> list[list[str]]:
        prefix = self.prefix
        if (followed := self.followed(files)) is not self:
            # COPY follows symlinks on the source's path: the target's content counts
            inner = followed.entries(files)
            if not self.is_glob and followed.prefix in files:  # a file lands under its name
                return [[posixpath.basename(prefix), digest] for _rel, digest in inner]
            return inner
        if not self.is_glob and self._excluded is None:
            if prefix in files:
                return [[posixpath.basename(prefix), files.digest(prefix)]]
            if prefix in files.trees:
                return [["", f"{TREE} tree {files.trees[prefix]}"]]
        found = [[rel, files.digest(path)] for rel, path in self._landed(files)]
        if self.is_glob:
            found += self._gitlinks_below(files)
        if not found and prefix:
            gitlink = files.gitlink_above(prefix)
            if gitlink is not None:  # a source inside a submodule: its commit is the content
                return [[prefix[len(gitlink) :].lstrip("/"), files.digest(gitlink)]]
        return found

    def landed(self, files: RepoFiles) -> list[tuple[str, str]]:
        """(path below dest, repository path) of each file this source copies, sorted by
        where it lands: what `entries` keys, file by file, for LayerBuilder to write.
        Submodules are left to the caller (their files are not in `files`)."""
        if (followed := self.followed(files)) is not self:
            inner = followed.landed(files)
            if not self.is_glob and followed.prefix in files:  # a file lands under its name
                return [(posixpath.basename(self.prefix), path) for _rel, path in inner]
            return inner
        return self._landed(files)

    def _landed(self, files: RepoFiles) -> list[tuple[str, str]]:
        prefix = self.prefix
        if not self.is_glob and prefix in files:
            candidates: Iterable[str] = [prefix]
        else:
            candidates = files.under(prefix + "/" if prefix else "")
        # COPY copies a wildcard's matches one after another, walking names in order, so
        # where two land on one path the later one is what the layer holds.
        landed: dict[str, str] = {}
        for p in sorted(candidates, key=lambda p: p.split("/")) if self.is_glob else candidates:
            if (rel := self.relative(p)) is None:
                continue
            if self.is_glob and p.count("/") + 1 == self._depth and _is_link(files, p):
                # BuildKit follows each wildcard match (FollowLinks): a link to a file
                # copies the file, a link to a folder copies what the folder holds
                target = follow_symlinks(files, p, self.scope)
                if target is not None and target != p and target in files:
                    landed[rel] = target
                    continue
                if target is not None and target != p and target in files.trees:
                    for q in files.under(target + "/"):
                        inner = q[len(target) + 1 :]
                        if self._excluded is None or not self._excluded.match_file(inner):
                            landed[inner] = q
                    continue
            landed[rel] = p
        return sorted(landed.items())

    def _gitlinks_below(self, files: RepoFiles) -> list[list[str]]:
        """Submodules a wildcard reaches into: a glob segment may match the submodule's
        path while the files it would copy lie in the submodule's own tree."""
        out = []
        for path in files.under(self.prefix + "/" if self.prefix else ""):
            if not files.entries[path].startswith(GITLINK):
                continue
            parts = path.split("/")
            if len(parts) < self._depth and all(
                rx.fullmatch(part) for rx, part in zip(self._segments, parts, strict=False)
            ):
                out.append([path, files.digest(path)])
        return out

    def paths(self, files: RepoFiles) -> list[str]:
        """Repository paths this source reads (for reasons and mapping)."""
        prefix = self.prefix
        if (followed := self.followed(files)) is not self:
            links = [p for p in _ancestors(prefix, last=True) if p in files]
            return [*links, *followed.paths(files)]
        candidates = [prefix] if (prefix and prefix in files) else []
        candidates += files.under(prefix + "/" if prefix else "")
        found = [p for p in candidates if self.relative(p) is not None]
        if self.is_glob:
            found += [p for p, _digest in self._gitlinks_below(files)]
            if any(_is_link(files, p) for p in found):  # and what the matched links name
                seen = set(found)
                found += [q for _rel, q in self._landed(files) if q not in seen]
        if not found and prefix and (gitlink := files.gitlink_above(prefix)):
            found = [gitlink]
        return found


class InputGlobs:
    """A list of gitignore-style globs, compiled into one pathspec."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        self._spec = pathspec.GitIgnoreSpec.from_lines(self.patterns)
        self._prefixes = _anchored_prefixes(self.patterns)
        self._names = _literal_names(self.patterns)
        self._dirs = any(p.rstrip().endswith("/") for p in self.patterns)
        # a pattern that floats (`*.c`, `**/x`) may match files inside any submodule,
        # whose tree this clone may not have: a submodule bump counts for it
        self._floating = any(_floats(p) for p in self.patterns)

    def reads(self, path: str, *, gitlink: bool = False) -> bool:
        if not self.patterns:
            return False
        if self._spec.match_file(path) or (gitlink and self._spec.match_file(path + "/")):
            return True
        if gitlink and self._floating:
            return True
        return gitlink and any((pre + "/").startswith(path + "/") for pre in self._prefixes or ())

    def select(self, files: RepoFiles) -> list[str]:
        """Matching repository paths, sorted."""
        if not self.patterns:
            return []
        key = ("inputs", self.patterns)
        hit = files.selections.get(key)
        if hit is None:
            hit = self._select(files)
            files.selections[key] = hit
        return hit  # type: ignore[return-value]

    def through_links(self, files: RepoFiles) -> dict[str, str]:
        """Digests of the files that literal, anchored patterns name through a symlinked
        folder (`conf/app.conf` with `conf -> real`), which no listing holds."""
        found = {}
        for pattern in map(_trim, self.patterns):
            path = pattern.strip("/")
            if pattern.startswith("!") or "/" not in pattern.rstrip("/") or GLOB_CHARS.search(path):
                continue
            if path in files or path in files.trees:
                continue
            resolved = _resolve_dirs(files, path, last=False)
            if resolved is None or resolved == path:
                continue
            if resolved in files:
                found[path] = read_digest(files, resolved)
            elif resolved in files.trees:
                found[path] = f"{TREE} tree {files.trees[resolved]}"
        return found

    def _select(self, files: RepoFiles) -> list[str]:
        if self._prefixes is not None:
            candidates: Iterable[str] = {p for pre in self._prefixes for p in files.under(pre)}
        elif self._names is not None:
            candidates = {p for n in self._names for p in files.named(n)}
        else:
            candidates = files.paths
        found = {p for p in candidates if self._spec.match_file(p)}
        if self._dirs:  # `lib/` matches a submodule at lib, whose gitlink is no directory
            found.update(
                p
                for p in candidates
                if files.entries[p].startswith(GITLINK) and self._spec.match_file(p + "/")
            )
        if self._floating:
            found.update(files.gitlinks())
        for pre in self._prefixes or ():
            gitlink = files.gitlink_above(pre)
            if gitlink is not None:
                found.add(gitlink)
        return sorted(found)


def _floats(pattern: str) -> bool:
    """Whether a (non-negated) gitignore pattern may match at any depth."""
    body = _trim(pattern).rstrip("/")
    if not body or body.startswith(("!", "#")):
        return False
    return "/" not in body or body.startswith("**")


def _trim(pattern: str) -> str:
    """Trailing spaces are not part of a gitignore pattern unless escaped."""
    return re.sub(r"(?<!\\) +$", "", pattern)


def _anchored_prefixes(patterns: Sequence[str]) -> list[str] | None:
    """Literal leading directories that bound every match, or None if any pattern floats.

    A gitignore pattern is anchored when it has a slash before its last character; only
    then can the search be limited to the paths below its literal prefix.
    """
    prefixes: list[str] = []
    for pattern in map(_trim, patterns):
        body = pattern.rstrip("/")
        if pattern.startswith("!") or "/" not in body or body.startswith("**"):
            return None
        literal = []
        for segment in body.lstrip("/").split("/"):
            if GLOB_CHARS.search(segment):
                break
            literal.append(segment)
        prefixes.append("/".join(literal))
    return prefixes


def _literal_names(patterns: Sequence[str]) -> list[str] | None:
    """The file names every match must end in, when each pattern names a file literally
    (`package-lock.json`, `/a/b/go.sum`); None otherwise."""
    names = []
    for pattern in map(_trim, patterns):
        if pattern.startswith("!") or pattern.endswith("/") or pattern.startswith("#"):
            return None
        last = pattern.rstrip().rpartition("/")[2]
        if not last or GLOB_CHARS.search(last):
            return None
        names.append(last)
    return names


def read_digest(files: RepoFiles, path: str) -> str:
    """The digest of a file as one that reads it sees it: a symlink by its own blob and
    by what it points to, so retargeting it and editing its target both count."""
    digest = files.digest(path)
    if not digest.startswith("120000"):
        return digest
    target = follow_symlinks(files, path)
    if target is None or target == path:
        return digest
    if target in files:
        return f"{digest} -> {files.digest(target)}"
    if target in files.trees:
        return f"{digest} -> {TREE} tree {files.trees[target]}"
    return digest


def follow_symlinks(files: RepoFiles, path: str, scope: str | None = None) -> str | None:
    """Where a chain of symlinks at `path` ends, inside the repository; `path` itself when
    it is no symlink, None when a link leaves the repository or loops. With a `scope` (a
    build context) a link never leaves it: `/x` is the context's x and `..` stops at its
    root, as in BuildKit (continuity's RootPath)."""
    for _ in range(40):
        if not files.entries.get(path, "").startswith("120000"):
            return path
        target = files.read(path)
        if target is None:
            return path  # no content to follow (a synthetic snapshot)
        link = target.decode("utf-8", "surrogateescape")
        if scope is not None:
            path = _in_scope(scope, posixpath.dirname(path), link)
            continue
        if link.startswith("/"):
            return None
        path = posixpath.normpath(posixpath.join(posixpath.dirname(path), link))
        if path == ".." or path.startswith("../"):
            return None
    return None


def _in_scope(scope: str, folder: str, link: str) -> str:
    """Repository path of `link`, read in `folder`, with `scope` as its root."""
    inside = folder[len(scope) :].strip("/") if scope else folder
    parts = link.split("/") if link.startswith("/") else [*inside.split("/"), *link.split("/")]
    stack: list[str] = []
    for part in parts:
        if part == "..":
            if stack:
                stack.pop()
        elif part and part != ".":
            stack.append(part)
    return "/".join([scope, *stack] if scope else stack)


def broken_links(layers: Iterable[ImageLayer], files: RepoFiles) -> list[SpecError]:
    """Copy sources that are (or pass through) a link leaving the repository, or links
    that loop: Docker's COPY fails on them, where the key would silently read nothing."""
    problems = []
    for layer in layers:
        for c in layer.copy:
            if c.from_layer:
                continue
            for j, src in enumerate(c.src):
                source = copy_source(src, c.exclude)
                prefix = source.prefix
                if (
                    not prefix
                    or prefix in files.trees
                    or (prefix in files and not _is_link(files, prefix))
                ):
                    continue
                if any(_is_link(files, p) for p in _ancestors(prefix, last=True)) and (
                    _resolve_dirs(files, prefix, last=not source.is_glob) is None
                ):
                    problems.append(
                        SpecError(
                            f"copy source '{src}' goes through a link that leaves the "
                            "repository, or links that loop: Docker's COPY fails on it",
                            where=(
                                c.src_where[j]
                                if j < len(c.src_where)
                                else layer.where or Location("ci-layers.yaml")
                            ),
                            layer=layer.name,
                        )
                    )
    return problems


def resolve_path(files: RepoFiles, path: str) -> str | None:
    """`path` with every symlink on it followed (folders and the last part); None when
    a link leaves the repository or they loop."""
    return _resolve_dirs(files, path, last=True)


def _is_link(files: RepoFiles, path: str) -> bool:
    return files.entries.get(path, "").startswith("120000")


def _ancestors(path: str, *, last: bool) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + (1 if last else 0))]


def _resolve_dirs(
    files: RepoFiles, path: str, *, last: bool, scope: str | None = None
) -> str | None:
    """`path` with each symlinked directory on it followed (the last part too when
    `last`); None when a link leaves the repository or they loop."""
    for _ in range(40):
        for head in _ancestors(path, last=last):
            if files.entries.get(head, "").startswith("120000"):
                target = follow_symlinks(files, head, scope)
                if target is None or target == head:
                    return None if target is None else path
                path = (
                    (target + path[len(head) :]).lstrip("/")
                    if target != "."
                    else path[len(head) + 1 :]
                )
                break
        else:
            return path
    return None


@cached(LRUCache(maxsize=16384))
def copy_source(
    src: str, exclude: tuple[str, ...] = (), root: str = "", scope: str | None = None
) -> CopySource:
    return CopySource(src, exclude, root, scope)


def literal_pattern(text: str) -> str:
    r"""Text as a pattern that matches only itself: Go's filepath.Match and gitignore
    globs both take `\` as the escape of `*`, `?`, `[` and `\` itself."""
    return re.sub(r"([*?\[\\])", r"\\\1", text)


@cached(LRUCache(maxsize=1024))
def _ignore(patterns: tuple[str, ...]) -> DockerIgnore:
    return DockerIgnore(list(patterns))


def context_reads(node: DockerfileNode, files: RepoFiles) -> list[tuple[int, str, str]]:
    """(instruction index, repository path, path in the context) of every context file a
    Dockerfile's COPY/ADD/bind mounts read and its .dockerignore lets through."""
    key = ("dockerfile", node.context, node.reads, node.ignore)
    hit = files.selections.get(key)
    if hit is not None:
        return hit  # type: ignore[return-value]
    # Symlinks resolve inside the context, so what it reads is decided by the context's
    # tree alone: base and head share it for every image whose context did not change.
    tree = files.trees.get(node.context) if node.context else None
    if tree is not None and (kept := _CONTEXT_READS.get((key, tree))) is not None:
        files.selections[key] = kept
        return kept
    ignore = _ignore(node.ignore)
    ctx = node.context
    out: list[tuple[int, str, str]] = []
    for index, (_line, _text, sources, exclude) in enumerate(node.reads):
        skip = _ignore(exclude) if exclude else None
        for src in sources:
            # BuildKit resolves a source inside the context: `../x` is `x`
            inner = posixpath.normpath("/" + src).lstrip("/") or "."
            source = copy_source(inner, (), ctx, ctx)
            for path in source.paths(files):
                rel = path[len(ctx) + 1 :] if ctx else path
                if ignore.ignored(rel):
                    continue
                inside = source.followed(files).below(path)
                if skip is not None and inside and skip.ignored(inside):
                    continue  # COPY --exclude: below what the source names, relative to it
                out.append((index, path, rel))
    files.selections[key] = out
    if tree is not None:
        _CONTEXT_READS[(key, tree)] = out
    return out


_CONTEXT_READS: LRUCache[tuple[object, str], list[tuple[int, str, str]]] = LRUCache(maxsize=16384)


@cached(LRUCache(maxsize=4096))
def input_globs(patterns: tuple[str, ...]) -> InputGlobs:
    return InputGlobs(patterns)
