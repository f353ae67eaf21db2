"""The local store: an OCI image layout (image-layout.md) that skopeo and umoci read.

Blobs are written to `ingest/`, fsynced, verified and only then renamed to
`blobs/sha256/<hex>`, so a build killed half way leaves no half blob under a valid name;
every read verifies the digest. `index.json` is rewritten whole under a lock and
renamed into place, so two builds writing one store at once lose no tag.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..atomic import fsync_dir as _fsync_dir
from ..atomic import write_atomic as _write_atomic
from ..errors import DigestMismatch, StoreError
from .digest import Descriptor, Digest, VerifyingReader

__all__ = ["REF_NAME", "BlobWriter", "OciStore"]

REF_NAME = "org.opencontainers.image.ref.name"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"


class BlobWriter:
    """Bytes on their way into the store; `commit` names them by what they hash to."""

    def __init__(self, store: OciStore) -> None:
        self._store = store
        try:
            fd, name = tempfile.mkstemp(dir=store.path / "ingest", prefix="blob-")
        except OSError as exc:
            raise StoreError(f"cannot write into the store {store.path}: {exc.strerror}") from None
        self._file: IO[bytes] = os.fdopen(fd, "wb")
        self._tmp = Path(name)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        try:
            self._file.write(data)
        except OSError as exc:
            raise StoreError(
                f"cannot write into the store {self._store.path}: {exc.strerror}"
            ) from None
        self.size += len(data)
        return len(data)

    def commit(self, *, expect: Digest | None = None) -> Digest:
        digest = Digest(self._hash.hexdigest())
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            if expect is not None and expect != digest:
                raise DigestMismatch(want=str(expect), got=str(digest), size=self.size)
            final = self._store.blob_path(digest)
            if final.exists() and self._store.intact(digest):
                self._tmp.unlink()
            else:  # new, or a corrupted copy under this name: the verified bytes win
                os.replace(self._tmp, final)
                _fsync_dir(final.parent)
        finally:
            self.abort()
        return digest

    def abort(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


class OciStore:
    """An OCI image layout on disk, created on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: tuple[tuple[int, int, int], list[Descriptor]] | None = None
        try:
            (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            (path / "ingest").mkdir(exist_ok=True)
            layout = path / "oci-layout"
            if not layout.exists():
                _write_atomic(layout, b'{"imageLayoutVersion":"1.0.0"}')
            if not (path / "index.json").exists():
                with self._locked():
                    if not (path / "index.json").exists():
                        self._write_index([])
        except OSError as exc:
            raise StoreError(f"cannot use {path} as the store: {exc.strerror}") from None

    # --- blobs -------------------------------------------------------------------------

    def blob_path(self, digest: Digest) -> Path:
        return self.path / "blobs" / "sha256" / digest.hex

    def has(self, digest: Digest) -> bool:
        return self.blob_path(digest).is_file()

    def size(self, digest: Digest) -> int | None:
        """The blob's size on disk, None when it is not here."""
        try:
            return self.blob_path(digest).stat().st_size
        except OSError:
            return None

    def open(self, digest: Digest, *, size: int | None = None) -> VerifyingReader:
        """The blob, verified as it is read; a link or anything but a file is refused."""
        path = self.blob_path(digest)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise StoreError(f"blob {digest} is not in the store {self.path}") from None
        except OSError as exc:
            raise StoreError(f"blob {digest} in {self.path}: {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StoreError(f"blob {digest} in {self.path} is not a regular file")
        return VerifyingReader(os.fdopen(fd, "rb"), digest=digest, size=size)

    def intact(self, digest: Digest) -> bool:
        """Whether the blob under this name hashes to it."""
        try:
            with self.open(digest) as f:
                while f.read(1 << 20):
                    pass
        except StoreError:
            return False
        return True

    def read_bytes(self, digest: Digest, *, limit: int = 8 << 20) -> bytes:
        with self.open(digest) as f:
            data = f.read(limit + 1)
            if len(data) > limit:
                raise StoreError(f"blob {digest} is larger than {limit} bytes")
            f.read()  # EOF: verified here
        return data

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def put_bytes(self, data: bytes, *, media_type: str) -> Descriptor:
        with self.writer() as w:
            w.write(data)
            digest = w.commit()
        return Descriptor(media_type, digest, len(data))

    def read_json(self, desc: Descriptor) -> Any:
        data = self.read_bytes(desc.digest)
        try:
            return json.loads(data)
        except ValueError:
            raise StoreError(f"blob {desc.digest} is not JSON") from None

    # --- index.json --------------------------------------------------------------------

    def index(self, *, fresh: bool = False) -> list[Descriptor]:
        """The descriptors index.json lists (tags are their ref.name annotations).
        Reads are cached by the file's identity; under the lock, `fresh` reads it anew."""
        where = str(self.path / "index.json")
        try:
            st = os.stat(where)
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)  # a rewrite is a new inode
            if not fresh and self._cache is not None and self._cache[0] == seen:
                return list(self._cache[1])
            data = json.loads((self.path / "index.json").read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise StoreError(f"{where}: unreadable ({exc})") from None
        found = [Descriptor.from_json(m, where=where) for m in data.get("manifests") or []]
        self._cache = (seen, found)
        return list(found)

    def resolve(self, ref: str) -> Descriptor | None:
        """The manifest tagged `ref` (the last one, as skopeo reads the layout)."""
        found = [d for d in self.index() if d.annotation(REF_NAME) == ref]
        return found[-1] if found else None

    def tag(self, ref: str, desc: Descriptor) -> None:
        """Point `ref` at `desc`, replacing what it named before."""
        tagged = Descriptor(
            desc.media_type,
            desc.digest,
            desc.size,
            tuple(sorted({**dict(desc.annotations), REF_NAME: ref}.items())),
            desc.platform,
        )
        with self._locked():
            kept = [d for d in self.index(fresh=True) if d.annotation(REF_NAME) != ref]
            self._write_index([*kept, tagged])

    def untag(self, ref: str) -> bool:
        with self._locked():
            index = self.index(fresh=True)
            kept = [d for d in index if d.annotation(REF_NAME) != ref]
            if len(kept) != len(index):
                self._write_index(kept)
        return len(kept) != len(index)

    def _write_index(self, manifests: list[Descriptor]) -> None:
        body = {
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [d.to_json() for d in manifests],
        }
        try:
            _write_atomic(self.path / "index.json", json.dumps(body, indent=1).encode())
        except OSError as exc:
            raise StoreError(f"cannot write {self.path / 'index.json'}: {exc.strerror}") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            lock = open(self.path / ".ci-layers.lock", "a+b")  # noqa: SIM115 - held below
        except OSError as exc:
            raise StoreError(f"cannot lock the store {self.path}: {exc.strerror}") from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def lease(self, *, exclusive: bool = False) -> Iterator[None]:
        """Every command that writes the store (build, pull, squash) or reads an image
        from it (push, export) holds a shared lease while it runs: blobs come before the
        tag that names them. gc takes it exclusively, so it never sweeps a blob one of
        them has written but not yet tagged. gc does not wait: a store in use is an error."""
        try:
            lock = open(self.path / ".ci-layers.lease", "a+b")  # noqa: SIM115 - held below
        except OSError as exc:
            raise StoreError(f"cannot lock the store {self.path}: {exc.strerror}") from None
        with lock:
            try:
                fcntl.flock(lock, (fcntl.LOCK_EX | fcntl.LOCK_NB) if exclusive else fcntl.LOCK_SH)
            except BlockingIOError:
                raise StoreError(
                    f"the store {self.path} is in use by a build, pull, push, squash or "
                    "export; run gc when it has finished"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def remove_blob(self, digest: Digest) -> int:
        """Delete a blob (gc only, under the exclusive lease); its size, 0 if gone."""
        path = self.blob_path(digest)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def blobs(self) -> list[Digest]:
        found = []
        for path in (self.path / "blobs" / "sha256").iterdir():
            with contextlib.suppress(StoreError):
                found.append(Digest.parse(f"sha256:{path.name}"))
        return found

    def verify(self) -> list[str]:
        """Problems found walking every blob (a name its bytes do not hash to)."""
        problems = []
        for path in sorted((self.path / "blobs" / "sha256").iterdir()):
            try:
                with self.open(Digest.parse(f"sha256:{path.name}")) as f:
                    while f.read(1 << 20):
                        pass
            except StoreError as exc:
                problems.append(str(exc))
        return problems
