"""A client of the OCI distribution API (distribution-spec v1.1): what push and pull need,
no more, on `requests`.

Why not oras-py (evaluated, 0.2.x): it reads a whole blob into memory to upload it,
has no cross-repository mount, does not verify what it downloads, and retries only a
500 (not 429, 502-504 or a dropped connection), sleeping up to 83 s. Its auth handles
the same token flow as below. So the transfer and auth are here, on `requests`, which
PyGithub already brings.

Every request goes through `_send`: the token or basic credentials the registry's 401
challenge asks for, bounded retries with backoff on 429, 5xx and dropped connections
(an upload is restarted whole, from a new session, so a retry never resends half a
blob into an old one). Bodies are read as they arrive and sent as the registry takes
them, against a floor on speed (`_Pace`): a read timeout alone lets a byte every 10 s go
on for ever.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import urlencode, urljoin, urlsplit

import requests
import urllib3

from .. import __version__
from ..errors import DigestMismatch, RegistryError, RegistryUnreachable
from .auth import Challenge, Credentials, find_credentials, parse_challenge
from .digest import Descriptor, Digest
from .reference import is_loopback
from .store import BlobWriter

__all__ = ["MANIFEST_TYPES", "Registry"]

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MAX_MANIFEST = 4 << 20  # the size the spec asks registries and clients to support
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)

Body = bytes | Callable[[], IO[bytes]] | None


class _Transient(Exception):
    """A failure worth trying again (kept apart so a caller can restart a whole upload)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Pace:
    """A transfer's floor on speed: fewer than `floor` bytes a second over the last
    `window` seconds stops it (a registry that sends a byte every 10 s never trips a
    read timeout, which counts one wait for data, not the whole transfer)."""

    def __init__(self, floor: float, window: float) -> None:
        self.floor, self.window = floor, window
        self.total = 0
        self.marks: deque[tuple[float, int]] = deque([(time.monotonic(), 0)])

    def add(self, n: int) -> None:
        self.total += n
        now = time.monotonic()
        self.marks.append((now, self.total))
        while len(self.marks) > 1 and self.marks[1][0] <= now - self.window:
            self.marks.popleft()
        since, then = self.marks[0]
        slow = self.total - then < self.floor * (now - since)
        if self.floor and now - since >= self.window and slow:
            raise _Transient(
                f"slower than {self.floor:g} bytes/s for {self.window:g} s "
                "(CI_LAYERS_REGISTRY_MIN_SPEED, CI_LAYERS_REGISTRY_SPEED_WINDOW)"
            )


class _PacedReader:
    """An upload's body, read as it is sent: a registry that takes it too slowly stops it."""

    def __init__(self, f: IO[bytes], pace: _Pace) -> None:
        self._f, self._pace = f, pace

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._pace.add(len(data))
        return data

    def close(self) -> None:
        self._f.close()


def _insecure_hosts(env: dict[str, str]) -> set[str]:
    return {h.strip() for h in env.get("CI_LAYERS_INSECURE_REGISTRIES", "").split(",") if h.strip()}


