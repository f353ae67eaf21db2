"""The reproducible layer tar, compressed, with diff_id and blob digest in one pass.

The recipe (research §2.6): entries sorted by path, a directory before what it holds
and, inside one directory, the opaque marker and whiteouts before other names; PAX
headers; mtimes clamped to SOURCE_DATE_EPOCH; numeric owners with empty names; gzip
with no name and mtime 0 at a fixed level (zlib's own header), or zstd. The tar is
hashed (diff_id) while a second thread compresses and hashes the blob, so writing a
layer costs one read of its files and about one core of compression.
"""

from __future__ import annotations

import hashlib
import os
import queue
import tarfile
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

from ..errors import BuildError
from ..oci.digest import Descriptor, Digest
from ..oci.manifest import LAYER_GZIP, LAYER_TAR, LAYER_ZSTD, Layer
from ..oci.store import BlobWriter, OciStore

__all__ = ["COMPRESSIONS", "Entry", "link_shared", "sort_key", "tar_stream", "write_layer"]

FILE, DIR, SYMLINK, HARDLINK, FIFO, WHITEOUT, OPAQUE = (
    "file",
    "dir",
    "symlink",
    "hardlink",
    "fifo",
    "whiteout",
    "opaque",
)
COMPRESSIONS = ("gzip", "zstd", "none")
GZIP_LEVEL = 6
ZSTD_LEVEL = 3
_CHUNK = 1 << 20
_WH = ".wh."
_OPQ = ".wh..wh..opq"


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of a layer, by its path in the image (relative: `usr/bin/x`).

    A whiteout's path is what it deletes (`etc/x` is written `etc/.wh.x`); an opaque
    entry's path is the directory whose lower contents it hides."""

    path: str
    kind: str
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    target: str = ""  # a symlink's text, or the image path a hardlink points to
    source: str | None = None  # the file on disk holding a regular file's content
    span: tuple[int, int] | None = None  # or only (offset, size) of it (a spool file)
    data: bytes | None = None  # or the content itself
    mtime: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()

    @property
    def name(self) -> str:
        """The path written in the tar."""
        if self.kind == WHITEOUT:
            head, _, last = self.path.rpartition("/")
            return f"{head}/{_WH}{last}" if head else f"{_WH}{last}"
        if self.kind == OPAQUE:
            return f"{self.path}/{_OPQ}" if self.path else _OPQ
        return self.path


def link_shared(entries: Iterable[Entry]) -> list[Entry]:
    """Files whose sources share an inode, as hardlinks: the first in tar order holds the
    bytes, the others name it (a tar's hardlink names an entry written before it)."""
    firsts: dict[tuple[int, int], str] = {}
    out = []
    for e in sorted(entries, key=lambda e: sort_key(e.name)):
        if e.kind == FILE and e.source is not None:
            st = os.lstat(e.source)
            if st.st_nlink > 1:
                ident = (st.st_dev, st.st_ino)
                if ident in firsts:
                    e = Entry(
                        e.path, HARDLINK, e.mode, e.uid, e.gid, target=firsts[ident], mtime=e.mtime
                    )
                else:
                    firsts[ident] = e.path
        out.append(e)
    return out


def sort_key(name: str) -> tuple[tuple[int, bytes], ...]:
    """Order of tar names: by path segment, bytewise; in a directory, the opaque
    marker first, then whiteouts (image-spec layer.md: they SHOULD come first)."""
    out = []
    for part in name.split("/"):
        rank = 0 if part == _OPQ else 1 if part.startswith(_WH) else 2
        out.append((rank, os.fsencode(part)))
    return tuple(out)


def write_layer(
    entries: Iterable[Entry],
    store: OciStore,
    *,
    compression: str = "gzip",
    epoch: int = 0,
) -> Layer:
    """Write `entries` as one layer blob into the store; returns its descriptor and diff_id."""
    ordered = _ordered(entries)
    with store.writer() as blob:
        sink = _Sink(blob, compression)
        try:
            _write(ordered, sink, epoch)
        except BaseException:
            sink.abandon()
            raise
        diff_id = sink.close()
        digest = blob.commit()
        size = blob.size
    media = {"gzip": LAYER_GZIP, "zstd": LAYER_ZSTD, "none": LAYER_TAR}[compression]
    return Layer(Descriptor(media, digest, size), diff_id)


def tar_stream(entries: Iterable[Entry], out: IO[bytes], *, epoch: int = 0) -> None:
    """The same tar, uncompressed, into `out` (to apply copies before a `run`)."""
    _write(_ordered(entries), out, epoch)


def _ordered(entries: Iterable[Entry]) -> list[Entry]:
    ordered = sorted(entries, key=lambda e: sort_key(e.name))
    seen: set[str] = set()
    for e in ordered:
        if e.name in seen:
            raise BuildError(f"two entries for '{e.name}' in one layer")
        if e.kind == HARDLINK and e.target not in seen:  # a tar links to what came before
            raise BuildError(f"hardlink '{e.name}' to '{e.target}', which it does not follow")
        seen.add(e.name)
    return ordered


