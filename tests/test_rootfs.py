"""Assembling a rootfs from layer tars: OCI semantics, and nothing ever lands outside root.

Every test builds its layers in memory, applies them to tmp_path/root and checks that the
sibling tmp_path/outside (and tmp_path itself) are exactly as they were.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import stat
import struct
import tarfile
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ci_layers.build.rootfs import UnsafeLayer, apply_layer, assemble_rootfs

from .conftest import require


@pytest.fixture
def as_root() -> None:
    require(root=True)  # skipped as a user; in CI (root) never skipped


root_only = pytest.mark.usefixtures("as_root")
DIGEST = "sha256:" + "ab" * 32


class Entry(tarfile.TarInfo):
    """A header that carries its content to layer()."""

    data = b""


def reg(name: str, data: bytes = b"", mode: int = 0o644, **kw: object) -> Entry:
    ti = Entry(name)
    ti.size, ti.mode, ti.mtime, ti.data = len(data), mode, 1_000_000, data
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


def dir_(name: str, mode: int = 0o755) -> Entry:
    return reg(name, mode=mode, type=tarfile.DIRTYPE)


def sym(name: str, target: str) -> Entry:
    return reg(name, mode=0o777, type=tarfile.SYMTYPE, linkname=target)


def hard(name: str, target: str) -> Entry:
    return reg(name, type=tarfile.LNKTYPE, linkname=target)


def layer(*entries: Entry) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti in entries:
            tf.addfile(ti, io.BytesIO(ti.data) if ti.isreg() else None)
    return buf.getvalue()


def snapshot(top: Path, skip: Path) -> dict[str, tuple[object, ...]]:
    """Everything under top but skip: kind, mode, mtime, owner, content or link text."""
    seen: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d != skip]
        st_ = os.lstat(here)
        seen[str(here)] = (
            "dir",
            st_.st_mode,
            st_.st_mtime_ns,
            st_.st_uid,
            sorted(os.listdir(here)),
        )
        for n in [*filenames, *(d for d in dirnames if (here / d).is_symlink())]:
            p = here / n
            s = os.lstat(p)
            body = os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else None
            seen[str(p)] = (s.st_mode, s.st_mtime_ns, s.st_uid, s.st_nlink, body)
    return seen


JAILED = os.geteuid() == 0  # chroot needs root
NOBODY = 65534
T = TypeVar("T")


def jailed(top: Path, fn: Callable[[], T], *, uid: int | None = None) -> T:
    """fn() in a child process chrooted to top (when root), its outcome sent back.

    These tests write through links to `/`, to this machine's paths and above the root.
    An extractor that regressed would follow them and, as root, overwrite this machine's
    files (a deliberately broken build once rewrote /etc/passwd). In the jail the same
    regression only reaches top, which the tests compare; unprivileged, it is refused.
    `uid`: drop to that user (and group) in the jail, to run as an unprivileged build."""
    if not JAILED:
        return fn()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        try:
            os.close(r)
            outcome: tuple[str, object]
            try:
                os.chroot(top)
                os.chdir("/")
                if uid is not None:
                    os.setgroups([])
                    os.setgid(uid)
                    os.setuid(uid)
                outcome = ("ok", fn())
            except UnsafeLayer as exc:
                outcome = ("unsafe", (exc.message, exc.entry, exc.layer))
            except BaseException:
                outcome = ("error", traceback.format_exc())
            with os.fdopen(w, "wb") as out:
                pickle.dump(outcome, out)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as src:
        data = src.read()
    os.waitpid(pid, 0)
    if not data:
        pytest.fail("the jailed child died without a word")
    kind, payload = pickle.loads(data)
    if kind == "unsafe":
        message, entry, digest = payload
        raise UnsafeLayer(message, entry=entry, layer=digest)
    if kind == "error":
        pytest.fail(f"in the jail:\n{payload}")
    return cast(T, payload)


@dataclass
class Box:
    """tmp_path/root to build in, tmp_path/outside with a secret, and their snapshot."""

    top: Path
    root: Path = field(init=False)
    outside: Path = field(init=False)
    before: dict[str, tuple[object, ...]] = field(init=False)

    def __post_init__(self) -> None:
        self.root, self.outside = self.top / "root", self.top / "outside"
        self.root.mkdir()
        (self.outside / "etc").mkdir(parents=True)
        (self.outside / "secret").write_bytes(b"host secret")
        (self.outside / "etc" / "passwd").write_bytes(b"host passwd")
        self.before = snapshot(self.top, self.root)

    def run(self, fn: Callable[[Path], T], *, unprivileged: bool = False) -> T:
        """fn(root), jailed: it gets the root's path as seen from inside the jail."""
        inner = Path("/", self.root.relative_to(self.top)) if JAILED else self.root
        uid = None
        if unprivileged and JAILED:
            uid = NOBODY
            os.chown(self.root, uid, uid)
            os.chmod(self.top, 0o755)  # the jail's / (pytest makes it 0700)
            self.before = snapshot(self.top, self.root)
        return jailed(self.top, lambda: fn(inner), uid=uid)

    def apply(self, *layers: bytes, privileged: bool = False) -> list[str]:
        items = [(DIGEST, (lambda b=b: io.BytesIO(b))) for b in layers]
        return self.run(lambda root: assemble_rootfs(root, items, privileged=privileged))

    def refused(self, *layers: bytes, match: str, privileged: bool = False) -> UnsafeLayer:
        with pytest.raises(UnsafeLayer, match=match) as info:
            self.apply(*layers, privileged=privileged)
        return info.value

    def outside_untouched(self) -> bool:
        return snapshot(self.top, self.root) == self.before


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    b = Box(tmp_path)
    yield b
    assert b.outside_untouched()


