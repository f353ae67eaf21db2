"""A layer's `copy` entries as layer entries: exactly the files its key reads.

What a source copies comes from `sources.CopySource.landed`, the enumeration the key
is computed from, so the layer holds what the key names and nothing else (no ignored
or untracked file). Files from the repository take git's modes (0644, or 0755 for an
executable), never the checkout's umask, and every mtime is the epoch: a copy layer is
the same bytes on any machine. Docker's COPY semantics: a directory's contents go into
`dest`; several sources or a wildcard go into `dest` as a folder; one file goes to
`dest` itself unless `dest` ends in `/` (or `/.`) or is a folder in the parent;
symlinks stay symlinks. Folders the copy creates are written (0755, with `chown`'s
owner); folders the parent has keep their mode and owner (fsutil copies file info
only for folders it creates).
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from ..errors import BuildError, GitError
from ..graph import CopySpec, ImageLayer
from ..repo import GITLINK, RepoFiles, submodule_tree
from ..sources import copy_source
from .tarwriter import DIR, FIFO, FILE, SYMLINK, Entry, link_shared, sort_key
from .users import Reader, chown_ids

__all__ = ["FromLayer", "copy_entries", "dir_files", "image_path"]

Meta = Callable[[str], tuple[int, int, int] | None]  # (mode, uid, gid) of an image path


class FromLayer:
    """Another layer's image as a copy source: extracted files, header metadata."""

    def __init__(self, root: Path, meta: Meta) -> None:
        self.root, self.meta = root, meta
        self.files = dir_files(root)


def image_path(dest: str, workdir: str) -> str:
    """`dest` as a path in the image, relative to its root (`app/src`); a relative
    `dest` is taken from the working directory, as COPY does."""
    full = posixpath.normpath(posixpath.join("/", workdir or "/", dest))
    return full.lstrip("/")


def _names_folder(dest: str) -> bool:
    """`x/`, `x/.`, `.` and `..` name a folder (BuildKit keeps a trailing `/.`)."""
    return dest in (".", "..") or dest.endswith(("/", "/.", "/.."))


def copy_entries(
    layer: ImageLayer,
    files: RepoFiles,
    *,
    root: Path,
    workdir: str,
    parent_read: Reader,
    parent_is_dir: Callable[[str], bool],
    parent_realpath: Callable[[str], str],
    from_layers: Mapping[str, FromLayer],
    scratch: Path,
    epoch: int = 0,
) -> list[Entry]:
    """Every entry `layer.copy` writes, later copies over earlier ones."""
    out: dict[str, Entry] = {}
    for c in layer.copy:
        try:
            owner = chown_ids(c.chown, parent_read) if c.chown else None
        except BuildError as exc:
            raise BuildError(str(exc), layer=layer.name) from None
        mode = int(c.chmod, 8) if c.chmod else None
        copier = _Copy(c, workdir, parent_is_dir, owner, mode, epoch, scratch)
        copier.dest = parent_realpath(copier.dest)  # a link on dest: COPY writes where it points
        if c.from_layer:
            found = copier.run(from_layers[c.from_layer], layer.name)
        else:
            found = copier.run(None, layer.name, files=files, repo=root)
        for entry in found:
            out[entry.path] = entry
    return list(out.values())


