"""Load and validate `ci-layers.yaml` into frozen definitions and a LayerGraph.

Every problem is reported with file:line:col and the layer it concerns, all of them in
one run: YAML syntax, the shipped JSON Schema (unknown keys with a "did you mean", wrong
types), then what a schema cannot say (unknown parents, cycles, escaping paths).
"""

from __future__ import annotations

import bisect
import difflib
import hashlib
import json
import os
import posixpath
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema
import pathspec
from cachetools import LRUCache, cached

from . import memo
from .errors import Location, SpecError, SpecInvalid
from .gcpause import paused_gc
from .gomatch import GLOB_CHARS, compile_segments
from .graph import CopySpec, ImageLayer, LayerGraph, find_cycles
from .pickling import slotted_reduce
from .platforms import DEFAULT_PLATFORM, PlatformError, node_name, parse_platform
from .refs import pushed_as, pushed_twice
from .yamlpos import Map, Seq, load_located, location

__all__ = [
    "DEFAULT_SPEC",
    "BakeSource",
    "DockerfileRule",
    "PublishedImage",
    "Spec",
    "built_for",
    "declared_platforms",
    "load_spec",
    "parse_duration",
    "parse_spec",
    "platform_node",
    "schema",
]

DEFAULT_SPEC = "ci-layers.yaml"
# What `docker buildx bake` reads with no -f (compose files aside), in its order: the spec
# when there is no ci-layers.yaml.
DEFAULT_BAKE_FILES = (
    "docker-bake.json",
    "docker-bake.hcl",
    "docker-bake.override.json",
    "docker-bake.override.hcl",
)
_SHELL = ("/bin/sh", "-c")


@dataclass(frozen=True, slots=True)
class PublishedImage:
    __reduce__ = slotted_reduce

    name: str
    layer: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BakeSource:
    """A `bake:` entry: bake files read as one definition (`files`), or each file a glob
    matches as a definition of its own."""

    __reduce__ = slotted_reduce

    files: tuple[str, ...] = ()
    glob: str | None = None
    targets: tuple[str, ...] = ()
    variables: tuple[tuple[str, str], ...] = ()
    where: Location | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class DockerfileRule:
    """A `dockerfiles:` entry (or an `image_overrides:` one, with path and image empty)."""

    __reduce__ = slotted_reduce

    path: str
    image: str
    context: str | None = None
    build_args: tuple[tuple[str, str], ...] = ()
    tags: tuple[str, ...] = ()
    target: str | None = None  # the stage built; None: the last
    inputs: tuple[str, ...] = ()  # globs of files outside the context its build reads
    build_args_file: str | None = None  # KEY=value lines, an input too
    platforms: tuple[str, ...] = ()  # normalised; () inherits (the spec's, else the default)
    where: Location | None = field(default=None, compare=False)
    # a bake target's: its Dockerfile's text, its named contexts, its labels
    inline: str | None = None
    contexts: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    bake_target: str | None = None  # the bake target it is, if one


@dataclass(frozen=True)
class Spec:
    """A validated spec: definitions, the graph they form, and non-fatal warnings."""

    path: str
    layers: Mapping[str, ImageLayer]
    images: Mapping[str, PublishedImage]
    global_inputs: tuple[str, ...]
    graph: LayerGraph
    warnings: tuple[SpecError, ...] = field(default=())
    dockerfile_rules: tuple[DockerfileRule, ...] = ()
    image_overrides: Mapping[str, DockerfileRule] = field(default_factory=dict)
    platforms: tuple[str, ...] = ()  # the spec-wide default of `platforms:`
    bake: tuple[BakeSource, ...] = ()

    def layer_named(self, name: str) -> str | None:
        """The layer a name on the command line means: a layer, an `images:` entry (its
        top layer), or a tag of one (a Dockerfile image's too), however it is spelled."""
        if name in self.layers:
            return name
        if name in self.images:
            return self.images[name].layer
        want = pushed_as(name)
        for image in self.images.values():
            if any(pushed_as(t) == want for t in image.tags):
                return image.layer
        for layer in self.layers.values():
            if layer.dockerfile and any(pushed_as(t) == want for t in layer.dockerfile.tags):
                return layer.name
        return None

    def image_named(self, name: str) -> str:
        """What an image command (export, squash, push, pull) takes for a name: an
        `images:` entry is its first tag, or its top layer when it has none."""
        image = self.images.get(name)
        if image is None or name in self.layers:
            return name
        return image.tags[0] if image.tags else image.layer


