"""optimize_layer_stack: a squashed image unpacks to exactly what the original does,
never has more layers than asked, keeps shared layers, and merges what changes together."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ci_layers.build.rootfs import assemble_rootfs
from ci_layers.build.squash import plan_groups, squash_image
from ci_layers.build.tarwriter import (
    DIR,
    FILE,
    HARDLINK,
    OPAQUE,
    SYMLINK,
    WHITEOUT,
    Entry,
    sort_key,
    write_layer,
)
from ci_layers.errors import UsageError
from ci_layers.oci.layers import open_layer
from ci_layers.oci.manifest import History, ImageManifest
from ci_layers.oci.store import OciStore

from .buildhelp import BASE, build, tag_of, unpack
from .conftest import require
from .test_cli_build import run

NAMES = ["a", "b", "d", "d/x", "d/y", "d/e", "d/e/z"]


def _tree(root: Path) -> dict[str, tuple]:
    found = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            st_ = full.lstat()
            if stat.S_ISLNK(st_.st_mode):
                found[rel] = ("link", os.readlink(full))
            elif stat.S_ISDIR(st_.st_mode):
                found[rel] = ("dir", st_.st_mode & 0o7777)
            else:
                found[rel] = ("file", st_.st_mode & 0o7777, full.read_bytes())
    return found


def _linked(root: Path) -> set[frozenset[str]]:
    """The groups of paths that share one inode (hardlinks)."""
    by_inode: dict[int, set[str]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = Path(dirpath) / name
            st_ = full.lstat()
            if stat.S_ISREG(st_.st_mode) and st_.st_nlink > 1:
                by_inode.setdefault(st_.st_ino, set()).add(full.relative_to(root).as_posix())
    return {frozenset(g) for g in by_inode.values()}


def _unpacked(store: OciStore, image: ImageManifest) -> dict[str, tuple]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        openers = [
            (str(x.descriptor.digest), lambda x=x: open_layer(store, x)) for x in image.layers
        ]
        assemble_rootfs(root, openers, privileged=False)
        return {**_tree(root), "(hardlinks)": _linked(root)}


@st.composite
def layer_ops(draw):
    """One layer: entries that add, overwrite or delete (a whiteout or an opaque folder);
    a nested path always comes with its folders, as a real layer's does."""
    entries: dict[str, Entry] = {}
    opaque: set[str] = set()
    for _ in range(draw(st.integers(1, 5))):
        path = draw(st.sampled_from(NAMES))
        kind = draw(st.sampled_from([FILE, FILE, DIR, SYMLINK, WHITEOUT, OPAQUE, HARDLINK]))
        parents = [p for p in NAMES if path.startswith(p + "/")]
        if any(p in entries and entries[p].kind != DIR for p in parents):
            continue
        if path in entries or any(e.startswith(path + "/") for e in entries):
            continue  # one entry per path, and no file over folders made in this layer
        for p in parents:
            entries[p] = Entry(p, DIR, mode=0o755)
        if kind == OPAQUE and path in ("d", "d/e"):
            entries[path] = Entry(path, DIR, mode=0o755)
            opaque.add(path)
        elif kind in (OPAQUE, WHITEOUT):
            entries[path] = Entry(path, WHITEOUT)
        elif kind == FILE:
            mode = draw(st.sampled_from([0o644, 0o755]))
            entries[path] = Entry(path, FILE, data=draw(st.binary(max_size=8)), mode=mode)
        elif kind == DIR:
            entries[path] = Entry(path, DIR, mode=0o755)
        elif kind == HARDLINK:  # to a file of this layer written before it, as overlay
            files = [  # copies a lower file up before it links to it
                e for p, e in entries.items() if e.kind == FILE and sort_key(p) < sort_key(path)
            ]
            if not files:
                continue
            target = draw(st.sampled_from(files))
            entries[path] = Entry(path, HARDLINK, target.mode, target=target.path)
        else:
            entries[path] = Entry(path, SYMLINK, target="a")
    return [*entries.values(), *(Entry(d, OPAQUE) for d in sorted(opaque))]


def _image(store: OciStore, stack) -> tuple:
    layers = tuple(write_layer(entries, store) for entries in stack)
    image = ImageManifest.scratch()
    image = ImageManifest(
        image.config, layers, tuple(History(created_by=f"layer {i}") for i in range(len(layers)))
    )
    return image.write(store), image


