"""Who ci-layers is to a registry: basic auth over TLS with a self-signed certificate,
the token flow (a real docker-registry trusting a token server), and the places
credentials are found (Docker's config, credential helpers, the environment)."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from ci_layers.build.busybox import busybox_image
from ci_layers.errors import RegistryError
from ci_layers.oci.auth import find_credentials, parse_challenge
from ci_layers.oci.reference import Reference, is_loopback
from ci_layers.oci.registry import Registry
from ci_layers.oci.store import OciStore
from ci_layers.oci.transfer import TransferStats, pull_image, push_image

from .conftest import require
from .registry import htpasswd, self_signed, start_registry, token_server

BUSYBOX = "ci-layers.local/busybox:latest"


def _image(tmp_path):
    require("busybox")
    store = OciStore(tmp_path / "store")
    busybox_image(store)
    return store, store.resolve(BUSYBOX)


def _docker_config(tmp_path, host: str, user: str, password: str) -> dict[str, str]:
    config = tmp_path / "docker"
    config.mkdir(parents=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return {"DOCKER_CONFIG": str(config), "HOME": str(tmp_path)}


def test_basic_auth_over_tls_with_a_self_signed_certificate(tmp_path):
    require("docker-registry")
    crt, key, bundle = self_signed(tmp_path / "tls")
    reg = start_registry(
        tmp_path / "reg", tls=(crt, key), htpasswd=htpasswd(tmp_path, "ci", "s3cret")
    )
    try:
        store, desc = _image(tmp_path)
        env = {
            **_docker_config(tmp_path, reg.host, "ci", "s3cret"),
            "REQUESTS_CA_BUNDLE": str(bundle),
        }
        os.environ["REQUESTS_CA_BUNDLE"] = str(bundle)  # requests reads it from the process
        try:
            registry = Registry(reg.host, env=env)
            stats = TransferStats()
            push_image(store, desc, registry, "acme/busybox", ["1"], stats=stats)
            assert registry.base() == f"https://{reg.host}"
            assert stats.uploaded == 2
            fresh = OciStore(tmp_path / "fresh")
            pulled = pull_image(registry, "acme/busybox", "1", fresh, stats=TransferStats())
            assert pulled.digest == desc.digest
            assert fresh.verify() == []

            anonymous = Registry(reg.host, env={"HOME": str(tmp_path / "nobody")})
            with pytest.raises(RegistryError, match="needs credentials"):
                anonymous.manifest_descriptor("acme/busybox", "1")
            wrong = Registry(reg.host, env=_docker_config(tmp_path / "w", reg.host, "ci", "nope"))
            with pytest.raises(RegistryError, match="denied with the credentials from"):
                wrong.manifest_descriptor("acme/busybox", "1")
        finally:
            del os.environ["REQUESTS_CA_BUNDLE"]
        untrusted = Registry(reg.host, env=env)
        with pytest.raises(RegistryError, match="certificate is not trusted"):
            untrusted.manifest_descriptor("acme/busybox", "1")
    finally:
        reg.stop()


def test_token_auth_against_a_registry_that_trusts_a_token_server(tmp_path, monkeypatch):
    require("docker-registry")
    with token_server(tmp_path / "tok", user="ci", password="pw", service="tests") as tokens:
        reg = start_registry(tmp_path / "reg", token=(tokens.url, "tests", tokens.root_bundle))
        try:
            store, desc = _image(tmp_path)
            env = {
                "HOME": str(tmp_path),
                "CI_LAYERS_REGISTRY_USERNAME": "ci",
                "CI_LAYERS_REGISTRY_PASSWORD": "pw",
            }
            registry = Registry(reg.host, env=env)
            push_image(store, desc, registry, "acme/busybox", ["1"], stats=TransferStats())
            assert "repository:acme/busybox:pull,push" in tokens.scopes
            # anonymous callers get a pull token: reading works, pushing is denied
            anonymous = Registry(reg.host, env={"HOME": str(tmp_path / "nobody")})
            assert anonymous.manifest_descriptor("acme/busybox", "1").digest == desc.digest
            with pytest.raises(RegistryError, match="denied anonymously"):
                push_image(store, desc, anonymous, "acme/other", ["1"], stats=TransferStats())
            wrong = Registry(reg.host, env={**env, "CI_LAYERS_REGISTRY_PASSWORD": "nope"})
            with pytest.raises(RegistryError, match=r"credentials from CI_LAYERS.* got no token"):
                push_image(store, desc, wrong, "acme/third", ["1"], stats=TransferStats())
            # credentials meant for another registry do not stop a public pull
            assert wrong.manifest_descriptor("acme/busybox", "1").digest == desc.digest
        finally:
            reg.stop()


def test_credentials_come_from_a_credential_helper(tmp_path):
    helper = tmp_path / "bin" / "docker-credential-fake"
    helper.parent.mkdir()
    helper.write_text(
        "#!/bin/sh\nread host\n"
        'if [ "$host" = "ghcr.io" ]; then echo \'{"Username":"bot","Secret":"t0k"}\'; '
        "else echo 'credentials not found in native keychain'; exit 1; fi\n"
    )
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    config = tmp_path / "docker"
    config.mkdir()
    (config / "config.json").write_text(
        json.dumps({"credHelpers": {"ghcr.io": "fake"}, "credsStore": "fake"})
    )
    env = {"DOCKER_CONFIG": str(config), "PATH": f"{helper.parent}:{os.environ['PATH']}"}
    found = find_credentials("ghcr.io", env)
    assert (found.username, found.password) == ("bot", "t0k")
    assert found.source == "docker-credential-fake"
    assert find_credentials("quay.io", env) is None  # the store has nothing for it


def test_a_missing_credential_helper_is_named(tmp_path):
    config = tmp_path / "docker"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"credHelpers": {"ghcr.io": "absent"}}))
    with pytest.raises(RegistryError, match="docker-credential-absent is not on PATH"):
        find_credentials("ghcr.io", {"DOCKER_CONFIG": str(config), "PATH": "/nonexistent"})


def test_credentials_from_docker_config_the_environment_and_github(tmp_path):
    env = _docker_config(tmp_path, "https://index.docker.io/v1/", "hub", "pw")
    hub = find_credentials("registry-1.docker.io", env)
    assert (hub.username, hub.password) == ("hub", "pw")
    assert find_credentials("ghcr.io", env) is None
    gh = find_credentials("ghcr.io", {**env, "GITHUB_TOKEN": "ghs_x", "GITHUB_ACTOR": "octo"})
    assert (gh.username, gh.password, gh.source) == ("octo", "ghs_x", "GITHUB_TOKEN")
    mine = {"CI_LAYERS_REGISTRY_USERNAME": "u", "CI_LAYERS_REGISTRY_PASSWORD": "p"}
    assert find_credentials("ghcr.io", {**env, **mine}).username == "u"
    only_quay = {**env, **mine, "CI_LAYERS_REGISTRY_HOST": "quay.io"}
    assert find_credentials("ghcr.io", only_quay) is None
    assert find_credentials("quay.io", only_quay).username == "u"


def test_a_broken_docker_config_is_a_clear_error(tmp_path):
    config = tmp_path / "docker"
    config.mkdir()
    (config / "config.json").write_text("{not json")
    with pytest.raises(RegistryError, match="unreadable Docker config"):
        find_credentials("ghcr.io", {"DOCKER_CONFIG": str(config)})


def test_challenges_are_parsed_as_rfc_7235_auth_params():
    c = parse_challenge(
        'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull"'
    )
    assert c.scheme == "bearer"
    assert c.params == {
        "realm": "https://ghcr.io/token",
        "service": "ghcr.io",
        "scope": "repository:a/b:pull",
    }
    quoted = parse_challenge(r'Basic realm="a \"quoted\", realm"')
    assert quoted.params == {"realm": 'a "quoted", realm'}
    assert parse_challenge("") is None


@pytest.mark.parametrize(
    ("text", "host", "repo", "ref"),
    [
        ("alpine", "registry-1.docker.io", "library/alpine", "latest"),
        ("docker.io/acme/app:1", "registry-1.docker.io", "acme/app", "1"),
        ("ghcr.io/acme/cache", "ghcr.io", "acme/cache", "latest"),
        ("localhost:5000/a/b@sha256:" + "a" * 64, "localhost:5000", "a/b", "sha256:" + "a" * 64),
        ("[::1]:5000/x:t", "[::1]:5000", "x", "t"),
    ],
)
def test_references_split_as_docker_splits_them(text, host, repo, ref):
    parsed = Reference.parse(text)
    assert (parsed.host, parsed.repository, parsed.ref) == (host, repo, ref)


def test_plain_http_only_for_loopback():
    assert is_loopback("127.0.0.1:5000")
    assert is_loopback("localhost:5000")
    assert is_loopback("[::1]:5000")
    assert not is_loopback("ghcr.io")
    assert not is_loopback("10.0.0.1:5000")
    assert not Registry("ghcr.io", env={}).plain_http_allowed
    assert Registry(
        "reg.lan:5000", env={"CI_LAYERS_INSECURE_REGISTRIES": "reg.lan:5000"}
    ).plain_http_allowed


def _own_address() -> str | None:
    """This machine's address on a network, not loopback (None when it has none)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if is_loopback(address) else address


