"""Bake files as definitions: the targets `docker buildx bake` would build, resolved as
bake resolves them (buildx's bake/bake.go and bake/hclparser).

Files are read in order as one definition (`-f a -f b`): blocks of one type and name
merge, later attributes winning. `variable` blocks take, in order, a value the spec
gives, the environment's, then their default (typed as the default); top-level
attributes are variables too. `function` blocks are callable. A `matrix` makes one
target per combination, named by its `name`; a group naming the block names them all.
`inherits` merges the named targets in order, then the target's own attributes, with
bake's rules: `args`, `labels` and `contexts` merge key by key (a null arg is no
override), everything else is replaced. Context defaults to `.`, `dockerfile` to
`Dockerfile` in it. Attributes that only say where a build goes or what it caches
(`cache-from`, `output`, `no-cache`, …) are read and ignored; any other unknown
attribute, function or reference is an error at its file and line.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lark import Token, Tree

from .hcleval import MISSING, Function, HclError, Scope, evaluate, parse_hcl, template, to_text

__all__ = ["BakeError", "BakeTarget", "read_bake"]


# Attributes of a target that change what is built, and how bake merges each.
_REPLACED = ("context", "dockerfile", "dockerfile-inline", "target", "tags", "platforms")
_MERGED = ("args", "labels", "contexts")
# Read and left out of a build's key: where it goes, what it caches, how it runs.
IGNORED = {
    "description": "describes the target",
    "no-cache": "a cache setting",
    "no-cache-filter": "a cache setting",
    "cache-from": "a cache setting",
    "cache-to": "a cache setting",
    "output": "where the build goes",
    "pull": "refreshes bases, whose digests the plan does not pin",
    "attest": "attestations, beside the image",
    "annotations": "manifest annotations, beside the image",
    "secret": "build secrets, never part of an image",
    "ssh": "SSH agent forwarding, never part of an image",
    "network": "the RUN network",
    "shm-size": "a RUN resource",
    "ulimits": "RUN resources",
    "entitlements": "permissions of the build",
    "call": "what the build runs (build, check, outline)",
    "policy": "a build policy",
    "extra-hosts": "RUN's /etc/hosts",
    "resources": "RUN resources",
}
_KNOWN = {*_REPLACED, *_MERGED, "inherits", "matrix", "name", *IGNORED}


class BakeError(Exception):
    """A bake file bake would refuse, or that ci-layers does not evaluate."""

    def __init__(self, message: str, file: str, line: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line


@dataclass(frozen=True, slots=True)
class BakeTarget:
    """One target as bake resolves it: every path relative to the repository root."""

    name: str
    context: str
    dockerfile: str
    dockerfile_inline: str | None = None
    args: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    tags: tuple[str, ...] = ()
    target: str | None = None
    platforms: tuple[str, ...] = ()
    contexts: tuple[tuple[str, str], ...] = ()
    file: str = ""
    line: int = 0
    ignored: tuple[str, ...] = ()  # attributes read and left out of the key


@dataclass
class _Block:
    kind: str
    label: str
    attrs: dict[str, tuple[Any, int]]  # name -> (syntax tree, or JSON value; line)
    file: str
    line: int
    json: bool = False


@dataclass
class _Def:
    blocks: list[_Block] = field(default_factory=list)
    top: dict[str, tuple[Any, str, int, bool]] = field(default_factory=dict)


def read_bake(
    files: Sequence[tuple[str, str]],
    *,
    targets: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> list[BakeTarget]:
    """The targets the files (path, text), read as one definition, build: `targets`
    (targets or groups), else the `default` group, else every target; with those their
    `contexts` name (`target:x`), as bake builds them too."""
    d = _Def()
    for path, text in files:
        if path.endswith(".json"):
            _read_json(d, path, text)
        else:
            _read_hcl(d, path, text)
    resolver = _Resolver(d, dict(variables or {}), dict(env or {}))
    try:
        return resolver.resolve(list(targets))
    except HclError as exc:  # a value of the wrong type, met while resolving a target
        file, line = resolver.at
        raise BakeError(exc.message, file, exc.line or line) from None


# --- reading ------------------------------------------------------------------------------


def _read_hcl(d: _Def, path: str, text: str) -> None:
    try:
        tree = parse_hcl(text)
    except HclError as exc:
        raise BakeError(exc.message, path, exc.line) from None
    body = next(c for c in tree.children if isinstance(c, Tree))
    for item in body.children:
        if not isinstance(item, Tree):
            continue
        if item.data == "attribute":
            name, expr = _attribute(item)
            d.top[name] = (expr, path, _line(item), False)
        elif item.data == "block":
            d.blocks.append(_block(item, path))


def _line(node: Any) -> int:
    meta = getattr(node, "meta", None)
    if isinstance(node, Token):
        return node.line or 0
    return getattr(meta, "line", 0) if meta is not None and not meta.empty else 0


def _attribute(node: Tree[Any]) -> tuple[str, Any]:
    parts = [c for c in node.children if isinstance(c, Tree)]
    return _name_of(parts[0]), parts[-1]


def _name_of(node: Tree[Any]) -> str:
    token = node.children[0]
    return str(token.children[0]) if isinstance(token, Tree) else str(token)


def _block(node: Tree[Any], path: str) -> _Block:
    parts = [c for c in node.children if isinstance(c, Tree) and c.data != "new_line_or_comment"]
    kind = _name_of(parts[0])
    labels = [p for p in parts[1:] if p.data in ("string", "identifier")]
    line = _line(node)
    if len(labels) != 1:
        raise BakeError(f"a {kind} block takes one name", path, line)
    label = labels[0]
    if label.data == "string":
        text = "".join(str(c.children[0]) for c in label.children if isinstance(c, Tree))
    else:
        text = _name_of(label)
    body = next(p for p in parts if p.data == "body")
    attrs: dict[str, tuple[Any, int]] = {}
    for item in body.children:
        if isinstance(item, Tree) and item.data == "attribute":
            name, expr = _attribute(item)
            attrs[name] = (expr, _line(item))
        elif isinstance(item, Tree) and item.data == "block":
            inner = _name_of(next(c for c in item.children if isinstance(c, Tree)))
            if kind == "variable" and inner == "validation":
                continue  # checks a value; the plan takes the value as given
            raise BakeError(f"a {inner} block inside {kind} '{text}'", path, _line(item))
    return _Block(kind, text, attrs, path, line)


def _read_json(d: _Def, path: str, text: str) -> None:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BakeError(f"not JSON: {exc.msg}", path, exc.lineno) from None
    if not isinstance(data, dict):
        raise BakeError("a bake JSON file is an object", path, 1)
    lines = text.split("\n")

    def line_of(name: str) -> int:
        quoted = json.dumps(name)
        return next((i for i, x in enumerate(lines, 1) if quoted in x), 1)

    for kind, value in data.items():
        if kind in ("variable", "group", "target", "function"):
            if not isinstance(value, dict):
                raise BakeError(f"'{kind}' must be an object of names", path, line_of(kind))
            for label, attrs in value.items():
                at = line_of(label)
                for one in attrs if isinstance(attrs, list) else [attrs]:  # blocks, or one
                    if not isinstance(one, dict):
                        raise BakeError(f"{kind} '{label}' must be an object", path, at)
                    d.blocks.append(
                        _Block(kind, label, {k: (v, at) for k, v in one.items()}, path, at, True)
                    )
        else:
            d.top[kind] = (value, path, line_of(kind), True)


# --- resolving ----------------------------------------------------------------------------


_STARTED = object()


class _Resolver:
    def __init__(self, d: _Def, given: dict[str, str], env: dict[str, str]) -> None:
        self.d = d
        self.given = given
        self.env = env
        self.at: tuple[str, int] = (d.blocks[0].file if d.blocks else "", 0)  # being read
        self.values: dict[str, Any] = {}
        self.variables = {b.label: b for b in d.blocks if b.kind == "variable"}  # last wins
        # bake's built-in variables: the working directory (the repository root, where CI
        # runs bake) and the platform of the machine (a GitHub-hosted runner's)
        builtins = {"BAKE_CMD_CONTEXT": ".", "BAKE_LOCAL_PLATFORM": "linux/amd64"}
        try:
            functions = self._functions()
        except HclError as exc:
            raise BakeError(exc.message, d.blocks[0].file if d.blocks else "", exc.line) from None
        self.scope = Scope(builtins, functions, lazy=self._lookup)

    # variables and functions

    def _functions(self) -> dict[str, Function]:
        out = {}
        for b in self.d.blocks:
            if b.kind != "function":
                continue
            if b.json:
                raise BakeError("functions in JSON are not evaluated by ci-layers", b.file, b.line)
            params = [_bare(n) for n in _items(b.attrs.get("params"), b)]
            variadic = b.attrs.get("variadic_params")
            result = b.attrs.get("result")
            if result is None:
                raise BakeError(f"function '{b.label}' has no result", b.file, b.line)
            more = _items(variadic, b)
            out[b.label] = Function(params, _bare(more[0]) if more else None, result[0], result[1])
        return out

    def _lookup(self, name: str) -> Any:
        if name in self.values:
            if self.values[name] is _STARTED:
                raise HclError(f"variable '{name}' refers to itself")
            return self.values[name]
        block = self.variables.get(name)
        top = self.d.top.get(name)
        if block is None and top is None:
            return MISSING
        self.values[name] = _STARTED
        try:
            value = self._variable(name, block, top)
        finally:
            self.values.pop(name, None)
        self.values[name] = value
        return value

    def _variable(self, name: str, block: _Block | None, top: Any) -> Any:
        if block is None:
            expr, file, line, is_json = top
            return self._value(expr, file, line, is_json)
        default: Any = ""  # bake: a variable with no default is the empty string
        if "default" in block.attrs:
            expr, line = block.attrs["default"]
            default = self._value(expr, block.file, line, block.json)
        written = self.given.get(name, self.env.get(name))
        if written is None:
            return default
        return _typed(written, default, block)

    def _value(
        self, expr: Any, file: str, line: int, is_json: bool, scope: Scope | None = None
    ) -> Any:
        scope = scope or self.scope
        try:
            if is_json:
                return _json_value(expr, scope, line)
            return evaluate(expr, scope)
        except HclError as exc:
            raise BakeError(exc.message, file, exc.line or line) from None

    # targets

    def resolve(self, wanted: list[str]) -> list[BakeTarget]:
        self.partial, self.where, self.renamed = self._targets()
        self.groups = self._groups()
        names = self._selected(wanted)
        done: dict[str, BakeTarget] = {}
        todo = list(names)
        while todo:
            name = todo.pop(0)
            if name in done:
                continue
            done[name] = self._target(name)
            for _ref, value in done[name].contexts:
                if value.startswith("target:"):
                    other = value.removeprefix("target:")
                    if other == name:
                        file, line = self.where[name]
                        raise BakeError(f"target {name} cannot link to itself", file, line)
                    todo.append(other)
        return [done[n] for n in dict.fromkeys([*names, *done])]

    def _targets(
        self,
    ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, tuple[str, int]], dict[str, list[str]]]:
        partial: dict[str, list[dict[str, Any]]] = {}
        where: dict[str, tuple[str, int]] = {}
        renamed: dict[str, list[str]] = {}
        for b in self.d.blocks:
            if b.kind != "target":
                continue
            self.at = (b.file, b.line)
            for scope in self._matrix(b):
                name = b.label
                if "name" in b.attrs:
                    if "matrix" not in b.attrs:
                        raise BakeError("name requires matrix", b.file, b.attrs["name"][1])
                    expr, line = b.attrs["name"]
                    name = to_text(self._value(expr, b.file, line, b.json, scope), line)
                    if name in renamed.get(b.label, []):
                        raise BakeError(f'duplicate name "{name}"', b.file, line)
                if not re.fullmatch(r"[a-zA-Z0-9_-]+", name):
                    raise BakeError(
                        f"invalid target name '{name}': letters, digits, _ and - only",
                        b.file,
                        b.line,
                    )
                renamed.setdefault(b.label, []).append(name)
                attrs: dict[str, Any] = {}
                for key, (expr, line) in b.attrs.items():
                    if key in ("matrix", "name"):
                        continue
                    if key not in _KNOWN:
                        raise BakeError(
                            f"target '{name}' has an attribute bake does not know: {key}",
                            b.file,
                            line,
                        )
                    attrs[key] = (self._value(expr, b.file, line, b.json, scope), b.file, line)
                partial.setdefault(name, []).append(attrs)
                where.setdefault(name, (b.file, b.line))
        return partial, where, renamed

    def _matrix(self, b: _Block) -> list[Scope]:
        if "matrix" not in b.attrs:
            return [self.scope]
        expr, line = b.attrs["matrix"]
        value = self._value(expr, b.file, line, b.json)
        if not isinstance(value, dict):
            raise BakeError("matrix must be a map", b.file, line)
        for k, v in value.items():
            if not isinstance(v, list):
                raise BakeError(f"matrix values must be a list ({k})", b.file, line)
        keys = list(value)
        return [
            self.scope.child(dict(zip(keys, combo, strict=True)))
            for combo in itertools.product(*(value[k] for k in keys))
        ]

    def _groups(self) -> dict[str, tuple[list[str], str, int]]:
        groups: dict[str, tuple[list[str], str, int]] = {}
        for b in self.d.blocks:
            if b.kind != "group":
                continue
            for key in b.attrs:
                if key in ("name", "matrix"):
                    raise BakeError(f"{key} is not supported for groups", b.file, b.attrs[key][1])
            expr, line = b.attrs.get("targets", (None, b.line))
            value = [] if expr is None else self._value(expr, b.file, line, b.json)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise BakeError(f"group '{b.label}': targets must be a list of names", b.file, line)
            groups[b.label] = (list(dict.fromkeys(value)), b.file, line)  # the last one wins
        return groups

    def _selected(self, wanted: list[str]) -> list[str]:
        if not wanted:
            if "default" in self.groups or "default" in self.partial:
                wanted = ["default"]
            else:  # every target but those only inherited from, with no tags (abstract)
                inherited = {
                    p
                    for blocks in self.partial.values()
                    for attrs in blocks
                    if isinstance(attrs.get("inherits", ([],))[0], list)
                    for p in attrs.get("inherits", ([],))[0]
                }
                return [
                    n
                    for n, blocks in self.partial.items()
                    if n not in inherited or any(a.get("tags", (None,))[0] for a in blocks)
                ]
        out: list[str] = []
        for name in wanted:
            out += self._expand(name, [])
        return list(dict.fromkeys(out))

    def _expand(self, name: str, seen: list[str]) -> list[str]:
        if name in self.groups and name not in seen:
            out = []
            for t in self.groups[name][0]:
                out += self._expand(t, [*seen, name])
            return out
        if name in self.partial:
            return [name]
        if name in self.renamed:  # a matrix block's name: every target it makes
            return list(self.renamed[name])
        if name in seen:
            return []
        file, line = self.groups[seen[-1]][1:] if seen else ("", 0)
        known = ", ".join(sorted({*self.partial, *self.groups})) or "none"
        raise BakeError(f"no target or group '{name}' (there are: {known})", file, line)

    def _target(self, name: str, chain: tuple[str, ...] = ()) -> BakeTarget:
        if name in chain:
            file, line = self.where[chain[-1]]
            cycle = " -> ".join([*chain, name])
            raise BakeError(f"inherits cycle: {cycle}", file, line)
        if name not in self.partial:
            if name in self.renamed and len(self.renamed[name]) == 1:
                name = self.renamed[name][0]
            else:
                file, line = self.where.get(chain[-1], ("", 0)) if chain else ("", 0)
                raise BakeError(f"failed to find target {name}", file, line)
        merged: dict[str, Any] = {}
        own: dict[str, Any] = {}
        for attrs in self.partial[name]:  # blocks of one name, in file order
            _merge(own, attrs)
        inherits = own.get("inherits", ([], "", 0))
        parents, file, line = inherits
        if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
            raise BakeError("inherits must be a list of target names", file, line)
        for parent in parents:
            _merge(merged, self._resolved(parent, (*chain, name)))
        _merge(merged, own)
        return self._finish(name, merged)

    def _resolved(self, name: str, chain: tuple[str, ...]) -> dict[str, Any]:
        t = self._target(name, chain)
        out: dict[str, Any] = {
            "context": (t.context, t.file, t.line),
            "args": (dict(t.args), t.file, t.line),
            "labels": (dict(t.labels), t.file, t.line),
            "contexts": (dict(t.contexts), t.file, t.line),
        }
        if t.dockerfile_inline is not None:
            out["dockerfile-inline"] = (t.dockerfile_inline, t.file, t.line)
        if t.dockerfile != "Dockerfile":
            out["dockerfile"] = (t.dockerfile, t.file, t.line)
        if t.tags:
            out["tags"] = (list(t.tags), t.file, t.line)
        if t.target is not None:
            out["target"] = (t.target, t.file, t.line)
        if t.platforms:
            out["platforms"] = (list(t.platforms), t.file, t.line)
        return out

    def _finish(self, name: str, attrs: dict[str, Any]) -> BakeTarget:
        file, line = self.where[name]
        self.at = (file, line)

        def text(key: str, default: str | None) -> str | None:
            if key not in attrs or attrs[key][0] is None:
                return default
            value, f, at = attrs[key]
            if not isinstance(value, str | int | float | bool):
                raise BakeError(f"target '{name}': {key} must be a string", f, at)
            return to_text(value)

        def strings(key: str) -> tuple[str, ...]:
            if key not in attrs or attrs[key][0] is None:
                return ()
            value, f, at = attrs[key]
            if not isinstance(value, list):
                raise BakeError(f"target '{name}': {key} must be a list of strings", f, at)
            return tuple(dict.fromkeys(to_text(v, at) for v in value if v is not None))

        def pairs(key: str) -> tuple[tuple[str, str], ...]:
            if key not in attrs or attrs[key][0] is None:
                return ()
            value, f, at = attrs[key]
            if not isinstance(value, dict):
                raise BakeError(f"target '{name}': {key} must be a map", f, at)
            return tuple(
                (str(k), to_text(v, at))
                for k, v in value.items()
                if v is not None and not (key == "contexts" and v == "")
            )

        inline = text("dockerfile-inline", None)
        return BakeTarget(
            name=name,
            context=text("context", ".") or ".",
            dockerfile=text("dockerfile", "Dockerfile") or "Dockerfile",
            dockerfile_inline=inline,
            args=pairs("args"),
            labels=pairs("labels"),
            tags=strings("tags"),
            target=text("target", None),
            platforms=strings("platforms"),
            contexts=pairs("contexts"),
            file=file,
            line=line,
            ignored=tuple(sorted(k for k in attrs if k in IGNORED)),
        )


def _merge(into: dict[str, Any], attrs: Mapping[str, Any]) -> None:
    """bake's Target.Merge: maps merge key by key (a null value is no override), the
    rest is replaced when set."""
    for key, (value, file, line) in attrs.items():
        if key == "inherits" and isinstance(value, list) and key in into:
            before = into[key][0] if isinstance(into[key][0], list) else []
            into[key] = ([*before, *value], file, line)  # bake appends them
        elif key in _MERGED and isinstance(value, dict):
            before = into[key][0] if key in into and isinstance(into[key][0], dict) else {}
            kept = {**before, **{k: v for k, v in value.items() if v is not None}}
            into[key] = (kept, file, line)
        elif value is not None or key not in into:
            into[key] = (value, file, line)


def _items(attr: tuple[Any, int] | None, b: _Block) -> list[Any]:
    if attr is None:
        return []
    expr = attr[0]
    node = expr
    while isinstance(node, Tree) and node.data == "expr_term":
        node = next(c for c in node.children if isinstance(c, Tree))
    if not isinstance(node, Tree) or node.data != "tuple":
        raise BakeError(f"function '{b.label}': params must be a list of names", b.file, attr[1])
    return [c for c in node.children if isinstance(c, Tree) and c.data != "new_line_or_comment"]


def _bare(node: Any) -> str:
    while isinstance(node, Tree) and node.data == "expr_term":
        node = next(c for c in node.children if isinstance(c, Tree))
    if isinstance(node, Tree) and node.data == "identifier":
        return str(node.children[0])
    raise HclError("a parameter must be a bare name", _line(node))


def _json_value(value: Any, scope: Scope, line: int) -> Any:
    """A JSON file's value: its strings are templates, as HCL's JSON syntax reads them."""
    if isinstance(value, str):
        return template(value, scope, line)
    if isinstance(value, list):
        return [_json_value(v, scope, line) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v, scope, line) for k, v in value.items()}
    return value


def _typed(written: str, default: Any, block: _Block) -> Any:
    """An override (the environment's, the spec's) typed as the default is, as bake does."""
    if isinstance(default, bool):
        low = written.strip()
        if low in ("1", "t", "T", "TRUE", "true", "True"):
            return True
        if low in ("0", "f", "F", "FALSE", "false", "False"):
            return False
        raise BakeError(
            f"variable '{block.label}': {written!r} is not a bool", block.file, block.line
        )
    if isinstance(default, int | float):
        try:
            number = float(written)
        except ValueError:
            raise BakeError(
                f"variable '{block.label}': {written!r} is not a number", block.file, block.line
            ) from None
        return int(number) if number.is_integer() else number
    if isinstance(default, list | dict):
        try:
            return json.loads(written)
        except json.JSONDecodeError:
            if isinstance(default, list):
                return [x.strip() for x in written.split(",")]  # bake reads a list as CSV
            raise BakeError(
                f"variable '{block.label}': {written!r} is not JSON", block.file, block.line
            ) from None
    return written
