"""Base images that try to fill the disk or the stack: sparse files keep their holes,
one root has a size limit, folders thousands deep build, a full disk is a clear error,
and none of it leaves anything behind in the store."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from ci_layers.build.tarwriter import DIR, FILE, Entry, write_layer
from ci_layers.oci.digest import Descriptor, Digest
from ci_layers.oci.manifest import LAYER_GZIP, History, ImageManifest, Layer
from ci_layers.oci.store import OciStore

from .buildhelp import BASE, CLI, scratch_left
from .conftest import require

HOSTILE = "ci-layers.local/hostile:latest"
GIB = 1 << 30


def _tar_layer(store: OciStore, tar: bytes) -> Layer:
    """A gzip layer blob of an uncompressed tar made by another tool."""
    blob = gzip.compress(tar, mtime=0)
    desc = store.put_bytes(blob, media_type=LAYER_GZIP)
    return Layer(Descriptor(LAYER_GZIP, desc.digest, desc.size), Digest.of(tar))


def _on_busybox(store: OciStore, *layers: Layer) -> None:
    base = ImageManifest.load(store, store.resolve(BASE))
    image = ImageManifest(
        config=base.config,
        layers=(*base.layers, *layers),
        history=(*base.history, *(History(created_by="hostile") for _ in layers)),
    )
    store.tag(HOSTILE, image.write(store))


def _sparse_tar(tmp: Path, size: int) -> bytes:
    """GNU tar's PAX sparse file (format 1.0): `size` bytes, one 4 KiB run of data."""
    folder = tmp / "sparse"
    folder.mkdir()
    with open(folder / "big", "wb") as f:
        f.truncate(size)
        f.seek(size // 2)
        f.write(b"data in the middle")
    subprocess.run(
        ["tar", "--sparse", "--format=pax", "-cf", str(tmp / "sparse.tar"), "big"],
        cwd=folder,
        check=True,
    )
    return (tmp / "sparse.tar").read_bytes()


def _build(repo, store: OciStore, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "build", *args, "-C", str(repo.root), "--store", str(store.path)],
        capture_output=True,
        text=True,
        check=False,
    )


SPEC = f"""
version: 1
layers:
  top:
    from: {HOSTILE}
    run: echo built > /built
  copier:
    from: scratch
    copy: [{{from_layer: top, src: /built, dest: /built}}]
"""


def test_a_sparse_file_keeps_its_holes_in_every_extracted_root(
    git_repo, busybox_store, runc, tmp_path
):
    tar = _sparse_tar(tmp_path, 2 * GIB)
    layer = _tar_layer(busybox_store, tar)
    assert layer.descriptor.size < 1024  # a few hundred bytes that claim 2 GiB
    _on_busybox(busybox_store, layer)
    git_repo.write("ci-layers.yaml", SPEC)
    git_repo.commit()
    done = _build(git_repo, busybox_store)
    assert done.returncode == 0, done.stderr
    roots = list((busybox_store.path / "rootfs").glob("*/big"))
    assert len(roots) == 2  # the run's parent, and `top` as the copy's source
    for big in roots:
        st = big.stat()
        assert st.st_size == 2 * GIB
        assert st.st_blocks * 512 < 1 << 20  # holes, not 2 GiB of zeros on disk
        with big.open("rb") as f:
            f.seek(GIB)
            assert f.read(18) == b"data in the middle"
    assert scratch_left(busybox_store.path) == []


def test_a_root_past_its_size_limit_is_refused_naming_the_layer_and_entry(
    git_repo, busybox_store, runc, tmp_path
):
    layer = _tar_layer(busybox_store, _sparse_tar(tmp_path, 2 * GIB))
    _on_busybox(busybox_store, layer)
    git_repo.write("ci-layers.yaml", SPEC)
    git_repo.commit()
    done = _build(git_repo, busybox_store, "top", "--max-root-size", "1G")
    assert done.returncode == 1, done.stderr
    short = layer.descriptor.digest.hex[:12]
    assert (
        f"layer sha256:{short}… entry 'big': the root would take more than 1 GiB (its files' "
        "sizes, holes included), which no real image does; a bomb, or raise the limit "
        "(build --max-root-size)"
    ) in done.stderr
    assert "Traceback" not in done.stderr
    assert not list((busybox_store.path / "rootfs").glob("*/big"))  # no half root kept
    assert scratch_left(busybox_store.path) == []
    assert busybox_store.verify() == []


def test_dense_zeros_count_too(git_repo, busybox_store, runc):
    """A layer of zeros compresses a thousandfold: the limit counts what it unpacks to."""
    zeros = write_layer([Entry("zeros", FILE, data=bytes(3 << 20))], busybox_store)
    assert zeros.descriptor.size < 1 << 16
    _on_busybox(busybox_store, zeros)
    git_repo.write("ci-layers.yaml", SPEC)
    git_repo.commit()
    done = _build(git_repo, busybox_store, "top", "--max-root-size", "2M")
    assert done.returncode == 1
    assert "entry 'zeros': the root would take more than 2 MiB" in done.stderr
    assert _build(git_repo, busybox_store, "top", "--max-root-size", "8M").returncode == 0