@cache
def _fast_validator() -> Any:
    # A compiled validator answers "valid?" ~40x faster than jsonschema on big specs;
    # jsonschema then runs only on an invalid spec, to report every problem.
    return fastjsonschema.compile(schema())


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of the spec, as shipped in the package."""
    text = resources.files("ci_layers").joinpath("schema/ci-layers.schema.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


def load_spec(path: str | Path, *, display: str | None = None) -> Spec:
    """Read and validate the spec at `path`; `display` is the name used in messages."""
    shown = display or str(path)
    try:
        text = _read_regular(Path(path), shown)
    except FileNotFoundError:
        raise SpecInvalid(
            [
                SpecError(
                    f"spec file not found: there is no {Path(path).resolve()}; create it "
                    "(`ci-layers schema` describes it) or pass --spec PATH",
                    where=Location(shown),
                )
            ]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecInvalid([SpecError(f"cannot read spec: {exc}", where=Location(shown))]) from None
    return parse_spec(text, filename=shown)


MAX_SPEC_BYTES = 64 << 20


def _read_regular(path: Path, shown: str) -> str:
    """A spec is a regular file of sane size: /dev/zero would be read for ever, a FIFO
    would block (issue 12, case 8)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise SpecInvalid(
            [SpecError("the spec must be a regular file (this is not)", where=Location(shown))]
        )
    with os.fdopen(fd, "rb") as f:
        if st.st_size > MAX_SPEC_BYTES:
            raise SpecInvalid(
                [
                    SpecError(
                        f"the spec is {st.st_size} bytes; at most {MAX_SPEC_BYTES} are read",
                        where=Location(shown),
                    )
                ]
            )
        return f.read(MAX_SPEC_BYTES + 1).decode("utf-8")


def parse_spec(text: str, *, filename: str = DEFAULT_SPEC) -> Spec:
    """Validate spec text; raise SpecInvalid listing every problem found."""
    return _parse_cached(text, filename)


# A plan reads the spec on disk, at head and at base: usually one text. Specs are
# immutable, so the same text gives back the same Spec; failures are not kept.
# Across runs, a parse is kept on disk by the text's digest (memo.py).
@cached(LRUCache(maxsize=8))
def _parse_cached(text: str, filename: str) -> Spec:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    with paused_gc():
        kept = memo.load("spec", digest, filename)
        if isinstance(kept, Spec):
            return kept
        spec = _parse(text, filename)
    memo.store("spec", spec, digest, filename)
    return spec


def _parse(text: str, filename: str) -> Spec:
    data, problems = load_located(text, filename)
    if data is None:
        empty = SpecError("spec is empty", where=Location(filename, 1, 1))
        raise SpecInvalid(problems or [empty])
    checker = _Checker(data, filename)
    checker.errors.extend(problems)  # duplicate keys: the first definition is checked on
    checker.check_schema()
    if not isinstance(data, dict):
        raise SpecInvalid(checker.errors, checker.warnings)
    if "layers" not in data and "dockerfiles" not in data and "bake" not in data:
        checker.error("the spec needs 'layers', 'dockerfiles' or 'bake'", ())
    if not isinstance(data.get("layers", {}), dict):
        raise SpecInvalid(checker.errors, checker.warnings)
    data.setdefault("layers", Map())
    default_platforms = checker.platforms(data, ())
    layers = checker.build_layers()
    rules, overrides = checker.build_dockerfile_rules()
    bake = checker.build_bake()
    images = checker.build_images(layers)
    layers = checker.expand_platforms(layers, default_platforms)
    raw_globals = data.get("global_inputs")
    global_inputs = _as_tuple(raw_globals) if _is_strs(raw_globals) else ()
    checker.check_globs(global_inputs, ("global_inputs",), layer=None)
    if checker.errors:
        raise SpecInvalid(checker.errors, checker.warnings)
    graph = LayerGraph.from_layers(layers.values())
    return Spec(
        path=filename,
        layers=layers,
        images=images,
        global_inputs=global_inputs,
        graph=graph,
        warnings=tuple(checker.warnings),
        dockerfile_rules=rules,
        image_overrides=overrides,
        platforms=default_platforms,
        bake=bake,
    )


# --- checks --------------------------------------------------------------------------

_FRIENDLY = {
    "run": "a string or a list of strings",
    "entrypoint": "a string or a list of strings",
    "cmd": "a string or a list of strings",
    "src": "a path or a non-empty list of paths",
    "inputs": "a glob or a list of globs",
    "global_inputs": "a glob or a list of globs",
    "exclude": "a glob or a list of globs",
    "timeout": "a duration such as '90s', '15m' or '1h30m', or a number of seconds",
}
_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "array": "a list",
    "object": "a mapping",
    "number": "a number",
    "boolean": "true or false",
}


