"""Platforms: what `platforms:` may say, how Docker normalises it, and what a build for
one platform sees.

A platform is `os/arch[/variant]`, normalised as containerd's `platforms.Normalize`
does (what `docker buildx build --platform` accepts): `aarch64` is `arm64`, `x86_64` is
`amd64`, `arm` is `arm/v7`, `arm64/v8` is `arm64`, a bare architecture is Linux's. Each
platform is built on a runner of its own (native, no QEMU): BuildKit's automatic args
then say that platform for both TARGET* and BUILD*.
"""

from __future__ import annotations

import difflib
import re

__all__ = [
    "DEFAULT_PLATFORM",
    "DEFAULT_RUNNERS",
    "PlatformError",
    "node_name",
    "parse_platform",
    "platform_args",
]

# What a GitHub-hosted runner builds, and what a layer without `platforms:` is built for.
DEFAULT_PLATFORM = "linux/amd64"
DEFAULT_RUNNERS = {"linux/amd64": "ubuntu-24.04", "linux/arm64": "ubuntu-24.04-arm"}

# Go's GOOS and GOARCH values a container image is built for (image-spec: "values
# SHOULD come from GOOS and GOARCH"), and the variants image-spec lists.
_OS = {"linux", "windows", "freebsd", "darwin", "solaris", "illumos", "netbsd", "openbsd"}
_ARCH = {
    "386",
    "amd64",
    "arm",
    "arm64",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "ppc64",
    "ppc64le",
    "riscv64",
    "s390x",
    "wasm",
}
_ALIASES = {  # containerd's normalizeArch
    "i386": ("386", ""),
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
}
_VARIANTS = {
    "arm": {"v5", "v6", "v7", "v8"},
    "arm64": {"v8", "v8.1", "v8.2", "v8.3", "v8.4", "v8.5", "v8.6", "v8.7", "v8.8", "v8.9"}
    | {"v9", "v9.0", "v9.1", "v9.2", "v9.3", "v9.4", "v9.5"},
    "amd64": {"v1", "v2", "v3", "v4"},
    "riscv64": {"rva20u64", "rva22u64", "rva23u64"},
}
_PART = re.compile(r"[a-z0-9._-]+")


class PlatformError(ValueError):
    """A platform Docker would not build for; the message says what to write."""


def parse_platform(text: str) -> str:
    """`text` normalised (`linux/aarch64` is `linux/arm64`), or PlatformError."""
    written = text.strip()
    parts = written.lower().split("/")
    if not written or len(parts) > 3 or not all(_PART.fullmatch(p) for p in parts):
        raise PlatformError(
            f"'{text}' is not a platform: write os/arch or os/arch/variant, e.g. linux/arm64"
        )
    if len(parts) == 1:  # containerd: a bare architecture is the host OS's (a runner's: linux)
        if parts[0] in _OS:
            raise PlatformError(f"'{text}' names no architecture: write e.g. {parts[0]}/amd64")
        parts = ["linux", *parts]
    os_name, arch, variant = parts[0], parts[1], parts[2] if len(parts) == 3 else ""
    if os_name not in _OS:
        near = _near(os_name, _OS)
        raise PlatformError(f"unknown operating system '{os_name}' in '{text}'{near}")
    if arch in _ALIASES:
        arch, implied = _ALIASES[arch]
        variant = variant or implied
    if arch not in _ARCH:
        raise PlatformError(f"unknown architecture '{arch}' in '{text}'{_near(arch, _ARCH)}")
    if arch in ("arm", "arm64") and variant.isdigit():
        variant = f"v{variant}"  # containerd: arm/7 is arm/v7, arm64/8 is arm64/v8
    if arch == "arm" and not variant:
        variant = "v7"  # containerd: arm alone is arm/v7
    if variant and variant not in _VARIANTS.get(arch, set()):
        known = ", ".join(sorted(_VARIANTS.get(arch, set()))) or "none"
        raise PlatformError(f"unknown variant '{variant}' of {arch} in '{text}' (known: {known})")
    if (arch, variant) in (("arm64", "v8"), ("amd64", "v1")):
        variant = ""  # the architecture's default variant is not written
    return "/".join(p for p in (os_name, arch, variant) if p)


def _near(word: str, choices: set[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def platform_args(platform: str) -> dict[str, str]:
    """BuildKit's automatic platform args for a native build of `platform`."""
    os_name, arch, *rest = platform.split("/")
    variant = rest[0] if rest else ""
    said = {"PLATFORM": platform, "OS": os_name, "ARCH": arch, "VARIANT": variant}
    return {f"{side}{k}": v for side in ("TARGET", "BUILD") for k, v in said.items()}


def node_name(origin: str, platform: str, count: int) -> str:
    """The graph node of `origin` built for `platform`, when it is built for `count`
    platforms: its own name when it is built for one."""
    return origin if count == 1 else f"{origin} ({platform})"
