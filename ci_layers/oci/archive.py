"""`ci-layers export`: one image of the store as an OCI archive (a tar of an image
layout), for `podman load`, `skopeo copy oci-archive:…` and friends."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from ..errors import StoreError
from .digest import Descriptor, Digest
from .store import INDEX_MEDIA_TYPE, REF_NAME, OciStore

__all__ = ["export_archive"]


def export_archive(store: OciStore, desc: Descriptor, dest: Path, *, ref: str) -> int:
    """Write the image `desc` names (manifest, config, layers; for an index, each image
    of it the store has) to `dest`; returns the number of blobs. The tar is
    reproducible: sorted names, mtime 0, owner 0. Nothing is left behind on failure."""
    blobs = sorted(set(_blobs(store, desc)))
    tagged = Descriptor(desc.media_type, desc.digest, desc.size, ((REF_NAME, ref),), desc.platform)
    index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [tagged.to_json()]}
    tmp = dest.with_name(dest.name + ".part")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "blobs/", None)
            _add_bytes(tar, "blobs/sha256/", None)
            for digest in blobs:
                with store.open(digest) as f:
                    info = tarfile.TarInfo(f"blobs/sha256/{digest.hex}")
                    info.size = store.blob_path(digest).stat().st_size
                    info.mode = 0o644
                    tar.addfile(info, f)
            _add_bytes(tar, "index.json", json.dumps(index).encode())
            _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        tmp.replace(dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {dest}: {exc.strerror}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(blobs)


def _blobs(store: OciStore, desc: Descriptor) -> list[Digest]:
    """The blobs an image needs: a manifest's config and layers, an index's images."""
    data = store.read_json(desc)
    where = str(desc.digest)
    out = [desc.digest]
    if "manifests" in data:
        for child in data["manifests"] or []:
            found = Descriptor.from_json(child, where=where)
            if store.has(found.digest):
                out += _blobs(store, found)
        return out
    if "config" not in data:
        raise StoreError(f"{where} is neither an image manifest nor an index")
    out.append(Descriptor.from_json(data["config"], where=where).digest)
    out += [Descriptor.from_json(x, where=where).digest for x in data.get("layers") or []]
    return out


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes | None) -> None:
    info = tarfile.TarInfo(name.rstrip("/"))
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    else:
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