def _type_of(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _dotted(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# Keys people carry over from Dockerfiles, compose files and other tools.
_ALIASES = {
    "environment": "env",
    "commands": "run",
    "command": "run",
    "script": "run",
    "image": "from",
    "base": "from",
    "depends_on": "parent",
    "parents": "parent",
    "args": "build_args",
    "copies": "copy",
    "files": "copy",
    "working_dir": "workdir",
    "source": "src",
    "destination": "dest",
    "target": "dest",
    "label": "labels",
    "tag": "tags",
}


# In a rule's path, {name} matches one path segment and {name**} one or more; in its
# image, context and tags, {name} is what the path's placeholder matched.
PATH_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\*\*)?\}")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


_SUGGEST_ALL, _SUGGEST_NEAR = 300, 25


@cache
def _sorted_names(options: tuple[str, ...]) -> tuple[list[str], list[str]]:
    return sorted(options), sorted(o[::-1] for o in options)


def _around(names: list[str], word: str) -> list[str]:
    at = bisect.bisect_left(names, word)
    return names[max(0, at - _SUGGEST_NEAR) : at + _SUGGEST_NEAR]


def _suggest(word: str, choices: Iterable[str]) -> str:
    """The closest valid choice, also through a typo of a synonym ("comands" -> "run")."""
    options = [str(c) for c in choices]
    norm = word.lower().replace("-", "_")
    candidates = {o: o for o in options}
    candidates.update((a, t) for a, t in _ALIASES.items() if t in options)
    if len(options) > _SUGGEST_ALL:
        # Bounded work per error: the names next to it in sorted order (3,000 unknown
        # parents against 3,000 names took 20 s; issue 12, case 8d).
        names, backwards = _sorted_names(tuple(options))
        near = _around(names, word) + [n[::-1] for n in _around(backwards, word[::-1])]
        candidates = {o: o for o in near}  # sharing the start, or the end
        candidates.update((a, t) for a, t in _ALIASES.items() if t in options)
    best, score = None, 0.6
    for spelled, target in candidates.items():
        matcher = difflib.SequenceMatcher(None, norm, spelled.lower())
        if matcher.real_quick_ratio() <= score:
            continue
        ratio = matcher.ratio()
        if ratio > score and target != word:
            best, score = target, ratio
    return f" (did you mean '{best}'?)" if best else ""


_NAME_MAX = 255  # bytes in one path component (Linux)
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(value: str | int) -> int | None:
    """Seconds of `90s`, `15m`, `1h30m` or a plain number; None if it is none of these
    or not positive."""
    if isinstance(value, int):
        return value if value > 0 else None
    text = value.strip()
    if text.isdigit():
        return int(text) or None
    found = _DURATION.fullmatch(text)
    if not text or found is None:
        return None
    h, m, s = (int(g or 0) for g in found.groups())
    return h * 3600 + m * 60 + s or None


def _path_problem(path: str) -> str | None:
    """Why a path cannot exist in a Linux root, if it cannot."""
    if "\0" in path:
        return f"{path!r} contains a NUL byte"
    for part in path.split("/"):
        if len(part.encode("utf-8", "surrogateescape")) > _NAME_MAX:
            return (
                f"has a part of {len(part.encode('utf-8', 'surrogateescape'))} bytes "
                f"('{part[:20]}…'); a file name takes at most {_NAME_MAX}"
            )
    return None


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


