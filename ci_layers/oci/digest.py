"""Digests and descriptors, and the one reader that verifies bytes as they are read.

Every blob that leaves the store (or, later, the registry) passes through
`VerifyingReader`, which counts, hashes and refuses at EOF what does not match its
digest (go-containerregistry's `internal/verify`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import IO, Any

from ..errors import DigestMismatch, StoreError

__all__ = ["Descriptor", "Digest", "VerifyingReader"]

_SHA256 = re.compile(r"sha256:([a-f0-9]{64})")


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    """A sha256 content digest (`sha256:<64 hex>`), parsed once at the edge."""

    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        m = _SHA256.fullmatch(text)
        if m is None:
            raise StoreError(f"'{text}' is no sha256 digest (sha256:<64 lower-case hex digits>)")
        return cls(m.group(1))

    @classmethod
    def of(cls, data: bytes) -> Digest:
        return cls(hashlib.sha256(data).hexdigest())

    def __str__(self) -> str:
        return f"sha256:{self.hex}"

    @property
    def short(self) -> str:
        return self.hex[:12]


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor (image-spec descriptor.md)."""

    media_type: str
    digest: Digest
    size: int
    annotations: tuple[tuple[str, str], ...] = ()
    platform: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = dict(self.platform)
        return out

    @classmethod
    def from_json(cls, data: Any, *, where: str) -> Descriptor:
        try:
            platform = data.get("platform") or {}
            return cls(
                media_type=str(data["mediaType"]),
                digest=Digest.parse(str(data["digest"])),
                size=int(data["size"]),
                annotations=tuple(sorted((data.get("annotations") or {}).items())),
                platform=tuple(
                    (k, str(v)) for k, v in platform.items() if isinstance(v, str | int)
                ),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StoreError(f"{where}: not a valid descriptor ({exc})") from None

    def annotation(self, name: str) -> str | None:
        return dict(self.annotations).get(name)


class VerifyingReader:
    """A file object over `raw` that hashes what is read and, at EOF, refuses a size or
    digest other than the one expected. `close()` reads what is left first, so a
    consumer that stops early (a tar's zero blocks) still verifies the whole blob."""

    def __init__(self, raw: IO[bytes], *, digest: Digest, size: int | None = None) -> None:
        self._raw = raw
        self._want = digest
        self._size = size
        self._hash = hashlib.sha256()
        self._read = 0
        self._done = False

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if data:
            self._hash.update(data)
            self._read += len(data)
            if self._size is not None and self._read > self._size:
                self._fail()
        elif n != 0:
            self._finish()
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._hash.hexdigest() != self._want.hex or (
            self._size is not None and self._read != self._size
        ):
            self._fail()

    def _fail(self) -> None:
        self._done = True
        raise DigestMismatch(
            want=str(self._want), got=f"sha256:{self._hash.hexdigest()}", size=self._read
        )

    def close(self) -> None:
        try:
            while not self._done and self.read(1 << 20):
                pass
        finally:
            self._raw.close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._raw.close()
