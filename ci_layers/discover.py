"""Find the Dockerfiles a spec's `dockerfiles:` rules name, and make them layers.

A rule's `path` has `{placeholders}` (one path segment each) and may use `*` and `?`
within a segment; the most specific rule wins a file (most literal characters, then
fewest placeholders, then the first listed). Each Dockerfile becomes an ImageLayer whose
dependencies are the in-repo images it is built on or copies from: a reference matches
an image by repository path and tag (implicit `latest`), with or without a registry
host, ignoring a digest pin. Two hosts that are both written must agree (`docker.io` and
`index.docker.io` are one), and an image is never its own base: the mirror of `ubuntu`
built `FROM ubuntu` is built on Docker Hub's.
"""

from __future__ import annotations

import graphlib
import hashlib
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from cachetools import LRUCache

from . import memo
from .dockerfile import (
    BaseImage,
    DockerfileError,
    ParsedDockerfile,
    parse_dockerfile,
    valid_reference,
)
from .dockerignore import DockerIgnore, DockerignoreError, read_dockerignore
from .errors import Location, SpecError, SpecInvalid
from .graph import DockerfileNode, ImageLayer, LayerGraph, find_cycles
from .platforms import DEFAULT_PLATFORM, PlatformError, node_name, parse_platform, platform_args
from .refs import context_name, image_key, pushed_twice
from .repo import GITLINK, RepoFiles
from .sources import follow_symlinks, literal_pattern, resolve_path
from .spec import (
    PATH_PLACEHOLDER,
    PLACEHOLDER,
    DockerfileRule,
    Spec,
    declared_platforms,
    platform_node,
)

__all__ = ["InRepoImages", "resolve_dockerfiles"]


class InRepoImages:
    """The images the repository builds, by every name and tag they are pushed as."""

    def __init__(self) -> None:
        self._by_path: dict[tuple[str, str], list[tuple[str | None, str]]] = {}

    def add(self, ref: str, image: str) -> None:
        """Add a name or tag `ref` of `image`; names first, as the first added wins a tie."""
        host, path, tag = image_key(ref)
        self._by_path.setdefault((path, tag), []).append((host, image))

    def find(self, ref: str, *, user: str) -> str | None:
        """The in-repo image `ref` names for a build of image `user`, if any: an exact
        host first, then one where a host is not written; never `user` itself."""
        host, path, tag = image_key(ref)
        found = [
            (h != host, i, image)
            for i, (h, image) in enumerate(self._by_path.get((path, tag), ()))
            if (h is None or host is None or h == host) and image != user
        ]
        return min(found)[2] if found else None


class _Segments:
    """A rule path matched segment by segment, remembering what failed: `**/` and
    {name**} try their longest span first, as the regex did, but no split is tried twice,
    so `**/**/**/…/Dockerfile` or `{a**}/{b**}/…` cost segments x parts, not a power of
    the depth (issue 12, case 3b)."""

    def __init__(self, parts: list[tuple[str, str, re.Pattern[str] | None]]) -> None:
        self.parts = parts  # (kind: any | wide | one, placeholder name, segment regex)

    def fullmatch(self, path: str) -> _Match | None:
        name_rx = self.parts[-1][2] if self.parts else None
        # the file name first: most paths end elsewhere, and cost no split at all
        if name_rx is not None and not name_rx.fullmatch(path.rpartition("/")[2]):
            return None
        segs = path.split("/")
        failed: set[tuple[int, int]] = set()

        def go(t: int, s: int) -> dict[str, str] | None:
            if (t, s) in failed:
                return None
            if t == len(self.parts):
                found: dict[str, str] | None = {} if s == len(segs) else None
            else:
                kind, name, rx = self.parts[t]
                found = None
                if kind in ("any", "wide"):
                    low = s if kind == "any" else s + 1
                    for k in range(len(segs), low - 1, -1):
                        if (rest := go(t + 1, k)) is not None:
                            found = {**rest, name: "/".join(segs[s:k])} if name else rest
                            break
                elif (
                    s < len(segs)
                    and rx is not None
                    and (m := rx.fullmatch(segs[s]))
                    and (rest := go(t + 1, s + 1)) is not None
                ):
                    found = {**m.groupdict(), **rest}
            if found is None:
                failed.add((t, s))
            return found

        values = go(0, 0)
        return None if values is None else _Match(values)


