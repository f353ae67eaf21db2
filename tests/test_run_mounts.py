"""`run` over a hostile base image: whatever the image holds where runc mounts (/dev,
/proc, /sys, /etc's host files), nothing outside the root is created, changed or
removed, and the layer holds only what the commands changed."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from ci_layers.build.tarwriter import DIR, FILE, SYMLINK, Entry, write_layer
from ci_layers.oci.manifest import History, ImageManifest
from ci_layers.oci.store import OciStore

from .buildhelp import BASE, build, members, tag_of, unpack
from .conftest import require

EVIL = "ci-layers.local/evil:latest"


def _hostile(host: Path) -> dict[str, list[Entry]]:
    """What an image may hold at a mount point: links out of the root (absolute, or a
    `..` chain that the kernel, joining on the host's side, takes out of the root),
    links below /dev, and files where folders belong."""
    climb = "../" * 12 + str(host).lstrip("/")
    return {
        "dev-absolute": [Entry("dev", SYMLINK, 0o777, target=str(host))],
        "dev-climbing": [Entry("dev", SYMLINK, 0o777, target=climb)],
        "dev-a-file": [Entry("dev", FILE, data=b"not a folder\n")],
        "dev-pts": [Entry("dev", DIR, 0o755), Entry("dev/pts", SYMLINK, 0o777, target=str(host))],
        "dev-shm": [Entry("dev", DIR, 0o755), Entry("dev/shm", SYMLINK, 0o777, target=climb)],
        "proc": [Entry("proc", SYMLINK, 0o777, target=str(host))],
        "sys": [Entry("sys", SYMLINK, 0o777, target=climb)],
        "etc": [Entry("etc", SYMLINK, 0o777, target=str(host))],
        "resolv.conf": [
            Entry("etc/resolv.conf", SYMLINK, 0o777, target=str(host / "ptmx")),
        ],
        "hosts": [Entry("etc/hosts", SYMLINK, 0o777, target="../" * 12 + "ptmx")],
        "hostname": [Entry("etc/hostname", SYMLINK, 0o777, target=str(host / "new"))],
    }


CASES = list(_hostile(Path("/x")))


def _evil_image(store: OciStore, entries: list[Entry]) -> None:
    base = ImageManifest.load(store, store.resolve(BASE))
    layer = write_layer(entries, store)
    image = ImageManifest(
        config=base.config,
        layers=(*base.layers, layer),
        history=(*base.history, History(created_by="hostile")),
    )
    store.tag(EVIL, image.write(store))


def _snapshot(root: Path) -> dict[str, tuple]:
    """Everything below `root`, links unfollowed: kind, mode, content, mtime."""
    out = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(top) / name
            st = os.lstat(path)
            content = None
            if stat.S_ISREG(st.st_mode):
                content = path.read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            out[str(path.relative_to(root))] = (st.st_mode, content, st.st_mtime_ns)
    return out


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A folder of the host that a hostile image names; a `ptmx` runc would replace."""
    where = tmp_path / "host"
    where.mkdir()
    (where / "ptmx").write_text("the host's own file\n")
    (where / "sub").mkdir()
    return where


SPEC = f"""
version: 1
layers:
  a:
    from: {EVIL}
    run:
      - echo one > /out
      - cat /etc/hosts /etc/resolv.conf > /dev/null && ls /dev /proc /sys > /dev/null
      - echo two >> /out
"""


@pytest.mark.parametrize("tree_compare", [False, True], ids=["overlay", "tree-compare"])
@pytest.mark.parametrize("case", CASES)
def test_a_hostile_mount_point_writes_nothing_outside_the_root(
    case, tree_compare, host, git_repo, busybox_store, runc, monkeypatch
):
    require("umoci")
    entries = _hostile(host)[case]
    _evil_image(busybox_store, entries)
    if tree_compare:
        monkeypatch.setattr("ci_layers.build.builder.overlay_works", lambda _scratch: False)
    git_repo.write("ci-layers.yaml", SPEC)
    git_repo.commit()
    before = _snapshot(host)
    results = build(git_repo.root, busybox_store)
    assert _snapshot(host) == before
    # the layer is what the commands changed: no mount point, no guard of ours
    assert [m.name for m in members(busybox_store, results["a"].layer)] == ["out"]
    rootfs = unpack(
        busybox_store, tag_of(git_repo.root, busybox_store, "a"), git_repo.root.parent / "u"
    )
    assert (rootfs / "out").read_text() == "one\ntwo\n"
    for e in entries:  # what the image held there is still there, as it was
        path = rootfs / e.path
        if e.kind == SYMLINK:
            assert os.readlink(path) == e.target
        elif e.kind == FILE:
            assert path.read_bytes() == e.data


CHECKER = """#!{python}
import json, os, stat, sys
args = sys.argv[1:]
if "run" not in args:
    sys.exit(0)
bundle = args[args.index("--bundle") + 1]
config = json.load(open(os.path.join(bundle, "config.json")))
root = config["root"]["path"]
problems = []
for m in config["mounts"]:
    path = root
    parts = m["destination"].strip("/").split("/")
    for i, part in enumerate(parts):
        path = os.path.join(path, part)
        st = os.lstat(path) if os.path.lexists(path) else None
        last = i == len(parts) - 1
        if st is None:
            problems.append(m["destination"] + ": missing")
        elif stat.S_ISLNK(st.st_mode):
            problems.append(m["destination"] + ": a link at " + part)
        elif not last and not stat.S_ISDIR(st.st_mode):
            problems.append(m["destination"] + ": not a folder at " + part)
        elif last and m["type"] == "bind" and not stat.S_ISREG(st.st_mode):
            problems.append(m["destination"] + ": not a file")
        elif last and m["type"] != "bind" and not stat.S_ISDIR(st.st_mode):
            problems.append(m["destination"] + ": not a folder")
        if st is None or stat.S_ISLNK(st.st_mode):
            break
with open({report!r}, "a") as f:
    f.write(json.dumps(problems) + "\\n")
"""


@pytest.mark.parametrize("tree_compare", [False, True], ids=["overlay", "tree-compare"])
def test_every_mount_destination_is_a_real_folder_or_file_when_the_runtime_starts(
    tree_compare, host, tmp_path, git_repo, busybox_store, runc, monkeypatch
):
    """Whatever runtime runs the commands (GitHub's runners ship their own runc): each
    destination of the generated config, walked without following links, is a folder
    (a file for a bound file) inside the root, for every hostile image at once."""
    report = tmp_path / "report"
    checker = tmp_path / "checker"
    checker.write_text(CHECKER.format(python=sys.executable, report=str(report)))
    checker.chmod(0o755)
    everything = {}
    for entries in _hostile(host).values():
        for e in entries:
            everything.setdefault(e.path, e)  # one entry per path: dev as a link wins
    _evil_image(busybox_store, [e for e in everything.values() if e.path != "dev/pts"])
    if tree_compare:
        monkeypatch.setattr("ci_layers.build.builder.overlay_works", lambda _scratch: False)
    git_repo.write("ci-layers.yaml", SPEC)
    git_repo.commit()
    build(git_repo.root, busybox_store, runtime=str(checker))
    runs = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(runs) == 3  # once per command
    assert runs == [[], [], []]


def test_a_command_that_leaves_a_link_at_a_mount_point_stops_the_next(
    host, git_repo, busybox_store, runc, monkeypatch
):
    """The tree compare's root is a plain folder: a command may move /etc away and put a
    link there. The next command is refused before runc starts, and the host is as it was."""
    monkeypatch.setattr("ci_layers.build.builder.overlay_works", lambda _scratch: False)
    git_repo.write(
        "ci-layers.yaml",
        f"""
version: 1
layers:
  a:
    from: {BASE}
    run:
      - mv /etc /etc.moved && ln -s {host} /etc
      - echo two > /out
""",
    )
    git_repo.commit()
    before = _snapshot(host)
    from ci_layers.errors import BuildError

    with pytest.raises(BuildError, match=r"run\[1\]: /etc is no longer a folder"):
        build(git_repo.root, busybox_store)
    assert _snapshot(host) == before