def test_absolute_name_is_neutralised(box: Box) -> None:
    warnings = box.apply(layer(reg("/etc/hosts", b"x")))
    assert (box.root / "etc/hosts").read_bytes() == b"x"
    assert warnings == [
        f"layer sha256:{'ab' * 6}… entry '/etc/hosts': absolute name taken as relative to the root"
    ]
    assert box.outside_untouched()


def test_dotdot_escape_is_refused(box: Box) -> None:
    err = box.refused(layer(reg("../outside/evil", b"x")), match="escapes the root")
    assert str(err) == f"layer sha256:{'ab' * 6}… entry '../outside/evil': escapes the root"
    assert os.listdir(box.root) == []
    assert box.outside_untouched()


def test_dotdot_below_a_directory_escape_is_refused(box: Box) -> None:
    box.refused(layer(reg("a/../../etc", b"x")), match="entry 'a/../../etc': escapes the root")
    assert os.listdir(box.root) == []
    assert box.outside_untouched()


def test_dotdot_inside_the_root_is_normalised(box: Box) -> None:
    assert box.apply(layer(reg("a/../b", b"x"), reg("./c/./d", b"y"))) == []
    assert sorted(os.listdir(box.root)) == ["b", "c"]
    assert (box.root / "c/d").read_bytes() == b"y"
    assert box.outside_untouched()


def test_write_through_symlink_to_slash_lands_inside(box: Box) -> None:
    box.apply(layer(sym("a", "/")), layer(reg("a/etc/passwd", b"pwned"), reg("a/secret", b"s")))
    assert (box.root / "etc/passwd").read_bytes() == b"pwned"
    assert (box.root / "secret").read_bytes() == b"s"
    assert os.readlink(box.root / "a") == "/"
    assert box.outside_untouched()


def test_write_through_symlink_to_host_absolute_path_lands_inside(box: Box) -> None:
    box.apply(layer(sym("a", str(box.outside)), reg("a/secret", b"pwned")))
    assert (box.root / str(box.outside).lstrip("/") / "secret").read_bytes() == b"pwned"
    assert box.outside_untouched()