class _Match:
    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    def groupdict(self) -> dict[str, str]:
        return self._values


@dataclass(frozen=True)
class _Compiled:
    rule: DockerfileRule
    regex: re.Pattern[str] | _Segments
    literal: int
    wide: int  # `**/` and {name**}: parts that match any number of folders
    placeholders: int
    index: int

    @property
    def specificity(self) -> tuple[int, int, int, int]:
        return (self.literal, -self.wide, -self.placeholders, -self.index)


def _compile(rule: DockerfileRule, index: int) -> _Compiled:
    out, pos, literal = [], 0, 0
    text = rule.path

    def literal_chars(part: str) -> int:
        return len(part.replace("**/", "").replace("*", "").replace("?", ""))

    for m in PATH_PLACEHOLDER.finditer(text):
        out.append(_glob(text[pos : m.start()]))
        literal += literal_chars(text[pos : m.start()])
        segments = "[^/]+(?:/[^/]+)*" if m.group(2) else "[^/]+"  # {name**}: one or more
        out.append(f"(?P<{m.group(1)}>{segments})")
        pos = m.end()
    out.append(_glob(text[pos:]))
    literal += literal_chars(text[pos:])
    found = list(PATH_PLACEHOLDER.finditer(text))
    wide = text.count("**/") + sum(1 for m in found if m.group(2))
    matcher = _segments(text) or re.compile("".join(out))
    return _Compiled(rule, matcher, literal, wide, len(found), index)


_WIDE_SEGMENT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\*\*\}")


def _segments(text: str) -> _Segments | None:
    """The segment matcher for `text`, when its `**/` and {name**} are whole segments
    (else the regex, which reads them inside a segment too)."""
    parts: list[tuple[str, str, re.Pattern[str] | None]] = []
    segments = text.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "**" and not last:
            if not (parts and parts[-1][0] == "any"):  # `**/**/` is `**/`
                parts.append(("any", "", None))
        elif m := _WIDE_SEGMENT.fullmatch(seg):
            parts.append(("wide", m.group(1), None))
        elif "**/" in seg + ("" if last else "/") or _WIDE_SEGMENT.search(seg):
            return None
        else:
            out, pos = [], 0
            for p in PATH_PLACEHOLDER.finditer(seg):
                out.append(_glob(seg[pos : p.start()]))
                out.append(f"(?P<{p.group(1)}>[^/]+)")
                pos = p.end()
            out.append(_glob(seg[pos:]))
            parts.append(("one", "", re.compile("".join(out))))
    return _Segments(parts)


def _glob(text: str) -> str:
    """`**/` is any number of folders, `*` and `?` stay within one segment."""
    parts = [re.sub(r"\*+", "*", part) for part in text.split("**/")]  # `**` is `*` here
    return "(?:[^/]+/)*".join(
        "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in part)
        for part in parts
    )