@given(st.lists(layer_ops(), min_size=2, max_size=6), st.integers(1, 6))
def test_a_squashed_image_unpacks_to_the_original(stack, max_layers):
    with tempfile.TemporaryDirectory() as tmp:
        store = OciStore(Path(tmp) / "s")
        desc, original = _image(store, stack)
        _new, plan, squashed = squash_image(
            store, desc, shared=0, sizes_changes=None, max_layers=max_layers
        )
        assert len(squashed.layers) <= max_layers
        assert sum(len(g) for g in plan.groups) == len(original.layers)
        assert _unpacked(store, squashed) == _unpacked(store, original)
        assert sum(1 for h in squashed.history if not h.empty_layer) == len(squashed.layers)


def test_umoci_unpacks_the_squashed_image_to_the_original(tmp_path):
    require("umoci")
    store = OciStore(tmp_path / "s")
    stack = [
        [
            Entry("etc", DIR, mode=0o755),
            Entry("etc/a", FILE, data=b"1"),
            Entry("etc/b", FILE, data=b"2"),
            Entry("opt", DIR, mode=0o755),
            Entry("opt/x", FILE, data=b"x"),
        ],
        [Entry("etc/a", FILE, data=b"one", mode=0o600), Entry("opt", WHITEOUT)],
        [
            Entry("opt", DIR, mode=0o700),
            Entry("opt/y", FILE, data=b"y"),
            Entry("etc/b", WHITEOUT),
            Entry("link", SYMLINK, target="etc/a"),
        ],
    ]
    desc, _original = _image(store, stack)
    store.tag("orig", desc)
    new, _plan, squashed = squash_image(store, desc, shared=0, sizes_changes=None, max_layers=1)
    store.tag("squashed", new)
    assert len(squashed.layers) == 1
    a = _tree(unpack(store, "orig", tmp_path / "a"))
    b = _tree(unpack(store, "squashed", tmp_path / "b"))
    assert a == b
    assert "opt/x" not in b
    assert "etc/b" not in b


def _a_and_b(content: bytes = b"old") -> list[Entry]:
    return [Entry("a", FILE, data=content), Entry("b", HARDLINK, target="a")]


LINK_STACKS = {
    # ln /a /b; then /a replaced: /b keeps the old bytes (its own inode)
    "target-replaced": [_a_and_b(), [Entry("a", FILE, data=b"new")]],
    # ln /a /b; then rm /a: /b keeps its bytes
    "target-removed": [_a_and_b(), [Entry("a", WHITEOUT)]],
    "target-becomes-a-folder": [_a_and_b(), [Entry("a", DIR, 0o755), Entry("a/x", FILE)]],
    "target-becomes-a-symlink": [_a_and_b(), [Entry("a", SYMLINK, target="b")]],
    "folder-of-the-target-made-opaque": [
        [
            Entry("d", DIR, 0o755),
            Entry("d/a", FILE, data=b"old"),
            Entry("e", HARDLINK, target="d/a"),
        ],
        [Entry("d", DIR, 0o755), Entry("d", OPAQUE), Entry("d/n", FILE, data=b"n")],
    ],
    "folder-of-the-target-removed": [
        [
            Entry("d", DIR, 0o755),
            Entry("d/a", FILE, data=b"old"),
            Entry("e", HARDLINK, target="d/a"),
        ],
        [Entry("d", WHITEOUT)],
    ],
    # ln a b; ln a c; a replaced: b and c keep the old bytes, still one inode
    "two-links-stay-linked": [
        [*_a_and_b(), Entry("c", HARDLINK, target="a")],
        [Entry("a", FILE, data=b"new")],
    ],
    # ln a b, then ln b c (overlay copies b up first, apart from a), then a removed
    "a-chain": [
        _a_and_b(),
        [Entry("b", FILE, data=b"old"), Entry("c", HARDLINK, target="b")],
        [Entry("a", WHITEOUT)],
    ],
    # a link of a link in one layer (tar names the first), its holder replaced
    "a-link-to-a-link": [
        [*_a_and_b(), Entry("c", HARDLINK, target="b")],
        [Entry("a", FILE, data=b"new")],
    ],
    "the-link-replaced": [_a_and_b(), [Entry("b", FILE, data=b"b's own")]],
    "the-link-removed": [_a_and_b(), [Entry("b", WHITEOUT)], [Entry("a", FILE, data=b"new")]],
}


