"""What Docker needs to build a plan's Dockerfile images: build-push-action inputs per
image, and a docker-bake.json for the whole affected set.

A child is pointed at its parent rebuilt earlier in the same run (or found built by an
earlier one, `plan --check-registry`) through a named build context
(`<reference, as BuildKit names it>=docker-image://<parent>:<key tag>`) and, where its
FROM is written with a global ARG, through that build arg too. The key tag is content
addressed (`ci-layers-<first 16 hex digits of the key>`), so a parent pushed by an
earlier run with the same content is the same image.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from .graph import DockerfileNode
from .plan import Plan
from .refs import context_name
from .spec import Spec

__all__ = [
    "bake_file",
    "context_name",
    "docker_inputs",
    "handoff_tag",
    "key_tag",
    "pushed_tags",
    "release_tags",
]


def key_tag(image: str, key: str) -> str:
    """`image`'s repository with a tag naming its content."""
    repo = image.split("@", 1)[0]
    if repo.rfind(":") > repo.rfind("/"):
        repo = repo[: repo.rfind(":")]
    return f"{repo}:ci-layers-{key.removeprefix('sha256:')[:16]}"


def _redirects(plan: Plan, spec: Spec, name: str) -> tuple[dict[str, str], dict[str, str]]:
    """(build contexts, build args) that send a child to its rebuilt parents."""
    node = spec.graph[name].dockerfile
    assert node is not None
    contexts = _own_contexts(spec, node)  # a rebuilt parent is redirected below
    args: dict[str, str] = {}
    for ref, dep in node.bases:
        if plan.layers[dep].status not in ("rebuild", "reused"):
            continue  # the published image it names is current
        # rebuilt in this run, or found built by an earlier one: its hand-off tag either way
        built = handoff_tag(spec, plan, dep)
        if built is None:
            continue  # a spec layer with no cache: its `images:` tag, as the build pushes it
        contexts[context_name(ref)] = f"docker-image://{built}"
        for written, arg in node.base_args:
            if written == ref:
                args[arg] = built
    return contexts, args


def handoff_tag(spec: Spec, plan: Plan, name: str) -> str | None:
    """Where a build is handed to later stages: a Dockerfile image's key tag in its
    image's repository (one per platform: each build has a key of its own), a spec
    layer's in the cache repository (`build --push`), if the plan knows one."""
    key = plan.layers[name].key
    node = spec.graph[name].dockerfile
    if node is None:
        return f"{plan.cache}:ci-layers-{key.removeprefix('sha256:')}" if plan.cache else None
    if node.local:
        return None  # an untagged bake target has no repository to hand it off in
    return key_tag(spec.graph[name].origin, key)


def release_tags(spec: Spec, name: str) -> list[str]:
    """The tags a layer is released under: a Dockerfile image's name and extra tags, a
    spec layer's `images:` tags. A build for one of several platforms is released under
    its image's tags, with the other platforms' builds, as one index (`promote`)."""
    layer = spec.graph[name]
    if layer.dockerfile is not None:
        if layer.dockerfile.local:
            return []
        return list(dict.fromkeys([layer.origin, *layer.dockerfile.tags]))
    return [t for img in spec.images.values() if img.layer == layer.origin for t in img.tags]


def pushed_tags(release: list[str], handoff: str | None, *, publish: bool) -> list[str]:
    """What a layer's build pushes: its hand-off tag (later stages pull it) always, its
    release tags only where the workflow publishes, so a pull request's run never moves a
    production tag. The same rule as `ci-layers build --cache … --push [--publish]`."""
    handoff_tags = [handoff] if handoff else []
    return list(dict.fromkeys([*(release if publish else []), *handoff_tags]))


def _image_tags(plan: Plan, spec: Spec, name: str, publish: bool) -> list[str]:
    """A Dockerfile image's pushed tags; its hand-off tag is in its own repository. A
    build for one of several platforms never pushes the release tags (they name the
    index `promote` makes of every platform's build)."""
    release = release_tags(spec, name) if spec.graph[name].image is None else []
    return pushed_tags(release, handoff_tag(spec, plan, name), publish=publish)


