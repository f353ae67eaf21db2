"""A layer blob's tar, uncompressed, verified twice: the blob against its digest and
the tar against its diff_id."""

from __future__ import annotations

import gzip
import zlib
from typing import IO, Any, cast

from ..errors import StoreError
from .digest import VerifyingReader
from .manifest import Layer
from .store import OciStore

__all__ = ["open_layer"]


class _Tar:
    """The uncompressed stream; closing it drains and verifies both digests."""

    def __init__(self, outer: VerifyingReader, inner: VerifyingReader | None, *, what: str) -> None:
        self._outer, self._inner = outer, inner
        self._what = what
        self._broken = False

    def read(self, n: int = -1) -> bytes:
        try:
            return self._outer.read(n)
        except StoreError:
            raise
        except (EOFError, OSError, zlib.error, ValueError) as exc:  # a corrupt stream
            self._broken = True
            raise StoreError(f"layer {self._what} is corrupt ({exc}); refused") from None

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self._broken:  # nothing to verify: close without reading on
            self._outer._raw.close()
            if self._inner is not None:
                self._inner._raw.close()
            return
        try:
            self._outer.close()
        except (EOFError, OSError, zlib.error, ValueError) as exc:
            raise StoreError(f"layer {self._what} is corrupt ({exc}); refused") from None
        finally:
            if self._inner is not None:
                self._inner.close()

    def __enter__(self) -> _Tar:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self._broken = True  # the error that stopped the reader is the one to see
        self.close()


def open_layer(store: OciStore, layer: Layer) -> IO[bytes]:
    """The layer's tar stream (gzip, zstd or plain, by its media type)."""
    desc = layer.descriptor
    blob = store.open(desc.digest, size=desc.size)
    media = desc.media_type
    decompressed: Any
    if media.endswith(("+gzip", ".tar.gzip")):
        decompressed = gzip.GzipFile(fileobj=cast(IO[bytes], blob), mode="rb")
    elif media.endswith("+zstd"):
        import zstandard

        reader = zstandard.ZstdDecompressor()
        decompressed = reader.stream_reader(cast(IO[bytes], blob), closefd=False)
    elif media.endswith(".tar"):
        plain = VerifyingReader(cast(IO[bytes], blob), digest=layer.diff_id)
        return cast(IO[bytes], _Tar(plain, None, what=str(desc.digest)))
    else:
        blob.close()
        raise StoreError(f"layer {desc.digest}: unknown media type {media}")
    tar = _Tar(VerifyingReader(decompressed, digest=layer.diff_id), blob, what=str(desc.digest))
    return cast(IO[bytes], tar)