@pytest.mark.parametrize("insecure", [False, True], ids=["refused", "listed-insecure"])
def test_a_plain_http_realm_on_another_host_gets_no_credentials(tmp_path, insecure):
    """A loopback registry (plain HTTP allowed) names a token realm over plain HTTP on a
    host that is not loopback: the credentials must not go there in clear, unless that
    host itself is listed insecure."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from .registry import serving

    address = _own_address()
    if address is None:  # CI's machines have one: there the test must run
        (pytest.fail if os.environ.get("CI") else pytest.skip)("no address but loopback")
    seen: list[str | None] = []

    class Realm(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            body = b'{"token": "t"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    realm_server = ThreadingHTTPServer(("0.0.0.0", 0), Realm)
    threading.Thread(target=realm_server.serve_forever, daemon=True).start()
    realm_host = f"{address}:{realm_server.server_address[1]}"

    class Challenging(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(401)
            self.send_header(
                "WWW-Authenticate", f'Bearer realm="http://{realm_host}/token",service="x"'
            )
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET

    try:
        with serving(Challenging) as host:
            env = {
                "HOME": str(tmp_path),
                "CI_LAYERS_REGISTRY_USERNAME": "ci",
                "CI_LAYERS_REGISTRY_PASSWORD": "secret",
                "CI_LAYERS_REGISTRY_ATTEMPTS": "1",
            }
            if insecure:
                env["CI_LAYERS_INSECURE_REGISTRIES"] = realm_host
            registry = Registry(host, env=env)
            with pytest.raises(RegistryError) as caught:
                registry.manifest_descriptor("acme/app", "1")
    finally:
        realm_server.shutdown()
    expected = "Basic " + base64.b64encode(b"ci:secret").decode()
    if insecure:
        assert seen[:1] == [expected]  # the user said that host may be spoken to so
        return
    assert seen == []  # nothing reached the realm, credentials least of all
    assert str(caught.value) == (
        f"{host}: its token realm http://{realm_host}/token is not HTTPS, and {realm_host} is "
        "neither loopback nor listed insecure: credentials would go there in clear; refused "
        f"(if that host is yours: CI_LAYERS_INSECURE_REGISTRIES={realm_host})"
    )