def test_write_through_relative_escape_symlink_lands_inside(box: Box) -> None:
    box.apply(layer(dir_("d"), sym("d/up", "../../.."), reg("d/up/outside/secret", b"pwned")))
    assert (box.root / "outside/secret").read_bytes() == b"pwned"
    assert box.outside_untouched()


def test_symlink_with_absolute_or_climbing_target_is_created_as_is(box: Box) -> None:
    deep = "../../../../usr/share/ca-certificates/x.crt"
    box.apply(
        layer(sym("etc/ssl/certs/x.pem", deep), sym("etc/localtime", "/usr/share/zoneinfo/UTC"))
    )
    assert os.readlink(box.root / "etc/ssl/certs/x.pem") == deep
    assert os.readlink(box.root / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert box.outside_untouched()


def test_hardlink_escaping_the_root_is_refused(box: Box) -> None:
    box.refused(layer(hard("h", "../outside/secret")), match="entry 'h': escapes the root")
    assert not (box.root / "h").exists()
    assert box.outside_untouched()


def test_hardlink_through_symlinked_directory_resolves_inside(box: Box) -> None:
    base = layer(sym("rel", "../outside"), sym("abs", str(box.outside)))
    box.refused(
        base, layer(hard("h", "rel/secret")), match="hardlink target 'rel/secret' does not exist"
    )
    box.refused(layer(hard("h", "abs/secret")), match="does not exist")
    inner = layer(reg("outside/secret", b"inner"), reg(str(box.outside) + "/secret", b"inner2"))
    box.apply(inner, layer(hard("h1", "rel/secret"), hard("h2", "abs/secret")))
    assert os.stat(box.root / "h1").st_ino == os.stat(box.root / "outside/secret").st_ino
    assert (box.root / "h2").read_bytes() == b"inner2"
    assert os.stat(box.outside / "secret").st_nlink == 1
    assert box.outside_untouched()


def test_hardlink_to_missing_target_is_refused(box: Box) -> None:
    box.refused(
        layer(hard("h", "nowhere")), match="entry 'h': hardlink target 'nowhere' does not exist"
    )
    assert not os.path.lexists(box.root / "h")
    assert box.outside_untouched()


def test_hardlink_to_directory_is_refused(box: Box) -> None:
    box.refused(layer(dir_("d"), hard("h", "d")), match="hardlink to a directory")
    assert box.outside_untouched()


def test_hardlink_to_symlink_links_the_symlink(box: Box) -> None:
    box.apply(layer(sym("s", "/outside/secret"), hard("h", "s")))
    assert os.readlink(box.root / "h") == "/outside/secret"
    assert os.lstat(box.root / "h").st_ino == os.lstat(box.root / "s").st_ino
    assert box.outside_untouched()


def test_device_nodes_are_skipped_with_a_warning(box: Box) -> None:
    dev = reg("dev/sda", type=tarfile.BLKTYPE, devmajor=8, devminor=0)
    warnings = box.apply(layer(reg("dev/null", type=tarfile.CHRTYPE, devmajor=1, devminor=3), dev))
    assert [w.split(": ", 1)[1] for w in warnings] == ["device node skipped"] * 2
    assert not (box.root / "dev").exists()
    assert box.outside_untouched()


def test_fifo_is_created(box: Box) -> None:
    box.apply(layer(reg("run/fifo", mode=0o640, type=tarfile.FIFOTYPE)))
    st_ = os.lstat(box.root / "run/fifo")
    assert stat.S_ISFIFO(st_.st_mode)
    assert stat.S_IMODE(st_.st_mode) == 0o640
    assert box.outside_untouched()


def test_setuid_is_stripped_when_unprivileged(box: Box) -> None:
    warnings = box.apply(layer(reg("bin/su", b"x", mode=0o4755), dir_("tmp", 0o1777)))
    assert stat.S_IMODE(os.stat(box.root / "bin/su").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(box.root / "tmp").st_mode) == 0o1777  # sticky kept
    assert warnings == [
        f"layer sha256:{'ab' * 6}… entry 'bin/su': setuid/setgid bits stripped (not privileged)"
    ]
    assert box.outside_untouched()


@root_only
def test_setuid_and_owner_kept_when_privileged(box: Box) -> None:
    entry = reg("bin/su", b"x", mode=0o6755, uid=123, gid=456)
    assert box.apply(layer(entry), privileged=True) == []
    st_ = os.stat(box.root / "bin/su")
    assert (stat.S_IMODE(st_.st_mode), st_.st_uid, st_.st_gid) == (0o6755, 123, 456)
    assert os.stat(box.root / "bin").st_uid == 0
    assert box.outside_untouched()


def test_metadata_mtimes_and_modes_are_applied(box: Box) -> None:
    box.apply(layer(dir_("d", 0o750), reg("d/f", b"x", mode=0o600), sym("d/s", "f")))
    assert os.stat(box.root / "d").st_mtime == 1_000_000  # after its child was written
    assert stat.S_IMODE(os.stat(box.root / "d").st_mode) == 0o750
    assert os.lstat(box.root / "d/s").st_mtime == 1_000_000
    assert stat.S_IMODE(os.stat(box.root / "d/f").st_mode) == 0o600
    assert box.outside_untouched()


def test_whiteout_deletes_a_lower_file_and_a_lower_tree(box: Box) -> None:
    lower = layer(
        reg("etc/a", b"1"), reg("etc/keep", b"2"), reg("opt/app/x/y", b"3"), sym("opt/app/l", "/")
    )
    box.apply(lower, layer(reg("etc/.wh.a"), reg("opt/.wh.app"), reg("opt/.wh.never-there")))
    assert os.listdir(box.root / "etc") == ["keep"]
    assert os.listdir(box.root / "opt") == []
    assert box.outside_untouched()


def test_whiteout_of_symlinked_dir_removes_the_link_not_the_target(box: Box) -> None:
    box.apply(layer(reg("real/f", b"x"), sym("link", "real"), sym("host", str(box.outside))))
    box.apply(layer(reg(".wh.link"), reg(".wh.host")))
    assert sorted(os.listdir(box.root)) == ["real"]
    assert (box.root / "real/f").read_bytes() == b"x"
    assert box.outside_untouched()


def test_opaque_dir_hides_lower_children_but_keeps_this_layers_own(box: Box) -> None:
    lower = layer(
        reg("d/old", b"1"), reg("d/sub/old2", b"2"), reg("d/sub/kept-name", b"old"), reg("e/x")
    )
    upper = layer(
        reg("d/before", b"b"),
        reg("d/sub/kept-name", b"new"),
        reg("d/.wh..wh..opq"),
        reg("d/after", b"a"),
    )
    box.apply(lower, upper)
    assert sorted(os.listdir(box.root / "d")) == ["after", "before", "sub"]
    assert os.listdir(box.root / "d/sub") == ["kept-name"]
    assert (box.root / "d/sub/kept-name").read_bytes() == b"new"
    assert (box.root / "e/x").exists()
    assert box.outside_untouched()


def test_file_replaces_directory_and_directory_replaces_file(box: Box) -> None:
    box.apply(
        layer(reg("a/deep/f", b"x"), reg("b", b"file")), layer(reg("a", b"now a file"), dir_("b"))
    )
    assert (box.root / "a").read_bytes() == b"now a file"
    assert (box.root / "b").is_dir()
    assert os.listdir(box.root / "b") == []
    box.apply(layer(reg("b/inside", b"1")), layer(dir_("b", 0o700)))
    assert os.listdir(box.root / "b") == ["inside"]  # a directory over a directory keeps it
    assert stat.S_IMODE(os.stat(box.root / "b").st_mode) == 0o700
    assert box.outside_untouched()


def test_symlink_loop_in_a_path_is_refused(box: Box) -> None:
    loop = layer(sym("a", "b"), sym("b", "a"), sym("self", "self/x"))
    box.refused(
        loop, layer(reg("a/x", b"x")), match="entry 'a/x': too many levels of symbolic links"
    )
    box.refused(layer(reg("self/y", b"y")), match="too many levels of symbolic links")
    assert box.outside_untouched()


def test_existing_final_symlink_is_replaced_not_followed(box: Box) -> None:
    secret = str(box.outside / "secret")
    lower = layer(
        sym("x", secret), sym("y", "/etc/passwd"), sym("z", secret), sym("w", str(box.outside))
    )
    upper = layer(reg("x", b"mine"), dir_("y"), sym("z", "elsewhere"), hard("w", "x"))
    box.apply(lower, upper)
    assert (box.root / "x").read_bytes() == b"mine"
    assert not (box.root / "x").is_symlink()
    assert (box.root / "y").is_dir()
    assert os.readlink(box.root / "z") == "elsewhere"
    assert os.stat(box.root / "w").st_ino == os.stat(box.root / "x").st_ino
    assert box.outside_untouched()


def test_bare_whiteout_is_refused(box: Box) -> None:
    box.refused(layer(reg("etc/.wh.")), match="entry 'etc/.wh.': '.wh.' is not a valid whiteout")
    box.refused(layer(reg("etc/.wh..."), reg("x")), match="'.wh...' is not a valid whiteout")
    assert box.outside_untouched()


def test_nul_in_name_is_refused(box: Box) -> None:
    ti = reg("a\x00b", b"x")
    ti.pax_headers = {"path": "a\x00b"}
    box.refused(layer(ti), match="name contains a NUL byte")
    link = sym("s", "x\x00y")
    link.pax_headers = {"linkpath": "x\x00y"}  # a ustar field would end at the NUL
    box.refused(layer(link), match="link target contains a NUL byte")
    assert os.listdir(box.root) == []
    assert box.outside_untouched()


class Trickle(io.RawIOBase):
    """A non-seekable stream that remembers the largest read asked of it."""

    def __init__(self, data: bytes) -> None:
        self.src, self.largest = io.BytesIO(data), 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        self.largest = max(self.largest, len(b))
        chunk = self.src.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)