class _Copy:
    """One `copy` entry."""

    def __init__(
        self,
        c: CopySpec,
        workdir: str,
        parent_is_dir: Callable[[str], bool],
        owner: tuple[int, int] | None,
        mode: int | None,
        epoch: int,
        scratch: Path,
    ) -> None:
        self.c, self.parent_is_dir = c, parent_is_dir
        self.owner, self.mode, self.epoch, self.scratch = owner, mode, epoch, scratch
        self.dest = image_path(c.dest, workdir)

    def run(
        self,
        source_layer: FromLayer | None,
        name: str,
        *,
        files: RepoFiles | None = None,
        repo: Path | None = None,
    ) -> list[Entry]:
        c, dest = self.c, self.dest
        if source_layer is not None:
            files, src_root, scope = source_layer.files, source_layer.root, ""
        else:
            assert files is not None
            assert repo is not None
            src_root, scope = repo, None
        out: list[Entry] = []
        dirs: set[str] = set()
        for src in c.src:
            source = copy_source(src, c.exclude, "", scope)
            landed = source.landed(files)
            followed = source.followed(files)
            single = not source.is_glob and followed.prefix in files
            one_match = source.is_glob and len(landed) == 1 and "/" not in landed[0][0]
            into = (
                _names_folder(c.dest)
                or len(c.src) > 1
                or not (single or one_match)
                or (dest != "" and self.parent_is_dir(dest))
            )
            is_dir = not source.is_glob and followed.prefix in files.trees
            in_submodule = source.prefix and files.gitlink_above(source.prefix)
            if not landed and not is_dir and not in_submodule:
                raise BuildError(f"copy source '{src}' matches no file", layer=name)
            for rel, path in landed:
                target = posixpath.join(dest, rel) if into else dest
                if not target:
                    raise BuildError(
                        f"copy of '{src}' to '{c.dest}' writes over the root", layer=name
                    )
                if files.digest(path).startswith(GITLINK):
                    if path == followed.prefix:  # the source names it: what it holds
                        target = dest
                    out += self._submodule(src_root, path, files.digest(path), target, dirs)
                    continue
                out.append(self._entry(files, src_root, path, target, source_layer))
                dirs.add(posixpath.dirname(target))
            if not landed and in_submodule and source_layer is None:
                if source.is_glob:
                    raise BuildError(
                        f"copy source '{src}': a wildcard inside a submodule is not built yet",
                        layer=name,
                    )
                gitlink = files.gitlink_above(source.prefix) or ""
                inner = source.prefix[len(gitlink) + 1 :]
                out += self._submodule(
                    src_root, gitlink, files.digest(gitlink), dest, dirs, inside=inner, into=into
                )
            if is_dir and source_layer is not None:  # an image's empty folders
                base = followed.prefix
                for d in files.trees:
                    below = d != base and (not base or d.startswith(base + "/"))
                    if below and (not c.exclude or source.relative(d + "/") is not None):
                        dirs.add(posixpath.join(dest, d[len(base) :].lstrip("/")))
        out += self._folders(dirs, source_layer, files)
        if source_layer is not None:
            out = link_shared(out)
        return out

    def _folders(
        self, dirs: set[str], source_layer: FromLayer | None, files: RepoFiles
    ) -> list[Entry]:
        """Folders the copy creates, up to the first one the parent has: a folder the
        parent has keeps its metadata, so it is not written."""
        wanted: set[str] = set()
        for d in dirs:
            while d and d not in wanted:
                wanted.add(d)
                d = posixpath.dirname(d)
        out = []
        for d in sorted(wanted, key=sort_key):
            if self.parent_is_dir(d):
                continue
            uid, gid = self.owner or (0, 0)
            mode = 0o755
            inside = d[len(self.dest) :].lstrip("/") if d.startswith(self.dest) else None
            if source_layer is not None and inside is not None and d != self.dest:
                meta = _source_meta(source_layer, self.c, inside)
                if meta is not None:
                    mode = meta[0]
                    uid, gid = self.owner or meta[1:]
            out.append(Entry(d, DIR, mode, uid, gid, mtime=self.epoch))
        return out

    def _entry(
        self,
        files: RepoFiles,
        src_root: Path,
        path: str,
        target: str,
        source_layer: FromLayer | None,
    ) -> Entry:
        kind = files.digest(path).split(" ", 1)[0]
        full = os.path.join(src_root, path)
        uid, gid = self.owner or (0, 0)
        if source_layer is not None:
            st = os.lstat(full)
            meta = source_layer.meta(path)
            mode, ouid, ogid = meta if meta is not None else (stat.S_IMODE(st.st_mode), 0, 0)
            uid, gid = self.owner or (ouid, ogid)  # COPY --from keeps the owner unless chown
            if stat.S_ISFIFO(st.st_mode):
                return Entry(target, FIFO, mode, uid, gid, mtime=self.epoch)
        else:
            mode = 0o755 if kind == "100755" else 0o644
        if kind == "120000":
            link = files.read(path)
            if link is None:
                raise BuildError(f"cannot read the symlink {path}")
            return Entry(
                target, SYMLINK, 0o777, uid, gid, target=os.fsdecode(link), mtime=self.epoch
            )
        if self.mode is not None:
            mode = self.mode
        return Entry(target, FILE, mode, uid, gid, source=full, mtime=self.epoch)

    def _submodule(
        self,
        repo: Path,
        path: str,
        digest: str,
        target: str,
        dirs: set[str],
        *,
        inside: str = "",
        into: bool = True,
    ) -> list[Entry]:
        """A submodule's files (or those at `inside` in it) at the commit the key holds,
        read from its own git: the checkout's files may be edited; the key names the
        commit only."""
        commit = digest.rpartition(" ")[2]
        try:
            tree = submodule_tree(repo / path, commit, inside=inside)
        except GitError as exc:
            raise BuildError(f"submodule {path}: {exc}") from None
        uid, gid = self.owner or (0, 0)
        out: list[Entry] = []
        where = self.scratch / f"submodule-{len(os.listdir(self.scratch))}"
        where.mkdir()
        for i, (mode, _kind, rel, data) in enumerate(tree):
            if inside and rel == inside:  # the source is one file in the submodule
                item = posixpath.join(target, posixpath.basename(rel)) if into else target
            else:
                item = posixpath.join(target, rel[len(inside) :].lstrip("/") if inside else rel)
            dirs.add(posixpath.dirname(item))
            if data is None:
                continue  # a submodule inside it: its files are not in this one's tree
            if mode == "120000":
                out.append(
                    Entry(
                        item, SYMLINK, 0o777, uid, gid, target=os.fsdecode(data), mtime=self.epoch
                    )
                )
                continue
            blob = where / str(i)
            blob.write_bytes(data)
            m = self.mode if self.mode is not None else (0o755 if mode == "100755" else 0o644)
            out.append(Entry(item, FILE, m, uid, gid, source=str(blob), mtime=self.epoch))
        return out


