"""A commit's tree, read only as far as a plan looks into it.

A full `git ls-tree -r` of a 200,000-file monorepo costs more than the rest of a plan,
but a plan mostly asks for a few hundred folders' tree ids (a copied folder is keyed
by its tree id, never listed) and a few files. `LazyFiles` answers the same questions
as a listed `RepoFiles`, byte for byte, reading tree objects by id through one
pipelined `git cat-file --batch` as it goes:

- a path's digest or a folder's tree id reads the folders along the path;
- `under(prefix)` reads that subtree and no other;
- anything over the whole tree (`paths`, `named`, `gitlinks`, iterating) lists it all
  once, with `ls-tree -r`, and is a plain `RepoFiles` from then on.

Once a few folders of one parent have been looked into, the next lookup there reads all
its sibling folders in the same round trip: the folders a spec names usually sit side
by side (`services/*/src`), so thousands of round trips become a few per depth, while a
single lookup in a huge folder reads one tree. Tree objects are kept by id, so a plan's
base and head read every folder they share once.
"""

from __future__ import annotations

import bisect
import re
import subprocess
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

import git
from cachetools import LRUCache

from .errors import GitError
from .repo import RepoFiles, _git, _tree_files, _verify_commit, attach_reader, git_reason

__all__ = ["LazyFiles", "TreeStore", "lazy_tree_files"]

# "<mode> <name>\0<id>", as git writes a tree object; the id is 20 bytes (sha1) or 32
# (a sha256 repository), told by the length of the root tree's id
_ENTRIES = {n: re.compile(rb"([0-7]+) ([^\0]*)\0(.{%d})" % n, re.S) for n in (20, 32)}
_CHUNK = 1000  # ids per request
_PIPE_SURELY_HOLDS = 4096  # bytes: a pipe's smallest capacity on Linux (one page)
_ONE_BY_ONE = 4  # folders of one parent read alone before its other folders are read too
_S_IFMT, _S_IFREG, _S_IFLNK, _S_IFDIR = 0o170000, 0o100000, 0o120000, 0o040000

Listing = dict[str, str]  # name -> "<mode> <type> <id>" as ls-tree prints it


class TreeStore:
    """Tree objects of one repository by id, parsed once, read through one `git cat-file
    --batch` kept open until `close` (a plan's two ends share one)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.parsed: dict[str, Listing] = {}
        self.read_count = 0  # tree objects read from git (tests hold the laziness)
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def listings(self, oids: list[str], paths: list[str] | None = None) -> list[Listing]:
        """The parsed trees `oids` (the folders `paths`, for errors), reading those not
        read before in one round trip."""
        with self._lock:
            wanted = list(dict.fromkeys(o for o in oids if o not in self.parsed))
            try:
                for i in range(0, len(wanted), _CHUNK):
                    self._read(wanted[i : i + _CHUNK])
            except _Missing as missing:
                where = dict(zip(oids, paths or [], strict=False)).get(missing.oid)
                folder = f"folder '{where or '.'}'" if where is not None else "a folder"
                raise GitError(
                    f"git cannot read tree {missing.oid} ({folder} of {self.root}): it is "
                    "missing from this clone; fetch the commits the plan compares"
                ) from None
            return [self.parsed[o] for o in oids]

    def _read(self, oids: list[str]) -> None:
        proc = self._process()
        assert proc.stdin is not None
        assert proc.stdout is not None
        asked = "".join(o + "\n" for o in oids).encode()
        # More than a pipe surely holds is written beside the reading: git stops reading
        # once its answers fill its pipe. Less goes at once (the pipe is empty here).
        writer = threading.Thread(target=_write, args=(proc.stdin, asked), daemon=True)
        if len(asked) <= _PIPE_SURELY_HOLDS:
            _write(proc.stdin, asked)
        else:
            writer.start()
        try:
            for oid in oids:
                header = proc.stdout.readline().split()
                if len(header) != 3 or header[1] != b"tree":
                    raise _Missing(oid)
                size = int(header[2])
                data = proc.stdout.read(size + 1)
                if len(data) != size + 1:
                    raise GitError(f"git cat-file stopped in the middle of tree {oid}")
                self.parsed[oid] = _parse_tree(data[:size], len(oid) // 2)
                self.read_count += 1
        except (OSError, ValueError) as exc:
            self._abort(proc, writer)
            raise GitError(f"cannot read the trees of {self.root}: {exc}") from None
        except BaseException:
            self._abort(proc, writer)  # answers still in the pipe: the next read starts afresh
            raise
        if writer.ident is not None:
            writer.join()

    def _abort(self, proc: subprocess.Popen[bytes], writer: threading.Thread) -> None:
        """Stop git first: a writer blocked on a full pipe then fails and ends, and
        closing the pipes cannot wait on it."""
        proc.kill()
        if writer.ident is not None:
            writer.join()
        self.close()

    def _process(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            try:
                self._proc = subprocess.Popen(
                    ["git", "cat-file", "--batch"],
                    cwd=self.root,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
            except OSError as exc:
                raise GitError(f"cannot run git cat-file: {exc}") from None
        return self._proc

    def close(self) -> None:
        """Stop the git process (a later read starts another)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            for pipe in (proc.stdin, proc.stdout):
                try:
                    if pipe is not None:
                        pipe.close()
                except OSError:
                    pass
            proc.wait()

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> TreeStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _write(pipe: IO[bytes], data: bytes) -> None:
    try:
        pipe.write(data)
        pipe.flush()
    except (OSError, ValueError):
        pass  # git is gone: the reader says so