def test_large_file_is_streamed(box: Box) -> None:
    content = os.urandom(3 << 20)
    stream = Trickle(layer(reg("big.bin", content)))

    def apply(root: Path) -> int:
        apply_layer(root, stream, privileged=False)  # type: ignore[arg-type]  # a raw stream
        return stream.largest

    assert box.run(apply) <= 1 << 20
    assert (box.root / "big.bin").read_bytes() == content
    assert box.outside_untouched()


def _capability() -> bytes:
    """A VFS_CAP_REVISION_2 blob: cap_net_bind_service, effective."""
    return struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)


@root_only
def test_capability_xattr_applied_when_privileged(box: Box) -> None:
    ti = reg("bin/ping", b"x", mode=0o755)
    ti.pax_headers = {
        "SCHILY.xattr.security.capability": _capability().decode("utf-8", "surrogateescape"),
        "SCHILY.xattr.user.other": "ignored",
    }
    warnings = box.apply(layer(ti), privileged=True)
    assert warnings == []
    assert os.getxattr(box.root / "bin/ping", "security.capability") == _capability()
    assert "user.other" not in os.listxattr(box.root / "bin/ping")
    assert box.outside_untouched()


def test_capability_xattr_dropped_when_unprivileged(box: Box) -> None:
    ti = reg("bin/ping", b"x")
    ti.pax_headers = {
        "SCHILY.xattr.security.capability": _capability().decode("utf-8", "surrogateescape")
    }
    warnings = box.apply(layer(ti))
    assert warnings == [
        f"layer sha256:{'ab' * 6}… entry 'bin/ping': security.capability dropped (not privileged)"
    ]
    assert "security.capability" not in os.listxattr(box.root / "bin/ping")
    assert box.outside_untouched()


