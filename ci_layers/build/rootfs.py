"""Assemble a container root filesystem from OCI layer tars, never writing outside it.

Every path is resolved inside the root one component at a time, through directory file
descriptors opened with O_NOFOLLOW. A symlink met on the way is followed as a chroot
would follow it (an absolute target starts at the root, `..` stops there); the last
component is never followed. Symlink targets are written as they are and never judged
by their text: kaniko's lexical fix for its traversal CVE broke real base images whose
certificate links climb further than their depth (research §3 item 12). Whiteouts follow
the OCI layer spec (§2.4): they hide what lower layers wrote, never this layer's own
entries, wherever the opaque marker sits in the stream.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, cast

from ..errors import CiLayersError

__all__ = ["MAX_ROOT_BYTES", "UnsafeLayer", "apply_layer", "assemble_rootfs", "remove_tree"]

_Parts = tuple[str, ...]

# What one extracted root may take: the files' sizes as their headers claim them (holes
# included), across its layers. No real image comes near (the largest in common use are
# some 20 GB unpacked); a layer of a few MB that unpacks to terabytes of zeros does.
MAX_ROOT_BYTES = 64 << 30

_CHUNK = 1 << 20
_MAX_HOPS = 255  # symlinks followed while resolving one path, as Linux's 40 but roomier
_MAX_NS = (1 << 63) - 1
_WH = ".wh."
_OPAQUE = ".wh..wh..opq"
_CAPABILITY = "security.capability"
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_INODE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a fifo must not block
# What an archive's own content can make the kernel refuse; other errors (ENOSPC, EIO,
# EACCES) are the machine's and propagate as they are.
_ARCHIVE_ERRNOS = frozenset(
    {errno.ENAMETOOLONG, errno.ENOTDIR, errno.ELOOP, errno.EMLINK, errno.EINVAL, errno.EISDIR}
)


class UnsafeLayer(CiLayersError):
    """An archive entry that would write outside the root, or that we refuse."""

    exit_code = 1

    def __init__(self, message: str, *, entry: str, layer: str | None = None) -> None:
        self.message = message
        self.entry = entry
        self.layer = layer
        super().__init__(str(self))

    def __str__(self) -> str:
        return _where(self.layer, self.entry) + self.message


class _Refused(Exception):
    """Raised deep down; the entry being applied turns it into UnsafeLayer."""


class _Missing(Exception):
    """A path component that does not exist, or is not a directory, when not creating."""


def _where(layer: str | None, entry: str) -> str:
    """`layer sha256:0123456789ab… entry 'x': `, the prefix of every message."""
    if layer is None:
        return f"entry {entry!r}: "
    alg, _, hexpart = layer.partition(":")
    short = f"{alg}:{hexpart[:12]}…" if len(hexpart) > 12 else layer
    return f"layer {short} entry {entry!r}: "


def _parts(name: str) -> _Parts:
    """An archive name as components: `/` and `.` dropped, `..` may not climb out."""
    if "\0" in name:
        raise _Refused("name contains a NUL byte")
    out: list[str] = []
    for comp in name.split("/"):
        if comp == "..":
            if not out:
                raise _Refused("escapes the root")
            out.pop()
        elif comp not in ("", "."):
            out.append(comp)
    return tuple(out)


def _lstat(pfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove(pfd: int, name: str) -> None:
    """Unlink `name`, or delete its tree through fds: a symlink inside is never followed.

    A file is unlinked, never truncated: a lower layer's hardlink may share it."""
    st = _lstat(pfd, name)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=pfd)
        return
    # Depth first without recursion: an archive may nest folders deeper than Python's
    # stack. Each frame is (parent fd, name, its fd, its children left to remove).
    top = os.open(name, _DIR, dir_fd=pfd)
    stack = [(pfd, name, top, os.listdir(top))]
    try:
        while stack:
            parent, here, fd, left = stack[-1]
            if not left:
                stack.pop()
                os.close(fd)
                os.rmdir(here, dir_fd=parent)
                continue
            child = left.pop()
            cst = _lstat(fd, child)
            if cst is not None and stat.S_ISDIR(cst.st_mode):
                cfd = os.open(child, _DIR, dir_fd=fd)
                stack.append((fd, child, cfd, os.listdir(cfd)))
            elif cst is not None:
                os.unlink(child, dir_fd=fd)
    finally:
        for _parent, _here, fd, _left in stack:
            os.close(fd)