def _source_meta(source_layer: FromLayer, c: CopySpec, inside: str) -> tuple[int, int, int] | None:
    """Header metadata of the folder `inside` (relative to dest) in the source image."""
    for src in c.src:
        base = copy_source(src, c.exclude, "", "").followed(source_layer.files).prefix
        meta = source_layer.meta(posixpath.join(base, inside) if base else inside)
        if meta is not None:
            return meta
    return None


def dir_files(path: Path) -> RepoFiles:
    """A directory (an image's extracted root) as the file snapshot sources.py reads:
    files, fifos and symlinks with git-like modes, and every folder as a tree."""
    entries: dict[str, str] = {}
    trees: dict[str, str] = {"": "dir"}
    todo = [""]  # a stack, not os.walk: Python 3.11's recurses, and a root may nest deeper
    while todo:
        rel_top = todo.pop()
        with os.scandir(path / rel_top if rel_top else path) as found:
            for item in found:
                rel = f"{rel_top}/{item.name}" if rel_top else item.name
                st = item.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    trees[rel] = "dir"
                    todo.append(rel)
                elif stat.S_ISLNK(st.st_mode):
                    entries[rel] = "120000 blob -"
                elif stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode):
                    entries[rel] = "100755 blob -" if st.st_mode & 0o100 else "100644 blob -"
    files = RepoFiles(entries, trees=trees, rev="dir")

    def read(rel: str) -> bytes | None:
        full = path / rel
        try:
            return os.fsencode(os.readlink(full)) if full.is_symlink() else full.read_bytes()
        except OSError:
            return None

    files.reader = read
    return files
