"""Who we are to a registry: credentials found where Docker keeps them, and the
challenge a registry answers 401 with (distribution's token spec) turned into a header.

Credentials come, first match wins, from `CI_LAYERS_REGISTRY_USERNAME` and
`CI_LAYERS_REGISTRY_PASSWORD` (for `CI_LAYERS_REGISTRY_HOST` only when that is set),
then Docker's config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`: a
`credHelpers` entry for the host, its `auths` entry, then `credsStore`), then, for
ghcr.io, `GITHUB_TOKEN` (what a workflow has with `packages: write`).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import RegistryError
from .reference import DOCKER_HUB

__all__ = ["Challenge", "Credentials", "find_credentials", "parse_challenge"]

_HUB_ALIASES = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", DOCKER_HUB)
_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str
    source: str  # where they were found, for error messages (never the secret)

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # "basic" or "bearer", lower-cased
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a `WWW-Authenticate` header (RFC 7235 auth-params)."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            break
        value = m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[m.group(1).lower()] = value
        pos = m.end()
    return Challenge(scheme.lower(), params)


def _config_path(env: dict[str, str]) -> Path:
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "config.json"
    return Path(env.get("HOME") or Path.home()) / ".docker" / "config.json"


def _aliases(host: str) -> tuple[str, ...]:
    return _HUB_ALIASES if host == DOCKER_HUB else (host,)


def _normalise(key: str) -> str:
    """A config key (`https://host/v1/`, `host`, `http://host`) as a bare host."""
    key = re.sub(r"^[a-z]+://", "", key)
    return key.split("/", 1)[0]


def _helper(helper: str, host: str, env: dict[str, str]) -> Credentials | None:
    binary = f"docker-credential-{helper}"
    try:
        proc = subprocess.run(
            [binary, "get"],
            input=host.encode(),
            capture_output=True,
            env=env,
            timeout=60,
            check=False,
        )
    except FileNotFoundError:
        raise RegistryError(
            f"{host}: Docker's config names the credential helper '{helper}', but "
            f"{binary} is not on PATH"
        ) from None
    except subprocess.TimeoutExpired:
        raise RegistryError(f"{host}: {binary} get did not answer in 60 s") from None
    if proc.returncode != 0:
        out = (proc.stdout or proc.stderr).decode(errors="replace").strip()
        if "credentials not found" in out.lower():
            return None
        raise RegistryError(f"{host}: {binary} get failed: {out[:200]}")
    try:
        data = json.loads(proc.stdout)
        return Credentials(str(data["Username"]), str(data["Secret"]), binary)
    except (ValueError, KeyError, TypeError):
        raise RegistryError(f"{host}: {binary} get printed no credentials JSON") from None


def _from_docker_config(host: str, env: dict[str, str]) -> Credentials | None:
    path = _config_path(env)
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{path}: unreadable Docker config ({exc})") from None
    if not isinstance(config, dict):
        raise RegistryError(f"{path}: not a Docker config (a JSON object)")
    aliases = _aliases(host)
    helpers = config.get("credHelpers") or {}
    for key, helper in helpers.items() if isinstance(helpers, dict) else ():
        if _normalise(key) in aliases and isinstance(helper, str):
            return _helper(helper, key, env)
    auths = config.get("auths") or {}
    for key, entry in auths.items() if isinstance(auths, dict) else ():
        if _normalise(key) not in aliases or not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise RegistryError(
                    f"{path}: auths.{key}.auth is not base64 user:password"
                ) from None
            return Credentials(user, password, str(path))
        if entry.get("username") and entry.get("password"):
            return Credentials(str(entry["username"]), str(entry["password"]), str(path))
        if entry.get("identitytoken"):
            return Credentials("<token>", str(entry["identitytoken"]), str(path))
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        for key in aliases:
            found = _helper(store, key, env)
            if found is not None:
                return found
    return None


def find_credentials(host: str, env: dict[str, str] | None = None) -> Credentials | None:
    env = dict(os.environ) if env is None else env
    user, password = env.get("CI_LAYERS_REGISTRY_USERNAME"), env.get("CI_LAYERS_REGISTRY_PASSWORD")
    only = env.get("CI_LAYERS_REGISTRY_HOST")
    if user and password and (not only or _normalise(only) in _aliases(host)):
        return Credentials(user, password, "CI_LAYERS_REGISTRY_USERNAME/PASSWORD")
    found = _from_docker_config(host, env)
    if found is not None:
        return found
    if host == "ghcr.io" and env.get("GITHUB_TOKEN"):
        return Credentials(
            env.get("GITHUB_ACTOR") or "x-access-token", env["GITHUB_TOKEN"], "GITHUB_TOKEN"
        )
    return None
