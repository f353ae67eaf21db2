"""A real OCI registry for the tests (Debian's docker-registry, i.e. distribution 2.8) on
a free loopback port, and a recording proxy in front of it that can also misbehave
(corrupt what it serves, drop a connection half way through an upload)."""

from __future__ import annotations

import contextlib
import http.client
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningRegistry:
    host: str  # 127.0.0.1:PORT
    root: Path
    process: subprocess.Popen[bytes]
    scheme: str = "http"
    ca: Path | None = None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_registry(
    where: Path,
    *,
    tls: tuple[Path, Path] | None = None,
    htpasswd: Path | None = None,
    token: tuple[str, str, Path] | None = None,
) -> RunningRegistry:
    """`token`: (realm, service, root bundle) of a token server the registry trusts."""
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is not installed (scripts/setup --test installs it)"
    where.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = [
        "version: 0.1",
        "log:",
        "  level: error",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {where / 'data'}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        "  secret: ci-layers-tests",
    ]
    if tls:
        lines += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
    if htpasswd:
        lines += ["auth:", "  htpasswd:", "    realm: ci-layers-tests", f"    path: {htpasswd}"]
    if token:
        lines += [
            "auth:",
            "  token:",
            f"    realm: {token[0]}",
            f"    service: {token[1]}",
            "    issuer: ci-layers-tests",
            f"    rootcertbundle: {token[2]}",
        ]
    config = where / "config.yml"
    config.write_text("\n".join(lines) + "\n")
    log = open(where / "registry.log", "wb")  # noqa: SIM115 - the process writes it
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    scheme = "https" if tls else "http"
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(
                    "docker-registry did not start: " + (where / "registry.log").read_text()
                ) from None
            time.sleep(0.05)
    return RunningRegistry(f"127.0.0.1:{port}", where, proc, scheme, tls[0] if tls else None)


@dataclass
class Recorded:
    method: str
    path: str
    status: int = 0
    authorization: str | None = None


@dataclass
class Proxy:
    """Forwards everything to `upstream` (plain HTTP) and records each request.

    `corrupt(path)` true: a byte of that GET's body is flipped. `drop(method, path)` true:
    the proxy reads part of the request body and closes the connection, no answer.
    `dribble(path)` > 0: that GET's body is sent a byte at a time, that many seconds apart."""

    upstream: str
    requests: list[Recorded] = field(default_factory=list)
    corrupt: Callable[[str], bool] = lambda _path: False
    drop: Callable[[str, str], bool] = lambda _m, _p: False
    location: Callable[[str], str] = lambda where: where  # rewrites a Location header
    dribble: Callable[[str], float] = lambda _path: 0.0  # seconds between the body's bytes
    status: Callable[[str, str], int] = lambda _m, _p: 0  # answered instead of forwarding
    page: int = 0  # > 0: tag lists split into pages of this many, joined by Link headers
    host: str = ""
    _server: ThreadingHTTPServer | None = None

    def uploads(self) -> list[Recorded]:
        """Requests that send blob bytes or open an upload (what a push must not repeat)."""
        return [
            r
            for r in self.requests
            if "/blobs/uploads/" in r.path and r.method in ("POST", "PUT", "PATCH")
        ]

    def manifest_puts(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "PUT" and "/manifests/" in r.path]

    def clear(self) -> None:
        self.requests.clear()


