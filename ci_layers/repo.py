"""The files and directories of a tree and their content digests, read through GitPython.

A file's digest is `"<mode> <type> <id>"` as `git ls-tree` prints it (the type is `blob`,
or `commit` for a submodule); a directory's is its git tree id. Both come
from git's own objects: a commit is read with `ls-tree`, and the working tree is first
written as a tree object through a throw-away index (`git add -A`, `write-tree`), so a
tracked, unmodified file is never read (the index knows its blob id), a modified or
untracked one is hashed by git, and the same content has the same digest whether it is
committed or not. Ignored files are not part of a tree, as git leaves them out.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import git
from cachetools import LRUCache

from .errors import GitError

__all__ = [
    "RepoFiles",
    "attach_reader",
    "blob_id",
    "find_repo_root",
    "git_reason",
    "read_at",
    "tree_files",
    "worktree_files",
]

TREE, GITLINK = "040000", "160000"


class RepoFiles:
    """A snapshot of a tree: sorted file paths with digests, and directory tree ids."""

    def __init__(
        self,
        entries: Mapping[str, str],
        *,
        trees: Mapping[str, str] | None = None,
        rev: str | None = None,
    ) -> None:
        self.entries = entries if isinstance(entries, dict) else dict(entries)
        self.trees = dict(trees or {})  # directory path -> tree id ("" is the root)
        paths = list(self.entries)
        # git lists trees in byte order already; sort only what is not sorted
        self.paths = paths if all(a < b for a, b in itertools.pairwise(paths)) else sorted(paths)
        self.rev = rev  # the commit or tree it was read from
        self.selections: LRUCache[object, object] = LRUCache(maxsize=65536)
        self.reader: Callable[[str], bytes | None] | None = None  # file contents, by path
        self.prefetcher: Callable[[list[str]], None] | None = None  # many reads at once
        self._by_name: tuple[dict[str, list[str]], dict[str, list[str]]] | None = None
        self._gitlinks: list[str] | None = None

    def __contains__(self, path: object) -> bool:
        return path in self.entries

    def __len__(self) -> int:
        return len(self.paths)

    def digest(self, path: str) -> str:
        return self.entries[path]

    def read(self, path: str) -> bytes | None:
        """The content of file `path` in this snapshot (None if absent or unreadable)."""
        if path not in self.entries or self.reader is None:
            return None
        return self.reader(path)

    def prefetch(self, paths: list[str]) -> None:
        """Make the reads of `paths` that follow cheap, where the reader can batch them."""
        if self.prefetcher is not None:
            self.prefetcher(paths)

    def under(self, prefix: str) -> Iterator[str]:
        """Paths starting with `prefix` (a directory prefix ends with '/'; '' is all)."""
        paths = self.paths
        i = bisect.bisect_left(paths, prefix)
        while i < len(paths) and paths[i].startswith(prefix):
            yield paths[i]
            i += 1

    def named(self, name: str) -> list[str]:
        """Paths of files, and of files below directories, whose last segment is `name`."""
        if self._by_name is None:
            files: dict[str, list[str]] = {}
            dirs: dict[str, list[str]] = {}
            for p in self.paths:
                files.setdefault(p.rpartition("/")[2], []).append(p)
            for d in self.trees:
                if d:
                    dirs.setdefault(d.rpartition("/")[2], []).append(d)
            self._by_name = (files, dirs)
        files, dirs = self._by_name
        found = files.get(name, [])
        for d in dirs.get(name, ()):
            found = [*found, *self.under(d + "/")]
        return found

    def gitlinks(self) -> list[str]:
        """Paths of the submodules (gitlinks) in this snapshot."""
        if self._gitlinks is None:
            self._gitlinks = [p for p, d in self.entries.items() if d.startswith(GITLINK)]
        return self._gitlinks

    def gitlink_above(self, path: str) -> str | None:
        """The submodule path that contains `path` (or is it), if any."""
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            head = "/".join(parts[:i])
            if self.entries.get(head, "").startswith(GITLINK):
                return head
        return None


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


def git_reason(exc: git.GitCommandError) -> str:
    """git's own complaint, without GitPython's `stderr: '...'` wrapping."""
    text = str(exc.stderr or "").strip()
    if text.startswith("stderr: "):
        text = text[len("stderr: ") :].strip("'")
    return text.strip() or f"git exited with {exc.status}"


def _git(root: Path) -> git.Git:
    try:
        return git.Repo(root).git
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise GitError(f"{root} is not a git repository; this needs one") from None


def parse_ls_tree(out: bytes, *, rev: str | None) -> RepoFiles:
    """RepoFiles from `git ls-tree -r -t -z` output: "<mode> <type> <id>\\t<path>\\0".

    A file's digest is its "<mode> <type> <id>" as git prints it. The whole listing is
    split in C (one decode, one replace, one split): a 200k-file tree in ~0.2 s.
    """
    text = out.decode("utf-8", "surrogateescape")  # keeps non-UTF-8 names exact
    if text.count("\t") == text.count("\0"):  # no tab in any name: split in one go
        parts = text.replace("\t", "\0").split("\0")
        metas, paths = parts[0:-1:2], parts[1::2]
    else:
        records = [r.partition("\t") for r in text.split("\0") if r]
        metas, paths = [r[0] for r in records], [r[2] for r in records]
    entries = dict(zip(paths, metas, strict=True))
    trees = {}
    for i in [i for i, m in enumerate(metas) if m[0] == "0"]:  # 040000: only trees
        path = paths[i]
        trees[path] = metas[i][metas[i].rindex(" ") + 1 :]
        del entries[path]
    return RepoFiles(entries, trees=trees, rev=rev)


def _verify_commit(g: git.Git, rev: str, *, kind: str = "commit") -> str:
    try:
        return str(g.rev_parse("--verify", "--quiet", f"{rev}^{{{kind}}}"))
    except git.GitCommandError:
        pass
    try:
        g.rev_parse("--verify", "--quiet", "HEAD^{commit}")
    except git.GitCommandError:
        raise GitError(
            f"unknown revision '{rev}': the repository has no commit yet", rev=rev
        ) from None
    raise GitError(
        f"unknown revision '{rev}': not in this clone; check the name, or git fetch it "
        "(a shallow clone may need more history)",
        rev=rev,
    )


def attach_reader(root: Path, files: RepoFiles) -> RepoFiles:
    """Let `files` read blob contents from the repository at `root`."""
    files.reader = _blob_reader(_git(root), files)
    return files


def tree_files(root: Path, rev: str, *, kind: str = "commit") -> RepoFiles:
    """The files and directories of commit (or tree) `rev`, from git's objects alone."""
    return attach_reader(root, _tree_files(_git(root), rev, kind=kind))