@pytest.mark.parametrize("stack", LINK_STACKS.values(), ids=LINK_STACKS.keys())
def test_hardlinks_keep_their_bytes_when_their_target_goes(stack, tmp_path):
    store = OciStore(tmp_path / "s")
    desc, original = _image(store, stack)
    _new, _plan, squashed = squash_image(store, desc, shared=0, sizes_changes=None, max_layers=1)
    assert len(squashed.layers) == 1
    assert _unpacked(store, squashed) == _unpacked(store, original)


def test_umoci_reads_the_old_bytes_of_a_link_whose_target_was_replaced(tmp_path):
    require("umoci")
    store = OciStore(tmp_path / "s")
    desc, _original = _image(store, LINK_STACKS["target-replaced"])
    store.tag("orig", desc)
    new, _plan, _squashed = squash_image(store, desc, shared=0, sizes_changes=None, max_layers=1)
    store.tag("squashed", new)
    squashed = unpack(store, "squashed", tmp_path / "b")
    assert (squashed / "b").read_bytes() == b"old"
    assert (squashed / "a").read_bytes() == b"new"
    assert _tree(unpack(store, "orig", tmp_path / "a")) == _tree(squashed)


def test_the_split_merges_what_changes_together_or_rarely():
    often, never = frozenset(range(10)), frozenset()
    plan = plan_groups([100, 100, 100], [often, never, never], 10, fixed=0, max_layers=2)
    assert plan.groups == ((0,), (1, 2))  # the two quiet layers together
    assert plan.cost_after == plan.cost_before == 100
    together = frozenset({1, 2})
    plan = plan_groups(
        [50, 100, 100, 50],
        [together, never, frozenset(range(10)), together],
        10,
        fixed=0,
        max_layers=3,
    )
    assert len(plan.groups) <= 3
    with pytest.raises(UsageError, match="125"):
        plan_groups([1], [never], 0, fixed=0, max_layers=126)
    with pytest.raises(UsageError, match="shared"):
        plan_groups([1, 1, 1], [never] * 3, 0, fixed=2, max_layers=2)


TREE = f"""
version: 1
layers:
  os:
    from: {BASE}
    copy: [{{src: etc/, dest: /etc/}}]
  app1: {{parent: os, copy: [{{src: a1/, dest: /a1/}}]}}
  app2: {{parent: os, copy: [{{src: a2/, dest: /a2/}}]}}
  conf: {{parent: app1, copy: [{{src: conf/, dest: /conf/}}]}}
  code: {{parent: conf, copy: [{{src: code/, dest: /code/}}]}}
images:
  app: {{layer: code, tags: [registry.example.com/app:1]}}
"""


def test_squash_keeps_branch_points_and_the_base_and_merges_the_rest(
    git_repo, busybox_store, tmp_path
):
    require("umoci")
    git_repo.write("ci-layers.yaml", TREE)
    for folder in ("etc", "a1", "a2", "conf", "code"):
        git_repo.write(f"{folder}/f", folder + "\n")
    git_repo.commit("one")
    for i in range(4):  # code changes on every commit, conf never
        git_repo.write("code/f", f"code {i}\n")
        git_repo.commit(f"code {i}")
    build(git_repo.root, busybox_store)
    store = str(busybox_store.path)
    code, out, err = run(
        "squash",
        "registry.example.com/app:1",
        "--max-layers",
        "4",
        "-C",
        str(git_repo.root),
        "--store",
        store,
    )
    assert code == 0, err
    squashed = ImageManifest.load(
        busybox_store, busybox_store.resolve("registry.example.com/app:1-squashed")
    )
    original = ImageManifest.load(
        busybox_store, busybox_store.resolve("registry.example.com/app:1")
    )
    assert len(original.layers) == 5  # busybox, os, app1, conf, code
    assert len(squashed.layers) == 4
    assert squashed.layers[:2] == original.layers[:2]  # the base and the branch point os
    assert squashed.layers[-1] == original.layers[-1]  # code changes alone: kept alone
    assert "merged: app1, conf" in out
    assert _tree(unpack(busybox_store, "registry.example.com/app:1", tmp_path / "o")) == _tree(
        unpack(busybox_store, "registry.example.com/app:1-squashed", tmp_path / "s")
    )
    code, _out, err = run(
        "squash",
        "registry.example.com/app:1",
        "--max-layers",
        "2",
        "-C",
        str(git_repo.root),
        "--store",
        store,
    )
    assert code == 2
    assert "shared" in err
    assert tag_of(git_repo.root, busybox_store, "code")
