"""The files of a tree and their content digests, read through GitPython.

A digest is `"<mode> <git blob id>"`: for a tracked, unmodified file git already knows
it (no file is read); a modified or untracked file is hashed the way git would hash it,
so the same content has the same digest whether it is committed or not.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

import git
from cachetools import LRUCache

from .errors import GitError

__all__ = ["RepoFiles", "blob_id", "find_repo_root", "read_at", "tree_files", "worktree_files"]


class RepoFiles:
    """A snapshot of a tree: sorted paths and their digests, searchable by prefix."""

    def __init__(self, entries: Mapping[str, str], *, rev: str | None = None) -> None:
        self.entries = dict(entries)
        self.paths = sorted(self.entries)
        self.rev = rev  # None for a working tree
        self.selections: LRUCache[object, object] = LRUCache(maxsize=65536)

    def __contains__(self, path: object) -> bool:
        return path in self.entries

    def __len__(self) -> int:
        return len(self.paths)

    def digest(self, path: str) -> str:
        return self.entries[path]

    def under(self, prefix: str) -> Iterator[str]:
        """Paths starting with `prefix` (a directory prefix ends with '/'; '' is all)."""
        paths = self.paths
        i = bisect.bisect_left(paths, prefix)
        while i < len(paths) and paths[i].startswith(prefix):
            yield paths[i]
            i += 1


def blob_id(data: bytes) -> str:
    """The id git gives a blob with this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def find_repo_root(start: Path) -> Path | None:
    """The top of the git work tree containing `start`, or None outside git."""
    try:
        repo = git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None
    return Path(repo.working_tree_dir) if repo.working_tree_dir else None


def _why(exc: git.GitCommandError) -> str:
    """git's own complaint, without GitPython's `stderr: '...'` wrapping."""
    text = str(exc.stderr or "").strip()
    if text.startswith("stderr: "):
        text = text[len("stderr: ") :].strip("'")
    return text.strip() or f"git exited with {exc.status}"


def _git(root: Path) -> git.Git:
    return git.Repo(root).git


def _split_z(out: bytes) -> list[str]:
    return [os.fsdecode(p) for p in out.split(b"\0") if p]


def _worktree_digest(root: Path, path: str) -> str | None:
    full = root / path
    try:
        st = full.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISLNK(st.st_mode):
        return f"120000 {blob_id(os.fsencode(os.readlink(full)))}"
    if stat.S_ISDIR(st.st_mode):  # a submodule or nested repository: not a file of ours
        return None
    mode = "100755" if st.st_mode & 0o111 else "100644"
    return f"{mode} {blob_id(full.read_bytes())}"


def worktree_files(root: Path) -> RepoFiles:
    """The working tree as it is now: tracked files (staged or not) and untracked ones.

    Ignored files are left out, as git leaves them out; outside a git repository every
    file below `root` counts.
    """
    if find_repo_root(root) is None:
        return _plain_files(root)
    g = _git(root)
    try:
        staged = g.ls_files("-s", "-z", stdout_as_string=False)
        modified = g.diff_files("-z", "--name-only", stdout_as_string=False)
        untracked = g.ls_files("-o", "--exclude-standard", "-z", stdout_as_string=False)
    except git.GitCommandError as exc:
        raise GitError(f"cannot list the files of {root}: {_why(exc)}") from None
    entries: dict[str, str] = {}
    conflicted: set[str] = set()
    for record in staged.split(b"\0"):
        if not record:
            continue
        meta, _, raw_path = record.partition(b"\t")
        mode, sha, stage = meta.decode().split(" ")
        path = os.fsdecode(raw_path)
        if stage != "0":
            conflicted.add(path)
        entries[path] = f"{mode} {sha}"
    for path in [*_split_z(modified), *conflicted, *_split_z(untracked)]:
        if entries.get(path, "").startswith("160000 "):
            continue  # a submodule counts by the commit recorded for it
        digest = _worktree_digest(root, path)
        if digest is None:
            entries.pop(path, None)
        else:
            entries[path] = digest
    return RepoFiles(entries)


def _plain_files(root: Path) -> RepoFiles:
    entries: dict[str, str] = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in [*names, *(d for d in dirs if os.path.islink(os.path.join(folder, d)))]:
            rel = os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
            digest = _worktree_digest(root, rel)
            if digest is not None:
                entries[rel] = digest
    return RepoFiles(entries)


def tree_files(root: Path, rev: str) -> RepoFiles:
    """The files of commit `rev`, from git's tree objects alone (no checkout)."""
    g = _git(root)
    _verify_commit(g, rev)
    try:
        out = g.ls_tree("-r", "-z", "--full-tree", rev, stdout_as_string=False)
    except git.GitCommandError as exc:
        raise GitError(f"cannot read the tree of '{rev}': {_why(exc)}", rev=rev) from None
    entries: dict[str, str] = {}
    for record in out.split(b"\0"):
        if record:
            meta, _, raw_path = record.partition(b"\t")
            mode, _kind, sha = meta.decode().split(" ")
            entries[os.fsdecode(raw_path)] = f"{mode} {sha}"
    return RepoFiles(entries, rev=rev)


def _verify_commit(g: git.Git, rev: str) -> None:
    try:
        g.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}")
    except git.GitCommandError:
        raise GitError(
            f"unknown revision '{rev}': no such commit in this clone "
            "(fetch it; a shallow clone may need more history)",
            rev=rev,
        ) from None


def read_at(root: Path, rev: str, path: str) -> str | None:
    """The text of `path` at commit `rev`, or None where it does not exist there."""
    g = _git(root)
    _verify_commit(g, rev)
    try:
        data: bytes = g.show(f"{rev}:{path}", stdout_as_string=False, strip_newline_in_stdout=False)
    except git.GitCommandError:
        return None
    return data.decode("utf-8", errors="replace")
