"""A parent image's files, looked up without extracting it: its layers' tar headers
merged in order, as an extraction would apply them (links on a path followed inside
the root, folders that only their contents imply, whiteouts and opaque folders), read
only when a copy needs to know (is `dest` a folder there? what does /etc/passwd say?)."""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Callable
from typing import IO, NamedTuple

from ..errors import BuildError
from ..oci.manifest import ImageManifest, Layer

__all__ = ["READ_LIMIT", "ImageView", "resolve_in_root"]

READ_LIMIT = 16 << 20  # a file read whole (/etc/passwd, /etc/group): no real one is near

_WH = ".wh."
_OPQ = ".wh..wh..opq"


class _Item(NamedTuple):
    layer: int  # the layer whose tar holds the bytes
    kind: str  # dir, file, symlink, other
    link: str  # a symlink's target
    mode: int
    uid: int
    gid: int
    member: str  # the name in that layer's tar holding the bytes (a hardlink's target's)


_IMPLIED = _Item(-1, "dir", "", 0o755, 0, 0, "")  # a folder no header names


class ImageView:
    """Path lookups in an image; the index is built on first use."""

    def __init__(self, image: ImageManifest, open_layer: Callable[[Layer], IO[bytes]]) -> None:
        self._image = image
        self._open = open_layer
        self._index: dict[str, _Item] | None = None

    def _entries(self) -> dict[str, _Item]:
        if self._index is None:
            index: dict[str, _Item] = {}
            for i, layer in enumerate(self._image.layers):
                with self._open(layer) as f, tarfile.open(fileobj=f, mode="r|") as tar:
                    for m in tar:
                        _apply(index, i, m)
            self._index = index
        return self._index

    def realpath(self, rel: str) -> str:
        """`rel` with the links on it followed inside the image (missing parts kept)."""
        return _resolve(self._entries(), rel, last=True)

    def is_dir(self, rel: str) -> bool:
        path = self.realpath(rel)
        hit = self._entries().get(path)
        return path == "" or (hit is not None and hit.kind == "dir")

    def meta(self, path: str) -> tuple[int, int, int] | None:
        """(mode, uid, gid) the image's headers give `path` (a real path, no link on it):
        what a copy from the image keeps, whoever extracted it."""
        hit = self._entries().get(path)
        return None if hit is None else (hit.mode, hit.uid, hit.gid)

    def read(self, rel: str) -> bytes | None:
        hit = self._entries().get(self.realpath(rel))
        if hit is None or hit.kind != "file":
            return None
        with (
            self._open(self._image.layers[hit.layer]) as f,
            tarfile.open(fileobj=f, mode="r|") as tar,
        ):
            for m in tar:
                if _name(m.name) == hit.member and m.isfile():
                    if m.size > READ_LIMIT:
                        raise BuildError(f"the image's /{rel} is over {READ_LIMIT >> 20} MiB")
                    data = tar.extractfile(m)
                    return data.read() if data is not None else None
        return None


def _name(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def resolve_in_root(
    rel: str, link_of: Callable[[str], str | None], *, last: bool = True
) -> tuple[list[str], list[str]]:
    """`rel` with links followed as a chroot would (an absolute target starts at the root,
    `..` stops there; the final part only when `last`): (the resolved parts, and what was
    left when links looped, else []). `link_of(path)` is a link's target, else None."""
    parts = [p for p in rel.split("/") if p and p != "."]
    done: list[str] = []
    for _ in range(255 + len(parts)):
        if not parts:
            return done, []
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        link = link_of("/".join([*done, part])) if (parts or last) else None
        if link is not None:
            if link.startswith("/"):
                done = []
            parts = [p for p in link.split("/") if p and p != "."] + parts
            continue
        done.append(part)
    if not parts:
        return done, []
    return done, parts  # links looped: what could not be resolved


def _resolve(index: dict[str, _Item], rel: str, *, last: bool) -> str:
    def link_of(path: str) -> str | None:
        hit = index.get(path)
        return hit.link if hit is not None and hit.kind == "symlink" else None

    done, left = resolve_in_root(rel, link_of, last=last)
    return "/".join(done + left)


def _apply(index: dict[str, _Item], layer: int, m: tarfile.TarInfo) -> None:
    literal = _name(m.name)
    head, _, last = literal.rpartition("/")
    head = _resolve(index, head, last=True) if head else ""
    path = f"{head}/{last}" if head else last
    if last == _OPQ:  # hide what lower layers have below `head`
        prefix = head + "/" if head else ""
        for p in [p for p, v in index.items() if p.startswith(prefix) and v.layer < layer]:
            del index[p]
        return
    if last.startswith(_WH):
        gone = f"{head}/{last[len(_WH) :]}" if head else last[len(_WH) :]
        if gone in index and index[gone].layer < layer:
            for p in [p for p in index if p == gone or p.startswith(gone + "/")]:
                del index[p]
        return
    _imply(index, head, layer)
    old = index.get(path)
    if not m.isdir() and old is not None and old.kind == "dir":  # it replaces the folder
        for p in [p for p in index if p.startswith(path + "/")]:
            del index[p]
    mode, uid, gid = m.mode & 0o7777, m.uid, m.gid
    if m.islnk():  # the bytes stay where its target's are, even once that name is gone
        target = index.get(_resolve(index, _name(m.linkname), last=False))
        if target is not None and target.kind == "file":
            index[path] = target._replace(mode=mode, uid=uid, gid=gid)
        return
    kind = "dir" if m.isdir() else "symlink" if m.issym() else "file" if m.isfile() else "other"
    index[path] = _Item(layer, kind, m.linkname if m.issym() else "", mode, uid, gid, literal)


def _imply(index: dict[str, _Item], head: str, layer: int) -> None:
    """The folders an entry lies in exist, named by a header or not (tar extraction
    makes them)."""
    while head and head not in index:
        index[head] = _IMPLIED._replace(layer=layer)
        head = head.rpartition("/")[0]