def _mtime_ns(m: tarfile.TarInfo) -> int:
    """The entry's mtime in ns; a PAX header may say anything, so clamp it."""
    try:
        ns = int(m.mtime * 1_000_000_000)
    except (OverflowError, ValueError):
        return 0
    return max(-_MAX_NS, min(ns, _MAX_NS))


class _Layer:
    """One layer being applied: the root's fd, what this layer wrote, what is left to do."""

    def __init__(self, root_fd: int, layer: str | None, privileged: bool, budget: _Budget) -> None:
        self.budget = budget
        self.root = root_fd
        self.layer = layer
        self.privileged = privileged
        self.warnings: list[str] = []
        self.touched: set[_Parts] = {()}  # real paths this layer wrote, and their parents
        self.dirs: dict[_Parts, tarfile.TarInfo] = {}  # metadata applied at the end

    def warn(self, m: tarfile.TarInfo, message: str) -> None:
        self.warnings.append(_where(self.layer, m.name) + message)

    @contextmanager
    def blame(self, m: tarfile.TarInfo) -> Iterator[None]:
        """Name the entry in what it made us refuse, or the kernel refuse."""
        try:
            yield
        except _Refused as exc:
            raise UnsafeLayer(str(exc), entry=m.name, layer=self.layer) from None
        except (OSError, OverflowError) as exc:  # an owner or time beyond what the OS takes
            if isinstance(exc, OSError) and exc.errno not in _ARCHIVE_ERRNOS:
                raise
            why = f"cannot be applied: {getattr(exc, 'strerror', None) or exc}"
            raise UnsafeLayer(why, entry=m.name, layer=self.layer) from exc

    def entry(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = _parts(m.name)
        if m.name.startswith("/"):
            self.warn(m, "absolute name taken as relative to the root")
        if not parts:
            return  # the root itself: its metadata is the scratch directory's
        if parts[-1].startswith(_WH):
            self.whiteout(parts)
        elif m.ischr() or m.isblk():
            self.warn(m, "device node skipped")
        elif not (m.isreg() or m.isdir() or m.issym() or m.islnk() or m.isfifo()):
            self.warn(m, f"entry of type {m.type!r} skipped")
        else:
            if "\0" in m.linkname:
                raise _Refused("link target contains a NUL byte")
            pfd, where = self.walk(parts[:-1], create=True)
            try:
                self.create(tf, m, pfd, parts[-1], where)
            finally:
                os.close(pfd)
            self.touched.update(where[:i] for i in range(len(where)))
            self.touched.update((where, (*where, parts[-1])))

    def walk(self, parts: _Parts, *, create: bool) -> tuple[int, _Parts]:
        """Open the directory `parts` names inside the root: its fd and its real path.

        A missing component is created when `create`; otherwise it raises _Missing."""
        fd, hops = os.dup(self.root), 0
        names: list[str] = []
        todo = list(reversed(parts))
        try:
            while todo:
                comp = todo.pop()
                if comp in ("", ".") or (comp == ".." and not names):
                    continue  # `..` stops at the root, as in a chroot
                if comp == "..":
                    names.pop()
                    new = self.reopen(names)
                    os.close(fd)
                    fd = new
                    continue
                step = self.step(fd, comp, create=create)
                if isinstance(step, int):
                    os.close(fd)
                    fd = step
                    names.append(comp)
                    continue
                hops += 1
                if hops > _MAX_HOPS:
                    raise _Refused("too many levels of symbolic links")
                if step.startswith("/"):
                    os.close(fd)
                    fd, names = os.dup(self.root), []
                todo.extend(reversed(step.split("/")))
            return fd, tuple(names)
        except BaseException:
            os.close(fd)
            raise

    def reopen(self, names: list[str]) -> int:
        """Open a real path again from the root (how `..` is taken: never by opening `..`)."""
        fd = os.dup(self.root)
        for comp in names:
            try:
                nxt = os.open(comp, _DIR, dir_fd=fd)
            finally:
                os.close(fd)
            fd = nxt
        return fd

    def step(self, fd: int, comp: str, *, create: bool) -> int | str:
        """The directory `comp` in `fd` (opened or made), or the target of a symlink there."""
        try:
            return os.open(comp, _DIR, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise _Missing from None
            return self.mkdir(fd, comp)
        except OSError as exc:
            if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
        if stat.S_ISLNK(os.stat(comp, dir_fd=fd, follow_symlinks=False).st_mode):
            return os.readlink(comp, dir_fd=fd)
        if create:
            raise _Refused(f"{comp!r} on the way is not a directory")
        raise _Missing

    def mkdir(self, fd: int, comp: str) -> int:
        """A missing parent: 0755 whatever the umask, root-owned when we can."""
        os.mkdir(comp, 0o755, dir_fd=fd)
        new = os.open(comp, _DIR, dir_fd=fd)
        os.chmod(new, 0o755)
        if self.privileged:
            os.chown(new, 0, 0)
        return new

    def create(
        self, tf: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, name: str, where: _Parts
    ) -> None:
        """Put the entry at `name` in `pfd`, replacing what is there (a directory stays)."""
        if m.isdir():
            st = _lstat(pfd, name)
            if st is None or not stat.S_ISDIR(st.st_mode):
                _remove(pfd, name)
                os.mkdir(name, 0o700, dir_fd=pfd)  # its mode once its children are in
            self.dirs[(*where, name)] = m
        elif m.islnk():
            self.hardlink(m, pfd, name)
        elif m.isreg():
            self.take(m.size)
            _remove(pfd, name)
            self.file(tf, m, pfd, name)
        else:
            _remove(pfd, name)
            if m.issym():
                if not m.linkname:
                    raise _Refused("symlink with an empty target")
                os.symlink(m.linkname, name, dir_fd=pfd)
            else:
                os.mkfifo(name, 0o600, dir_fd=pfd)
            self.meta_at(m, pfd, name)

    def take(self, size: int) -> None:
        if size > self.budget.left:
            raise _Refused(
                f"the root would take more than {_size(self.budget.limit)} (its files' "
                "sizes, holes included), which no real image does; a bomb, or raise the "
                "limit (build --max-root-size)"
            )
        self.budget.left -= size

    def file(self, tf: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, name: str) -> None:
        src = tf.extractfile(m)
        with os.fdopen(os.open(name, _NEW, 0o600, dir_fd=pfd), "wb") as out:
            if src is not None and m.sparse is not None:
                # holes stay holes: only the data runs are written (the stream is read
                # forward, so the runs must come in order, as every tar writes them)
                raw: Any = getattr(src, "raw", src)  # not buffered: seeks forward only
                runs = [(o, n) for o, n in cast(list[tuple[int, int]], m.sparse) if n]
                _check_runs(runs, m.size)
                for offset, size in runs:
                    if size:
                        raw.seek(offset)
                        out.seek(offset)
                        _copy(raw, out, size)
                out.truncate(m.size)
            elif src is not None:
                shutil.copyfileobj(src, out, _CHUNK)
            out.flush()
            self.meta(m, out.fileno(), regular=True)

    def hardlink(self, m: tarfile.TarInfo, pfd: int, name: str) -> None:
        """Link to an inode already in the root; the target is named as entries are."""
        target = _parts(m.linkname)
        missing = f"hardlink target {m.linkname!r} does not exist"
        if not target:
            raise _Refused("hardlink to the root directory")
        try:
            tfd, _ = self.walk(target[:-1], create=False)
        except _Missing:
            raise _Refused(missing) from None
        try:
            tst = _lstat(tfd, target[-1])
            if tst is None:
                raise _Refused(missing)
            if stat.S_ISDIR(tst.st_mode):
                raise _Refused(f"hardlink to a directory ({m.linkname!r})")
            st = _lstat(pfd, name)
            if st is None or (st.st_dev, st.st_ino) != (tst.st_dev, tst.st_ino):
                _remove(pfd, name)
                try:
                    os.link(target[-1], name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
                except FileNotFoundError:  # it was inside what `name` replaced
                    raise _Refused(missing) from None
        finally:
            os.close(tfd)
        self.meta_at(m, pfd, name)

    def mode(self, m: tarfile.TarInfo) -> int:
        mode = m.mode & 0o7777
        if mode & 0o6000 and not self.privileged:
            self.warn(m, "setuid/setgid bits stripped (not privileged)")
            mode &= ~0o6000
        return mode

    def meta(self, m: tarfile.TarInfo, fd: int, *, regular: bool = False) -> None:
        """Owner, then mode and capability (chown clears both), then times."""
        if self.privileged:
            os.chown(fd, m.uid, m.gid)
        os.chmod(fd, self.mode(m))
        if regular:
            self.capability(m, fd)
        ns = _mtime_ns(m)
        os.utime(fd, ns=(ns, ns))

    def meta_at(self, m: tarfile.TarInfo, pfd: int, name: str) -> None:
        """Metadata of a fifo, symlink or hardlink, through an fd taken without following."""
        try:
            fd = os.open(name, _INODE, dir_fd=pfd)
        except PermissionError:  # unprivileged, and the linked inode is not readable
            self.warn(m, "metadata not applied: permission denied")
            return
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            if self.privileged:  # a symlink: Linux has no mode for one
                os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
            ns = _mtime_ns(m)
            os.utime(name, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)
            return
        try:
            self.meta(m, fd)
        finally:
            os.close(fd)

    def capability(self, m: tarfile.TarInfo, fd: int) -> None:
        """The one xattr we keep; tarfile holds PAX values as surrogate-escaped text."""
        value = m.pax_headers.get(f"SCHILY.xattr.{_CAPABILITY}")
        if value is None:
            return
        if not self.privileged:
            self.warn(m, f"{_CAPABILITY} dropped (not privileged)")
            return
        try:
            os.setxattr(fd, _CAPABILITY, value.encode("utf-8", "surrogateescape"))
        except OSError as exc:
            self.warn(m, f"{_CAPABILITY} not set: {exc.strerror}")

    def whiteout(self, parts: _Parts) -> None:
        name = parts[-1][len(_WH) :]
        if name in ("", ".", ".."):
            raise _Refused(f"{parts[-1]!r} is not a valid whiteout")
        try:
            fd, where = self.walk(parts[:-1], create=False)
        except _Missing:
            return  # nothing there to hide
        try:
            if parts[-1] == _OPAQUE:
                self.hide_children(fd, where)
            else:
                self.hide(fd, name, (*where, name))
        finally:
            os.close(fd)

    def hide(self, pfd: int, name: str, path: _Parts) -> None:
        """Delete what lower layers put at `path`, keeping what this layer wrote."""
        st = _lstat(pfd, name)
        if st is None:
            return
        if path not in self.touched:
            _remove(pfd, name)
        elif stat.S_ISDIR(st.st_mode):
            fd = os.open(name, _DIR, dir_fd=pfd)
            try:
                self.hide_children(fd, path)
            finally:
                os.close(fd)

    def hide_children(self, fd: int, where: _Parts) -> None:
        for child in os.listdir(fd):
            self.hide(fd, child, (*where, child))

    def finish(self) -> None:
        """Directory metadata, deepest first: children changed mtimes, and a read-only
        mode would have stopped an unprivileged run from writing them."""
        for path in sorted(self.dirs, key=len, reverse=True):
            m = self.dirs[path]
            with self.blame(m):
                try:
                    pfd, _ = self.walk(path[:-1], create=False)
                    try:
                        fd = os.open(path[-1], _DIR, dir_fd=pfd)
                    finally:
                        os.close(pfd)
                except (_Missing, OSError):
                    continue  # replaced by a later entry of this layer
                try:
                    self.meta(m, fd)
                finally:
                    os.close(fd)


def _open(tar: BinaryIO) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=tar, mode="r|")  # reads the first header
    except ValueError as exc:
        raise tarfile.ReadError(f"unreadable header: {exc}") from None


def _next(tf: tarfile.TarFile) -> tarfile.TarInfo | None:
    """The next header; one tarfile cannot read (a sparse map of bad numbers raises
    ValueError from inside it) is a broken tar."""
    try:
        return tf.next()
    except ValueError as exc:
        raise tarfile.ReadError(f"unreadable header: {exc}") from None


def _check_runs(runs: list[tuple[int, int]], size: int) -> None:
    """A sparse map as a tar writes one: runs in order, apart, inside the file."""
    end = 0
    for offset, length in runs:
        if offset < end or length < 0:
            raise _Refused("a sparse file's data runs overlap or are out of order")
        end = offset + length
    if end > size:
        raise _Refused("a sparse file's data runs past its size")


def _copy(src: Any, out: BinaryIO, size: int) -> None:
    while size > 0:
        chunk = src.read(min(_CHUNK, size))
        if not chunk:
            raise tarfile.ReadError("unexpected end of data in a sparse file")
        out.write(chunk)
        size -= len(chunk)


class _Budget:
    """What a root may still take, across its layers."""

    def __init__(self, limit: int) -> None:
        self.limit = self.left = limit


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):g} {unit}"
    return f"{n} bytes"