def test_unprivileged_process_writes_read_only_dirs_and_files(box: Box) -> None:
    entries = (
        dir_("ro", 0o555),
        reg("ro/f", b"x", mode=0o444),
        reg("none", b"y", mode=0o000),
        hard("none2", "none"),
        reg("ro/sub/g", b"z", mode=0o2755, uid=0),
    )
    warnings = box.run(
        lambda root: apply_layer(root, io.BytesIO(layer(*entries))), unprivileged=True
    )
    modes = {
        n: stat.S_IMODE(os.lstat(box.root / n).st_mode) for n in ("ro", "ro/f", "none", "ro/sub/g")
    }
    assert modes == {"ro": 0o555, "ro/f": 0o444, "none": 0o000, "ro/sub/g": 0o755}
    assert [w.split(": ", 1)[1] for w in warnings] == [
        "metadata not applied: permission denied",  # none2: an unreadable inode, as nobody
        "setuid/setgid bits stripped (not privileged)",
    ]
    assert os.stat(box.root / "none2").st_ino == os.stat(box.root / "none").st_ino
    assert box.outside_untouched()


def test_absurd_owner_or_mtime_never_crash(box: Box) -> None:
    ti = reg("f", b"x")
    ti.pax_headers = {"mtime": "1e300"}
    box.apply(layer(ti, reg("g", b"y", mtime=-1)))
    assert (box.root / "f").read_bytes() == b"x"
    if JAILED:
        box.refused(
            layer(reg("h", b"z", uid=1 << 40)),
            match="entry 'h': cannot be applied",
            privileged=True,
        )
    assert box.outside_untouched()