class _Missing(Exception):
    def __init__(self, oid: str) -> None:
        self.oid = oid


def _parse_tree(data: bytes, id_bytes: int) -> Listing:
    out: Listing = {}
    for mode_b, name_b, oid in _ENTRIES[id_bytes].findall(data):
        out[name_b.decode("utf-8", "surrogateescape")] = _meta(int(mode_b, 8), oid.hex())
    return out


def _meta(mode: int, oid: str) -> str:
    """An entry as `ls-tree` prints it, its mode made canonical as git does on reading
    a tree (`canon_mode`): an old or foreign tree's `100664` is `100644`."""
    kind = mode & _S_IFMT
    if kind == _S_IFREG:
        return f"{0o100755 if mode & 0o100 else 0o100644:06o} blob {oid}"
    if kind == _S_IFLNK:
        return f"120000 blob {oid}"
    if kind == _S_IFDIR:
        return f"040000 tree {oid}"
    return f"160000 commit {oid}"


class LazyFiles(RepoFiles):
    """A commit's files as `RepoFiles`, its tree read only where asked (module doc)."""

    def __init__(self, store: TreeStore, root_tree: str, *, rev: str, g: git.Git) -> None:
        # RepoFiles' fields, without a listing (not RepoFiles.__init__: `paths` is lazy)
        self.rev = rev
        self.selections = LRUCache(maxsize=65536)
        self.reader = None
        self.prefetcher = None
        self._by_name = None
        self._gitlinks = None
        self.store = store
        self.root_tree = root_tree
        self._g = g
        self._dirs: dict[str, Listing] = {}  # folders read
        self._flat: dict[str, str] = {}  # every entry of the folders read, by path
        self._below: dict[str, list[str]] = {}  # folder -> its files' paths, once asked
        self._misses: dict[str, int] = {}  # parent folder -> its folders read on a lookup
        self._add("", store.listings([root_tree], [""])[0])
        self._full: RepoFiles | None = None
        self.entries = _Lookup(self, folders=False)  # type: ignore[assignment]
        self.trees = _Lookup(self, folders=True)  # type: ignore[assignment]

    # -- the whole tree, listed once where a question needs it

    def complete(self) -> RepoFiles:
        """The full listing (`ls-tree -r`), read on first need."""
        if self._full is None:
            self._full = _tree_files(self._g, self.root_tree, kind="tree")
            # plain dicts from now on: lookups in them are the hot path of a key
            self.entries, self.trees = self._full.entries, self._full.trees
        return self._full

    @property
    def paths(self) -> list[str]:  # type: ignore[override]
        return self.complete().paths

    def __len__(self) -> int:
        return len(self.complete())

    def named(self, name: str) -> list[str]:
        return self.complete().named(name)

    def gitlinks(self) -> list[str]:
        return self.complete().gitlinks()

    # -- lookups along one path

    def meta(self, path: str) -> str | None:
        """`"<mode> <type> <id>"` of whatever is at `path` (a folder too), or None."""
        found = self._flat.get(path)
        if found is not None:
            return found
        if not path:
            return f"040000 tree {self.root_tree}"
        parent = path.rpartition("/")[0]
        if parent in self._dirs or self.listing(parent) is None:
            return None  # its folder is read and has no such entry, or it has no folder
        return self._flat.get(path)

    def listing(self, path: str) -> Listing | None:
        """The entries of folder `path`, or None where it is no folder."""
        found = self._dirs.get(path)
        if found is not None:
            return found
        parent, _, name = path.rpartition("/")
        above = self.listing(parent) if path else None
        if above is None or not above.get(name, "").startswith("040000"):
            return None
        # The first few folders of a parent are read one by one; from then on a lookup
        # reads every unread sibling folder in the same round trip, so 5,000 lookups
        # side by side cost a handful of round trips, and one lookup in a folder of
        # 100,000 subfolders reads one tree, not 100,000.
        self._misses[parent] = misses = self._misses.get(parent, 0) + 1
        if misses <= _ONE_BY_ONE:
            self._read([path])
        else:
            self._read(
                [
                    p
                    for n, meta in above.items()
                    if meta.startswith("040000")
                    and (p := f"{parent}/{n}" if parent else n) not in self._dirs
                ]
            )
        return self._dirs[path]

    def under(self, prefix: str) -> Iterator[str]:
        """As RepoFiles.under, reading only the subtree that holds `prefix`."""
        if self._full is not None or not prefix:
            yield from self.complete().under(prefix)
            return
        top = prefix.rpartition("/")[0]
        listed = self._listed_above(top)
        if listed is None and prefix.endswith("/"):  # a folder's files: kept for the next
            listed = self._below[top] = self._walk(top, prefix) if self.listing(top) else []
        elif listed is None:  # a file, or a name's start: only what can match
            listed = self._walk(top, prefix) if self.listing(top) is not None else []
        i = bisect.bisect_left(listed, prefix)
        while i < len(listed) and listed[i].startswith(prefix):
            yield listed[i]
            i += 1

    def _listed_above(self, top: str) -> list[str] | None:
        """The sorted files below `top` or the nearest folder above it that has been
        listed whole (a subtree is walked once; a slice of it answers the rest)."""
        folder = top
        while folder:
            if (listed := self._below.get(folder)) is not None:
                return listed
            folder = folder.rpartition("/")[0]
        return None

    def _walk(self, top: str, prefix: str) -> list[str]:
        """Files below folder `top` whose paths start with `prefix`, reading the folders
        that can hold them a level at a time, each level in one round trip."""
        found: list[str] = []
        level = [top]
        while level:
            below = []
            for d in level:
                for name, meta in self._dirs[d].items():
                    path = f"{d}/{name}" if d else name
                    if meta.startswith("040000"):
                        if path.startswith(prefix) or prefix.startswith(path + "/"):
                            below.append(path)
                    elif path.startswith(prefix):
                        found.append(path)
            self._read([p for p in below if p not in self._dirs])
            level = below
        found.sort()
        return found

    def _read(self, folders: list[str]) -> None:
        """Read unread `folders` (whose parents are read) in one round trip."""
        oids = [self._flat[p].rpartition(" ")[2] for p in folders]
        for folder, listing in zip(folders, self.store.listings(oids, folders), strict=True):
            self._add(folder, listing)

    def _add(self, folder: str, listing: Listing) -> None:
        self._dirs[folder] = listing
        if folder:
            self._flat.update((f"{folder}/{name}", meta) for name, meta in listing.items())
        else:
            self._flat.update(listing)