class Registry:
    """One registry host. Thread-safe: a session per thread, tokens shared."""

    def __init__(
        self,
        host: str,
        *,
        env: dict[str, str] | None = None,
        attempts: int = 5,
        backoff: float = 0.5,
        chunk_threshold: int = 256 << 20,
        chunk_size: int = 64 << 20,
        timeout: float = 60.0,
    ) -> None:
        self.host = host
        self.env = dict(os.environ) if env is None else env
        text = self.env.get("CI_LAYERS_REGISTRY_ATTEMPTS", "")
        attempts = int(text) if text.isdigit() else attempts  # 1 turns retries off
        self.attempts, self.backoff, self.timeout = max(1, attempts), backoff, timeout
        self.chunk_threshold, self.chunk_size = chunk_threshold, chunk_size
        self.plain_http_allowed = is_loopback(host) or host in _insecure_hosts(self.env)
        speed, window = (
            self.env.get(f"CI_LAYERS_REGISTRY_{k}", "") for k in ("MIN_SPEED", "SPEED_WINDOW")
        )
        self.min_speed = float(speed) if _number(speed) else 10 * 1024.0  # bytes/s; 0: off
        self.speed_window = float(window) if _number(window) and float(window) > 0 else 30.0
        self._verify: bool | str = _trust(host)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._base: str | None = None
        self._tokens: dict[str, str] = {}
        self._basic: str | None = None
        self._creds: Credentials | None = None
        self._creds_looked = False

    # --- connection ----------------------------------------------------------------------

    @property
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = f"ci-layers/{__version__}"
            self._local.session = session
        return session

    def base(self) -> str:
        """`https://host` or, for loopback and hosts named in CI_LAYERS_INSECURE_REGISTRIES
        when HTTPS does not answer, `http://host` (Docker's rule for insecure registries)."""
        if self._base is not None:
            return self._base
        https = f"https://{self.host}"
        try:
            self._ping(https, probe=self.plain_http_allowed)
            self._base = https
        except requests.exceptions.SSLError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc) or not self.plain_http_allowed:
                raise RegistryUnreachable(
                    f"{self.host}: its TLS certificate is not trusted ({_short(exc)}); give "
                    f"the CA in REQUESTS_CA_BUNDLE or /etc/docker/certs.d/{self.host}/ca.crt"
                ) from None
            self._base = self._plain()
        except _TRANSIENT as exc:
            if not self.plain_http_allowed:
                raise RegistryUnreachable(f"{self.host}: no answer ({_short(exc)})") from None
            self._base = self._plain()
        return self._base

    def _plain(self) -> str:
        http = f"http://{self.host}"
        try:
            self._ping(http)
        except _TRANSIENT as exc:
            raise RegistryUnreachable(f"{self.host}: no answer ({_short(exc)})") from None
        return http

    def _ping(self, base: str, *, probe: bool = False) -> None:
        """GET /v2/, retried like any request; a `probe` (HTTPS on a host that may fall
        back to HTTP) fails at once, so the fallback is quick."""
        attempts = 1 if probe else self.attempts
        for attempt in range(attempts):
            try:
                r = self._session.get(f"{base}/v2/", timeout=self.timeout, verify=self._verify)
                r.close()
            except requests.exceptions.SSLError:
                raise
            except _TRANSIENT:
                if attempt + 1 >= attempts:
                    raise
                self._sleep(attempt, None)
                continue
            if r.status_code in _RETRY_STATUS and attempt + 1 < attempts:
                self._sleep(attempt, r.headers.get("Retry-After"))
                continue
            return

    def _sleep(self, attempt: int, retry_after: str | float | None) -> None:
        delay = min(8.0, self.backoff * (2**attempt)) * (0.5 + random.random() / 2)
        with contextlib.suppress(TypeError, ValueError):
            if retry_after is not None:
                delay = min(30.0, max(delay, float(retry_after)))
        time.sleep(delay)

    # --- auth ----------------------------------------------------------------------------

    def credentials(self) -> Credentials | None:
        with self._lock:
            if not self._creds_looked:
                self._creds = find_credentials(self.host, self.env)
                self._creds_looked = True
            return self._creds

    def _auth_header(self, scope: str) -> str | None:
        with self._lock:
            return self._tokens.get(scope) or self._basic

    def _answer(self, challenge: Challenge | None, scope: str, what: str) -> None:
        """Get what a 401 asks for: a bearer token for `scope`, or basic credentials."""
        creds = self.credentials()
        if challenge is None or challenge.scheme == "basic":
            if creds is None:
                raise RegistryError(
                    f"{self.host}: {what} needs credentials; log in (docker login "
                    f"{self.host}) or set CI_LAYERS_REGISTRY_USERNAME and _PASSWORD"
                )
            with self._lock:
                self._basic = creds.basic()
            return
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            raise RegistryError(f"{self.host}: unsupported auth challenge '{challenge.scheme}'")
        realm = challenge.params["realm"]
        self._check_realm(realm)
        query = [("scope", s) for s in scope.split(" ") if s]
        if challenge.params.get("service"):
            query.insert(0, ("service", challenge.params["service"]))
        r = self._token_request(realm, query, creds)
        pushing = any("push" in s.rsplit(":", 1)[-1].split(",") for s in scope.split())
        if r.status_code in (401, 403) and creds is not None and not pushing:
            r = self._token_request(realm, query, None)
            if r.status_code == 200:
                creds = None  # these credentials are not for this registry; it is public
        if r.status_code != 200:
            who = f"the credentials from {creds.source}" if creds else "anonymous access"
            raise RegistryError(
                f"{self.host}: {who} got no token for {scope} (HTTP {r.status_code}"
                f"{': ' + _errors(r) if _errors(r) else ''})"
            )
        try:
            data = r.json()
            token = data.get("token") or data.get("access_token")
        except ValueError:
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{self.host}: the token server {realm} sent no token")
        with self._lock:
            self._tokens[scope] = f"Bearer {token}"

    def _check_realm(self, realm: str) -> None:
        """Credentials go to a token realm over HTTPS, or over plain HTTP only when the
        realm's own host may be spoken to so (loopback, CI_LAYERS_INSECURE_REGISTRIES):
        the registry's allowance does not extend to a host it names."""
        scheme, host = _origin(realm)
        if scheme == "https" and host:
            return
        if scheme == "http" and host and (is_loopback(host) or host in _insecure_hosts(self.env)):
            return
        raise RegistryError(
            f"{self.host}: its token realm {realm} is not HTTPS, and {host or 'its host'} is "
            "neither loopback nor listed insecure: credentials would go there in clear; "
            f"refused (if that host is yours: CI_LAYERS_INSECURE_REGISTRIES={host})"
        )

    def _token_request(
        self,
        realm: str,
        query: list[tuple[str, str]],
        creds: Credentials | None,
    ) -> requests.Response:
        """GET the realm with basic credentials (or none); an identity token from
        `docker login` is an OAuth2 refresh token and is POSTed, as Docker does."""
        try:
            if creds is not None and creds.username == "<token>":
                form = [("grant_type", "refresh_token"), ("client_id", "ci-layers")]
                form += [("refresh_token", creds.password), *query]  # query has service
                r = self._session.post(
                    realm,
                    data=form,
                    timeout=self.timeout,
                    verify=self._verify,
                    allow_redirects=False,  # a 307 would take the token elsewhere
                )
            else:
                headers = {"Authorization": creds.basic()} if creds else {}
                # requests drops the credentials on a redirect to another host or to HTTP
                r = self._session.get(
                    f"{realm}{'&' if '?' in realm else '?'}{urlencode(query)}",
                    headers=headers,
                    timeout=self.timeout,
                    verify=self._verify,
                )
        except _TRANSIENT as exc:
            raise _Transient(f"token from {realm}: {_short(exc)}") from None
        except requests.RequestException as exc:
            raise RegistryError(f"{self.host}: token from {realm}: {_short(exc)}") from None
        if r.status_code in _RETRY_STATUS:
            raise _Transient(f"token from {realm}: HTTP {r.status_code}")
        return r

    # --- requests ------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        what: str,
        body: Body = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        retry: bool = True,
    ) -> requests.Response:
        """One request, authenticated, retried when `retry` (else a transient failure is
        raised as _Transient for the caller to restart what it was doing)."""
        if not url.startswith("http"):
            url = urljoin(self.base() + "/", url.lstrip("/"))
        attempts = self.attempts if retry else 1
        for attempt in range(attempts):
            try:
                return self._once(method, url, scope, what, body, headers, stream)
            except _Transient as exc:
                if attempt + 1 >= attempts:
                    if not retry:
                        raise
                    raise RegistryUnreachable(
                        f"{self.host}: {what}: {exc} (after {attempts} attempts)"
                    ) from None
                self._sleep(attempt, exc.retry_after)
        raise AssertionError("unreachable")

    def _once(
        self,
        method: str,
        url: str,
        scope: str,
        what: str,
        body: Body,
        headers: dict[str, str] | None,
        stream: bool,
    ) -> requests.Response:
        own = _origin(url) == _origin(self.base())
        if not own and _origin(self.base())[0] == "https" and url.startswith("http://"):
            raise RegistryError(f"{self.host}: {what}: refused to follow it to plain HTTP ({url})")
        for authed in (False, True):
            sent = dict(headers or {})
            if own and (auth := self._auth_header(scope)) is not None:
                sent["Authorization"] = auth  # to the host that challenged us, never another
            data = body() if callable(body) else body
            try:
                r = self._session.request(
                    method,
                    url,
                    data=data,
                    headers=sent,
                    stream=stream,
                    timeout=self.timeout,
                    verify=self._verify,
                    allow_redirects=method in ("GET", "HEAD"),
                )
            except _TRANSIENT as exc:
                raise _Transient(_short(exc)) from None
            except requests.RequestException as exc:  # redirect loops, bad URLs, …
                raise RegistryError(f"{self.host}: {what}: {_short(exc)}") from None
            finally:
                if data is not None and hasattr(data, "close"):
                    data.close()
            if r.status_code == 401 and not authed and own:
                r.close()
                challenge = parse_challenge(r.headers.get("WWW-Authenticate", ""))
                self._answer(challenge, scope, what)
                continue
            if r.status_code in _RETRY_STATUS:
                r.close()
                raise _Transient(f"HTTP {r.status_code}", r.headers.get("Retry-After"))  # type: ignore[arg-type]
            if r.status_code in (401, 403):
                creds = self.credentials()
                who = f"with the credentials from {creds.source}" if creds else "anonymously"
                raise RegistryError(
                    f"{self.host}: {what}: denied {who} (HTTP {r.status_code}"
                    f"{': ' + _errors(r) if _errors(r) else ''})",
                    status=r.status_code,
                )
            return r
        raise AssertionError("unreachable")

    def _pace(self) -> _Pace:
        return _Pace(self.min_speed, self.speed_window)

    def _body(self, r: requests.Response) -> Iterator[bytes]:
        """A streamed response's bytes as they arrive, each arrival counted against the
        floor on speed."""
        pace = self._pace()
        while True:
            try:
                chunk = r.raw.read1(1 << 20, decode_content=True)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise _Transient(_short(exc)) from None
            if not chunk:
                return
            pace.add(len(chunk))
            yield chunk

    # --- the API -------------------------------------------------------------------------

    @staticmethod
    def scope(repo: str, *, push: bool = False) -> str:
        return f"repository:{repo}:{'pull,push' if push else 'pull'}"

    def manifest_descriptor(self, repo: str, ref: str) -> Descriptor | None:
        """HEAD of a manifest: its descriptor, None when the registry has no such tag."""
        url = f"/v2/{repo}/manifests/{ref}"
        r = self._send(
            "HEAD",
            url,
            scope=self.scope(repo),
            what=f"look up {repo}:{ref}",
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        )
        r.close()
        if r.status_code == 404:
            return None
        _expect(r, (200,), f"{self.host}: look up {repo}:{ref}")
        digest = r.headers.get("Docker-Content-Digest")
        if digest is None or not digest.startswith("sha256:"):
            data, media, found = self.get_manifest(repo, ref)  # HEAD said too little
            return Descriptor(media, found, len(data))
        media = (r.headers.get("Content-Type") or MANIFEST_TYPES[0]).split(";")[0].strip()
        return Descriptor(
            media, Digest.parse(digest), max(0, _int(r.headers.get("Content-Length")))
        )

    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, str, Digest]:
        """(bytes, media type, digest) of a manifest, the bytes checked against the digest
        asked for or the one the registry says it sent."""
        what = (
            f"get manifest {repo}:{ref}" if not ref.startswith("sha256:") else f"get {repo}@{ref}"
        )
        r = self._send(
            "GET",
            f"/v2/{repo}/manifests/{ref}",
            scope=self.scope(repo),
            what=what,
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
            stream=True,
        )
        with contextlib.closing(r):
            if r.status_code == 404:
                raise RegistryError(
                    f"{self.host}: {repo}:{ref}: no such manifest (HTTP 404)", status=404
                )
            _expect(r, (200,), f"{self.host}: {what}")
            data = b""
            try:
                for chunk in self._body(r):
                    data += chunk
                    if len(data) > MAX_MANIFEST:
                        break
            except _Transient as exc:
                raise RegistryUnreachable(f"{self.host}: {what}: {exc}") from None
        if len(data) > MAX_MANIFEST:
            raise RegistryError(f"{self.host}: {what}: larger than {MAX_MANIFEST} bytes")
        got = Digest.of(data)
        want = ref if ref.startswith("sha256:") else r.headers.get("Docker-Content-Digest")
        if want and want.startswith("sha256:") and want != str(got):
            raise DigestMismatch(want=want, got=str(got), size=len(data), what="manifest")
        media = (r.headers.get("Content-Type") or "").split(";")[0].strip()
        with contextlib.suppress(ValueError, AttributeError):
            media = json.loads(data).get("mediaType") or media
        return data, media or MANIFEST_TYPES[0], got

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> None:
        r = self._send(
            "PUT",
            f"/v2/{repo}/manifests/{ref}",
            scope=self.scope(repo, push=True),
            what=f"push manifest {repo}:{ref}",
            body=data,
            headers={"Content-Type": media_type},
        )
        r.close()
        _expect(r, (200, 201), f"{self.host}: push manifest {repo}:{ref}")
        said = r.headers.get("Docker-Content-Digest")
        if said and said.startswith("sha256:") and said != str(Digest.of(data)):
            raise RegistryError(f"{self.host}: {repo}:{ref}: stored the manifest as {said}")

    def delete_manifest(self, repo: str, digest: Digest) -> bool:
        r = self._send(
            "DELETE",
            f"/v2/{repo}/manifests/{digest}",
            scope=self.scope(repo, push=True) + f" repository:{repo}:delete",
            what=f"delete {repo}@{digest}",
        )
        r.close()
        if r.status_code in (404, 405):
            return False
        _expect(r, (200, 202), f"{self.host}: delete {repo}@{digest}")
        return True

    def blob_size(self, repo: str, digest: Digest) -> int | None:
        r = self._send(
            "HEAD", f"/v2/{repo}/blobs/{digest}", scope=self.scope(repo), what=f"look up {digest}"
        )
        r.close()
        if r.status_code == 404:
            return None
        _expect(r, (200,), f"{self.host}: look up blob {digest} in {repo}")
        return _int(r.headers.get("Content-Length"))

    def fetch_blob(self, repo: str, desc: Descriptor, writer: Callable[[], BlobWriter]) -> None:
        """Download a blob into the store, verified: bytes that do not hash to the digest
        never get its name. A dropped connection starts the download again."""
        what = f"get blob {desc.digest} from {repo}"
        for attempt in range(self.attempts):
            try:
                r = self._send(
                    "GET",
                    f"/v2/{repo}/blobs/{desc.digest}",
                    scope=self.scope(repo),
                    what=what,
                    stream=True,
                )
                with contextlib.closing(r), writer() as w:
                    _expect(r, (200,), f"{self.host}: {what}")
                    for chunk in self._body(r):
                        w.write(chunk)
                        if w.size > desc.size:
                            break
                    if w.size != desc.size:
                        raise DigestMismatch(
                            want=str(desc.digest), got=f"{w.size} bytes", size=desc.size
                        )
                    w.commit(expect=desc.digest)
                return
            except _Transient as exc:
                if attempt + 1 >= self.attempts:
                    raise RegistryUnreachable(
                        f"{self.host}: {what}: {exc} (after {self.attempts} attempts)"
                    ) from None
                self._sleep(attempt, exc.retry_after)
        raise AssertionError("unreachable")

    def upload_blob(
        self,
        repo: str,
        desc: Descriptor,
        opener: Callable[[], IO[bytes]],
        *,
        mount_from: tuple[str, ...] = (),
    ) -> str:
        """Put a blob the registry lacks: "mounted" from another repository when one is
        known to hold it, else "uploaded" (one PUT, or PATCH chunks above the threshold).
        A failure half way starts over from a new upload session, a bounded number of
        times; an unfinished session is never referenced by anything."""
        for attempt in range(self.attempts):
            try:
                return self._upload(repo, desc, opener, mount_from)
            except _Transient as exc:
                if attempt + 1 >= self.attempts:
                    raise RegistryUnreachable(
                        f"{self.host}: upload {desc.digest} to {repo}: {exc} "
                        f"(after {self.attempts} attempts; run again to finish the push)"
                    ) from None
                self._sleep(attempt, exc.retry_after)
        raise AssertionError("unreachable")

    def _upload(
        self,
        repo: str,
        desc: Descriptor,
        opener: Callable[[], IO[bytes]],
        mount_from: tuple[str, ...],
    ) -> str:
        what = f"upload {desc.digest} to {repo}"
        scope = self.scope(repo, push=True)
        start = None
        for source in mount_from:
            query = urlencode({"mount": str(desc.digest), "from": source})
            r = self._send(
                "POST",
                f"/v2/{repo}/blobs/uploads/?{query}",
                scope=f"{scope} {self.scope(source)}",
                what=what,
                retry=False,
                headers={"Content-Length": "0"},
            )
            r.close()
            if r.status_code == 201:
                return "mounted"
            if r.status_code == 202:
                start = r  # not mounted: the registry opened an upload session instead
                break
        if start is None:
            start = self._send(
                "POST",
                f"/v2/{repo}/blobs/uploads/",
                scope=scope,
                what=what,
                retry=False,
                headers={"Content-Length": "0"},
            )
            start.close()
        _expect(start, (202,), f"{self.host}: {what}")
        location = self._location(start, what)
        if desc.size <= self.chunk_threshold:
            r = self._send(
                "PUT",
                _with_query(location, digest=str(desc.digest)),
                scope=scope,
                what=what,
                retry=False,
                body=lambda: cast(IO[bytes], _PacedReader(opener(), self._pace())),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(desc.size),
                },
            )
        else:
            r = self._chunks(location, desc, opener, scope, what, start)
        r.close()
        _expect(r, (201,), f"{self.host}: {what}")
        said = r.headers.get("Docker-Content-Digest")
        if said and said != str(desc.digest):
            raise RegistryError(f"{self.host}: {what}: the registry stored it as {said}")
        return "uploaded"

    def _chunks(
        self,
        location: str,
        desc: Descriptor,
        opener: Callable[[], IO[bytes]],
        scope: str,
        what: str,
        start: requests.Response,
    ) -> requests.Response:
        minimum = max(0, _int(start.headers.get("OCI-Chunk-Min-Length")))
        size = max(self.chunk_size, minimum)
        with opener() as f:
            offset = 0
            for chunk in iter(lambda: f.read(size), b""):
                end = offset + len(chunk) - 1
                r = self._send(
                    "PATCH",
                    location,
                    scope=scope,
                    what=what,
                    retry=False,
                    body=chunk,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{end}",
                        "Content-Length": str(len(chunk)),
                    },
                )
                r.close()
                _expect(r, (202,), f"{self.host}: {what} (bytes {offset}-{end})")
                location = self._location(r, what)
                offset = end + 1
        return self._send(
            "PUT",
            _with_query(location, digest=str(desc.digest)),
            scope=scope,
            what=what,
            retry=False,
            headers={"Content-Length": "0"},
        )

    def _location(self, r: requests.Response, what: str) -> str:
        location = r.headers.get("Location")
        if not location:
            raise RegistryError(f"{self.host}: {what}: the registry gave no upload Location")
        return urljoin(self.base() + "/", location)

    def tags(self, repo: str) -> list[str]:
        """Every tag of the repository (paginated with `Link`, as the spec says)."""
        found: list[str] = []
        url: str | None = f"/v2/{repo}/tags/list?n=1000"
        visited: set[str] = set()
        while url:
            if url in visited or len(visited) >= 10_000:
                raise RegistryError(
                    f"{self.host}: the tag list of {repo} does not end (Link loops)"
                )
            visited.add(url)
            what = f"list tags of {repo}"
            r = self._send("GET", url, scope=self.scope(repo), what=what, stream=True)
            try:
                if r.status_code == 404:
                    return found
                _expect(r, (200,), f"{self.host}: {what}")
                try:
                    body = b"".join(self._body(r))
                except _Transient as exc:
                    raise RegistryUnreachable(f"{self.host}: {what}: {exc}") from None
            finally:
                _release(r)
            try:
                listed = (json.loads(body) or {}).get("tags") or []
            except (ValueError, AttributeError):
                raise RegistryError(f"{self.host}: the tag list of {repo} is not JSON") from None
            found += [t for t in listed if isinstance(t, str)]
            url = _next_link(r.headers.get("Link", ""))
        return found