def _fill(template: str, values: Mapping[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _fill_glob(template: str, values: Mapping[str, str]) -> str:
    """A glob template filled with values taken literally (a folder `v[12]` is no class)."""
    return _fill(template, {k: literal_pattern(v) for k, v in values.items()})


def _candidates(files: RepoFiles, templates: list[str]) -> list[str]:
    """The paths that rule path templates may match, sorted: those below the folders
    the templates start with (a lazily read tree reads only those; lazytree.py)."""
    if not templates:
        return []
    tops = {_literal_folder(t) for t in templates}
    if "" in tops:
        return files.paths
    tops = {t for t in tops if not any(t != o and t.startswith(o) for o in tops)}
    if len(tops) == 1:
        return list(files.under(tops.pop()))
    return sorted({p for top in tops for p in files.under(top)})


def _literal_folder(template: str) -> str:
    """`images/` for `images/{name}/Dockerfile`: the leading folders free of
    placeholders and wildcards, with their slash ("" where there are none)."""
    parts = template.split("/")[:-1]
    kept = []
    for part in parts:
        if "{" in part or "*" in part or "?" in part or part in ("", ".", ".."):
            break
        kept.append(part)
    return "".join(p + "/" for p in kept)


def resolve_dockerfiles(spec: Spec, files: RepoFiles) -> Spec:
    """`spec` with a layer for every Dockerfile its rules find in `files`."""
    if not spec.dockerfile_rules and not spec.bake:
        return spec
    # A spec resolved before (over another snapshot) starts again from its own layers.
    own = {n: layer for n, layer in spec.layers.items() if layer.dockerfile is None}
    compiled = [_compile(r, i) for i, r in enumerate(spec.dockerfile_rules)]
    found: dict[str, tuple[_Compiled, dict[str, str]]] = {}
    candidates = _candidates(files, [r.path for r in spec.dockerfile_rules])
    for path in candidates:
        best = None
        for c in compiled:
            m = c.regex.fullmatch(path)
            if m and (best is None or c.specificity > best[0].specificity):
                best = (c, m.groupdict())
        if best is not None:
            found[path] = best
    files.prefetch([*found, *(p for p in candidates if p.endswith(".dockerignore"))])
    errors: list[SpecError] = []
    nodes: dict[str, tuple[str, DockerfileRule, dict[str, str]]] = {}
    for path, (c, values) in found.items():
        image = _fill(c.rule.image, values)
        override = spec.image_overrides.get(image)
        if image in nodes:
            errors.append(
                SpecError(
                    f"{path} and {nodes[image][0]} both build image '{image}'; make the "
                    "rule's image template tell them apart",
                    where=c.rule.where or Location(spec.path),
                )
            )
            continue
        if image in own:
            errors.append(
                SpecError(
                    f"{path} builds '{image}', also a layer of the spec",
                    where=c.rule.where or Location(spec.path),
                )
            )
            continue
        rule = c.rule if override is None else _merge(c.rule, override)
        nodes[image] = (path, rule, values)
    baked, problems = _bake_images(spec, files) if spec.bake else ([], [])
    errors += problems
    for b in baked:  # a bake target: an image of its own, as a rule's is
        if b.image in nodes or b.image in own:
            other = nodes[b.image][0] if b.image in nodes else "a layer of the spec"
            errors.append(
                SpecError(
                    f"bake target '{b.target}' builds image '{b.image}', which {other} builds too",
                    where=b.rule.where or Location(spec.path),
                )
            )
            continue
        override = spec.image_overrides.get(b.image)
        rule = b.rule if override is None else _merge(b.rule, override)
        nodes[b.image] = (b.path, rule, {})
    files.prefetch([b.path for b in baked if b.rule.inline is None])
    by_key = InRepoImages()
    for name, (_path, rule, _values) in nodes.items():
        if rule.bake_target is None or rule.tags:  # an untagged target has no reference
            by_key.add(name, name)
    for name, (_path, rule, values) in nodes.items():
        for tag in _tags(rule, values):
            by_key.add(tag, name)
    errors += _pushed_twice(nodes, spec)
    for published in spec.images.values():  # a spec layer pushed by an `images:` entry
        for tag in published.tags:
            by_key.add(tag, published.layer)
    declared = declared_platforms(own)
    for image, (_path, rule, _values) in nodes.items():
        declared[image] = rule.platforms or spec.platforms
    builds = {  # graph node -> (image, platform); one node per platform where declared
        node_name(image, p, len(declared[image])) if p else image: (image, p)
        for image in nodes
        for p in declared[image] or (None,)
    }
    seen = _Seen(by_key, declared, nodes)
    layers = dict(own)
    for name, build in builds.items():
        layer = _layer(name, build, files, seen, errors, inherited=())
        if layer is not None:
            layers[name] = layer
    _inherit(layers, builds, files, seen, errors)
    unused = sorted(set(spec.image_overrides) - set(nodes))
    warnings = [
        SpecError(message, where=Location(node.file, line, 1), layer=name, severity="warning")
        for name, layer in layers.items()
        if (node := layer.dockerfile) is not None and layer.origin == name
        for line, message in node.warnings
    ]
    said: dict[tuple[str, str, int, str], None] = {}  # several platforms: said once
    for layer in layers.values():
        if (node := layer.dockerfile) is not None and layer.origin != layer.name:
            said.update(dict.fromkeys((layer.origin, node.file, *w) for w in node.warnings))
    warnings += [
        SpecError(message, where=Location(file, line, 1), layer=image, severity="warning")
        for image, file, line, message in said
    ]
    warnings += [
        SpecError(
            f"image '{name}' is not a valid image reference (Docker wants lower-case "
            "letters, digits and . _ - in each path part); change the rule's image template",
            where=Location(path),
            layer=name,
            severity="warning",
        )
        for name, (path, _rule, _values) in nodes.items()
        if not valid_reference(name)
    ]
    warnings += [
        SpecError(
            f"image_overrides names '{name}', which no Dockerfile builds",
            where=spec.image_overrides[name].where or Location(spec.path),
            severity="warning",
        )
        for name in unused
    ]
    deps = {n: layer.dependencies for n, layer in layers.items()}
    for cycle in find_cycles(deps):
        errors.append(
            SpecError(
                "dependency cycle: " + " -> ".join(cycle),
                where=Location(nodes[builds[cycle[0]][0]][0] if cycle[0] in builds else spec.path),
                layer=cycle[0],
            )
        )
    _keep_parses()
    if errors:  # a parent's args file is read again for each child: say it once
        raise SpecInvalid(list({str(e): e for e in errors}.values()))
    return replace(
        spec,
        layers=layers,
        graph=LayerGraph.from_layers(layers.values()),
        warnings=(*spec.warnings, *warnings),
    )


def _pushed_twice(
    nodes: Mapping[str, tuple[str, DockerfileRule, dict[str, str]]], spec: Spec
) -> list[SpecError]:
    """Two images pushing one reference (`x` and `docker.io/library/x:latest`, or a tag
    that is another image's name): whichever is pushed last would win."""
    pushes = [
        (name, ref)
        for name, (_path, rule, values) in nodes.items()
        for ref in dict.fromkeys([name, *_tags(rule, values)])
    ]
    errors = []
    for i, other in pushed_twice(pushes):
        name, ref = pushes[i]
        path, rule, _values = nodes[name]
        errors.append(
            SpecError(
                f"{path} pushes '{ref}', which image '{other}' pushes too",
                where=rule.where or Location(spec.path),
                layer=name,
            )
        )
    return errors


def _merge(rule: DockerfileRule, override: DockerfileRule) -> DockerfileRule:
    return replace(
        rule,
        context=override.context or rule.context,
        build_args=(*rule.build_args, *override.build_args),
        tags=(*rule.tags, *override.tags),
        target=override.target or rule.target,
        inputs=(*rule.inputs, *override.inputs),
        build_args_file=override.build_args_file or rule.build_args_file,
        platforms=override.platforms or rule.platforms,
    )


def _tags(rule: DockerfileRule, values: Mapping[str, str]) -> list[str]:
    return [_fill(t, values) for t in rule.tags]


@dataclass(frozen=True)
class _Seen:
    """What every image's build looks up: in-repo images by reference, each layer's or
    image's platforms, and the Dockerfiles found (image -> path, rule, values)."""

    by_key: InRepoImages
    declared: Mapping[str, tuple[str, ...]]
    nodes: Mapping[str, tuple[str, DockerfileRule, dict[str, str]]]


def _layer(
    name: str,
    build: tuple[str, str | None],
    files: RepoFiles,
    seen: _Seen,
    errors: list[SpecError],
    *,
    inherited: tuple[tuple[str, BaseImage], ...],
) -> ImageLayer | None:
    image, platform = build
    path, rule, values = seen.nodes[image]
    if rule.inline is not None:  # a bake target's dockerfile-inline
        raw: bytes | None = rule.inline.encode("utf-8", errors="surrogateescape")
    else:
        real = follow_symlinks(files, path)  # a symlinked Dockerfile is read through the link
        raw = files.read(real) if real else None
    if raw is None:  # a bake target says so where the target is written
        baked = rule.bake_target is not None
        errors.append(
            SpecError(
                f"bake target '{rule.bake_target}': its Dockerfile {path} does not exist"
                if baked
                else "cannot read the Dockerfile",
                where=(rule.where if baked else None) or Location(path),
                layer=name,
            )
        )
        return None
    written = _fill(rule.context, values) if rule.context else posixpath.dirname(path)
    context = posixpath.normpath("/" + written).lstrip("/")  # `/images/x` is the repo's
    if written.startswith("..") or posixpath.normpath(written).startswith(".."):
        errors.append(
            SpecError(
                f"build context '{written}' is outside the repository",
                where=rule.where or Location(path),
                layer=name,
            )
        )
        return None
    context = follow_symlinks(files, context) or context  # Docker follows a linked context
    if (
        context
        and context not in files.trees
        and not files.entries.get(context, "").startswith(GITLINK)
    ):
        errors.append(
            SpecError(
                f"build context '{written}' is not a folder of the repository",
                where=rule.where or Location(path),
                layer=name,
            )
        )
        return None
    inputs = tuple(_fill_glob(p, values) for p in rule.inputs)
    args: dict[str, str] = {}
    if rule.build_args_file:
        args_file = _args_file(_fill(rule.build_args_file, values), rule, files, errors, name)
        if args_file is None:
            return None
        args, read = args_file
        inputs += (read,)
    args.update((k, _fill(v, values)) for k, v in rule.build_args)  # the rule's win
    try:
        text = raw.decode("utf-8", errors="surrogateescape")  # BuildKit reads bytes
        # BuildKit's platform args are this platform's; the rule's args may set them
        seen_args = {**platform_args(platform), **args} if platform else args
        parsed = _parse(text, tuple(sorted(seen_args.items())), inherited, rule.target)
    except DockerfileError as exc:
        errors.append(SpecError(str(exc), where=Location(path, exc.line, 1), layer=name))
        return None
    named = _named_contexts(rule, parsed.bases)
    origins = {
        b: named.linked.get(b) or seen.by_key.find(named.alias.get(b, b), user=image)
        for b in parsed.bases
        if b not in named.local
    }
    inputs += tuple(named.local.values())
    built = platform or DEFAULT_PLATFORM
    found: dict[str, str | None] = dict.fromkeys(origins)
    deps: list[str] = []
    parent = None
    uses = [*parsed.base_platforms, (parsed.final_base or "", parsed.final_platform)]
    for i, (ref, asked) in enumerate(uses):  # each in-repo image's build for the platform
        origin = origins.get(ref)
        if origin is None:
            continue
        wanted = _asked(asked, built)
        built_on = platform_node(origin, wanted, seen.declared)
        if built_on is None:
            has = ", ".join(seen.declared.get(origin, ())) or DEFAULT_PLATFORM
            errors.append(
                SpecError(
                    f"'{image}' is built for {built} on '{ref}'"
                    + (f" (FROM --platform={wanted})" if wanted != built else "")
                    + f", but '{origin}' is not built for {wanted} (it is built for {has}): "
                    f"add {wanted} to its platforms",
                    where=rule.where or Location(path),
                    layer=name,
                )
            )
            return None
        if i == len(uses) - 1:
            parent = built_on
        else:
            deps.append(built_on)
            if found[ref] is None or wanted == built:  # a build context names one build:
                found[ref] = built_on  # the build's own platform's, where it is used so
    deps = list(dict.fromkeys(deps))
    externals = tuple(named.alias.get(b, b) for b, d in found.items() if d is None)
    ignore_file = _ignore_file(path, context, files)
    ignore: tuple[str, ...] = ()
    if ignore_file is not None:
        text = (files.read(ignore_file) or b"").decode("utf-8", errors="surrogateescape")
        ignore = tuple(read_dockerignore(text))
        try:
            DockerIgnore(list(ignore))
        except DockerignoreError as exc:
            errors.append(SpecError(str(exc), where=Location(ignore_file), layer=name))
            return None
    node = DockerfileNode(
        file=path,
        context=context,
        instructions=tuple((i.line, i.text, i.heredocs) for i in parsed.instructions),
        reads=tuple((r.line, r.text, r.sources, r.exclude) for r in parsed.reads),
        ignore_file=ignore_file,
        ignore=ignore,
        externals=externals,
        notes=tuple(f"{path}:{n.removeprefix('line ')}" for n in parsed.notes),
        tags=tuple(_tags(rule, values)),
        bases=tuple((b, d) for b, d in found.items() if d is not None),
        base_args=parsed.base_args,
        env=parsed.final_env,
        onbuild=parsed.final_onbuild,
        warnings=parsed.warnings,
        target=rule.target,
        declared=parsed.declared,
        contexts=rule.contexts,
        inline=rule.inline,
        local=rule.bake_target is not None and not rule.tags,
    )
    return ImageLayer(
        name=name,
        parent=parent,
        base=None if parent else (parsed.final_base or "scratch"),
        build_args=tuple(sorted(args.items())),
        labels=rule.labels,
        inputs=inputs,
        needs=tuple(d for d in deps if d != parent),
        dockerfile=node,
        where=Location(path, 1, 1),
        platform=platform,
        image=image if image != name else None,
    )


def _bake_images(spec: Spec, files: RepoFiles) -> tuple[list[Any], list[SpecError]]:
    """The spec's bake targets; the HCL parser loads only for a spec that has some."""
    from .bakerules import bake_images

    return bake_images(spec, files)


@dataclass(frozen=True)
class _Named:
    """What a bake target's named contexts make of the images its Dockerfile names."""

    linked: dict[str, str]  # reference as written -> in-repo image (`target:`)
    alias: dict[str, str]  # reference as written -> the reference it is (`docker-image://`)
    local: dict[str, str]  # reference as written -> input pattern of a repository folder


def _named_contexts(rule: DockerfileRule, bases: tuple[str, ...]) -> _Named:
    named = _Named({}, {}, {})
    if not rule.contexts:
        return named
    by_name = {context_name(k): v for k, v in rule.contexts}
    for b in bases:
        value = dict(rule.contexts).get(b) or by_name.get(context_name(b))
        if value is None:
            continue
        if value.startswith("target:"):
            named.linked[b] = value.removeprefix("target:")
        elif value.startswith("docker-image://"):
            named.alias[b] = value.removeprefix("docker-image://")
        elif "://" not in value and not value.startswith("git@"):
            folder = posixpath.normpath(value.lstrip("/"))
            named.local[b] = "/" + literal_pattern(folder) + "/**"
    return named


def _asked(asked: str, built: str) -> str:
    """The platform a `FROM --platform=` asks for (normalised), else the build's own: a
    value that is no platform (a build arg unset here) is the build's own too."""
    if not asked:
        return built
    try:
        return parse_platform(asked)
    except PlatformError:
        return built


def _args_file(
    written: str,
    rule: DockerfileRule,
    files: RepoFiles,
    errors: list[SpecError],
    name: str,
) -> tuple[dict[str, str], str] | None:
    """A rule's `build_args_file`: its build args and the input pattern naming it. A
    missing file gives none (adding it later rebuilds the image: it is an input)."""
    path = posixpath.normpath("/" + written).lstrip("/")
    where = rule.where or Location(path)

    def refuse(why: str) -> None:
        errors.append(SpecError(f"build_args_file '{written}' {why}", where=where, layer=name))

    if posixpath.normpath(written.lstrip("/")).split("/")[0] == "..":
        refuse("is outside the repository")
        return None
    pattern = "/" + literal_pattern(path)  # the file itself, literally
    real = resolve_path(files, path)  # links on the way followed, as a checkout has them
    if real is None:
        refuse("leads outside the repository through a link, or its links loop")
        return None
    if files.gitlink_above(real) is not None:
        refuse("lies in a submodule, whose files this repository's tree does not list")
        return None
    if real not in files:
        return {}, pattern  # no file yet: no args, and creating it rebuilds the image
    try:
        text = (files.read(real) or b"").decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        refuse("is not UTF-8 (Docker refuses such a file too)")
        return None
    args: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), 1):  # on \n only, as Docker splits
        line = line.removesuffix("\r").lstrip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        at = Location(path, number, 1)
        if not eq:
            errors.append(
                SpecError(f"'{key}' has no value: write {key}=value", where=at, layer=name)
            )
        elif not key or any(c.isspace() for c in key):
            errors.append(
                SpecError(
                    f"'{key}' is no variable name: write KEY=value with no spaces around "
                    "= (make reads that too)",
                    where=at,
                    layer=name,
                )
            )
        else:
            args[key] = value  # as Docker reads it: the rest of the line, quotes and all
    return args, pattern


