"""The located loader's direct build of anchor-free documents equals the loader's own."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ci_layers import yamlpos
from ci_layers.yamlpos import Map, Seq, load_located

SCALARS = st.one_of(
    st.text(max_size=6),
    st.integers(-5, 10**6),
    st.booleans(),
    st.none(),
    st.sampled_from(["0755", "1_000", "yes", "~", "a && b", "2024-01-02", "1e3", "&x"]),
)
DATA = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=25,
)


def _by_the_loader(text: str) -> tuple[Any, list[str]]:
    """The document built the loader's way (construct_document), as before the direct
    build existed: the oracle."""
    loader = yamlpos._Loader(text)
    loader.problems = []
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return data, [f"{m.line}:{m.column} {msg}" for msg, m in loader.problems]


def _located(value: Any) -> Any:
    """Everything a located value remembers, marks and source texts included."""
    if isinstance(value, Map):
        marks = {k: (m.line, m.column) for k, m in value.key_marks.items()}
        values = {k: (m.line, m.column) for k, m in value.value_marks.items()}
        inner = {k: _located(v) for k, v in value.items()}
        return ("map", (value.mark.line, value.mark.column), marks, values, value.raw, inner)
    if isinstance(value, Seq):
        marks = [(m.line, m.column) for m in value.marks]
        return ("seq", (value.mark.line, value.mark.column), marks, [_located(v) for v in value])
    return (type(value).__name__, value)


def _same_as_the_loader(text: str) -> None:
    data, problems = load_located(text, "s.yaml")
    expected, said = _by_the_loader(text)
    assert _located(data) == _located(expected)
    assert [f"{p.where.line - 1}:{p.where.col - 1} {p.message}" for p in problems] == said


@settings(max_examples=200, deadline=None)
@given(DATA, st.booleans())
def test_a_tree_document_is_built_as_the_loader_builds_it(data: Any, flow: bool) -> None:
    _same_as_the_loader(yaml.safe_dump(data, default_flow_style=flow, allow_unicode=True))


def test_problems_and_shared_nodes_are_the_loaders() -> None:
    cases = [
        "a: 1\na: 2\nb: !!int abc\n",  # a duplicate key, a bad int
        "base: &b {x: 1, y: [1, 2]}\nuse: *b\nmore: *b\n",  # shared nodes
        "base: &b {x: 1}\nm:\n  <<: *b\n  x: 2\n  x: 3\n",  # merge, then a duplicate
        "m:\n  <<: {x: 1}\n  y: !!int zz\n",  # a merge key without an anchor
        "s: !!set {a, b}\nn: !!int nope\n",  # a tagged collection after a problem
        "run: a && b\nlist: [x, &y y, *y]\n",  # a shared scalar
        "k: v\n",
    ]
    for text in cases:
        _same_as_the_loader(text)


def test_an_alias_bomb_is_still_refused() -> None:
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
    for i, prev in zip("bcdefg", "abcdef", strict=True):
        bomb += f"{i}: &{i} [{','.join(['*' + prev] * 10)}]\n"
    data, problems = load_located(bomb, "s.yaml")
    assert data is None
    assert "aliases" in problems[0].message