def test_unsafe_layer_message_without_a_layer(box: Box) -> None:
    with pytest.raises(UnsafeLayer) as info:
        box.run(lambda root: apply_layer(root, io.BytesIO(layer(reg("../x")))))
    assert str(info.value) == "entry '../x': escapes the root"
    assert info.value.exit_code == 1
    assert box.outside_untouched()


# -- the property: whatever the layers say, nothing outside the root changes -------------

OUTSIDE = "<outside>"  # replaced by the absolute path of the sentinel directory
comps = st.sampled_from(["a", "b", "c", "a", "b", "c", "..", "."])
names = st.builds(
    lambda lead, cs: lead + "/".join(cs),
    st.sampled_from(["", "/", "./"]),
    st.lists(comps, min_size=1, max_size=4),
)
targets = st.one_of(
    names, st.sampled_from(["/", "../../..", "../../../outside", OUTSIDE, OUTSIDE + "/secret"])
)
whiteouts = st.builds(
    lambda parent, base: (parent + "/" if parent else "") + base,
    st.sampled_from(["", "a", "b", "a/b", "c/a"]),
    st.sampled_from([".wh.a", ".wh.b", ".wh.c", ".wh..wh..opq"]),
)
entries = st.one_of(
    st.tuples(st.just("file"), names, st.just("")),
    st.tuples(st.just("dir"), names, st.just("")),
    st.tuples(st.just("symlink"), names, targets),
    st.tuples(st.just("hardlink"), names, names),
    st.tuples(st.just("whiteout"), whiteouts, st.just("")),
)


def _build(spec: list[tuple[str, str, str]], outside: Path) -> bytes:
    made = {
        "file": lambda n, t: reg(n, b"data"),
        "dir": lambda n, t: dir_(n),
        "symlink": lambda n, t: sym(n, t.replace(OUTSIDE, str(outside))),
        "hardlink": lambda n, t: hard(n, t),
        "whiteout": lambda n, t: reg(n),
    }
    return layer(*(made[kind](name, target) for kind, name, target in spec))


@root_only  # random links to / are only safe to follow in the chroot a root test runs in
@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(entries, max_size=8), min_size=1, max_size=4))
def test_random_layers_never_touch_anything_outside_the_root(
    layers: list[list[tuple[str, str, str]]],
) -> None:
    host = {p: os.path.lexists(p) for p in ("/a", "/b", "/c", "/secret")}
    with tempfile.TemporaryDirectory() as tmp:
        box = Box(Path(tmp))
        for spec in layers:
            with contextlib.suppress(UnsafeLayer):  # refused: the next layer goes on top
                box.apply(_build(spec, box.outside))
        assert box.outside_untouched()
    assert host == {p: os.path.lexists(p) for p in host}