def test_a_bad_max_root_size_is_a_usage_error(git_repo):
    git_repo.write("ci-layers.yaml", SPEC)
    done = _build(git_repo, OciStore(git_repo.root.parent / "s"), "--max-root-size", "big")
    assert done.returncode == 2
    assert "--max-root-size big: a size such as 512M, 100G or 1T" in done.stderr


DEPTH = 1200


@pytest.fixture
def deep_store(busybox_store):
    """The store, its deep roots removed after (pytest's own cleanup of old temporary
    folders recurses, and would fail on them)."""
    yield busybox_store
    from ci_layers.build.rootfs import remove_tree

    remove_tree(busybox_store.path / "rootfs")


def test_folders_thousands_deep_build_and_leave_nothing(git_repo, deep_store, runc):
    """Made by a `run`, built on, and copied out with from_layer; and the same tree in a
    base image, copied with from_layer."""
    busybox_store = deep_store
    tree = [Entry("/".join(["b"] * (i + 1)), DIR, 0o755) for i in range(DEPTH)]
    tree.append(Entry("/".join(["b"] * DEPTH) + "/f", FILE, data=b"deep\n"))
    _on_busybox(busybox_store, write_layer(tree, busybox_store))
    git_repo.write(
        "ci-layers.yaml",
        f"""
version: 1
layers:
  made:
    from: {BASE}
    run: d=/deep; i=0; while [ $i -lt {DEPTH} ]; do d=$d/a; i=$((i+1)); done; mkdir -p $d && echo x > $d/f
  on-it:
    parent: made
    run: echo y > /y
  copied:
    from: scratch
    copy: [{{from_layer: made, src: /deep, dest: /deep}}]
  base:
    from: {HOSTILE}
    env: {{A: b}}
  from-base:
    from: scratch
    copy: [{{from_layer: base, src: /b, dest: /b}}]
""",
    )
    git_repo.commit()
    done = _build(git_repo, busybox_store)
    assert done.returncode == 0, done.stderr
    assert "5 built" in done.stdout
    assert scratch_left(busybox_store.path) == []
    from .buildhelp import members, tag_of

    # deep/a/…/a/f (1,200 a's) and b/…/b/f (1,200 b's)
    for layer, top, depth in (("copied", "deep", DEPTH + 1), ("from-base", "b", DEPTH)):
        image = ImageManifest.load(
            busybox_store, busybox_store.resolve(tag_of(git_repo.root, busybox_store, layer))
        )
        names = [m.name for m in members(busybox_store, image.layers[-1])]
        assert max(n.count("/") for n in names) == depth  # the whole tree, file included
        assert names[0] == top


def test_a_full_disk_while_extracting_a_root_is_a_clear_error(git_repo, tmp_path, runc):
    """The store on an 8 MiB tmpfs; a base whose layer unpacks to 16 MiB."""
    require("busybox", root=True)
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        store = OciStore(mount / "store")
        from ci_layers.build.busybox import busybox_image

        busybox_image(store)
        big = write_layer([Entry("big", FILE, data=bytes(16 << 20))], store)
        _on_busybox(store, big)
        git_repo.write("ci-layers.yaml", SPEC)
        git_repo.commit()
        done = _build(git_repo, store, "top")
        assert done.returncode == 1, done.stderr
        assert "error: layer 'top': No space left on device" in done.stderr
        assert f"the store {store.path} is as it was" in done.stderr
        assert "Traceback" not in done.stderr
        assert "internal error" not in done.stderr
        assert scratch_left(store.path) == []
        assert list((store.path / "rootfs").iterdir()) == []
        assert store.verify() == []
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("name", ["passwd", "group"])
def test_a_huge_passwd_is_refused_not_read_into_memory(
    git_repo, busybox_store, runc, tmp_path, name
):
    """A sparse /etc/passwd claiming 2 GiB: reading users must not take 2 GiB of memory."""
    folder = tmp_path / "etc-src"
    (folder / "etc").mkdir(parents=True)
    with open(folder / "etc" / name, "wb") as f:
        f.truncate(2 * GIB)
    subprocess.run(
        ["tar", "--sparse", "--format=pax", "-cf", str(tmp_path / "e.tar"), f"etc/{name}"],
        cwd=folder,
        check=True,
    )
    _on_busybox(busybox_store, _tar_layer(busybox_store, (tmp_path / "e.tar").read_bytes()))
    git_repo.write(
        "ci-layers.yaml",
        f"""
version: 1
layers:
  top:
    from: {HOSTILE}
    user: "0:somegroup"
    run: id
""",
    )
    git_repo.commit()
    done = _build(git_repo, busybox_store)
    assert done.returncode == 1, done.stderr
    assert f"the image's /etc/{name} is over 16 MiB" in done.stderr