def _handler(proxy: Proxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _forward(self) -> None:
            record = Recorded(self.command, self.path, 0, self.headers.get("Authorization"))
            proxy.requests.append(record)
            length = int(self.headers.get("Content-Length") or 0)
            if proxy.drop(self.command, self.path):
                self.rfile.read(min(length, max(1, length // 2)))
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                record.status = -1
                return
            body = self.rfile.read(length) if length else None
            if answer := proxy.status(self.command, self.path):
                record.status = answer
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            upstream = http.client.HTTPConnection(proxy.upstream, timeout=60)
            # header by header: a client may send several Accept headers, all of which count
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() != "connection":
                    upstream.putheader(k, v)
            upstream.endheaders(body)
            resp = upstream.getresponse()
            data = resp.read()
            record.status = resp.status
            extra: list[tuple[str, str]] = []
            if proxy.page and "/tags/list" in self.path and resp.status == 200:
                data, extra = _paged(self.path, data, proxy.page)
            if self.command == "GET" and resp.status == 200 and data and proxy.corrupt(self.path):
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() == "location":
                    v = proxy.location(v)
                if k.lower() == "link":  # the next page, through the proxy
                    v = v.replace(proxy.upstream, proxy.host)
                if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                    self.send_header(k, v)
            for k, v in extra:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            pause = proxy.dribble(self.path) if self.command == "GET" else 0.0
            if self.command != "HEAD" and pause:
                try:
                    for i in range(len(data)):  # a byte at a time: no read timeout trips
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                        time.sleep(pause)
                except OSError:  # the client gave up
                    self.close_connection = True
            elif self.command != "HEAD":
                self.wfile.write(data)
            upstream.close()

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    return Handler


def _paged(path: str, data: bytes, size: int) -> tuple[bytes, list[tuple[str, str]]]:
    """A whole tag list as the page after `last` (distribution-spec: sorted, `n` a page,
    a `Link` to the next)."""
    import json
    from urllib.parse import parse_qs, urlencode, urlsplit

    parts = urlsplit(path)
    last = (parse_qs(parts.query).get("last") or [""])[0]
    doc = json.loads(data)
    tags = sorted(t for t in doc.get("tags") or [] if t > last)
    page, more = tags[:size], len(tags) > size
    body = json.dumps({**doc, "tags": page}).encode()
    if not more:
        return body, []
    after = urlencode({"n": size, "last": page[-1]})
    return body, [("Link", f'<{parts.path}?{after}>; rel="next"')]


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`127.0.0.1:PORT` of a threaded HTTP server running `handler`, stopped after."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def proxy_to(upstream: str) -> Iterator[Proxy]:
    proxy = Proxy(upstream)
    with serving(_handler(proxy)) as host:
        proxy.host = host
        yield proxy


def self_signed(where: Path) -> tuple[Path, Path, Path]:
    """(certificate, key, CA bundle) for 127.0.0.1, from trustme's throwaway CA."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    where.mkdir(parents=True, exist_ok=True)
    crt, key, bundle = where / "server.crt", where / "server.key", where / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    with open(crt, "wb") as f:
        for blob in cert.cert_chain_pems:
            f.write(blob.bytes())
    ca.cert_pem.write_to_path(str(bundle))
    ssl.create_default_context(cafile=str(bundle))  # it loads: a broken bundle fails here
    return crt, key, bundle


def htpasswd(where: Path, user: str, password: str) -> Path:
    import bcrypt

    path = where / "htpasswd"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    path.write_text(f"{user}:{hashed}\n")
    return path


@dataclass
class TokenServer:
    """A token server in distribution's token-auth protocol: a JWT signed with a key
    whose certificate chains to the registry's `rootcertbundle`, for `user:password`
    (anonymous callers get pull only). `scopes` records what was asked for."""

    url: str
    root_bundle: Path
    scopes: list[str] = field(default_factory=list)


@contextlib.contextmanager
def token_server(where: Path, *, user: str, password: str, service: str) -> Iterator[TokenServer]:
    import base64
    import json as _json
    from urllib.parse import parse_qsl, urlsplit

    import trustme
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.x509 import load_pem_x509_certificate

    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    leaf = ca.issue_cert("token-signer", key_type=trustme.KeyType.RSA)
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    cert = load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    where.mkdir(parents=True, exist_ok=True)
    bundle = where / "token-root.pem"
    ca.cert_pem.write_to_path(str(bundle))
    server_info = TokenServer("", bundle)
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            query = parse_qsl(urlsplit(self.path).query)
            scopes = [v for k, v in query if k == "scope"]
            server_info.scopes.extend(scopes)
            authed = self.headers.get("Authorization") == expected
            if self.headers.get("Authorization") and not authed:
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            access = []
            for scope in scopes:
                kind, name, actions = scope.split(":")
                allowed = actions.split(",") if authed else ["pull"]
                access.append({"type": kind, "name": name, "actions": allowed})
            now = int(time.time())
            header = {"typ": "JWT", "alg": "RS256", "x5c": x5c}
            claims = {
                "iss": "ci-layers-tests",
                "sub": user if authed else "",
                "aud": service,
                "exp": now + 300,
                "nbf": now - 10,
                "iat": now,
                "jti": str(now) + str(len(server_info.scopes)),
                "access": access,
            }
            signing = (
                b64(_json.dumps(header).encode()) + "." + b64(_json.dumps(claims).encode())
            ).encode()
            signature = key.sign(signing, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg]
            body = _json.dumps({"token": signing.decode() + "." + b64(signature)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(Handler) as host:
        server_info.url = f"http://{host}/token"
        yield server_info
