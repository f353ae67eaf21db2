"""Bounded fuzzing of the two readers of repository input: whatever the bytes, the spec
loader and the Dockerfile reader either read them or raise their located error (exit 2),
never anything else (issue 12)."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ci_layers.dockerfile import DockerfileError, parse_dockerfile
from ci_layers.errors import SpecInvalid
from ci_layers.spec import parse_spec

_KEYS = [
    "version", "layers", "images", "global_inputs", "dockerfiles", "image_overrides",
    "parent", "from", "run", "copy", "env", "workdir", "user", "entrypoint", "cmd", "labels",
    "build_args", "inputs", "network", "src", "dest", "chmod", "chown", "from_layer",
    "exclude", "layer", "tags", "path", "image", "context", "target", "build_args_file", "a",
]  # fmt: skip
_SCALARS = st.one_of(
    st.sampled_from(["scratch", "a", "b", "1", "*", "{name}", "../x", "/x", "0755", "none"]),
    st.integers(-5, 10**6),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(_KEYS), inner, max_size=5)
    ),
    max_leaves=30,
)


def _refusal(text: str) -> SpecInvalid | None:
    """The loader's located refusal, or None; any other exception fails the test."""
    try:
        parse_spec(text, filename="ci-layers.yaml")
    except SpecInvalid as exc:
        return exc
    return None


_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=6))
def test_any_spec_structure_is_read_or_refused_with_a_location(doc) -> None:
    text = yaml.safe_dump({"version": 1, **doc}, allow_unicode=True)
    refused = _refusal(text)
    if refused is not None:
        assert refused.errors
        assert all(str(e).startswith("ci-layers.yaml") for e in refused.errors)


@_FUZZ
@given(st.text(alphabet=st.sampled_from("ab: -[]{}&*!|>\n\t'\"#%@`,?\\"), max_size=120))
def test_any_spec_text_is_read_or_refused_with_a_location(text) -> None:
    refused = _refusal(text)
    assert refused is None or refused.errors


_INSTRUCTIONS = ["FROM", "RUN", "COPY", "ADD", "ARG", "ENV", "WORKDIR", "ONBUILD", "USER", "CMD"]
_WORDS = st.sampled_from(
    [
        "alpine", "a", "b", "x:1", "AS", "base", "--from=base", "--from=", "--from=0",
        "--mount=type=bind,source=a,target=/a", "--mount=from=,source=a", "--chown=1",
        "--exclude=*.md", "$A", "${A:-b}", "${A/*/x}", "\"q\"", "'s'", "[\"a\",", "\"b\"]",
        "<<EOF", "*", "?", "[", "\\", "`", "\x0c", "\r", "=", "A=1", "B=$A", ".", "/",
    ]
)  # fmt: skip
_LINE = st.one_of(
    st.tuples(st.sampled_from(_INSTRUCTIONS), st.lists(_WORDS, max_size=5)).map(
        lambda t: " ".join([t[0], *t[1]])
    ),
    st.sampled_from(["# escape=`", "# check=skip=all", "# syntax=x", "EOF", "", "# c", "\\"]),
    st.text(max_size=10),
)


@_FUZZ
@given(
    st.lists(_LINE, max_size=12), st.dictionaries(st.sampled_from(["A", "B"]), st.text(max_size=5))
)
def test_any_dockerfile_is_read_or_refused_with_a_line(lines, args) -> None:
    text = "\n".join(lines)
    try:
        parse_dockerfile(text, build_args=args, base_image=lambda _ref: None, target=None)
        line = 0
    except DockerfileError as exc:  # anything else fails the test, as a traceback would
        line = exc.line
    assert line >= 0