def _release(r: requests.Response) -> None:
    """Hand the connection back for the next request (a small body read to its end);
    requests' close() would shut it, as the body was read through `raw`."""
    try:
        if r.raw.read(1 << 16, decode_content=False):
            r.close()  # more than a small answer: not worth reading on
            return
        r.raw.release_conn()
    except (urllib3.exceptions.HTTPError, OSError):
        r.close()


def _trust(host: str) -> bool | str:
    """True (the system's CAs, or REQUESTS_CA_BUNDLE), or a bundle of those plus
    Docker's `/etc/docker/certs.d/<host>/ca.crt`: a private CA adds to the public ones, so
    a token realm or a blob redirect with a public certificate still verifies."""
    ca = Path("/etc/docker/certs.d") / host / "ca.crt"
    if not ca.is_file():
        return True
    import certifi

    try:
        extra = ca.read_bytes()
        public = Path(os.environ.get("REQUESTS_CA_BUNDLE") or certifi.where()).read_bytes()
    except OSError as exc:
        raise RegistryError(f"{ca}: unreadable ({exc.strerror})") from None
    fd, bundle = tempfile.mkstemp(prefix="ci-layers-ca-", suffix=".pem")
    with os.fdopen(fd, "wb") as f:
        f.write(public + b"\n" + extra)
    return bundle