class _Checker:
    """Collects SpecErrors against the located YAML tree."""

    def __init__(self, data: Any, filename: str) -> None:
        self.data = data
        self.filename = filename
        self.errors: list[SpecError] = []
        self.warnings: list[SpecError] = []
        self.bad_layers: set[str] = set()

    # where things are -------------------------------------------------------------

    def where(self, path: tuple[Any, ...], *, key: bool = False) -> Location:
        node, mark = self.data, getattr(self.data, "mark", None)
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, Map) and part in node:
                marks = node.key_marks if (last and key) else node.value_marks
                mark, node = marks[part], node[part]
            elif isinstance(node, Seq) and isinstance(part, int) and part < len(node):
                mark, node = node.marks[part], node[part]
            else:
                break
        return location(self.filename, mark)

    def error(self, message: str, path: tuple[Any, ...], *, key: bool = False) -> None:
        layer = path[1] if len(path) > 1 and path[0] == "layers" else None
        if layer is not None:
            self.bad_layers.add(layer)
        self.errors.append(SpecError(message, where=self.where(path, key=key), layer=layer))

    def warn(self, message: str, path: tuple[Any, ...]) -> None:
        layer = path[1] if len(path) > 1 and path[0] == "layers" else None
        self.warnings.append(
            SpecError(message, where=self.where(path), layer=layer, severity="warning")
        )

    # the schema -------------------------------------------------------------------

    def check_schema(self) -> None:
        try:
            _fast_validator()(self.data)
            return
        except fastjsonschema.JsonSchemaException:
            pass  # now find every problem, with the slower validator that reports them all
        import jsonschema  # only an invalid spec needs it; its import costs 60 ms

        validator = jsonschema.Draft7Validator(schema())
        seen: set[tuple[tuple[Any, ...], str]] = set()
        for err in validator.iter_errors(self.data):
            path = tuple(err.absolute_path)
            if (path, err.message) in seen:
                continue
            seen.add((path, err.message))
            self._schema_error(err, path)

    def _schema_error(self, err: Any, path: tuple[Any, ...]) -> None:
        kind, inst = err.validator, err.instance
        in_layer = len(path) >= 2 and path[0] == "layers"
        label = (_dotted(path[2:]) or "the layer") if in_layer else (_dotted(path) or "the spec")
        if kind == "additionalProperties" and isinstance(inst, dict):
            allowed = err.schema.get("properties", {})
            for extra in inst:
                if extra not in allowed:
                    where = "" if len(path) == 2 and in_layer else f" in {label}"
                    hint = _suggest(str(extra), allowed)
                    self.error(f"unknown key '{extra}'{where}{hint}", (*path, extra), key=True)
        elif kind == "required":
            missing = err.message.split()[0]
            allowed = err.schema.get("properties", {})
            extras = [k for k in inst if k not in allowed] if isinstance(inst, dict) else []
            if any(_suggest(str(k), allowed) == f" (did you mean {missing}?)" for k in extras):
                return  # the unknown key's "did you mean" says it already
            self.error(f"{label} is missing the required key {missing}", path)
        elif kind == "oneOf" and any(e.relative_path for e in err.context or ()):
            deepest = max(err.context or (), key=lambda e: len(e.relative_path))
            self._schema_error(deepest, tuple(deepest.absolute_path))
        elif "propertyNames" in err.schema_path:
            self.error(
                f"invalid name {inst!r}: use letters, digits and . _ + : / - "
                "(at most 200 characters)",
                (*path, inst),
                key=True,
            )
        elif kind == "const" and path == ("version",):
            self.error(f"unsupported spec version {inst!r}; this ci-layers reads version: 1", path)
        elif kind in ("type", "oneOf"):
            field_name = next((p for p in reversed(path) if isinstance(p, str)), "")
            if kind == "oneOf" or (field_name in _FRIENDLY and not isinstance(path[-1], int)):
                expected = _FRIENDLY.get(field_name, "another type")
            else:
                types = err.validator_value
                types = [types] if isinstance(types, str) else types
                expected = " or ".join(_TYPE_NAMES.get(t, t) for t in types)
            self.error(f"{label} must be {expected}, not {_type_of(inst)}", path)
        elif kind == "pattern" and path and path[-1] == "chmod":
            self.error(f"{label} must be an octal mode such as '0755', not {inst!r}", path)
        elif kind == "minLength":
            self.error(f"{label} must not be empty", path)
        else:
            self.error(f"{label}: {err.message}", path)

    # semantics --------------------------------------------------------------------

    def build_layers(self) -> dict[str, ImageLayer]:
        raw_layers: dict[str, Any] = self.data["layers"]
        layers: dict[str, ImageLayer] = {}
        deps: dict[str, list[str]] = {}
        for name, raw in raw_layers.items():
            if not isinstance(name, str) or not isinstance(raw, dict):
                continue
            if "\n" in name:
                self.error("a layer name cannot contain a line break", ("layers", name), key=True)
            layer = self._layer(name, raw, raw_layers)
            if layer is not None and name not in self.bad_layers:
                layers[name] = layer
            deps[name] = _raw_dependencies(raw)
        # Cycles are looked for among every layer, those with other errors included, so
        # that fixing the reported problems does not reveal new ones.
        for cycle in find_cycles(deps):
            self.error("dependency cycle: " + " -> ".join(cycle), ("layers", cycle[0]), key=True)
        return layers

    def _layer(
        self, name: str, raw: dict[str, Any], all_layers: dict[str, Any]
    ) -> ImageLayer | None:
        """Semantic checks; fields the schema already rejected are skipped, not re-reported."""
        at = ("layers", name)
        parent = _str_or_none(raw.get("parent"))
        base = _str_or_none(raw.get("from"))
        if "parent" in raw and "from" in raw:
            self.error(
                "has both 'parent' and 'from'; a layer is built on exactly one", at, key=True
            )
        elif "parent" not in raw and "from" not in raw:
            self.error(
                "needs 'parent' (another layer) or 'from' (a base image, or 'scratch')",
                at,
                key=True,
            )
        if parent is not None and parent != name and parent not in all_layers:
            self.error(f"unknown parent '{parent}'{_suggest(parent, all_layers)}", (*at, "parent"))
        if base is not None and base != "scratch" and not _PINNED.search(base):
            hint = f"; did you mean 'parent: {base}'?" if base in all_layers else ""
            self.warn(f"base image '{base}' is not pinned by digest{hint}", (*at, "from"))
        copies: list[CopySpec] = []
        raw_copies = raw.get("copy")
        for i, c in enumerate(raw_copies if isinstance(raw_copies, list) else []):
            if isinstance(c, dict):
                copies.append(self._copy(c, (*at, "copy", i), all_layers))
        inputs = _as_tuple(raw.get("inputs")) if _is_strs(raw.get("inputs")) else ()
        self.check_globs(inputs, (*at, "inputs"), layer=name)
        workdir = raw.get("workdir")
        if isinstance(workdir, str) and (problem := _path_problem(workdir)):
            self.error(f"workdir {problem}", (*at, "workdir"))
        for i, c in enumerate(copies):  # a name past 255 bytes is fine in a tar, not on disk
            if (problem := _path_problem(c.dest)) and (raw.get("run") or "\0" in c.dest):
                self.error(f"copy dest {problem}", (*at, "copy", i, "dest"))
        timeout = None
        if isinstance(raw.get("timeout"), str | int) and not isinstance(raw["timeout"], bool):
            timeout = parse_duration(raw["timeout"])
            if timeout is None:
                self.error(
                    f"timeout {raw['timeout']!r} is not {_FRIENDLY['timeout']}", (*at, "timeout")
                )
        if name in self.bad_layers:
            return None
        return ImageLayer(
            name=name,
            parent=parent,
            base=base,
            run=_as_tuple(raw.get("run")),
            copy=tuple(copies),
            env=_pairs(raw.get("env")),  # values as written: see yamlpos
            workdir=raw.get("workdir"),
            user=_scalar_text(raw, "user"),
            entrypoint=_command(raw.get("entrypoint")),
            cmd=_command(raw.get("cmd")),
            labels=_pairs(raw.get("labels")),
            build_args=_pairs(raw.get("build_args")),
            inputs=inputs,
            network=_str_or_none(raw.get("network")),
            timeout=timeout,
            where=self.where(at, key=True),
        )

    def platforms(self, raw: Any, at: tuple[Any, ...]) -> tuple[str, ...]:
        """The `platforms:` of the mapping `raw` at `at`, normalised as Docker does; a
        platform Docker would refuse, or one written twice, is an error at its line."""
        value = raw.get("platforms") if isinstance(raw, dict) else None
        if not isinstance(value, list):
            return ()  # absent, or the schema said what it must be
        found: dict[str, int] = {}
        for i, text in enumerate(value):
            if not isinstance(text, str):
                continue
            try:
                platform = parse_platform(text)
            except PlatformError as exc:
                self.error(str(exc), (*at, "platforms", i))
                continue
            if platform in found:
                same = "" if text == platform else f" ('{text}' is {platform})"
                self.error(f"platform {platform} is listed twice{same}", (*at, "platforms", i))
            found.setdefault(platform, i)
        return tuple(found)

    def expand_platforms(
        self, layers: dict[str, ImageLayer], default: tuple[str, ...]
    ) -> dict[str, ImageLayer]:
        """One node per layer and platform, where `platforms:` is declared (the layer's,
        else the spec's): `name (os/arch)`, or the layer's own name when it is built for
        one. A node is built on its parent's build for the same platform, and copies from
        that platform's build of a `from_layer`."""
        raw_layers = self.data["layers"]
        declared = {n: self.platforms(raw_layers.get(n), ("layers", n)) or default for n in layers}
        if not any(declared.values()):
            return layers
        out: dict[str, ImageLayer] = {}
        for name, layer in layers.items():
            plats = declared[name]
            for platform in plats or (None,):
                built = platform or DEFAULT_PLATFORM
                node = platform_node(name, built, declared)
                assert node is not None
                parent = layer.parent and self._on(name, layer.parent, built, declared)
                copies = tuple(
                    replace(c, from_layer=self._on(name, c.from_layer, built, declared, i))
                    if c.from_layer
                    else c
                    for i, c in enumerate(layer.copy)
                )
                out[node] = replace(
                    layer,
                    name=node,
                    parent=parent,
                    copy=copies,
                    platform=platform,
                    image=name if node != name else None,
                )
        return out

    def _on(
        self,
        name: str,
        other: str,
        platform: str,
        declared: Mapping[str, tuple[str, ...]],
        copy: int | None = None,
    ) -> str:
        """The node of `other` that layer `name` builds on (or copies from) for `platform`."""
        found = platform_node(other, platform, declared)
        if found is not None:
            return found
        has = ", ".join(declared[other]) or DEFAULT_PLATFORM
        what, at = ("parent", ("parent",)) if copy is None else ("copy source", ("copy", copy))
        self.error(
            f"is built for {platform}, but its {what} '{other}' is not (it is built for "
            f"{has}): add the platform to '{other}', or take it out of this layer's",
            ("layers", name, *at),
        )
        return other

    def _copy(self, c: dict[str, Any], at: tuple[Any, ...], all_layers: dict[str, Any]) -> CopySpec:
        src = _as_tuple(c.get("src")) if _is_strs(c.get("src")) else ()
        source_layer = _str_or_none(c.get("from_layer"))
        if source_layer is not None and source_layer not in all_layers:
            suggestion = _suggest(source_layer, all_layers)
            self.error(f"copy from unknown layer '{source_layer}'{suggestion}", (*at, "from_layer"))
        if source_layer is None:
            for j, s in enumerate(src):
                problem = _escapes(s)
                if problem:
                    place = (*at, "src") + ((j,) if isinstance(c["src"], list) else ())
                    self.error(f"copy source '{s}' {problem}", place)
        for j, s in enumerate(src):
            if not GLOB_CHARS.search(s):
                continue
            try:
                compile_segments(s.split("/"))
            except ValueError as exc:
                place = (*at, "src") + ((j,) if isinstance(c["src"], list) else ())
                self.error(f"copy source '{s}': {exc}", place)
        if "\n" in str(c.get("chmod", "")):
            self.error("chmod must be an octal mode such as '0755'", (*at, "chmod"))
        exclude = _as_tuple(c.get("exclude")) if _is_strs(c.get("exclude")) else ()
        self.check_globs(exclude, (*at, "exclude"), layer=at[1])
        listed = isinstance(c.get("src"), list)
        return CopySpec(
            src=src,
            dest=str(c.get("dest")),
            chmod=_str_or_none(c.get("chmod")),
            chown=_str_or_none(c.get("chown")),
            from_layer=source_layer,
            exclude=exclude,
            src_where=tuple(
                self.where((*at, "src", j) if listed else (*at, "src")) for j in range(len(src))
            ),
        )

    def check_globs(
        self, globs: tuple[str, ...], at: tuple[Any, ...], *, layer: str | None
    ) -> bool:
        ok = True
        for i, pattern in enumerate(globs):
            try:
                if _WILD.search(pattern):  # a literal path is a valid pattern: no compiling
                    pathspec.GitIgnoreSpec.from_lines([pattern])
            except (ValueError, re.error) as exc:  # pathspec's GitWildMatchPatternError
                place = at + ((i,) if len(globs) > 1 or isinstance(self._get(at), list) else ())
                self.error(f"invalid glob '{pattern}': {exc}", place)
                ok = False
                continue
            if ".." in pattern.lstrip("!").strip().split("/"):
                place = at + ((i,) if len(globs) > 1 or isinstance(self._get(at), list) else ())
                self.warn(
                    f"'{pattern}' matches nothing: input globs are read inside the repository, "
                    "where no path has a '..' part (issue 12, case 11)",
                    place,
                )
        return ok

    def _get(self, path: tuple[Any, ...]) -> Any:
        node = self.data
        for p in path:
            node = node[p]
        return node

    def build_dockerfile_rules(
        self,
    ) -> tuple[tuple[DockerfileRule, ...], dict[str, DockerfileRule]]:
        rules = []
        raw_rules = self.data.get("dockerfiles")
        for i, raw in enumerate(raw_rules if isinstance(raw_rules, list) else []):
            if not isinstance(raw, dict) or not _is_strs(raw.get("path")):
                continue
            rules.append(self._rule(raw, ("dockerfiles", i)))
        overrides = {}
        raw_over = self.data.get("image_overrides")
        for name, raw in (raw_over if isinstance(raw_over, dict) else {}).items():
            if isinstance(raw, dict):
                overrides[name] = self._rule(
                    {**raw, "path": "", "image": name}, ("image_overrides", name)
                )
        return tuple(rules), overrides

    def _rule(self, raw: dict[str, Any], at: tuple[Any, ...]) -> DockerfileRule:
        path = str(raw["path"])
        if path.startswith("/") or posixpath.normpath(path or ".").startswith(".."):
            self.error(f"Dockerfile path '{path}' must be inside the repository", (*at, "path"))
        known = [m.group(1) for m in PATH_PLACEHOLDER.finditer(path)]
        for name in sorted({k for k in known if known.count(k) > 1}):
            self.error(f"placeholder {{{name}}} appears twice in path '{path}'", (*at, "path"))
        tags = raw.get("tags")
        inputs = _as_tuple(raw.get("inputs")) if _is_strs(raw.get("inputs")) else ()
        self.check_globs(inputs, (*at, "inputs"), layer=None)
        templates: list[tuple[tuple[Any, ...], Any]] = [
            (("image",), raw.get("image")),
            (("context",), raw.get("context")),
            (("build_args_file",), raw.get("build_args_file")),
            *((("tags", i), t) for i, t in enumerate(tags if isinstance(tags, list) else [])),
            *((("inputs", i), t) for i, t in enumerate(inputs)),
        ]
        for field_at, text in templates:
            if isinstance(text, str) and (wide := re.search(r"\{(\w+)\*\*\}", text)):
                self.error(
                    f"write {{{wide.group(1)}}} here: {{{wide.group(1)}**}} is only for the path",
                    (*at, *field_at),
                )
            for name in PLACEHOLDER.findall(text) if isinstance(text, str) else ():
                if name not in known:
                    has = ", ".join(f"{{{k}}}" for k in known) or "none"
                    self.error(
                        f"{{{name}}} is not a placeholder of path '{path}' (it has {has})"
                        + _suggest(name, known),
                        (*at, *field_at),
                    )
        return DockerfileRule(
            path=path,
            image=str(raw.get("image", "")),
            context=_str_or_none(raw.get("context")),
            build_args=_pairs(raw.get("build_args")),
            tags=_as_tuple(raw.get("tags")) if _is_strs(raw.get("tags")) else (),
            target=_str_or_none(raw.get("target")),
            inputs=inputs,
            build_args_file=_str_or_none(raw.get("build_args_file")),
            platforms=self.platforms(raw, at),
            where=self.where(at),
        )

    def build_bake(self) -> tuple[BakeSource, ...]:
        out = []
        raw = self.data.get("bake")
        for i, entry in enumerate(raw if isinstance(raw, list) else []):
            if not isinstance(entry, dict):
                continue
            at = ("bake", i)
            files = _as_tuple(entry.get("files")) if _is_strs(entry.get("files")) else ()
            glob = _str_or_none(entry.get("glob"))
            if bool(files) == bool(glob):
                self.error("a bake entry takes `files` or `glob`, one of the two", at, key=True)
            for j, path in enumerate(files):
                if problem := _bake_path(path):
                    self.error(f"bake file '{path}' {problem}", (*at, "files", j))
            if glob and (problem := _bake_path(glob)):
                self.error(f"bake glob '{glob}' {problem}", (*at, "glob"))
            variables = entry.get("variables")
            out.append(
                BakeSource(
                    files=files,
                    glob=glob,
                    targets=_as_tuple(entry.get("targets"))
                    if _is_strs(entry.get("targets"))
                    else (),
                    variables=tuple(
                        (str(k), _scalar(v))
                        for k, v in (variables.items() if isinstance(variables, dict) else ())
                    ),
                    where=self.where(at),
                )
            )
        return tuple(out)

    def build_images(self, layers: Mapping[str, ImageLayer]) -> dict[str, PublishedImage]:
        images: dict[str, PublishedImage] = {}
        raw_layers = self.data["layers"]
        raw_images = self.data.get("images")
        for name, raw in (raw_images if isinstance(raw_images, dict) else {}).items():
            if not isinstance(raw, dict) or not isinstance(raw.get("layer"), str):
                continue
            top = raw["layer"]
            if top not in raw_layers:
                self.error(
                    f"image '{name}' names unknown layer '{top}'{_suggest(top, raw_layers)}",
                    ("images", name, "layer"),
                )
                continue
            images[name] = PublishedImage(name=name, layer=top, tags=_as_tuple(raw.get("tags")))
        tags = [(name, i, tag) for name, img in images.items() for i, tag in enumerate(img.tags)]
        for k, other in pushed_twice([(name, tag) for name, _i, tag in tags]):
            name, i, tag = tags[k]
            self.error(
                f"image '{name}' pushes '{tag}', which image '{other}' pushes too",
                ("images", name, "tags", i),
            )
        return images


