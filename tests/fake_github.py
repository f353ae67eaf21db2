"""A local HTTP server that behaves like the GitHub REST API for issue comments.

Pagination with Link headers (per_page up to 100), 403 for a read-only token, 5xx and
secondary rate limits (403 + Retry-After) on demand. Every request is recorded, and
checked against GitHub's OpenAPI description when one is given.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_LIST = re.compile(r"^/repos/([^/]+)/([^/]+)/issues/(\d+)/comments$")
_ONE = re.compile(r"^/repos/([^/]+)/([^/]+)/issues/comments/(\d+)$")
_PULL = re.compile(r"^/repos/([^/]+)/([^/]+)/pulls/(\d+)$")


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]
    status: int = 0


@dataclass
class FakeGitHub:
    login: str = "github-actions[bot]"
    read_only: bool = False
    fail_next: list[int] = field(default_factory=list)  # statuses to answer before success
    rate_limit_next: int = 0  # secondary rate limits (403 + Retry-After: 1) to answer first
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    heads: dict[int, str] = field(default_factory=dict)  # pull request -> head commit
    requests: list[Recorded] = field(default_factory=list)
    validate: Callable[[Recorded], str | None] | None = None  # returns a violation
    violations: list[str] = field(default_factory=list)
    _next_id: int = 1000
    _lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_comment(self, issue: int, body: str, *, login: str | None = None) -> dict[str, Any]:
        with self._lock:
            self._next_id += 1
            c = self._comment(self._next_id, issue, body, login or self.login)
            self.comments.setdefault(issue, []).append(c)
            return c

    def _comment(self, cid: int, issue: int, body: str, login: str) -> dict[str, Any]:
        base = f"{self.url}/repos/o/r"
        return {
            "id": cid,
            "node_id": f"IC_{cid}",
            "url": f"{base}/issues/comments/{cid}",
            "html_url": f"https://github.example/o/r/pull/{issue}#issuecomment-{cid}",
            "issue_url": f"{base}/issues/{issue}",
            "body": body,
            "user": {
                "login": login,
                "id": 41898282,
                "type": "Bot" if login.endswith("[bot]") else "User",
            },
            "created_at": "2026-11-27T00:00:00Z",
            "updated_at": "2026-11-27T00:00:00Z",
            "author_association": "NONE",
        }

    def bodies(self, issue: int) -> list[str]:
        return [c["body"] for c in self.comments.get(issue, [])]


def serve(fake: FakeGitHub) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        rec: Recorded

        def log_message(self, *args: object) -> None:
            pass

        def _send(
            self, status: int, data: Any = None, headers: dict[str, str] | None = None
        ) -> None:
            raw = b"" if data is None else json.dumps(data).encode()
            # Record before answering: once the client has the answer it may send the
            # next request, and a later write would land on that request's record.
            self.rec.status = status
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            rec = Recorded(method, parts.path, parse_qs(parts.query), body, dict(self.headers))
            self.rec = rec
            fake.requests.append(rec)
            if fake.validate is not None and (problem := fake.validate(rec)):
                fake.violations.append(f"{method} {self.path}: {problem}")
            if fake.rate_limit_next:
                fake.rate_limit_next -= 1
                msg = "You have exceeded a secondary rate limit. Please wait a few minutes."
                return self._send(403, {"message": msg}, {"Retry-After": "1"})
            if fake.fail_next:
                return self._send(fake.fail_next.pop(0), {"message": "Server Error"})
            if fake.read_only and method != "GET":
                return self._send(403, {"message": "Resource not accessible by integration"})
            if parts.path == "/user" and method == "GET":
                if fake.login.endswith("[bot]"):  # an installation token has no user
                    return self._send(403, {"message": "Resource not accessible by integration"})
                return self._send(200, {"login": fake.login, "id": 1, "type": "User"})
            if (m := _LIST.match(parts.path)) and method == "GET":
                return self._list(int(m.group(3)), rec)
            if (m := _PULL.match(parts.path)) and method == "GET":
                number = int(m.group(3))
                if number not in fake.heads:
                    return self._send(404, {"message": "Not Found"})
                pull = {"number": number, "state": "open", "head": {"sha": fake.heads[number]}}
                return self._send(200, {**pull, "url": f"{fake.url}/repos/o/r/pulls/{number}"})
            if method in ("POST", "PATCH") and not isinstance((body or {}).get("body"), str):
                return self._send(422, {"message": "Validation Failed"})
            if (m := _LIST.match(parts.path)) and method == "POST":
                return self._send(201, fake.add_comment(int(m.group(3)), body["body"]))
            if m := _ONE.match(parts.path):
                return self._one(method, int(m.group(3)), body)
            return self._send(404, {"message": "Not Found"})

        def _list(self, issue: int, rec: Recorded) -> None:
            per_page = min(int(rec.query.get("per_page", ["30"])[0]), 100)
            page = int(rec.query.get("page", ["1"])[0])
            items = fake.comments.get(issue, [])
            chunk = items[(page - 1) * per_page : page * per_page]
            last = max(1, -(-len(items) // per_page))
            headers = {}
            if page < last:
                link = f"{fake.url}/repos/o/r/issues/{issue}/comments?per_page={per_page}"
                headers["Link"] = (
                    f'<{link}&page={page + 1}>; rel="next", <{link}&page={last}>; rel="last"'
                )
            return self._send(200, chunk, headers)

        def _one(self, method: str, cid: int, body: Any) -> None:
            for issue, items in fake.comments.items():
                for c in items:
                    if c["id"] != cid:
                        continue
                    if method == "PATCH":
                        c["body"] = body["body"]
                        return self._send(200, c)
                    if method == "DELETE":
                        fake.comments[issue] = [x for x in items if x["id"] != cid]
                        return self._send(204)
                    if method == "GET":
                        return self._send(200, c)
            return self._send(404, {"message": "Not Found"})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PATCH(self) -> None:
            self._handle("PATCH")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