def _write(ordered: list[Entry], out: Any, epoch: int) -> None:
    """The tar itself. Headers that fit ustar (ASCII names up to 100 bytes, small
    numbers, no xattrs) are packed here; the rest are tarfile's PAX headers. Either way
    the bytes are the ones `tarfile.open(mode="w|", format=PAX_FORMAT)` writes (a test
    compares them), at a fraction of its cost per entry."""
    offset = 0
    write = out.write
    for e in ordered:
        size, content = _content(e)
        head = _header(e, size, min(e.mtime, epoch))
        write(head)
        offset += len(head)
        if content is not None:
            offset += _copy(content, size, e, write)
        pad = -offset % _BLOCK
        if pad:
            write(_ZEROS[:pad])
            offset += pad
    write(_ZEROS[: 2 * _BLOCK])  # the end of the archive, then padding to a record
    offset += 2 * _BLOCK
    if offset % _RECORD:
        write(bytes(_RECORD - offset % _RECORD))


_BLOCK, _RECORD = 512, 20 * 512
_ZEROS = bytes(2 * _BLOCK)
_TYPES = {
    FILE: b"0",
    WHITEOUT: b"0",
    OPAQUE: b"0",
    HARDLINK: b"1",
    SYMLINK: b"2",
    FIFO: b"6",
    DIR: b"5",
}


def _content(e: Entry) -> tuple[int, bytes | int | None]:
    """(size, content): bytes, an open file descriptor, or None."""
    if e.kind != FILE:
        if e.kind not in _TYPES:
            raise BuildError(f"'{e.path}': cannot write a {e.kind} entry")
        return 0, None
    if e.data is not None:
        return len(e.data), e.data
    if e.source is None:
        return 0, None
    try:
        fd = os.open(e.source, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise BuildError(f"cannot read {e.source}: {exc.strerror}") from None
    if e.span is not None:
        os.lseek(fd, e.span[0], os.SEEK_SET)
        return e.span[1], fd
    return os.fstat(fd).st_size, fd


def _copy(content: bytes | int, size: int, e: Entry, write: Any) -> int:
    if isinstance(content, bytes):
        write(content)
        return len(content)
    done = 0
    try:
        while done < size:
            chunk = os.read(content, min(_CHUNK, size - done))
            if not chunk:
                raise BuildError(f"{e.source} shrank while it was read")
            write(chunk)
            done += len(chunk)
    finally:
        os.close(content)
    return done


def _header(e: Entry, size: int, mtime: int) -> bytes:
    name = e.name + "/" if e.kind == DIR and not e.name.endswith("/") else e.name
    link = e.target if e.kind in (SYMLINK, HARDLINK) else ""
    mode, uid, gid = (
        (0o644, 0, 0) if e.kind in (WHITEOUT, OPAQUE) else (e.mode & 0o7777, e.uid, e.gid)
    )
    if (
        not e.xattrs
        and name.isascii()
        and link.isascii()
        and len(name) <= 100
        and len(link) <= 100
        and 0 <= uid < 0o7777777
        and 0 <= gid < 0o7777777
        and 0 <= mtime < 0o77777777777
        and size < 0o77777777777
    ):
        h = bytearray(_BLOCK)
        h[0 : len(name)] = name.encode()
        h[100:148] = b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (mode, uid, gid, size, mtime)
        h[148:156] = b"        "
        h[156:157] = _TYPES[e.kind]
        h[157 : 157 + len(link)] = link.encode()
        h[257:265] = b"ustar\x0000"
        h[148:156] = b"%06o\0 " % sum(h)
        return bytes(h)
    info = tarfile.TarInfo(e.name)
    info.mtime, info.mode, info.uid, info.gid, info.size = mtime, mode, uid, gid, size
    info.uname = info.gname = ""
    info.type = _TYPES[e.kind]
    info.linkname = link
    if e.xattrs:
        info.pax_headers = {
            f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in e.xattrs
        }
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


class _Sink:
    """Where the tar goes: hashed here (diff_id), compressed and hashed by a worker."""

    def __init__(self, blob: BlobWriter, compression: str) -> None:
        self._diff = hashlib.sha256()
        self._buf = bytearray()
        self._blob = blob
        self._compressor: Any
        if compression == "gzip":
            # wbits 31: zlib's gzip wrapper, mtime 0 and no file name, whatever the host
            self._compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        elif compression == "zstd":
            import zstandard  # only layers asked for as zstd need it

            self._compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()
        elif compression == "none":
            self._compressor = None
        else:
            raise BuildError(f"unknown compression '{compression}' ({', '.join(COMPRESSIONS)})")
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._worker = threading.Thread(target=self._compress, daemon=True)
        self._worker.start()

    def write(self, data: bytes) -> int:
        self._buf += data
        if len(self._buf) >= _CHUNK:
            self._push()
        return len(data)

    def _push(self) -> None:
        chunk = bytes(self._buf)
        self._buf.clear()
        self._diff.update(chunk)
        if self._error is not None:
            raise BuildError(f"compressing the layer failed: {self._error}")
        self._queue.put(chunk)

    def _compress(self) -> None:
        try:
            while (chunk := self._queue.get()) is not None:
                out = self._compressor.compress(chunk) if self._compressor else chunk
                if out:
                    self._blob.write(out)
            if self._compressor is not None:
                self._blob.write(self._compressor.flush())
        except BaseException as exc:  # reported to the writer; the blob is abandoned
            self._error = exc
            while self._queue.get() is not None:
                pass

    def close(self) -> Digest:
        if self._buf:
            self._push()
        self._queue.put(None)
        self._worker.join()
        if self._error is not None:
            raise BuildError(f"compressing the layer failed: {self._error}")
        return Digest(self._diff.hexdigest())

    def abandon(self) -> None:
        self._buf.clear()
        self._queue.put(None)
        self._worker.join()
