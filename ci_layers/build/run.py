"""`run` through an existing OCI runtime (runc), with a generated runtime config.

ci-layers writes the bundle's config.json and calls `runc run`; it has no sandbox of
its own. The container gets the layer's env, workdir and user, /proc, a minimal /dev
(runc's default devices on a tmpfs), a read-only /sys, and the host's network unless
the layer says `network: none` (then a network namespace with only loopback).

Every mount destination is a real folder (or file) of the root when runc starts: the
builder lays `mount_guard` over the parent's root, as Docker lays its init layer, and
each command checks it again, so no link an image holds at /dev, /proc, /sys or /etc
leads runc's writes out of the root.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from ..errors import BuildError
from .tarwriter import DIR, FILE, Entry

__all__ = ["DEFAULT_PATH", "DEFAULT_RUN_TIMEOUT", "find_runtime", "mount_guard", "run_commands"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_RUN_TIMEOUT = 3600  # seconds a layer's `run` commands may take together
# Files bound from the host (resolv.conf is empty without a network).
_HOST_FILES = ("resolv.conf", "hosts", "hostname")
_CAPS = [  # Docker's default set
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]


def find_runtime(explicit: str | None = None) -> str:
    """The runtime binary; fails before anything is built when RUN cannot work."""
    path = shutil.which(explicit) if explicit else shutil.which("runc")
    if path is None:
        if explicit:
            raise BuildError(f"--runtime {explicit}: no such executable")
        raise BuildError(
            "layers with `run` need an OCI runtime: install runc (Debian/Ubuntu: "
            "apt-get install runc; GitHub's Ubuntu runners have it) or pass --runtime PATH"
        )
    if os.geteuid() != 0:
        raise BuildError(
            "layers with `run` need root for runc (a mount namespace and an overlay "
            "mount): run as root, e.g. sudo -E ci-layers build …; layers that only copy "
            "build without it"
        )
    return path


def _mounts(etc: Path) -> list[dict[str, Any]]:
    """What the container mounts, in the order runc mounts it (the /dev tmpfs before
    what lies in it)."""
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
    ]
    for name in _HOST_FILES:
        mounts.append(
            {
                "destination": f"/etc/{name}",
                "type": "bind",
                "source": str(etc / name),
                "options": ["rbind", "ro"],
            }
        )
    return mounts


def _destinations() -> dict[str, str]:
    """Each path the mounts need in the root, parents first: "dir" or "file"."""
    out: dict[str, str] = {}
    for m in _mounts(Path("/")):
        parts = m["destination"].strip("/").split("/")
        for i in range(1, len(parts)):
            out.setdefault("/".join(parts[:i]), "dir")
        out["/".join(parts)] = "file" if m["type"] == "bind" else "dir"
    return out


def mount_guard(lower: Path) -> list[Entry]:
    """The mount points, as a layer put over the parent's root while `run` runs (as
    Docker's init layer is): each a real folder, or an empty file, whatever the image
    holds there. runc joins paths under /dev on the host's side (GHSA-xjvp-4fhw-gc47),
    so an image's /dev that is a link out of the root would have it write there. A
    folder the parent has keeps its mode, owner and time, so one copied up from this
    layer is recorded as the parent had it."""
    entries = []
    real = {""}  # folders of the parent reached without a link (lstat follows the rest)
    for path, kind in _destinations().items():
        if kind == "file":
            entries.append(Entry(path, FILE, 0o644, data=b""))
            continue
        st: os.stat_result | None = None
        if path.rpartition("/")[0] in real:
            with contextlib.suppress(OSError):
                st = os.lstat(lower / path)
        if st is not None and stat.S_ISDIR(st.st_mode):
            real.add(path)
            mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
            entries.append(Entry(path, DIR, mode, uid, gid, mtime=int(st.st_mtime)))
        else:
            entries.append(Entry(path, DIR, 0o755))
    return entries


def _check_mount_points(rootfs: Path) -> None:
    """Refuse to start runc where a mount point is not what `mount_guard` made it (an
    earlier command of the layer may have moved a folder and left a link)."""
    for path, kind in _destinations().items():
        try:
            st: os.stat_result | None = os.lstat(rootfs / path)
        except OSError:
            st = None
        want = stat.S_ISDIR if kind == "dir" else stat.S_ISREG
        if st is None or not want(st.st_mode):
            what = "folder" if kind == "dir" else "file"
            raise BuildError(
                f"/{path} is no longer a {what} (an earlier command replaced it), and runc "
                "mounts there"
            )


def runtime_config(
    rootfs: Path,
    command: str,
    *,
    env: Sequence[str],
    cwd: str,
    uid: int,
    gid: int,
    groups: Sequence[int],
    network: bool,
    etc: Path,
) -> dict[str, Any]:
    caps = list(_CAPS)
    mounts = _mounts(etc)
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if not network:
        namespaces.append({"type": "network"})
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid, "additionalGids": list(groups), "umask": 0o022},
            "args": ["/bin/sh", "-c", command],
            "env": list(env),
            "cwd": cwd,
            "capabilities": dict.fromkeys(("bounding", "effective", "permitted"), caps),
            "noNewPrivileges": False,
        },
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": "ci-layers",
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "maskedPaths": [
                "/proc/acpi",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/proc/scsi",
                "/sys/firmware",
            ],
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        },
    }


def run_commands(
    rootfs: Path,
    commands: Sequence[str],
    *,
    runtime: str,
    bundle: Path,
    env: Sequence[str],
    cwd: str,
    uid: int,
    gid: int,
    groups: Sequence[int] = (),
    network: bool = True,
    timeout: int = DEFAULT_RUN_TIMEOUT,
    log: IO[bytes] | None = None,
    layer: str,
) -> None:
    """Run each command in `rootfs`, one after another; the first that fails stops, and
    so does running past `timeout` seconds in all (the container is killed)."""
    deadline = time.monotonic() + timeout
    etc = bundle / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    _host_files(etc, network=network)
    state = bundle / "state"
    state.mkdir(exist_ok=True)
    for i, command in enumerate(commands, 1):
        try:
            _check_mount_points(rootfs)
        except BuildError as exc:
            raise BuildError(f"run[{i - 1}]: {exc}", layer=layer) from None
        config = runtime_config(
            rootfs,
            command,
            env=env,
            cwd=cwd,
            uid=uid,
            gid=gid,
            groups=groups,
            network=network,
            etc=etc,
        )
        (bundle / "config.json").write_text(json.dumps(config))
        name = f"ci-layers-{uuid.uuid4().hex[:16]}"
        argv = [runtime, "--root", str(state), "run", "--bundle", str(bundle), name]
        what = command if len(command) <= 80 else command[:77] + "..."
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                check=False,
                timeout=max(0.0, deadline - time.monotonic()),
            )
        except OSError as exc:
            raise BuildError(f"cannot start {runtime}: {exc.strerror}", layer=layer) from None
        except subprocess.TimeoutExpired:
            raise BuildError(
                f"run[{i - 1}] still running after the layer's timeout of "
                f"{_duration(timeout)}, killed: {what} (raise it with `timeout:` on the "
                "layer, or build --run-timeout)",
                layer=layer,
            ) from None
        finally:
            subprocess.run(
                [runtime, "--root", str(state), "delete", "--force", name],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
        if done.returncode != 0:
            raise BuildError(f"run[{i - 1}] exited with {done.returncode}: {what}", layer=layer)


def _duration(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((h, "h"), (m, "m"), (s, "s")) if n) or "0s"


def _host_files(etc: Path, *, network: bool) -> None:
    """resolv.conf, hosts and hostname for the container, from the host's."""
    resolv = b""
    if network:
        try:
            resolv = Path("/etc/resolv.conf").read_bytes()
        except OSError:
            resolv = b""
    (etc / "resolv.conf").write_bytes(resolv)
    (etc / "hosts").write_bytes(b"127.0.0.1\tlocalhost ci-layers\n::1\tlocalhost ci-layers\n")
    (etc / "hostname").write_bytes(b"ci-layers\n")