def built_for(spec: Spec, platform: str) -> Spec:
    """`spec` as a build on a `platform` machine sees it: a layer with no `platforms:`
    is built for the machine's own platform, and keyed for it when that is not the
    default (so an arm64 machine's build has a tag of its own in a shared cache)."""
    if platform == DEFAULT_PLATFORM:
        return spec
    declared = declared_platforms(spec.layers)

    def on(dep: str) -> str:  # the machine's platform's build of a layer built on
        if spec.layers[dep].platform is None:
            return dep
        return platform_node(spec.layers[dep].origin, platform, declared) or dep

    layers = {
        n: x
        if x.platform is not None or x.dockerfile is not None
        else replace(
            x,
            platform=platform,
            parent=x.parent and on(x.parent),
            copy=tuple(replace(c, from_layer=c.from_layer and on(c.from_layer)) for c in x.copy),
        )
        for n, x in spec.layers.items()
    }
    return replace(spec, layers=layers, graph=LayerGraph.from_layers(layers.values()))


def declared_platforms(layers: Mapping[str, ImageLayer]) -> dict[str, tuple[str, ...]]:
    """Each layer's or image's platforms, by the name it is written with (none: only
    the default platform)."""
    out: dict[str, list[str]] = {}
    for x in layers.values():
        plats = out.setdefault(x.origin, [])
        if x.image is not None or x.platform is not None:
            plats.append(x.platform or DEFAULT_PLATFORM)
    return {origin: tuple(p) for origin, p in out.items()}


