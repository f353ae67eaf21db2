"""A spec's `bake:` entries as Dockerfile rules, one per target, read from the files as
they are in the snapshot planned (so each end of a comparison reads its own).

A target is an image named by its first tag (the target's name when it has none); its
Dockerfile is `dockerfile` in its context (or its `dockerfile-inline` text); its args,
tags, target stage, platforms, labels and named contexts are the rule's.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cachetools import LRUCache

from . import memo
from .bakefile import BakeError, BakeTarget, read_bake
from .errors import Location, SpecError
from .hcleval import HclError
from .platforms import PlatformError, parse_platform
from .repo import RepoFiles
from .spec import BakeSource, DockerfileRule, Spec

__all__ = ["BakeImage", "bake_images"]

_REMOTE = re.compile(r"^(https?://|git@|git://|ssh://|[\w.-]+\.git(#|$))")


@dataclass(frozen=True, slots=True)
class BakeImage:
    image: str
    path: str  # the Dockerfile's repository path (the bake file's, for an inline one)
    rule: DockerfileRule
    target: str  # the bake target's name


def bake_images(
    spec: Spec, files: RepoFiles, env: Mapping[str, str] | None = None
) -> tuple[list[BakeImage], list[SpecError]]:
    """Every image the spec's bake files build, and the problems found reading them."""
    images: list[BakeImage] = []
    errors: list[SpecError] = []
    environ = dict(os.environ if env is None else env)
    for source in spec.bake:
        for group in _definitions(source, files):
            texts = []
            for path in group:
                raw = files.read(path) if path in files else None
                if raw is not None:
                    texts.append((path, raw.decode("utf-8", errors="replace")))
            if not texts:
                continue  # not there at this commit: it builds nothing here
            try:
                targets = _read(texts, source, environ)
            except BakeError as exc:
                errors.append(SpecError(exc.message, where=Location(exc.file, exc.line or 1, 1)))
                continue
            except HclError as exc:  # met outside a block (cannot say which file better)
                errors.append(SpecError(exc.message, where=Location(texts[0][0], exc.line or 1, 1)))
                continue
            names = {t.name: _image(t) for t in targets}
            for t in targets:
                made = _rule(t, names, errors)
                if made is not None:
                    images.append(made)
    return images, errors


# Parsing is most of the cost (a pure-Python LALR parser): base and head mostly hold the
# same files, so each definition is read once per process, and kept between runs.
_READ: LRUCache[str, tuple[BakeTarget, ...]] = LRUCache(maxsize=256)
_VARIABLE = re.compile(r'^\s*variable\s+"?([^"\s{]+)"?', re.M)


def _read(
    texts: list[tuple[str, str]], source: BakeSource, env: Mapping[str, str]
) -> list[BakeTarget]:
    """read_bake, remembered by everything its answer depends on: the texts, the entry's
    targets and variables, and the environment's value of each variable the files name."""
    names: set[str] = set()
    for path, text in texts:
        if path.endswith(".json"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                data = {}
            if isinstance(data, dict) and isinstance(data.get("variable"), dict):
                names |= set(data["variable"])
        else:
            names |= set(_VARIABLE.findall(text))
    key = hashlib.sha256(
        json.dumps(
            [texts, source.targets, source.variables, sorted((n, env.get(n)) for n in names)]
        ).encode("utf-8", "surrogateescape")
    ).hexdigest()
    hit = _READ.get(key)
    if hit is None:
        kept = memo.load("bake", key)
        if isinstance(kept, tuple) and all(isinstance(t, BakeTarget) for t in kept):
            hit = kept
        else:
            hit = tuple(
                read_bake(texts, targets=source.targets, variables=dict(source.variables), env=env)
            )
            memo.store("bake", hit, key)
        _READ[key] = hit
    return list(hit)


def _definitions(source: BakeSource, files: RepoFiles) -> list[list[str]]:
    if source.files:
        return [[posixpath.normpath(f) for f in source.files]]
    assert source.glob is not None
    rx = re.compile(_glob(source.glob))
    return [[p] for p in files.paths if rx.fullmatch(p)]


def _glob(text: str) -> str:
    """`**/` any folders, `*` and `?` within one segment."""
    out = []
    for i, part in enumerate(text.split("**/")):
        if i:
            out.append("(?:[^/]+/)*")
        out.append(
            "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in part)
        )
    return "".join(out)


def _image(t: BakeTarget) -> str:
    return t.tags[0] if t.tags else t.name


def _rule(t: BakeTarget, names: Mapping[str, str], errors: list[SpecError]) -> BakeImage | None:
    where = Location(t.file, t.line or 1, 1)

    def refuse(message: str) -> None:
        errors.append(SpecError(f"target '{t.name}': {message}", where=where, layer=_image(t)))

    if _REMOTE.match(t.context):
        refuse(f"its context '{t.context}' is remote: ci-layers plans repository contexts only")
        return None
    context = posixpath.normpath(t.context.lstrip("/") or ".")
    if context.split("/")[0] == "..":
        refuse(f"its context '{t.context}' is outside the repository")
        return None
    if t.dockerfile_inline is not None:
        path = t.file
    else:
        path = posixpath.normpath(posixpath.join(context, t.dockerfile.lstrip("/")))
        if path.split("/")[0] == "..":
            refuse(f"its dockerfile '{t.dockerfile}' is outside the repository")
            return None
    platforms = []
    for p in t.platforms:
        try:
            platforms.append(parse_platform(p))
        except PlatformError as exc:
            refuse(str(exc))
            return None
    contexts = []
    for name, value in t.contexts:
        if not value.startswith(("target:", "docker-image://")) and (
            "://" in value or value.startswith("git@")
        ):
            refuse(
                f"its context {name} = '{value}' is not in the repository: ci-layers plans "
                "target:, docker-image:// and repository folders only"
            )
            return None
        if value.startswith("target:"):
            other = value.removeprefix("target:")
            value = f"target:{names.get(other, other)}"  # the image it names
        contexts.append((name, value))
    rule = DockerfileRule(
        path=path,
        image=_image(t),
        context=context,
        build_args=t.args,
        tags=t.tags,
        target=t.target,
        platforms=tuple(dict.fromkeys(platforms)),
        where=where,
        inline=t.dockerfile_inline,
        contexts=tuple(contexts),
        labels=t.labels,
        bake_target=t.name,
    )
    return BakeImage(_image(t), path, rule, t.name)
