"""Pushing to a registry: bytes sent for an incremental change, and push time against
skopeo, both against Debian's docker-registry on loopback, measured in the same run.

1. Incremental: an image of L layers is pushed, its top layer is replaced, and the new
   image is pushed. Bytes uploaded (blobs, config and manifest, counted by a proxy in
   front of the registry) against the size of the new layer, the floor. Goal: 1.0
   plus config and manifest.
2. Cold push of a ~1 GB image (L layers of random bytes) from the store's OCI layout to
   an empty registry, against `skopeo copy oci:… docker://…` of the same layout to
   another empty registry of the same kind. Best of R, each into a fresh registry.
   Goal: ratio <= 1.0.

    .venv/bin/python bench/push_bench.py [--mb 1024 --layers 4 --repeat 3]
    .venv/bin/python bench/push_bench.py --quick    # 128 MB, one run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ci_layers.oci.digest import Descriptor
from ci_layers.oci.registry import Registry
from ci_layers.oci.store import OciStore
from ci_layers.oci.transfer import TransferStats, push_image
from tests.registry import proxy_to, start_registry

LAYER = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def random_blob(store: OciStore, size: int) -> Descriptor:
    """`size` random bytes (incompressible: what the wire carries is what was asked)."""
    with store.writer() as w:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 << 20))
            w.write(chunk)
            left -= len(chunk)
        digest = w.commit()
    return Descriptor(LAYER, digest, size)


def image(store: OciStore, layers: list[Descriptor], tag: str) -> Descriptor:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [str(d.digest) for d in layers]},
    }
    cdesc = store.put_bytes(json.dumps(config).encode(), media_type=CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": cdesc.to_json(),
        "layers": [d.to_json() for d in layers],
    }
    desc = store.put_bytes(json.dumps(manifest).encode(), media_type=MANIFEST)
    store.tag(tag, desc)
    return desc


@contextlib.contextmanager
def registry(where: Path) -> Iterator[str]:
    running = start_registry(where)
    try:
        yield running.host
    finally:
        running.stop()
        shutil.rmtree(where, ignore_errors=True)


def incremental(tmp: Path, layers: int, layer_mb: int) -> None:
    store = OciStore(tmp / "inc-store")
    blobs = [random_blob(store, layer_mb << 20) for _ in range(layers)]
    first = image(store, blobs, "v1")
    with registry(tmp / "inc-reg") as host, proxy_to(host) as proxy:
        client = Registry(proxy.host)
        push_image(store, first, client, "bench/app", ["v1"], stats=TransferStats())
        new_top = random_blob(store, layer_mb << 20)
        second = image(store, [*blobs[:-1], new_top], "v2")
        proxy.clear()
        stats = TransferStats()
        push_image(store, second, client, "bench/app", ["v2"], stats=stats)
        manifest_bytes = second.size
        sent = stats.uploaded_bytes + manifest_bytes
        floor = new_top.size
        print(
            f"incremental: {layers} layers of {layer_mb} MB, top replaced: "
            f"{stats.uploaded} blobs, {sent:,} bytes sent (manifest included) for a new layer "
            f"of {floor:,} bytes: ratio {sent / floor:.4f} (goal 1.0 + config + manifest); "
            f"{len(proxy.requests)} requests"
        )


def cold(tmp: Path, total_mb: int, layers: int, repeat: int) -> None:
    skopeo = shutil.which("skopeo")
    store = OciStore(tmp / "cold-store")
    size = (total_mb << 20) // layers
    desc = image(store, [random_blob(store, size) for _ in range(layers)], "big")
    ours, theirs = [], []
    for i in range(repeat):
        with registry(tmp / f"reg-a{i}") as host:
            start = time.perf_counter()
            push_image(store, desc, Registry(host), "bench/big", ["1"], stats=TransferStats())
            ours.append(time.perf_counter() - start)
        if skopeo:
            with registry(tmp / f"reg-b{i}") as host:
                argv = [skopeo, "copy", "-q", "--dest-tls-verify=false"]
                argv += [f"oci:{store.path}:big", f"docker://{host}/bench/big:1"]
                start = time.perf_counter()
                subprocess.run(argv, check=True)
                theirs.append(time.perf_counter() - start)
    mine = min(ours)
    line = f"cold push of {total_mb} MB in {layers} layers: ci-layers {mine:.2f} s"
    if theirs:
        line += f", skopeo copy {min(theirs):.2f} s: ratio {mine / min(theirs):.2f} (goal <= 1.0)"
    else:
        line += " (skopeo not installed: no baseline)"
    print(line)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=int, default=1024)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.mb, args.repeat = 128, 1
    with tempfile.TemporaryDirectory(prefix="push-bench-") as tmp:
        incremental(Path(tmp), args.layers, max(1, args.mb // args.layers // 4))
        cold(Path(tmp), args.mb, args.layers, args.repeat)


if __name__ == "__main__":
    main()
