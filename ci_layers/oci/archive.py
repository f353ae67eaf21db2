"""`ci-layers export`: one image of the store as an OCI archive (a tar of an image
layout), for `podman load`, `skopeo copy oci-archive:…` and friends."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from .digest import Descriptor
from .store import INDEX_MEDIA_TYPE, REF_NAME, OciStore

__all__ = ["export_archive"]


def export_archive(store: OciStore, desc: Descriptor, dest: Path, *, ref: str) -> int:
    """Write the image `desc` names (manifest, config, layers) to `dest`; returns the
    number of blobs. The tar is reproducible: sorted names, mtime 0, owner 0."""
    manifest = store.read_json(desc)
    blobs = [desc.digest]
    blobs.append(Descriptor.from_json(manifest["config"], where=str(desc.digest)).digest)
    blobs += [Descriptor.from_json(x, where=str(desc.digest)).digest for x in manifest["layers"]]
    tagged = Descriptor(desc.media_type, desc.digest, desc.size, ((REF_NAME, ref),), desc.platform)
    index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [tagged.to_json()]}
    tmp = dest.with_name(dest.name + ".part")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "blobs/", None)
        _add_bytes(tar, "blobs/sha256/", None)
        for digest in sorted(set(blobs)):
            with store.open(digest) as f:
                info = tarfile.TarInfo(f"blobs/sha256/{digest.hex}")
                info.size = store.blob_path(digest).stat().st_size
                info.mode = 0o644
                tar.addfile(info, f)
        _add_bytes(tar, "index.json", json.dumps(index).encode())
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    tmp.replace(dest)
    return len(set(blobs))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes | None) -> None:
    info = tarfile.TarInfo(name.rstrip("/"))
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    else:
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
