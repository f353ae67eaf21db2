"""A layer's `copy` entries as layer entries: exactly the files its key reads.

What a source copies comes from `sources.CopySource.landed`, the enumeration the key
is computed from, so the layer holds what the key names and nothing else (no ignored
or untracked file). Modes are git's (0644, or 0755 for an executable), never the
checkout's umask, and every mtime is the epoch: a copy layer is the same bytes on any
machine. Docker's COPY semantics: a directory's contents go into `dest`; several
sources or a wildcard go into `dest` as a directory; one file goes to `dest` itself
unless `dest` ends in `/` or is a directory in the parent; symlinks stay symlinks.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from ..errors import BuildError
from ..graph import CopySpec, ImageLayer
from ..repo import GITLINK, RepoFiles
from ..sources import copy_source
from .tarwriter import DIR, FILE, SYMLINK, Entry
from .users import Reader, chown_ids

__all__ = ["copy_entries", "dir_files", "image_path"]


def image_path(dest: str, workdir: str) -> str:
    """`dest` as a path in the image, relative to its root (`app/src`); a relative
    `dest` is taken from the working directory, as COPY does."""
    full = posixpath.normpath(posixpath.join("/", workdir or "/", dest))
    return full.lstrip("/")


def copy_entries(
    layer: ImageLayer,
    files: RepoFiles,
    *,
    root: Path,
    workdir: str,
    parent_read: Reader,
    parent_is_dir: Callable[[str], bool],
    from_layers: Mapping[str, Path],
    epoch: int = 0,
) -> list[Entry]:
    """Every entry `layer.copy` writes, later copies over earlier ones."""
    out: dict[str, Entry] = {}
    for c in layer.copy:
        owner = chown_ids(c.chown, parent_read) if c.chown else (0, 0)
        mode = int(c.chmod, 8) if c.chmod else None
        if c.from_layer:
            src_root = from_layers[c.from_layer]
            view = dir_files(src_root)
            scope: str | None = ""  # an image's links resolve inside its root
        else:
            src_root, view, scope = root, files, None
        for entry in _one_copy(c, view, src_root, workdir, parent_is_dir, scope, owner, mode):
            out[entry.path] = _clamped(entry, epoch)
    return list(out.values())


def _one_copy(
    c: CopySpec,
    files: RepoFiles,
    src_root: Path,
    workdir: str,
    parent_is_dir: Callable[[str], bool],
    scope: str | None,
    owner: tuple[int, int],
    mode: int | None,
) -> list[Entry]:
    dest = image_path(c.dest, workdir)
    out: list[Entry] = []
    for src in c.src:
        source = copy_source(src, c.exclude, "", scope)
        landed = source.landed(files)
        followed = source.followed(files)
        single = not source.is_glob and followed.prefix in files
        one_match = source.is_glob and len(landed) == 1 and "/" not in landed[0][0]
        into = (
            c.dest.endswith("/")
            or len(c.src) > 1
            or not (single or one_match)
            or (dest != "" and parent_is_dir(dest))
        )
        if not landed and not _is_dir(files, followed.prefix):
            gitlink = files.gitlink_above(source.prefix) if source.prefix else None
            if gitlink is None:
                raise BuildError(f"copy source '{src}' matches no file")
        dirs: set[str] = set()
        for rel, path in landed:
            target = posixpath.join(dest, rel) if into else dest
            if not target:
                raise BuildError(f"copy of '{src}' to '{c.dest}' writes over the root")
            digest = files.digest(path)
            if digest.startswith(GITLINK):
                out += _submodule(src_root / path, target, owner, mode)
            else:
                out.append(_entry(files, src_root, path, target, owner, mode))
            _parents(target, dest, dirs)
        if _is_dir(files, followed.prefix):  # empty folders of an image's directory
            base = followed.prefix
            for d in files.trees:
                if d != base and (not base or d.startswith(base + "/")):
                    rel = d[len(base) + 1 :] if base else d
                    if not source.exclude or source.relative(d + "/x") is not None:
                        dirs.add(posixpath.join(dest, rel))
        for d in sorted(dirs):
            m = _dir_mode(src_root, files, d, dest, followed.prefix)
            out.append(Entry(d, DIR, mode if mode is not None else m, *owner))
    return out


def _is_dir(files: RepoFiles, path: str) -> bool:
    return path in files.trees


def _parents(target: str, dest: str, dirs: set[str]) -> None:
    """The folders between `dest` (not included: it may exist in the parent, with
    modes the layer must not change) and `target`."""
    head = posixpath.dirname(target)
    while head and head != dest and (not dest or head.startswith(dest + "/")):
        dirs.add(head)
        head = posixpath.dirname(head)


def _dir_mode(src_root: Path, files: RepoFiles, d: str, dest: str, base: str) -> int:
    if files.rev != "dir":
        return 0o755  # git keeps no folder modes
    rel = d[len(dest) :].lstrip("/") if dest else d
    try:
        return stat.S_IMODE(os.lstat(src_root / base / rel).st_mode)
    except OSError:
        return 0o755


def _entry(
    files: RepoFiles,
    src_root: Path,
    path: str,
    target: str,
    owner: tuple[int, int],
    mode: int | None,
) -> Entry:
    kind = files.digest(path).split(" ", 1)[0]
    full = src_root / path
    if kind == "120000":
        link = files.read(path)
        if link is None:
            raise BuildError(f"cannot read the symlink {path}")
        return Entry(target, SYMLINK, 0o777, *owner, target=os.fsdecode(link))
    if files.rev == "dir":  # an image's file keeps its mode
        default = stat.S_IMODE(os.lstat(full).st_mode)
    else:
        default = 0o755 if kind == "100755" else 0o644
    return Entry(target, FILE, mode if mode is not None else default, *owner, source=str(full))


def _submodule(path: Path, target: str, owner: tuple[int, int], mode: int | None) -> list[Entry]:
    """A submodule's checked-out files (the key holds its commit; git's tree does not
    list what is inside)."""
    if not path.is_dir() or not any(path.iterdir()):
        raise BuildError(
            f"submodule {path.name} is not checked out; run git submodule update --init"
        )
    out = [Entry(target, DIR, 0o755, *owner)]
    for top, dirnames, names in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        rel_top = os.path.relpath(top, path)
        for d in dirnames:
            out.append(Entry(posixpath.normpath(f"{target}/{rel_top}/{d}"), DIR, 0o755, *owner))
        for name in names:
            if name == ".git":
                continue
            full = os.path.join(top, name)
            where = posixpath.normpath(f"{target}/{rel_top}/{name}")
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out.append(Entry(where, SYMLINK, 0o777, *owner, target=os.readlink(full)))
            elif stat.S_ISREG(st.st_mode):
                m = 0o755 if st.st_mode & 0o100 else 0o644
                out.append(Entry(where, FILE, mode if mode is not None else m, *owner, source=full))
    return out


def _clamped(e: Entry, epoch: int) -> Entry:
    return e if e.mtime == epoch else replace(e, mtime=epoch)


def dir_files(path: Path) -> RepoFiles:
    """A directory (an image's extracted root) as the file snapshot sources.py reads:
    files and symlinks with git-like modes, and every folder as a tree."""
    entries: dict[str, str] = {}
    trees: dict[str, str] = {"": "dir"}
    for top, dirnames, names in os.walk(path):
        rel_top = os.path.relpath(top, path)
        rel_top = "" if rel_top == "." else rel_top
        for d in list(dirnames):
            rel = f"{rel_top}/{d}" if rel_top else d
            if os.path.islink(os.path.join(top, d)):
                entries[rel] = "120000 blob -"
                dirnames.remove(d)
            else:
                trees[rel] = "dir"
        for name in names:
            rel = f"{rel_top}/{name}" if rel_top else name
            st = os.lstat(os.path.join(top, name))
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = "120000 blob -"
            elif stat.S_ISREG(st.st_mode):
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