def _number(text: str) -> bool:
    try:
        return float(text) >= 0
    except ValueError:
        return False


def _int(text: str | None) -> int:
    """A header's integer, or -1 when it is missing or not one."""
    return int(text) if text is not None and text.strip().isdigit() else -1


def _next_link(header: str) -> str | None:
    for part in header.split(","):
        if 'rel="next"' in part:
            start, end = part.find("<"), part.find(">")
            if 0 <= start < end:
                return part[start + 1 : end]
    return None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _with_query(url: str, **params: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


def _expect(r: requests.Response, ok: tuple[int, ...], what: str) -> None:
    if r.status_code not in ok:
        detail = _errors(r)
        raise RegistryError(
            f"{what}: HTTP {r.status_code}{': ' + detail if detail else ''}", status=r.status_code
        )


def _errors(r: requests.Response) -> str:
    """The registry's own words for a failure (its JSON `errors`), shortened."""
    try:
        data: Any = r.json()
    except (ValueError, RuntimeError, OSError, AttributeError, requests.RequestException):
        return ""
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return ""
    words = [
        f"{e.get('code', '')} {e.get('message', '')}".strip() for e in errors if isinstance(e, dict)
    ]
    return "; ".join(w for w in words if w)[:300]


def _short(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("Caused by ", "Failed to establish a new connection: "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.strip("()' ")[:200]
