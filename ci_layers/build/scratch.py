"""Scratch folders of builds, kept in the store's `tmp/` so that what a killed build left
is found: its overlay mounts, its runc containers (still running: `kill -9` of ci-layers
does not reach them), its half-extracted roots and half-written layers.

Each folder has a lock file beside it that its build holds for its whole life (made and
locked before the folder, removed after it). A folder whose lock nobody holds belongs to
a dead build; `sweep` clears it, at the start of the next build and in gc: containers
killed (`runc delete --force`, or the init process by its pid and start time), mounts
below it unmounted deepest first, then the tree removed without following a link.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .rootfs import remove_tree

__all__ = ["BUNDLE", "scratch_dir", "sweep"]

BUNDLE = "bundle"  # the runtime's bundle in a scratch folder; its state/ is runc's --root
_TMP = "tmp"
_LOCK = ".lock"


@contextlib.contextmanager
def scratch_dir(store: Path, *, prefix: str = "build-") -> Iterator[Path]:
    """A fresh folder in `store/tmp/`, removed on the way out, whatever happened."""
    base = store / _TMP
    base.mkdir(mode=0o700, exist_ok=True)
    fd, lock = tempfile.mkstemp(dir=base, prefix=prefix, suffix=_LOCK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = Path(lock.removesuffix(_LOCK))
        path.mkdir(mode=0o700)
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):  # else the next sweep clears it
                _clear(path, runtime=None)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


def sweep(store: Path, *, runtime: str | None = None) -> list[str]:
    """Clear the scratch folders of builds that died; their names."""
    base = store / _TMP
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    cleared = []
    for name in names:
        if name.endswith(_LOCK):
            folder = base / name.removesuffix(_LOCK)
            with _unless_held(base / name) as dead:
                if dead:
                    _clear(folder, runtime=runtime)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(base / name)
                    cleared.append(folder.name)
        elif name + _LOCK not in names and (base / name).is_dir():
            _clear(base / name, runtime=runtime)  # its build died while clearing it
            cleared.append(name)
    return cleared


@contextlib.contextmanager
def _unless_held(lock: Path) -> Iterator[bool]:
    """True (and the lock held, so no other sweep clears it too) when no build holds it."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _clear(folder: Path, *, runtime: str | None) -> None:
    """Kill the containers, unmount what is mounted and remove `folder`."""
    if not folder.is_dir() or folder.is_symlink():
        return
    # only runc's own state folder: an image's files (a tree compare's copy, the upper
    # folder) may hold a state.json too, naming a process of the host
    states = folder / BUNDLE / "state"
    if _real_dir(folder / BUNDLE) and _real_dir(states):
        for name in os.listdir(states):
            if _real_dir(states / name):
                _kill(states / name / "state.json", runtime=runtime)
    for point in _mounts_below(folder):
        done = subprocess.run(["umount", point], capture_output=True, check=False)
        if done.returncode:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    remove_tree(folder)


def _real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _kill(state: Path, *, runtime: str | None) -> None:
    """Stop a container a dead build left running."""
    name, root = state.parent.name, state.parent.parent
    binary = runtime or shutil.which("runc")
    if binary is not None:
        done = subprocess.run(
            [binary, "--root", str(root), "delete", "--force", name],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        if done.returncode == 0:
            return
    try:  # no runtime: its init process, if the pid is still that process
        data = json.loads(state.read_text())
        pid, start = int(data["init_process_pid"]), int(data["init_process_start"])
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        if int(fields[19]) == start:
            os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return


def _mounts_below(folder: Path) -> list[str]:
    """Mount points at or below `folder`, deepest first (/proc/self/mountinfo)."""
    top = str(folder.resolve())
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split(" ")
        if len(fields) > 4:
            point = _unescape(fields[4])
            if point == top or point.startswith(top + "/"):
                found.append(point)
    return sorted(found, key=lambda p: -p.count("/"))


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field
