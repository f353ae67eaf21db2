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


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Map:
    explicit = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)
    merged = len(node.value) - explicit  # flatten puts merged pairs first
    result = Map()
    result.key_marks, result.value_marks, result.raw, result.mark = {}, {}, {}, node.start_mark
    seen: dict[tuple[type, Any], int] = {}
    for i, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
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
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_marks[key] = key_node.start_mark
        result.value_marks[key] = value_node.start_mark
        if isinstance(value_node, yaml.ScalarNode):
            result.raw[key] = value_node.value
    return result


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> Seq:
    result = Seq(loader.construct_object(child, deep=True) for child in node.value)
    result.marks = [child.start_mark for child in node.value]
    result.mark = node.start_mark
    return result


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
        # an alias needs an anchor (`&name`): with no `&` in the text, no bomb is possible
        if node is not None and "&" in text and (bomb := _alias_bomb(node)) is not None:
            where = location(filename, bomb.start_mark)
            problems.append(
                SpecError(
                    f"aliases (*name) expand this value past {ALIAS_EXCESS:,} copies; "
                    "write the values out, or share less",
                    where=where,
                )
            )
            return None, problems
        data = loader.construct_document(node) if node is not None else None
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