def apply_layer(
    root: Path,
    tar: BinaryIO,
    *,
    layer: str | None = None,
    privileged: bool | None = None,
    max_bytes: int = MAX_ROOT_BYTES,
) -> list[str]:
    """Apply one layer, an uncompressed tar stream read sequentially (tarfile mode 'r|').

    Returns warnings (one line each) for entries that were neutralised (skipped device
    node, stripped setuid, ...). Raises UnsafeLayer for an entry it refuses; the root is
    then half-written and should be thrown away."""
    return _apply(root, tar, layer=layer, privileged=privileged, budget=_Budget(max_bytes))


def _apply(
    root: Path, tar: BinaryIO, *, layer: str | None, privileged: bool | None, budget: _Budget
) -> list[str]:
    if privileged is None:
        privileged = os.geteuid() == 0
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    state = _Layer(fd, layer, privileged, budget)
    try:
        with _open(tar) as tf:
            while (m := _next(tf)) is not None:
                tf.members.clear()  # type: ignore[attr-defined]  # read once: keep no headers
                with state.blame(m):
                    state.entry(tf, m)
        state.finish()
    finally:
        os.close(state.root)
    return state.warnings


def assemble_rootfs(
    root: Path,
    layers: Iterable[tuple[str, Callable[[], BinaryIO]]],
    *,
    privileged: bool | None = None,
    max_bytes: int = MAX_ROOT_BYTES,
) -> list[str]:
    """Apply layers bottom-first into root (made if missing), the files of all of them
    together at most `max_bytes` (sizes as the headers claim them).

    Each item is (layer digest for messages, opener returning an uncompressed tar stream);
    the stream is opened only when its turn comes, and closed after."""
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    warnings: list[str] = []
    budget = _Budget(max_bytes)
    for digest, opener in layers:
        stream = opener()
        try:
            warnings += _apply(root, stream, layer=digest, privileged=privileged, budget=budget)
        finally:
            stream.close()
    return warnings


def remove_tree(path: Path) -> None:
    """Remove `path` and everything below it without following a link, iteratively (a
    tree deeper than Python's stack is removed as any other)."""
    try:
        pfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        _remove(pfd, path.name)
    finally:
        os.close(pfd)