def _tree_files(g: git.Git, rev: str, *, kind: str) -> RepoFiles:
    oid = _verify_commit(g, rev, kind=kind)
    try:
        out = g.ls_tree("-r", "-t", "-z", "--full-tree", oid, stdout_as_string=False)
        root_tree = str(g.rev_parse(f"{oid}^{{tree}}"))
    except git.GitCommandError as exc:
        raise GitError(f"cannot read the tree of '{rev}': {git_reason(exc)}", rev=rev) from None
    files = parse_ls_tree(out, rev=rev)
    files.trees[""] = root_tree
    return files


# Blobs read by id (Dockerfiles, .dockerignore files): both ends of a plan mostly share
# them, and a blob id names its content for good.
_BLOBS: LRUCache[tuple[str, str], bytes] = LRUCache(maxsize=32 * 1024 * 1024, getsizeof=len)


def _blob_reader(g: git.Git, files: RepoFiles) -> Callable[[str], bytes | None]:
    """Blob contents through one long-lived `git cat-file --batch` (GitPython's object
    database), not a process per file."""
    repo = git.Repo(g.working_dir)  # held by the closure: freeing it stops its cat-file
    where = str(g.working_dir)

    def prefetch(paths: list[str]) -> None:
        """Read the blobs of `paths` into the cache in one pipelined `git cat-file
        --batch` (Dockerfiles and .dockerignore files: thousands, one round trip)."""
        oids = {files.entries[p].rpartition(" ")[2] for p in paths if p in files.entries}
        wanted = sorted(o for o in oids if (where, o) not in _BLOBS)
        if len(wanted) < 2:
            return
        try:
            proc = subprocess.run(
                ["git", "cat-file", "--batch"],
                cwd=where,
                input="".join(o + "\n" for o in wanted).encode(),
                capture_output=True,
                check=True,
            )
        except (OSError, subprocess.CalledProcessError):
            return  # each is read on its own then
        out, at = proc.stdout, 0
        for oid in wanted:
            end = out.index(b"\n", at)
            header = out[at:end].split(b" ")
            at = end + 1
            if len(header) != 3:  # "<oid> missing": read (and fail) on its own later
                continue
            size = int(header[2])
            _BLOBS[(where, oid)] = out[at : at + size]
            at += size + 1

    files.prefetcher = prefetch

    def read(path: str) -> bytes | None:
        oid = files.entries[path].rpartition(" ")[2]
        data = _BLOBS.get((where, oid))
        if data is None:
            try:
                data = repo.odb.stream(bytes.fromhex(oid)).read()
            except (ValueError, git.GitCommandError, OSError):
                return None
            _BLOBS[(where, oid)] = data
        return data

    return read


def _disk_reader(root: Path) -> Callable[[str], bytes | None]:
    def read(path: str) -> bytes | None:
        """What git stores for `path`: a symlink's target text, not what it points to."""
        full = root / path
        try:
            if full.is_symlink():
                return os.fsencode(os.readlink(full))
            return full.read_bytes()
        except OSError:
            return None

    return read


