"""Image references as Docker reads them: what a name points at, and where a push goes.

`registry.example.com/team/app:1`, `team/app` and `docker.io/team/app:latest` are
spellings Docker resolves by its own rules (distribution/reference): no host is Docker
Hub, a single name there is `library/<name>`, no tag is `latest`.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["context_name", "image_key", "pushed_as", "pushed_twice", "same_image"]


def image_key(ref: str) -> tuple[str | None, str, str]:
    """(registry host as written or None, repository path, tag) of an image reference,
    for matching: no digest, `latest` when untagged, Docker Hub's `library/` explicit."""
    ref = ref.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    tag = "latest"
    if colon > slash:
        ref, tag = ref[:colon], ref[colon + 1 :]
    parts = ref.split("/")
    host = None
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        host = parts[0]
        host = "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host
        parts = parts[1:]
    if len(parts) == 1 and host in (None, "docker.io"):  # official images: library/
        parts = ["library", *parts]
    return host, "/".join(parts), tag


def pushed_as(ref: str) -> tuple[str, str, str]:
    """The reference a push goes to, however it is spelled (no host is Docker Hub)."""
    host, path, tag = image_key(ref)
    return host or "docker.io", path, tag


def same_image(a: str, b: str) -> bool:
    """Whether references `a` and `b` name one image, as an in-repo match sees it."""
    (ha, pa, ta), (hb, pb, tb) = image_key(a), image_key(b)
    return (pa, ta) == (pb, tb) and (ha is None or hb is None or ha == hb)


def pushed_twice(pushes: Sequence[tuple[str, str]]) -> list[tuple[int, str]]:
    """Of (image, reference) pushes, each that goes where another image pushed first,
    however either is spelled: (its index, that other image)."""
    first: dict[tuple[str, str, str], str] = {}
    twice = []
    for i, (image, ref) in enumerate(pushes):
        other = first.setdefault(pushed_as(ref), image)
        if other != image:
            twice.append((i, other))
    return twice


def context_name(ref: str) -> str:
    """The name BuildKit looks a named build context up by: the reference normalised and
    shown in its familiar form, without `:latest` (dockerui's NamedContext). `buildx build
    --build-context` normalises its names, `bake` does not (docker/buildx#2328)."""
    name, at, digest = ref.partition("@")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, path = ("docker.io" if first == "index.docker.io" else first), rest
    else:
        host, path = "docker.io", name
    if host == "docker.io":
        familiar = path.removeprefix("library/") if path.count("/") == 1 else path
    else:
        familiar = f"{host}/{path}"
    return f"{familiar}{at}{digest}".removesuffix(":latest")
