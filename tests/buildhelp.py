"""Building a test repository's layers, and reading what was built with other tools."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from ci_layers.build.builder import BuildResult, LayerBuilder, key_tag
from ci_layers.keys import compute_keys
from ci_layers.oci.manifest import Layer
from ci_layers.oci.store import OciStore
from ci_layers.repo import worktree_files
from ci_layers.spec import load_spec

BASE = "ci-layers.local/busybox:latest"
# the console script of the ci-layers being tested, whatever PATH says
CLI = str(Path(sys.executable).with_name("ci-layers"))


def builder(root: Path, store: OciStore, **options) -> LayerBuilder:
    spec = load_spec(root / "ci-layers.yaml", display="ci-layers.yaml")
    files = worktree_files(root)
    return LayerBuilder(
        spec=spec, keys=compute_keys(spec, files), files=files, root=root, store=store, **options
    )


def build(root: Path, store: OciStore, targets=None, **options) -> dict[str, BuildResult]:
    b = builder(root, store, **options)
    return {r.name: r for r in b.build(targets or list(b.spec.layers))}


def scratch_left(store: Path) -> list[str]:
    """What builds left in the store's scratch folder (tmp/): nothing, once they ended."""
    tmp = store / "tmp"
    return sorted(os.listdir(tmp)) if tmp.is_dir() else []


def built(results: dict[str, BuildResult]) -> set[str]:
    return {n for n, r in results.items() if r.status == "built"}


def tag_of(root: Path, store: OciStore, layer: str) -> str:
    return key_tag(builder(root, store).keys[layer].digest)


def unpack(store: OciStore, ref: str, dest: Path) -> Path:
    """The image's root filesystem, as umoci (a third-party reader) unpacks it."""
    argv = ["umoci", "unpack", "--image", f"{store.path}:{ref}", str(dest)]
    if os.geteuid() != 0:
        argv.insert(2, "--rootless")
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return dest / "rootfs"


def skopeo_inspect(store: OciStore, ref: str, *, config: bool = False) -> dict:
    import json

    argv = ["skopeo", "inspect", *(["--config"] if config else []), f"oci:{store.path}:{ref}"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def members(store: OciStore, layer: Layer) -> list[tarfile.TarInfo]:
    """The tar entries of a gzip layer blob, in order."""
    with gzip.open(store.blob_path(layer.descriptor.digest)) as f, tarfile.open(fileobj=f) as tar:
        return tar.getmembers()
