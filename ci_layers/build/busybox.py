"""A tiny root image from the host's static busybox (Debian's busybox-static): the
demo's and the tests' base, so building needs no registry and no network."""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Iterable
from pathlib import Path

from ..errors import BuildError
from ..oci.digest import Descriptor
from ..oci.manifest import History, ImageConfig, ImageManifest, host_platform
from ..oci.store import OciStore
from .run import DEFAULT_PATH
from .tarwriter import DIR, FILE, SYMLINK, Entry, write_layer

__all__ = ["BUSYBOX_REF", "busybox_image", "find_busybox"]

BUSYBOX_REF = "ci-layers.local/busybox:latest"
_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = b"root:x:0:\nnogroup:x:65534:\n"


def find_busybox() -> Path:
    """A statically linked busybox, or a message saying what to install."""
    for name in ("busybox",):
        found = shutil.which(name) or "/bin/busybox"
        path = Path(found)
        if path.is_file() and not _dynamic(path):
            return path
    raise BuildError(
        "no static busybox found: install Debian's busybox-static (apt-get install "
        "busybox-static); a dynamically linked busybox cannot run in an empty root"
    )


def _dynamic(path: Path) -> bool:
    """Whether an ELF file asks for an interpreter (PT_INTERP): not static."""
    with path.open("rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return True
        is64, little = head[4] == 2, head[5] == 1
        end = "<" if little else ">"
        if is64:
            (phoff,) = struct.unpack(end + "Q", head[32:40])
            phentsize, phnum = struct.unpack(end + "HH", head[54:58])
        else:
            (phoff,) = struct.unpack(end + "I", head[28:32])
            phentsize, phnum = struct.unpack(end + "HH", head[42:46])
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            (p_type,) = struct.unpack(end + "I", f.read(4))
            if p_type == 3:
                return True
    return False


def busybox_image(store: OciStore, *, epoch: int = 0, ref: str = BUSYBOX_REF) -> Descriptor:
    """Write the busybox root image into the store, tagged `ref`."""
    binary = find_busybox()
    listed = subprocess.run(
        [str(binary), "--list-full"], capture_output=True, text=True, check=False
    ).stdout.split()
    entries = {
        d: Entry(d, DIR, 0o755)
        for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "var", "home")
    }
    entries["tmp"] = Entry("tmp", DIR, 0o1777)
    entries["root"] = Entry("root", DIR, 0o700)
    entries["bin/busybox"] = Entry("bin/busybox", FILE, 0o755, source=str(binary))
    entries["etc/passwd"] = Entry("etc/passwd", FILE, 0o644, data=_PASSWD)
    entries["etc/group"] = Entry("etc/group", FILE, 0o644, data=_GROUP)
    for applet in listed or ["bin/sh"]:
        applet = applet.strip("/")
        if (
            applet in entries
            or "/" not in applet
            or applet.split("/")[0] not in ("bin", "sbin", "usr")
        ):
            continue
        depth = applet.count("/")
        target = (
            "busybox" if applet.startswith("bin/") and depth == 1 else "../" * depth + "bin/busybox"
        )
        entries[applet] = Entry(applet, SYMLINK, 0o777, target=target)
    with store.lease():  # gc waits: the blobs come before the tag
        return _write(store, entries.values(), epoch=epoch, ref=ref)


def _write(store: OciStore, entries: Iterable[Entry], *, epoch: int, ref: str) -> Descriptor:
    layer = write_layer(entries, store, epoch=epoch)
    os_name, arch = host_platform()
    config = ImageConfig(
        architecture=arch, os=os_name, env=(("PATH", DEFAULT_PATH),), cmd=("sh",), created=epoch
    )
    history = (History(created_by="ci-layers: busybox-static"),)
    image = ImageManifest(config=config, layers=(layer,), history=history)
    desc = image.write(store)
    store.tag(ref, desc)
    return desc