def test_a_very_deep_folder_is_replaced_without_recursion(tmp_path: Path) -> None:
    """A layer may nest folders deeper than Python's stack; replacing them still works."""
    root = tmp_path / "root"
    root.mkdir()
    deep = "/".join(["d"] * 1100)
    apply_layer(root, io.BytesIO(layer(dir_("top"), reg(f"top/{deep}/f", b"x"))), privileged=False)
    apply_layer(root, io.BytesIO(layer(reg("top", b"now a file"))), privileged=False)
    assert (root / "top").read_bytes() == b"now a file"


def _sparse(realsize: int, runs: list[tuple[int, int]], data: bytes) -> bytes:
    """A PAX 1.0 sparse member (as GNU tar writes one): its map, then its data runs."""
    head = b"%d\n" % len(runs) + b"".join(b"%d\n%d\n" % r for r in runs)
    body = head + b"\0" * (-len(head) % 512) + data
    info = tarfile.TarInfo("GNUSparseFile.0/big")
    info.size = len(body)
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": "big",
        "GNU.sparse.realsize": str(realsize),
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


def test_a_sparse_file_is_written_with_its_holes(box: Box) -> None:
    box.apply(_sparse(1 << 30, [(4096, 4), (1 << 29, 4)], b"abcdwxyz"))
    big = box.root / "big"
    assert big.stat().st_size == 1 << 30
    assert big.stat().st_blocks * 512 < 1 << 20
    with big.open("rb") as f:
        assert f.read(4100)[4096:] == b"abcd"
        f.seek(1 << 29)
        assert f.read(4) == b"wxyz"
    assert box.outside_untouched()


def test_a_sparse_map_past_the_file_s_size_is_refused(box: Box) -> None:
    """Runs beyond the size would be written, then cut: disk taken that no size counts."""
    box.refused(_sparse(10_000, [(8192, 4096)], b"x" * 4096), match="data runs past its size")


def test_a_root_s_size_limit_counts_across_its_layers(tmp_path: Path) -> None:
    root = tmp_path / "root"
    layers = [layer(reg(f"f{i}", b"x" * 600)) for i in range(2)]
    openers = [
        (f"sha256:{i:064x}", lambda data=data: io.BytesIO(data)) for i, data in enumerate(layers)
    ]
    assemble_rootfs(root, openers[:1], privileged=False, max_bytes=1000)
    with pytest.raises(UnsafeLayer, match=r"entry 'f1': the root would take more than 1000 bytes"):
        assemble_rootfs(tmp_path / "other", openers, privileged=False, max_bytes=1000)


@pytest.mark.parametrize(
    ("runs", "why"),
    [
        ([(8192, 10), (0, 10)], "overlap or are out of order"),
        ([(0, 100), (50, 10)], "overlap or are out of order"),
        ([(-5, 10)], "overlap or are out of order"),
        ([(9_995, 10)], "past its size"),
    ],
)
def test_a_sparse_map_a_tar_would_not_write_is_refused(box: Box, runs, why) -> None:
    data = b"x" * sum(n for _o, n in runs)
    box.refused(_sparse(10_000, runs, data), match=why)
    assert box.outside_untouched()


def test_a_sparse_header_tarfile_cannot_read_is_a_broken_tar(tmp_path: Path) -> None:
    """A size that is no number raised ValueError from inside tarfile (exit 3)."""
    raw = _sparse(10_000, [(0, 4)], b"abcd").replace(
        b"GNU.sparse.realsize=10000", b"GNU.sparse.realsize=1x000"
    )
    with pytest.raises(tarfile.ReadError, match="unreadable header"):
        apply_layer(tmp_path, io.BytesIO(raw))
    assert list(tmp_path.iterdir()) == []