def platform_node(
    origin: str, platform: str, declared: Mapping[str, tuple[str, ...]]
) -> str | None:
    """The node that builds `origin` for `platform`, where `declared` gives each layer's
    platforms (none: the default platform only); None when it is not built for it."""
    plats = declared.get(origin, ())
    if not plats:
        return origin if platform == DEFAULT_PLATFORM else None
    return node_name(origin, platform, len(plats)) if platform in plats else None


def _bake_path(path: str) -> str | None:
    if path.startswith("/") or posixpath.normpath(path).split("/")[0] == "..":
        return "must be inside the repository (a path from its root)"
    return None


def _scalar(value: Any) -> str:
    """A variable's value as the environment would pass it (true, 3, text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _is_strs(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    )


_PINNED = re.compile(r"@sha256:[0-9a-f]{64}$")
_WILD = re.compile(r"[*?\[\]\\!]")  # what makes a gitignore pattern more than a path


def _escapes(src: str) -> str | None:
    if src.startswith("/") or re.match(r"^[A-Za-z]:[/\\]", src):
        return "is absolute; copy sources are relative to the repository root"
    norm = posixpath.normpath(src)
    if norm == ".." or norm.startswith("../"):
        return "escapes the repository"
    return None


def _pairs(mapping: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(mapping, dict):
        return ()
    return tuple(sorted((str(k), _scalar_text(mapping, k) or "") for k in mapping))


def _scalar_text(mapping: dict[str, Any], key: str) -> str | None:
    """A scalar as the user wrote it: `0755` stays "0755", not YAML 1.1's 493."""
    value = mapping.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    raw: dict[str, str] = getattr(mapping, "raw", {})
    return raw.get(key, str(value))


def _raw_dependencies(raw: dict[str, Any]) -> list[str]:
    deps = [raw["parent"]] if isinstance(raw.get("parent"), str) else []
    copies = raw.get("copy")
    for c in copies if isinstance(copies, list) else []:
        if isinstance(c, dict) and isinstance(c.get("from_layer"), str):
            deps.append(c["from_layer"])
    return deps


def _command(value: Any) -> tuple[str, ...] | None:
    """Exec form as given; a string is Docker's shell form, `/bin/sh -c STRING`."""
    if value is None:
        return None
    if isinstance(value, str):
        return (*_SHELL, value)
    return tuple(value)
