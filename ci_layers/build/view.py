"""A parent image's files, looked up without extracting it: its layers' tar headers
merged in order (whiteouts and opaque folders applied), read only when a copy needs to
know (is `dest` a folder there? what does /etc/passwd say?)."""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Callable
from typing import IO

from ..oci.manifest import ImageManifest, Layer

__all__ = ["ImageView"]

_Item = tuple[int, str, str, int, int, int]  # layer, kind, link, mode, uid, gid
_WH = ".wh."
_OPQ = ".wh..wh..opq"


class ImageView:
    """Path lookups in an image; the index is built on first use."""

    def __init__(self, image: ImageManifest, open_layer: Callable[[Layer], IO[bytes]]) -> None:
        self._image = image
        self._open = open_layer
        self._index: dict[str, _Item] | None = None  # path -> (layer, kind, link)

    def _entries(self) -> dict[str, _Item]:
        if self._index is None:
            index: dict[str, _Item] = {}
            for i, layer in enumerate(self._image.layers):
                with self._open(layer) as f, tarfile.open(fileobj=f, mode="r|") as tar:
                    for m in tar:
                        _apply(index, i, m)
            self._index = index
        return self._index

    def _resolve(self, rel: str) -> str | None:
        """`rel` with its symlinks followed inside the image (a chroot's rules)."""
        index = self._entries()
        parts = [p for p in rel.split("/") if p and p != "."]
        done: list[str] = []
        for _ in range(255):
            if not parts:
                return "/".join(done)
            part = parts.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            path = "/".join([*done, part])
            hit = index.get(path)
            if hit is not None and hit[1] == "symlink":
                if hit[2].startswith("/"):
                    done = []
                parts = [p for p in hit[2].split("/") if p] + parts
                continue
            done.append(part)
        return None

    def is_dir(self, rel: str) -> bool:
        path = self._resolve(rel)
        if path is None:
            return False
        hit = self._entries().get(path)
        return path == "" or (hit is not None and hit[1] == "dir")

    def meta(self, path: str) -> tuple[int, int, int] | None:
        """(mode, uid, gid) the image's headers give `path` (a real path, no link on it):
        what a copy from the image keeps, whoever extracted it."""
        hit = self._entries().get(path)
        return None if hit is None else hit[3:6]

    def read(self, rel: str) -> bytes | None:
        path = self._resolve(rel)
        hit = self._entries().get(path) if path else None
        if hit is not None and hit[1] == "hardlink":
            return self.read(hit[2])
        if hit is None or hit[1] != "file":
            return None
        with self._open(self._image.layers[hit[0]]) as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for m in tar:
                if _name(m.name) == path and m.isfile():
                    data = tar.extractfile(m)
                    return data.read() if data is not None else None
        return None


def _name(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def _apply(index: dict[str, _Item], layer: int, m: tarfile.TarInfo) -> None:
    path = _name(m.name)
    head, _, last = path.rpartition("/")
    if last == _OPQ:  # hide what lower layers have below `head`
        prefix = head + "/" if head else ""
        for p in [p for p, v in index.items() if p.startswith(prefix) and v[0] < layer]:
            del index[p]
        return
    if last.startswith(_WH):
        gone = f"{head}/{last[len(_WH) :]}" if head else last[len(_WH) :]
        for p in [p for p in index if p == gone or p.startswith(gone + "/")]:
            if index[p][0] < layer:
                del index[p]
        return
    kind = "dir" if m.isdir() else "symlink" if m.issym() else "hardlink" if m.islnk() else ""
    kind = kind or ("file" if m.isfile() else "other")
    old = index.get(path)
    if kind != "dir" and old is not None and old[1] == "dir":  # it replaces the folder
        for p in [p for p in index if p.startswith(path + "/")]:
            del index[p]
    link = _name(m.linkname) if m.islnk() else m.linkname
    index[path] = (layer, kind, link, m.mode & 0o7777, m.uid, m.gid)