def worktree_files(root: Path) -> RepoFiles:
    """The working tree as it is now: tracked files, staged or not, and untracked ones.

    Written as a tree through a copy of the index and a private object directory, so
    neither the real index nor the repository's objects change. Outside a git
    repository, `root` is read into a scratch repository the same way.
    """
    top = find_repo_root(root)
    if top is None:
        return _plain_files(root)
    repo = git.Repo(top)
    with tempfile.TemporaryDirectory(prefix="ci-layers-index-") as tmp:
        index = Path(tmp) / "index"
        real_index = Path(repo.git_dir) / "index"
        if real_index.exists():
            # copy2 keeps the mtime, which git needs to see same-second edits as racy
            shutil.copy2(real_index, index)
        objects = Path(tmp) / "objects"
        objects.mkdir()
        env = {
            "GIT_INDEX_FILE": str(index),
            "GIT_OBJECT_DIRECTORY": str(objects),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(Path(repo.common_dir) / "objects"),
        }
        try:
            with repo.git.custom_environment(**env):
                _add_all(repo.git)
                tree = str(repo.git.write_tree())
                files = _tree_files(repo.git, tree, kind="tree")
                files.reader = _disk_reader(top)
                return files
        except git.GitCommandError as exc:
            raise GitError(f"cannot read the working tree of {top}: {git_reason(exc)}") from None


_NO_COMMIT = re.compile(r"error: '(.+)/' does not have a commit checked out")


def _add_all(g: git.Git) -> None:
    """`git add -A`, leaving out nested repositories without a commit (git refuses
    them, and they hold nothing a commit of this repository could contain)."""
    skipped: list[str] = []
    for _ in range(100):
        try:
            g.add("-A", "--", ":/", *(f":(exclude,top){p}" for p in skipped))
            return
        except git.GitCommandError as exc:
            found = _NO_COMMIT.findall(str(exc.stderr))
            if not found or set(found) <= set(skipped):
                raise
            skipped.extend(found)
    raise GitError("too many nested repositories without a commit")


def _plain_files(root: Path) -> RepoFiles:
    with tempfile.TemporaryDirectory(prefix="ci-layers-plain-") as tmp:
        git.Repo.init(tmp, bare=True)
        g = git.Git(root)
        try:
            with g.custom_environment(GIT_DIR=tmp, GIT_WORK_TREE=str(root)):
                g.add("-A", "--force", "--", ".")
                tree = str(g.write_tree())
                files = _tree_files(g, tree, kind="tree")
                files.reader = _disk_reader(root)
                return files
        except git.GitCommandError as exc:
            raise GitError(f"cannot read the files of {root}: {git_reason(exc)}") from None


def read_at(root: Path, rev: str, path: str) -> str | None:
    """The text of `path` at commit `rev`, or None where it does not exist there."""
    g = _git(root)
    oid = _verify_commit(g, rev)
    try:
        data: bytes = g.show(f"{oid}:{path}", stdout_as_string=False, strip_newline_in_stdout=False)
    except git.GitCommandError:
        return None
    return data.decode("utf-8", errors="replace")


def source_of(root: Path) -> tuple[str | None, str | None]:
    """(HEAD's commit id, the `origin` remote as an https URL), either None if unknown:
    what an image's revision and source annotations say."""
    try:
        repo = git.Repo(root)
        revision: str | None = repo.head.commit.hexsha
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
        return None, None
    try:
        url: str | None = str(repo.remote("origin").url)
    except ValueError:
        url = None
    if url:
        url = re.sub(r"^(?:ssh://)?git@([^:/]+)[:/]", r"https://\1/", url)
        url = re.sub(r"://[^@/]+@", "://", url)  # never a token from the URL
        url = url[:-4] if url.endswith(".git") else url
    return revision, url


def submodule_tree(
    root: Path, commit: str, *, inside: str = ""
) -> list[tuple[str, str, str, bytes | None]]:
    """(mode, type, path, content) of what the submodule checked out at `root` holds at
    `commit` (below `inside` only): content for blobs, None for a submodule in it."""
    try:
        sub = git.Repo(root)
        listing = sub.git.ls_tree(
            "-r", "-z", commit, "--", *([inside] if inside else []), stdout_as_string=False
        )
        out = []
        for record in listing.split(b"\0"):
            if not record:
                continue
            meta, _, name = record.partition(b"\t")
            mode, kind, oid = meta.decode().split(" ")
            data = sub.odb.stream(bytes.fromhex(oid)).read() if kind == "blob" else None
            out.append((mode, kind, os.fsdecode(name), data))
        return out
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, git.GitCommandError):
        raise GitError(
            f"its commit {commit[:12]} is not in this clone; run git submodule update --init",
            rev=commit,
        ) from None
