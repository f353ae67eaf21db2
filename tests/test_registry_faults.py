"""Registries and networks that misbehave: each is a clear error (or is survived), never
a traceback, a hang, or a credential sent where it does not belong."""

from __future__ import annotations

import json
import os
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


def _as_riscv(monkeypatch) -> None:
    import ci_layers.build.builder as builder_module
    import ci_layers.build.remote as remote_module
    import ci_layers.oci.manifest as manifest_module

    other = lambda: ("linux", "riscv64")  # noqa: E731
    for module in (builder_module, remote_module, manifest_module):
        monkeypatch.setattr(module, "host_platform", other)


def test_another_platforms_builds_have_tags_of_their_own_in_one_cache(
    git_repo, tmp_path, registry, monkeypatch
):
    """A key names its platform (but the default's): an riscv64 machine's builds go
    beside the amd64 ones in one cache repository, neither taking nor moving them."""
    repo = _repo(git_repo)
    cache = f"{registry.host}/acme/cache"
    _build(repo.root, tmp_path / "amd", cache, "--push")
    reg = Registry(registry.host)
    before = {t: reg.manifest_descriptor("acme/cache", t) for t in reg.tags("acme/cache")}
    _as_riscv(monkeypatch)
    out = _build(repo.root, tmp_path / "riscv", cache, "--push")
    assert "3 built" in out
    assert "another platform" not in out
    assert {t: reg.manifest_descriptor("acme/cache", t) for t in before} == before
    assert len(set(reg.tags("acme/cache")) - set(before)) >= 3  # its own key tags
    out = _build(repo.root, tmp_path / "riscv2", cache)  # another riscv64 machine takes them
    assert "0 built, 3 reused (3 from the registry)" in out


def test_another_platforms_image_under_a_key_is_neither_used_nor_replaced(
    git_repo, tmp_path, registry, monkeypatch
):
    """A cache an older ci-layers filled keyed no platform: an amd64 build there under
    the key an riscv64 build would have had is neither taken nor overwritten."""
    import ci_layers.keys as keys_module

    repo = _repo(git_repo)
    cache = f"{registry.host}/acme/cache"
    _build(repo.root, tmp_path / "amd", cache, "--push")
    reg = Registry(registry.host)
    before = {t: reg.manifest_descriptor("acme/cache", t) for t in reg.tags("acme/cache")}
    _as_riscv(monkeypatch)
    monkeypatch.setattr(keys_module, "DEFAULT_PLATFORM", "linux/riscv64")  # its old keys
    out = _build(repo.root, tmp_path / "riscv", cache, "--push")
    assert "3 built" in out
    assert "holds another platform's image (a key names its platform now" in out
    assert {t: reg.manifest_descriptor("acme/cache", t) for t in before} == before


SLOW = {
    "CI_LAYERS_REGISTRY_MIN_SPEED": "200",
    "CI_LAYERS_REGISTRY_SPEED_WINDOW": "1",
    "CI_LAYERS_REGISTRY_ATTEMPTS": "2",
}


@pytest.fixture
def pushed(registry, tmp_path):
    """busybox in the registry as acme/slow:1; (store, its descriptor, layer digest)."""
    require("busybox")
    from ci_layers.oci.manifest import ImageManifest

    store = OciStore(tmp_path / "s")
    busybox_image(store)
    desc = store.resolve("ci-layers.local/busybox:latest")
    push_image(store, desc, Registry(registry.host), "acme/slow", ["1"], stats=TransferStats())
    return store, desc, ImageManifest.load(store, desc).layers[0].descriptor.digest


