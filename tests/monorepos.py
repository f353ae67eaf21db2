"""Generated monorepos of the sizes platform teams run ci-layers on: hundreds or
thousands of Dockerfile images under long registry names, or of spec layers, all built
on one base that the last commit changes."""

from __future__ import annotations

from .gitrepo import GitRepo

PREFIX = "ghcr.io/acme-corporation/platform-engineering/container-images"


def image_name(i: int, *, length: int = 120) -> str:
    """The i-th image's reference, `length` characters long."""
    team = f"team-{i % 40:02d}"
    head = f"{PREFIX}/{team}/service-"
    tail = f"-{i:05d}"
    return head + "x" * max(1, length - len(head) - len(tail)) + tail


def dockerfile_monorepo(repo: GitRepo, n: int, *, length: int = 120) -> tuple[str, str]:
    """`n` images, each `FROM` the base image, named `length` characters long; the base's
    package list changes in the second commit. (base, head) commit ids."""
    repo.write(
        "ci-layers.yaml",
        f'version: 1\ndockerfiles:\n  - path: "images/{{team}}/{{name}}/Dockerfile"\n'
        f'    image: "{PREFIX}/{{team}}/{{name}}"\n',
    )
    repo.write(
        "images/base/base-debian/Dockerfile",
        "FROM debian@sha256:" + "a" * 64 + "\nCOPY packages.txt /p\n",
    )
    repo.write("images/base/base-debian/packages.txt", "curl\n")
    for i in range(n):
        team, name = image_name(i, length=length).removeprefix(PREFIX + "/").split("/")
        repo.write(
            f"images/{team}/{name}/Dockerfile", f"FROM {PREFIX}/base/base-debian\nCOPY app /app\n"
        )
        repo.write(f"images/{team}/{name}/app", f"{i}\n")
    base = repo.commit("images")
    repo.write("images/base/base-debian/packages.txt", "curl\nwget\n")
    return base, repo.commit("base: wget")


def spec_monorepo(repo: GitRepo, n: int, *, fan: int = 0) -> tuple[str, str]:
    """`n` spec layers on one root layer (with `fan`, a tree: each layer on the one `fan`
    before it); the root's input changes in the second commit."""
    lines = ["version: 1", "layers:", "  os: {from: scratch, copy: [{src: os/, dest: /os/}]}"]
    for i in range(n):
        parent = "os" if not fan or i < fan else f"layer-{i - fan:04d}"
        lines.append(f"  layer-{i:04d}: {{parent: {parent}, copy: [{{src: l/{i}, dest: /l}}]}}")
        repo.write(f"l/{i}", f"{i}\n")
    repo.write("ci-layers.yaml", "\n".join(lines) + "\n")
    repo.write("os/release", "1\n")
    base = repo.commit("layers")
    repo.write("os/release", "2\n")
    return base, repo.commit("os 2")