class _Lookup(Mapping[str, str]):
    """A listed RepoFiles' `entries` (`folders` False: files, symlinks and submodules ->
    their digests) or `trees` (True: folders -> their tree ids, "" the root)."""

    def __init__(self, files: LazyFiles, *, folders: bool) -> None:
        self._files = files
        self._folders = folders

    def __getitem__(self, path: str) -> str:
        found = self.get(path)
        if found is None:
            raise KeyError(path)
        return found

    def get(self, path: str, default: str | None = None) -> str | None:  # type: ignore[override]
        files = self._files
        meta = files._flat.get(path)
        if meta is None:
            if files._full is not None:
                return self._listed().get(path, default)
            meta = files.meta(path) if path or self._folders else None
        if meta is None or meta.startswith("040000") != self._folders:
            return default
        return meta.rpartition(" ")[2] if self._folders else meta

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self.get(path) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._listed())

    def __len__(self) -> int:
        return len(self._listed())

    def _listed(self) -> Mapping[str, str]:
        full = self._files.complete()
        return full.trees if self._folders else full.entries


def lazy_tree_files(root: Path, rev: str, store: TreeStore) -> LazyFiles:
    """The files of commit `rev`, read lazily (module doc) through `store`; its blobs
    readable."""
    g = _git(root)
    oid = _verify_commit(g, rev)
    try:
        tree = str(g.rev_parse(f"{oid}^{{tree}}"))
    except git.GitCommandError as exc:
        raise GitError(f"cannot read the tree of '{rev}': {git_reason(exc)}", rev=rev) from None
    files = LazyFiles(store, tree, rev=rev, g=g)
    attach_reader(root, files)
    return files