# Base and head mostly hold the same Dockerfiles: each text is parsed once per process
# and, across runs, kept on disk (memo.py) with the other parses of the last plan.
_ParseKey = tuple[str, tuple[tuple[str, str], ...], tuple[tuple[str, BaseImage], ...], str | None]
_PARSED: LRUCache[_ParseKey, ParsedDockerfile] = LRUCache(maxsize=8192)
_KEPT: list[dict[_ParseKey, ParsedDockerfile]] = []  # what the last run kept, once loaded
_MISSED: list[bool] = [False]


def _parse(
    text: str,
    args: tuple[tuple[str, str], ...],
    inherited: tuple[tuple[str, BaseImage], ...],
    target: str | None,
) -> ParsedDockerfile:
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
    key: _ParseKey = (digest, args, inherited, target)
    hit = _PARSED.get(key)
    if hit is None:
        if not _KEPT:
            kept = memo.load("dockerfiles", "parses")
            _KEPT.append(kept if isinstance(kept, dict) else {})
        hit = _KEPT[0].get(key)
        if not isinstance(hit, ParsedDockerfile):
            hit = parse_dockerfile(
                text, build_args=dict(args), base_image=dict(inherited).get, target=target
            )
            _MISSED[0] = True
        _PARSED[key] = hit
    return hit


