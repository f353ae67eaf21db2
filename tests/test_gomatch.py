"""Go's filepath.Match as COPY sources use it: the same answers as a regex oracle, and
linear time where a backtracking regex took minutes."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ci_layers.gomatch import compile_segments


def _oracle(pattern: str) -> re.Pattern[str]:
    """The pattern as a regex (what gomatch compiled to before): slow, but plainly right."""
    out = []
    for ch in pattern:
        out.append({"*": "[^/]*", "?": "[^/]"}.get(ch, re.escape(ch)))
    return re.compile("".join(out))


_pattern = st.text(st.sampled_from("ab*?/"), min_size=1, max_size=8)
_name = st.text(st.sampled_from("ab/"), max_size=10)


@given(_pattern, _name)
def test_matches_what_the_regex_matches(pattern, name):
    assert compile_segments(pattern.split("/")).fullmatch(name) == bool(
        _oracle(pattern).fullmatch(name)
    )


@pytest.mark.parametrize(
    ("pattern", "name", "matched"),
    [  # from Go's path/filepath match_test.go
        ("abc", "abc", True),
        ("*", "abc", True),
        ("*c", "abc", True),
        ("a*", "a", True),
        ("a*", "abc", True),
        ("a*", "ab/c", False),
        ("a*/b", "abc/b", True),
        ("a*/b", "a/c/b", False),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
        ("a*b?c*x", "abxbbxdbxebxczzx", True),
        ("a*b?c*x", "abxbbxdbxebxczzy", False),
        ("ab[c]", "abc", True),
        ("ab[b-d]", "abc", True),
        ("ab[e-g]", "abc", False),
        ("ab[^c]", "abc", False),
        ("ab[^b-d]", "abc", False),
        ("ab[^e-g]", "abc", True),
        ("a\\*b", "a*b", True),
        ("a\\*b", "ab", False),
        ("a?b", "a☺b", True),
        ("a[^a]b", "a☺b", True),
        ("a???b", "a☺b", False),
        ("a[^a][^a][^a]b", "a☺b", False),
        ("[a-ζ]*", "α", True),
        ("*[a-ζ]", "A", False),
        ("a?b", "a/b", False),
        ("a*b", "a/b", False),
        ("[\\]a]", "]", True),
        ("[\\-]", "-", True),
        ("[x\\-]", "x", True),
        ("[x\\-]", "-", True),
        ("[x\\-]", "z", False),
        ("[\\-x]", "x", True),
        ("*x", "xxx", True),
    ],
)
def test_gos_own_cases(pattern, name, matched):
    assert compile_segments(pattern.split("/")).fullmatch(name) is matched


@pytest.mark.parametrize(
    "pattern", ["[", "[^", "[^bc", "a[", "[]a]", "[-]", "[x-]", "[a-b-c]", "a\\", "[z-a]"]
)
def test_bad_patterns_are_errors(pattern):
    with pytest.raises(ValueError, match=r"pattern|character class"):
        compile_segments(pattern.split("/"))


def test_many_stars_do_not_backtrack():
    """Ten stars against a long name: the regex took minutes; Go's algorithm is linear."""
    name = "a" * 5000
    assert compile_segments(["**********b"]).fullmatch(name) is False
    assert compile_segments(["*a*a*a*a*a*a*a*a*a*b"]).fullmatch(name) is False
    assert compile_segments(["*a*a*a*a*a*a*a*a*a*a"]).fullmatch(name) is True
