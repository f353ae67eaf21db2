"""What `run` changed, as layer entries.

The root is an overlay mount whose lower directory is the parent's assembled root: the
upper directory then holds exactly the difference, so a snapshot costs what the
commands changed, not the size of the parent. It is mounted with `redirect_dir=off`
and `metacopy=off` (with either on, the upper directory is no faithful diff; see
containers/storage's doesSupportNativeDiff). Where overlay cannot be mounted, a tree
compare of stat records taken before and after stands in (linear in the parent).
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import BuildError
from .tarwriter import DIR, FIFO, FILE, SYMLINK, WHITEOUT, Entry, link_shared

__all__ = ["TreeRecord", "changed_entries", "overlay", "overlay_works", "upper_entries"]

# Never part of a layer: what the runtime mounts there is the host's, not the build's.
_MOUNTED = ("proc", "dev", "sys")
_CAPABILITY = "security.capability"


@contextlib.contextmanager
def overlay(lowers: Sequence[Path], scratch: Path) -> Iterator[tuple[Path, Path]]:
    """Mount `lowers` (the first on top) with a fresh upper directory; yields (merged
    root, upper dir)."""
    upper, work, merged = scratch / "upper", scratch / "work", scratch / "merged"
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    # Options name folders relative to `scratch` (the mount runs there) and the lower ones
    # through links, so a `,` or `:` in the store's or the repository's path (which the
    # option syntax cannot carry) never reaches them.
    links = []
    for i, lower in enumerate(lowers):
        link = scratch / f"lower{i}.link"
        if link.is_symlink():
            link.unlink()
        os.symlink(lower.resolve(), link)
        links.append(link.name)
    options = (
        f"lowerdir={':'.join(links)},upperdir=upper,workdir=work,redirect_dir=off,"
        "metacopy=off,index=off"
    )
    done = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, "merged"],
        cwd=scratch,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BuildError(f"cannot mount overlay: {done.stderr.strip() or done.returncode}")
    try:
        yield merged, upper
    finally:
        if subprocess.run(["umount", str(merged)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(merged)], capture_output=True, check=False)


def overlay_works(scratch: Path) -> bool:
    """Whether an overlay can be mounted here (root, a kernel with overlayfs, a
    filesystem it accepts as upper)."""
    if os.geteuid() != 0:
        return False
    with tempfile.TemporaryDirectory(dir=scratch, prefix="overlay-probe-") as tmp:
        lower = Path(tmp) / "lower"
        lower.mkdir()
        try:
            with overlay([lower], Path(tmp)):
                return True
        except BuildError:
            return False


def upper_entries(upper: Path, lower: Path) -> list[Entry]:
    """The entries an overlay's upper directory stands for: char devices 0/0 are
    whiteouts; a `trusted.overlay.opaque=y` folder hides the lower folder's children,
    written as an explicit whiteout for each it no longer has (as BuildKit writes them,
    and as the tree compare finds them: both give the same layer)."""
    out: list[Entry] = []
    for rel, st in _walk(upper):
        full = upper / rel
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            out.append(Entry(rel, WHITEOUT))
            continue
        if stat.S_ISDIR(st.st_mode) and _opaque(full):
            for name in _lower_children(lower, rel):
                if not os.path.lexists(full / name):
                    out.append(Entry(f"{rel}/{name}", WHITEOUT))
        entry = _entry(rel, full, st)
        if entry is not None:
            out.append(entry)
    return _drop_unchanged(link_shared(out), lower)


def _lower_children(lower: Path, rel: str) -> list[str]:
    """Names in the lower folder `rel`, its path taken without following any link (the
    overlay compares real paths; a link there is no folder)."""
    path = lower
    for part in rel.split("/"):
        path = path / part
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                return []
        except OSError:
            return []
    return os.listdir(path)


def _opaque(path: Path) -> bool:
    for name in ("trusted.overlay.opaque", "user.overlay.opaque"):
        with contextlib.suppress(OSError):
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
    return False


def _walk(top: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) below `top`, skipping what the runtime mounts."""
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            names = os.listdir(top / rel) if rel else os.listdir(top)
        except OSError as exc:
            raise BuildError(f"cannot read /{rel} of the layer: {exc.strerror}") from None
        for name in names:
            path = f"{rel}/{name}" if rel else name
            try:
                st = os.lstat(top / path)
            except OSError as exc:  # a path longer than the host's PATH_MAX, say
                raise BuildError(f"cannot read /{path} of the layer: {exc.strerror}") from None
            yield path, st
            if stat.S_ISDIR(st.st_mode) and path not in _MOUNTED:
                stack.append(path)


