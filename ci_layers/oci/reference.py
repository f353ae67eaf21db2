"""Registry references (`ghcr.io/acme/cache:tag`, `localhost:5000/app@sha256:…`) split
into what the distribution API needs: the host to connect to, the repository, the tag
or digest. The grammar is distribution/reference's; Docker Hub's spellings (no host,
`index.docker.io`, a single name) resolve as Docker resolves them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ..errors import UsageError

__all__ = ["Reference", "is_loopback", "key_tag"]

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_HOST = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?")
DOCKER_HUB = "registry-1.docker.io"


@dataclass(frozen=True, slots=True)
class Reference:
    """host (as connected to), repository, and a tag or a digest (None: the repository)."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(
        cls, text: str, *, what: str = "reference", repository_only: bool = False
    ) -> Reference:
        raw = text.strip()
        if not raw or len(raw) > 255 + 140:
            raise UsageError(f"{what} '{text}': empty or too long")
        name, _, digest = raw.partition("@")
        tag = None
        slash, colon = name.rfind("/"), name.rfind(":")
        if colon > slash:
            name, tag = name[:colon], name[colon + 1 :]
        first, _, rest = name.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
            host, repo = first, rest
        else:
            host, repo = "docker.io", name
        if host in ("docker.io", "index.docker.io", "registry-1.docker.io"):
            host = DOCKER_HUB
            if "/" not in repo:
                repo = f"library/{repo}"
        if not _HOST.fullmatch(host):
            raise UsageError(f"{what} '{text}': '{host}' is no registry host")
        if not _REPOSITORY.fullmatch(repo):
            raise UsageError(
                f"{what} '{text}': repository '{repo}' must be lower-case letters, digits "
                "and separators (. _ - /), as registries require"
            )
        if tag is not None and not _TAG.fullmatch(tag):
            raise UsageError(f"{what} '{text}': tag '{tag}' is not a valid tag")
        if digest and not re.fullmatch(r"sha256:[a-f0-9]{64}", digest):
            raise UsageError(f"{what} '{text}': '{digest}' is no sha256 digest")
        if repository_only and (tag or digest):
            raise UsageError(
                f"{what} '{text}': a repository (REGISTRY/REPO), without tag or digest"
            )
        return cls(host, repo, tag, digest or None)

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.host, self.repository, tag, None)

    @property
    def name(self) -> str:
        """The repository as people write it (`ghcr.io/acme/app`)."""
        host = "docker.io" if self.host == DOCKER_HUB else self.host
        return f"{host}/{self.repository}"

    @property
    def ref(self) -> str:
        """What the manifest endpoints take: the digest if pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag or 'latest'}"


def is_loopback(host: str) -> bool:
    """Whether `host` (with or without port) is this machine: the one place plain HTTP is
    used without being asked for."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def key_tag(key: str) -> str:
    """The tag a layer's image has in the store and in a cache repository: its key."""
    hex_part = key.removeprefix("sha256:")
    if not re.fullmatch(r"[a-f0-9]{64}", hex_part):
        raise UsageError(f"'{key}' is no layer key (sha256:<64 hex digits>)")
    return "ci-layers-" + hex_part
