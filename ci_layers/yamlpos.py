"""Safe YAML that remembers where every key and value was written.

PyYAML's safe loader (libyaml where present) with three changes for a spec: mappings
and sequences carry their marks, duplicate keys are reported instead of silently
overwritten (a merge key `<<` may still be overridden, as YAML allows), and every
mapping remembers the source text of its scalar values, so `0755` or `1_000` reach an
environment variable as written rather than as YAML 1.1 numbers.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import Location, SpecError

__all__ = ["Map", "Seq", "load_located", "location"]


class Map(dict):  # type: ignore[type-arg]
    """A mapping that remembers where each key and value was written."""

    key_marks: dict[Any, Any]
    value_marks: dict[Any, Any]
    raw: dict[Any, str]  # source text of scalar values
    mark: Any


class Seq(list):  # type: ignore[type-arg]
    marks: list[Any]
    mark: Any


_Base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc]
    problems: list[tuple[str, Any]]


def _construct_map(loader: _Loader, node: yaml.MappingNode, build: Any = None) -> Map:
    build = build or (lambda n: loader.construct_object(n, deep=True))
    explicit = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)
    merged = len(node.value) - explicit  # flatten puts merged pairs first
    result = Map()
    result.key_marks, result.value_marks, result.raw, result.mark = {}, {}, {}, node.start_mark
    seen: dict[tuple[type, Any], int] = {}
    for i, (key_node, value_node) in enumerate(node.value):
        key = build(key_node)
        if not isinstance(key, str):
            text = getattr(key_node, "value", "?")
            loader.problems.append(
                (f"key {text!r} must be a string: quote it", key_node.start_mark)
            )
            continue
        ident = (type(key), key)
        if ident in seen and i >= merged and seen[ident] >= merged:
            first = result.key_marks[key].line + 1
            loader.problems.append(
                (f"duplicate key '{key}' (first on line {first})", key_node.start_mark)
            )
            continue
        seen[ident] = i
        result[key] = build(value_node)
        result.key_marks[key] = key_node.start_mark
        result.value_marks[key] = value_node.start_mark
        if isinstance(value_node, yaml.ScalarNode):
            result.raw[key] = value_node.value
    return result


def _construct_seq(loader: _Loader, node: yaml.SequenceNode, build: Any = None) -> Seq:
    build = build or (lambda n: loader.construct_object(n, deep=True))
    result = Seq(build(child) for child in node.value)
    result.marks = [child.start_mark for child in node.value]
    result.mark = node.start_mark
    return result


_STR, _MAP, _SEQ, _MERGE = (f"tag:yaml.org,2002:{t}" for t in ("str", "map", "seq", "merge"))


class _Shared(Exception):
    """The document shares a node (an alias) or merges keys: built the loader's way."""


def _construct_tree(loader: _Loader, node: yaml.Node) -> Any:
    """The document when its nodes form a tree (no alias, no merge key), built
    directly, without the loader's bookkeeping for shared and recursive nodes (a third
    of a large spec's parse); raises _Shared, having changed no node, where it is not.
    Tags other than str, map and seq go through the loader."""
    built: set[int] = set()

    def build(n: yaml.Node) -> Any:
        kind = n.__class__
        if kind is yaml.ScalarNode and n.tag == _STR:
            return n.value
        if kind is yaml.ScalarNode:
            return loader.construct_object(n, deep=True)
        if id(n) in built:
            raise _Shared
        built.add(id(n))
        if isinstance(n, yaml.MappingNode) and n.tag == _MAP:
            if any(k.tag == _MERGE for k, _v in n.value):
                raise _Shared  # flattening changes the node: only once, the loader's way
            return _construct_map(loader, n, build)
        if isinstance(n, yaml.SequenceNode) and n.tag == _SEQ:
            return _construct_seq(loader, n, build)
        raise _Shared  # a tagged collection (!!set, !!omap): the loader knows them

    return build(node)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _guarded(tag: str, construct: Any) -> Any:
    """A scalar constructor whose bad value (`!!int abc`, an int past Python's 4,300
    digits) is a located problem, not a ValueError out of the loader (issue 12, 8b)."""

    def guarded(loader: _Loader, node: yaml.ScalarNode) -> Any:
        try:
            return construct(loader, node)
        except (ValueError, TypeError, OverflowError, IndexError, KeyError):
            shown = str(node.value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            loader.problems.append((f"'{shown}' is no valid {tag}", node.start_mark))
            return str(node.value)

    return guarded


for _tag in ("int", "float", "bool", "timestamp"):
    _Loader.add_constructor(
        f"tag:yaml.org,2002:{_tag}",
        _guarded(_tag, getattr(yaml.constructor.SafeConstructor, f"construct_yaml_{_tag}")),
    )


def location(filename: str, mark: Any) -> Location:
    if mark is None:
        return Location(filename)
    return Location(filename, mark.line + 1, mark.column + 1)


ALIAS_EXCESS = 100_000  # values that aliases add beyond those written


def _alias_bomb(root: yaml.Node) -> yaml.Node | None:
    """The smallest value whose aliases make it expand past ALIAS_EXCESS values (a
    "billion laughs" spec), or one that contains itself; None if there is none. Sizes
    are counted once per node: linear in what is written."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # post-order, without recursion
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if done or not children:
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            visiting.discard(id(node))
            continue
        if any(id(c) in visiting or c is node for c in children):
            return node  # an alias inside its own anchor: it never ends
        visiting.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    if sizes[id(root)] - len(sizes) <= ALIAS_EXCESS:
        return None
    node = root
    while True:  # down to the smallest value still too big
        bigger = [c for c in _children(node) if sizes[id(c)] > ALIAS_EXCESS]
        if not bigger:
            return node
        node = bigger[0]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_located(text: str, filename: str) -> tuple[Any, list[SpecError]]:
    """(data, problems). Data is None after a syntax error; problems such as duplicate
    keys leave the first definition in place so checking can go on."""
    loader = _Loader(text)
    loader.problems = []
    problems: list[SpecError] = []
    try:
        node = loader.get_single_node()
        data = None
        try:
            data = _construct_tree(loader, node) if node is not None else None
        except _Shared:  # start again: no problem or value of the first try is kept
            loader.problems, loader.constructed_objects = [], {}
            # an alias needs an anchor (`&name`): with no `&` in the text, no bomb is possible
            if "&" in text and (bomb := _alias_bomb(node)) is not None:
                where = location(filename, bomb.start_mark)
                problems.append(
                    SpecError(
                        f"aliases (*name) expand this value past {ALIAS_EXCESS:,} copies; "
                        "write the values out, or share less",
                        where=where,
                    )
                )
                return None, problems
            data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        where = location(filename, exc.problem_mark or exc.context_mark)
        problems.append(SpecError(f"invalid YAML: {exc.problem or exc.context}", where=where))
        return None, problems
    except yaml.YAMLError as exc:
        problems.append(SpecError(f"invalid YAML: {exc}", where=Location(filename)))
        return None, problems
    except RecursionError:
        problems.append(SpecError("invalid YAML: nested too deeply", where=Location(filename)))
        return None, problems
    finally:
        loader.dispose()
    for message, mark in loader.problems:
        problems.append(SpecError(message, where=location(filename, mark)))
    return data, problems
