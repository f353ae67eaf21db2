"""The fast indented JSON is the standard library's, byte for byte."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ci_layers.jsonout import dumps_indented

LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(),
    st.sampled_from(["\x00", "é", "\ud800", "💥", '"\\/', "\u2028"]),
)
KEYS = st.one_of(st.text(), st.integers(), st.booleans(), st.none())
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(KEYS, inner, max_size=4),
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_it_writes_what_json_dumps_writes(value: Any) -> None:
    assert dumps_indented(value) == json.dumps(value, indent=2, ensure_ascii=True)


def test_a_plan_shaped_value() -> None:
    plan = {
        "version": 1,
        "affected": ["a", "b"],
        "stages": [["a"], []],
        "cache": {},
        "layers": {"a": {"key": "sha256:00", "stage": None, "parents": [], "ok": True}},
    }
    assert dumps_indented(plan) == json.dumps(plan, indent=2, ensure_ascii=True)
