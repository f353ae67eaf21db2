"""A layer blob's tar, uncompressed, verified twice: the blob against its digest and
the tar against its diff_id."""

from __future__ import annotations

import gzip
from typing import IO, Any, cast

from ..errors import StoreError
from .digest import VerifyingReader
from .manifest import Layer
from .store import OciStore

__all__ = ["open_layer"]


class _Tar:
    """The uncompressed stream; closing it drains and verifies both digests."""

    def __init__(self, outer: VerifyingReader, inner: VerifyingReader | None) -> None:
        self._outer, self._inner = outer, inner

    def read(self, n: int = -1) -> bytes:
        return self._outer.read(n)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        try:
            self._outer.close()
        finally:
            if self._inner is not None:
                self._inner.close()

    def __enter__(self) -> _Tar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_layer(store: OciStore, layer: Layer) -> IO[bytes]:
    """The layer's tar stream (gzip, zstd or plain, by its media type)."""
    desc = layer.descriptor
    blob = store.open(desc.digest, size=desc.size)
    media = desc.media_type
    decompressed: Any
    if media.endswith("+gzip") or media.endswith(".tar.gzip") or media.endswith("tar.gzip"):
        decompressed = gzip.GzipFile(fileobj=cast(IO[bytes], blob), mode="rb")
    elif media.endswith("+zstd"):
        import zstandard

        reader = zstandard.ZstdDecompressor()
        decompressed = reader.stream_reader(cast(IO[bytes], blob), closefd=False)
    elif media.endswith(".tar") or media.endswith("rootfs.diff.tar"):
        return cast(
            IO[bytes], _Tar(VerifyingReader(cast(IO[bytes], blob), digest=layer.diff_id), None)
        )
    else:
        blob.close()
        raise StoreError(f"layer {desc.digest}: unknown media type {media}")
    return cast(IO[bytes], _Tar(VerifyingReader(decompressed, digest=layer.diff_id), blob))