def docker_inputs(plan: Plan, spec: Spec, name: str, *, publish: bool = False) -> dict[str, Any]:
    """docker/build-push-action's inputs for one Dockerfile-built image."""
    node = spec.graph[name].dockerfile
    assert node is not None
    contexts, redirect_args = _redirects(plan, spec, name)
    args = {**dict(spec.graph[name].build_args), **redirect_args}
    tags = _image_tags(plan, spec, name, publish)
    inputs = {
        "context": node.context or ".",
        "file": node.file if node.inline is None else "",  # inline: the bake file builds it
        "target": node.target or "",
        "tags": "\n".join(dict.fromkeys(tags)),
        "build-args": "\n".join(f"{k}={v}" for k, v in args.items()),
        "build-contexts": "\n".join(f"{k}={v}" for k, v in contexts.items()),
    }
    if (platform := spec.graph[name].platform) is not None:
        inputs["platforms"] = platform
    if spec.graph[name].labels:
        inputs["labels"] = "\n".join(f"{k}={v}" for k, v in spec.graph[name].labels)
    return inputs


def _own_contexts(spec: Spec, node: DockerfileNode) -> dict[str, str]:
    """A bake target's own named contexts: a `target:` link is that image as published
    (a rebuilt one is redirected by the caller); a link to an untagged target is left
    out, as only a bake run builds it."""
    return {
        name: f"docker-image://{value.removeprefix('target:')}"
        if value.startswith("target:")
        else value
        for name, value in node.contexts
        if not _local(spec, value)
    }


def _local(spec: Spec, context: str) -> bool:
    """Whether a named context links an untagged bake target."""
    linked = context.removeprefix("target:")
    return (
        context.startswith("target:")
        and linked in spec.layers
        and (node := spec.layers[linked].dockerfile) is not None
        and node.local
    )


def _target(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "image"
    target, n = base, 2
    while target in taken:
        target, n = f"{base}-{n}", n + 1
    taken.add(target)
    return target


def bake_file(plan: Plan, spec: Spec, *, publish: bool = False) -> dict[str, Any]:
    """docker-bake.json for the affected Dockerfile images: each child gets its rebuilt
    parents through `contexts` ("<reference>": "target:<parent>"), so one `docker buildx
    bake` builds the affected DAG in order. Tags as `pushed_tags`."""
    images = [n for n in plan.affected if spec.graph[n].dockerfile is not None]
    # untagged bake targets the images are built on: built by this bake run too, as bake
    # builds a linked target (nothing else could hand them over)
    todo = list(images)
    while todo:
        for _ref, dep in spec.graph[todo.pop()].dockerfile.bases:  # type: ignore[union-attr]
            node = spec.graph[dep].dockerfile
            if node is not None and node.local and dep not in images:
                images.append(dep)
                todo.append(dep)
    images = [n for n in spec.graph.topological_order() if n in set(images)]
    taken: set[str] = set()
    targets = {n: _target(n, taken) for n in images}
    out: dict[str, Any] = {}
    for name in images:
        node = spec.graph[name].dockerfile
        assert node is not None
        context = node.context or "."
        dockerfile = posixpath.relpath(node.file, context)  # bake reads it from the context
        entry: dict[str, Any] = {
            "context": context,
            "dockerfile": dockerfile,
            "tags": _image_tags(plan, spec, name, publish),
        }
        if node.inline is not None:  # a bake target's dockerfile-inline
            del entry["dockerfile"]
            entry["dockerfile-inline"] = node.inline
        if spec.graph[name].labels:
            entry["labels"] = dict(spec.graph[name].labels)
        if node.target:
            entry["target"] = node.target
        if (platform := spec.graph[name].platform) is not None:
            entry["platforms"] = [platform]
        if spec.graph[name].build_args:
            entry["args"] = dict(spec.graph[name].build_args)
        contexts = _own_contexts(spec, node)  # then its rebuilt parents
        contexts.update(
            (context_name(ref), f"target:{targets[dep]}")
            for ref, dep in node.bases
            if dep in targets
        )
        contexts.update(  # found built by an earlier run, or a spec layer built by its job
            (context_name(ref), f"docker-image://{built}")
            for ref, dep in node.bases
            if dep not in targets
            and plan.layers[dep].status in ("rebuild", "reused")
            and (built := handoff_tag(spec, plan, dep)) is not None
        )
        if contexts:
            entry["contexts"] = contexts
        out[targets[name]] = entry
    bake = {"group": {"default": {"targets": [targets[n] for n in images]}}, "target": out}
    escaped: dict[str, Any] = _escaped(bake)
    return escaped


def _escaped(value: Any) -> Any:
    """Every string as bake's JSON reads it literally: bake evaluates `${…}` and `%{…}`
    in a JSON file's strings, so they are written `$${…}` and `%%{…}` (as buildx's own
    --print writes them)."""
    if isinstance(value, str):
        return value.replace("${", "$${").replace("%{", "%%{")
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    return value