def _keep_parses() -> None:
    """Keep this process's parses for the next run, when any was new."""
    if _MISSED[0]:
        memo.store("dockerfiles", dict(_PARSED.items()), "parses")
        _MISSED[0] = False


def _inherit(
    layers: dict[str, ImageLayer],
    nodes: Mapping[str, tuple[str, str | None]],
    files: RepoFiles,
    seen: _Seen,
    errors: list[SpecError],
) -> None:
    """Parse again, parents first, the Dockerfiles built on in-repo images now known:
    BuildKit expands a child's instructions with its base image's ENV and runs the base's
    ONBUILD triggers in the child's build, on the child's context."""
    deps = {n: [d for d in layers[n].dependencies if d in nodes] for n in nodes if n in layers}
    try:
        order = list(graphlib.TopologicalSorter(deps).static_order())
    except graphlib.CycleError:
        return  # reported as a cycle by the caller
    for name in order:
        node = layers[name].dockerfile if name in layers else None
        if node is None or not node.bases:
            continue
        inherited = tuple(
            (ref, BaseImage(parent.env, parent.onbuild))
            for ref, dep in node.bases
            if dep in layers
            and (parent := layers[dep].dockerfile) is not None
            and (parent.env or parent.onbuild)
        )
        if not inherited:
            continue
        again = _layer(name, nodes[name], files, seen, errors, inherited=inherited)
        if again is not None:
            layers[name] = again


def _ignore_file(path: str, context: str, files: RepoFiles) -> str | None:
    """BuildKit prefers <Dockerfile>.dockerignore next to the Dockerfile."""
    own = f"{path}.dockerignore"
    if own in files:
        return own
    shared = f"{context}/.dockerignore" if context else ".dockerignore"
    return shared if shared in files else None