def _entry(rel: str, full: Path, st: os.stat_result) -> Entry | None:
    mode = stat.S_IMODE(st.st_mode)
    common = {"mode": mode, "uid": st.st_uid, "gid": st.st_gid, "mtime": int(st.st_mtime)}
    xattrs: tuple[tuple[str, bytes], ...] = ()
    if not stat.S_ISLNK(st.st_mode):
        with contextlib.suppress(OSError):
            xattrs = ((_CAPABILITY, os.getxattr(full, _CAPABILITY, follow_symlinks=False)),)
    if stat.S_ISREG(st.st_mode):
        return Entry(rel, FILE, source=str(full), xattrs=xattrs, **common)  # type: ignore[arg-type]
    if stat.S_ISDIR(st.st_mode):
        return Entry(rel, DIR, xattrs=xattrs, **common)  # type: ignore[arg-type]
    if stat.S_ISLNK(st.st_mode):
        return Entry(rel, SYMLINK, target=os.readlink(full), **common)  # type: ignore[arg-type]
    if stat.S_ISFIFO(st.st_mode):
        return Entry(rel, FIFO, **common)  # type: ignore[arg-type]
    return None  # sockets and device nodes are no image content


def _drop_unchanged(entries: list[Entry], lower: Path) -> list[Entry]:
    """Leave out a folder copied up only for what was made in it and removed again: it
    holds nothing kept and is as the parent had it."""
    holds = {e.path.rpartition("/")[0] for e in entries}
    return [e for e in entries if not (e.kind == DIR and e.path not in holds and _same(e, lower))]


def _same(e: Entry, lower: Path) -> bool:
    stat_of = getattr(lower / e.path, "lstat", None)
    if stat_of is None:
        return False
    try:
        st = stat_of()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (
        e.mode,
        e.uid,
        e.gid,
    )


# --- the tree compare, where overlay cannot be mounted ----------------------------------

TreeRecord = dict[str, tuple[int, ...]]


def record_tree(root: Path) -> TreeRecord:
    """What identifies each path's state: type and mode, owner, size, mtime in ns,
    inode, device and the link's target."""
    out: TreeRecord = {}
    for rel, st in _walk(root):
        link = hash(os.readlink(root / rel)) if stat.S_ISLNK(st.st_mode) else 0
        out[rel] = (
            st.st_mode,
            st.st_uid,
            st.st_gid,
            st.st_size,
            st.st_mtime_ns,
            st.st_ino,
            st.st_rdev,
            link,
        )
    return out


def changed_entries(root: Path, before: TreeRecord) -> list[Entry]:
    """Entries for what differs from `before`: new and changed paths, and a whiteout for
    each removed path whose folder is still there."""
    after = record_tree(root)
    out: list[Entry] = []
    for rel, rec in after.items():
        if before.get(rel) == rec:
            continue
        entry = _entry(rel, root / rel, os.lstat(root / rel))
        if entry is not None:
            out.append(entry)
    for rel in before:
        if rel not in after:
            head = rel.rpartition("/")[0]
            if not head or (head in after and stat.S_ISDIR(after[head][0])):
                out.append(Entry(rel, WHITEOUT))
    # a changed file makes its folders' entries part of the layer, as in an overlay
    present = {e.path for e in out}
    for e in list(out):
        head = e.path.rpartition("/")[0]
        while head and head not in present:
            st = os.lstat(root / head)
            entry = _entry(head, root / head, st)
            if entry is not None:
                out.append(entry)
            present.add(head)
            head = head.rpartition("/")[0]
    return _drop_unchanged(link_shared(out), _Before(before))  # type: ignore[arg-type]


class _Before:
    """`lower / name` answering lstat() from a tree record, for `_drop_unchanged`."""

    def __init__(self, record: TreeRecord, rel: str = "") -> None:
        self._record, self._rel = record, rel

    def __truediv__(self, name: str) -> _Before:
        return _Before(self._record, f"{self._rel}/{name}" if self._rel else name)

    def lstat(self) -> os.stat_result:
        rec = self._record.get(self._rel)
        if rec is None:
            raise FileNotFoundError(self._rel)
        return os.stat_result((rec[0], 0, 0, 0, rec[1], rec[2], 0, 0, 0, 0))
