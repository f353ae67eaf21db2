"""Registries and networks that misbehave: each is a clear error (or is survived), never
a traceback, a hang, or a credential sent where it does not belong."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

import pytest

from ci_layers.build.busybox import busybox_image
from ci_layers.errors import RegistryError
from ci_layers.oci.registry import Registry
from ci_layers.oci.store import OciStore
from ci_layers.oci.transfer import TransferStats, push_image

from .conftest import require
from .registry import htpasswd, proxy_to, serving, start_registry
from .test_cli_build import run
from .test_registry import SPEC, _build, _repo


def test_credentials_never_follow_a_location_to_another_host(tmp_path):
    require("docker-registry", "busybox")
    reg = start_registry(tmp_path / "reg", htpasswd=htpasswd(tmp_path, "ci", "s3cret"))
    try:
        with proxy_to(reg.host) as front, proxy_to(reg.host) as elsewhere:
            front.location = lambda where: where.replace(front.host, elsewhere.host)
            store = OciStore(tmp_path / "s")
            busybox_image(store)
            desc = store.resolve("ci-layers.local/busybox:latest")
            env = {"CI_LAYERS_REGISTRY_USERNAME": "ci", "CI_LAYERS_REGISTRY_PASSWORD": "s3cret"}
            with pytest.raises(RegistryError, match="denied"):
                push_image(
                    store, desc, Registry(front.host, env=env), "a/b", ["1"], stats=TransferStats()
                )
            assert elsewhere.requests  # the upload went where the Location said
            assert all(r.authorization is None for r in elsewhere.requests)
            assert any(r.authorization for r in front.requests)
    finally:
        reg.stop()


def _fake(handler_body):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            handler_body(self)

        do_HEAD = do_GET

    return serving(Handler)


def _send(h: BaseHTTPRequestHandler, status: int, body: bytes = b"", **headers: str) -> None:
    h.send_response(status)
    for k, v in headers.items():
        h.send_header(k.replace("_", "-"), v)
    h.send_header("Content-Length", headers.pop("length", str(len(body))))
    h.end_headers()
    h.wfile.write(body)


def test_a_tag_list_whose_link_loops_is_an_error_not_a_hang():
    def answer(h):
        if h.path == "/v2/":
            return _send(h, 200, b"{}")
        _send(h, 200, json.dumps({"tags": ["a"]}).encode(), Link=f'<{h.path}>; rel="next"')

    with _fake(answer) as host, pytest.raises(RegistryError, match="does not end"):
        Registry(host, env={}).tags("acme/cache")


def test_a_redirect_loop_is_a_clear_error():
    def answer(h):
        if h.path == "/v2/":
            return _send(h, 200, b"{}")
        _send(h, 302, Location=h.path)

    with _fake(answer) as host, pytest.raises(RegistryError, match="redirects"):
        Registry(host, env={}).get_manifest("acme/app", "1")


def test_a_truncated_manifest_is_a_clear_error(git_repo, tmp_path):
    def answer(h):
        if h.path == "/v2/":
            return _send(h, 200, b"{}")
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        h.wfile.write(b'{"schemaVersion": 2')
        h.close_connection = True

    repo = _repo(git_repo)
    with _fake(answer) as host:
        code, _out, err = run(
            "pull", f"{host}/acme/app:1", "-C", str(repo.root), "--store", str(tmp_path / "s")
        )
    assert code == 1
    assert "Traceback" not in err
    assert "internal error" not in err


def test_a_link_header_without_brackets_ends_the_list():
    def answer(h):
        if h.path == "/v2/":
            return _send(h, 200, b"{}")
        _send(h, 200, json.dumps({"tags": ["a", "b"]}).encode(), Link='rel="next"')

    with _fake(answer) as host:
        assert Registry(host, env={}).tags("acme/cache") == ["a", "b"]


def test_one_dropped_first_connection_is_retried(proxy):
    dropped = []

    def drop(method: str, path: str) -> bool:
        if path == "/v2/" and not dropped:
            dropped.append(path)
            return True
        return False

    proxy.drop = drop
    assert Registry(proxy.host, env={}).tags("acme/none") == []
    assert dropped


def test_a_change_to_global_inputs_is_never_cut_off(git_repo, tmp_path, registry):
    repo = _repo(git_repo)
    repo.write("ci-layers.yaml", "global_inputs: [ci/env.sh]\n" + SPEC)
    repo.write("ci/env.sh", "A=1\n")
    repo.commit("global")
    cache = f"{registry.host}/acme/cache"
    _build(repo.root, tmp_path / "s", cache, "--push")
    repo.write("ci/env.sh", "A=2\n")
    out = _build(repo.root, tmp_path / "s", cache, "--push")
    assert "3 built" in out
    assert "cut off" not in out.split("\n\n")[0]


def test_another_platforms_image_in_the_cache_is_neither_used_nor_replaced(
    git_repo, tmp_path, registry, monkeypatch
):
    import ci_layers.build.builder as builder_module
    import ci_layers.build.remote as remote_module
    import ci_layers.oci.manifest as manifest_module

    repo = _repo(git_repo)
    cache = f"{registry.host}/acme/cache"
    _build(repo.root, tmp_path / "amd", cache, "--push")
    before = {
        t: Registry(registry.host).manifest_descriptor("acme/cache", t)
        for t in Registry(registry.host).tags("acme/cache")
    }
    other = lambda: ("linux", "riscv64")  # noqa: E731
    for module in (builder_module, remote_module, manifest_module):
        monkeypatch.setattr(module, "host_platform", other)
    out = _build(repo.root, tmp_path / "riscv", cache, "--push")
    assert "3 built" in out
    assert "holds another platform's image; not replaced" in out
    after = {t: Registry(registry.host).manifest_descriptor("acme/cache", t) for t in before}
    assert after == before