def test_a_blob_sent_a_byte_at_a_time_fails_naming_it_after_its_retries(pushed, proxy, tmp_path):
    """No read timeout trips on a byte every 0.3 s; the floor on speed does."""
    import time

    from ci_layers.errors import RegistryUnreachable
    from ci_layers.oci.transfer import pull_image

    _store, _desc, layer = pushed
    proxy.dribble = lambda path: 0.3 if path.endswith(f"/blobs/{layer}") else 0.0
    target = OciStore(tmp_path / "t")
    start = time.monotonic()
    with pytest.raises(RegistryUnreachable) as caught:
        pull_image(Registry(proxy.host, env=SLOW), "acme/slow", "1", target, stats=TransferStats())
    assert str(caught.value) == (
        f"{proxy.host}: get blob {layer} from acme/slow: slower than 200 bytes/s for 1 s "
        "(CI_LAYERS_REGISTRY_MIN_SPEED, CI_LAYERS_REGISTRY_SPEED_WINDOW) (after 2 attempts)"
    )
    assert time.monotonic() - start < 60  # sanity only: a byte every 0.3 s for 1 MB is days
    assert [r.path for r in proxy.requests].count(f"/v2/acme/slow/blobs/{layer}") == 2
    assert not target.has(layer)
    assert target.verify() == []


def test_a_slow_first_try_is_retried_and_the_pull_completes(pushed, proxy, tmp_path):
    from ci_layers.oci.transfer import pull_image

    store, desc, layer = pushed
    tries = []

    def first_only(path: str) -> float:
        if path.endswith(f"/blobs/{layer}"):
            tries.append(path)
            return 0.3 if len(tries) == 1 else 0.0
        return 0.0

    proxy.dribble = first_only
    target = OciStore(tmp_path / "t")
    got = pull_image(
        Registry(proxy.host, env=SLOW), "acme/slow", "1", target, stats=TransferStats()
    )
    assert got.digest == desc.digest
    assert len(tries) == 2
    assert target.size(layer) == store.size(layer)


def test_a_manifest_sent_a_byte_at_a_time_fails_naming_it(pushed, proxy):
    from ci_layers.errors import RegistryUnreachable

    proxy.dribble = lambda path: 0.3 if "/manifests/" in path else 0.0
    with pytest.raises(RegistryUnreachable, match=r"get manifest acme/slow:1: slower than 200"):
        Registry(proxy.host, env=SLOW).get_manifest("acme/slow", "1")


def test_an_upload_the_registry_reads_a_trickle_of_fails_naming_the_blob(tmp_path):
    """The registry takes the body 1 KiB a second: once the sockets' buffers are full,
    the floor on speed stops the upload (and its retry)."""
    import io
    import time

    from ci_layers.errors import RegistryUnreachable
    from ci_layers.oci.digest import Descriptor, Digest

    blob = os.urandom(16 << 20)

    class Slow(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            _send(self, 200)

        def do_HEAD(self) -> None:
            _send(self, 404)

        def do_POST(self) -> None:
            _send(self, 202, Location="/v2/acme/up/blobs/uploads/1")

        def do_PUT(self) -> None:
            try:
                for _ in range(int(self.headers["Content-Length"]) // 1024):
                    self.rfile.read(1024)
                    time.sleep(1)
            except OSError:
                return

    env = {**SLOW, "CI_LAYERS_REGISTRY_MIN_SPEED": "10240", "CI_LAYERS_REGISTRY_ATTEMPTS": "1"}
    desc = Descriptor("application/octet-stream", Digest.of(blob), len(blob))
    with serving(Slow) as host:
        start = time.monotonic()
        with pytest.raises(RegistryUnreachable) as caught:
            Registry(host, env=env, timeout=5).upload_blob(
                "acme/up", desc, lambda: io.BytesIO(blob)
            )
    # the floor on speed, or, once the sockets' buffers are full and the registry's
    # window stays shut, the read timeout on the send: either way named, and bounded
    assert str(caught.value).startswith(f"{host}: upload {desc.digest} to acme/up: ")
    assert str(caught.value).endswith("(after 1 attempts; run again to finish the push)")
    assert time.monotonic() - start < 90
