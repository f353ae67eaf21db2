"""Upstream conformance vectors: BuildKit's shell lexer and Docker's .dockerignore."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ci_layers.shellexpand import ExpansionError, expand_word, expand_words

DATA = Path(__file__).resolve().parent / "data"


def _shell_cases() -> list:
    rows = [
        ln
        for ln in (DATA / "shell-expansion.tsv").read_text(encoding="utf-8").split("\n")
        if ln and not ln.startswith("#")
    ]
    header = rows[0].split("\t")
    cases = []
    for row in rows[1:]:
        fields = dict(zip(header, row.split("\t"), strict=True))
        if fields["platform"] in ("A", "U"):
            cases.append(pytest.param(fields, id=f"{fields['origin']}"))
    return cases


SHELL = _shell_cases()


def test_all_shell_vectors_are_loaded() -> None:
    assert len(SHELL) == 308  # 310 rows, 2 of them Windows-only


@pytest.mark.parametrize("case", SHELL)
def test_shell_expansion(case: dict) -> None:
    env = json.loads(case["env"])
    fn = expand_word if case["mode"] == "word" else expand_words
    if case["expected"] == "error":
        with pytest.raises(ExpansionError):
            fn(case["input"], env)
        return
    expected = case["expected"] if case["mode"] == "word" else json.loads(case["expected"])
    assert fn(case["input"], env) == expected


from ci_layers.dockerignore import DockerIgnore, DockerignoreError, read_dockerignore  # noqa: E402

_IGNORE = json.loads((DATA / "dockerignore.json").read_text(encoding="utf-8"))
IGNORE_CASES = [
    pytest.param(c, id=f"{i}:{c.get('origin', '')}") for i, c in enumerate(_IGNORE["cases"])
]


def test_all_dockerignore_vectors_are_loaded() -> None:
    assert len(IGNORE_CASES) == 229


@pytest.mark.parametrize("case", IGNORE_CASES)
def test_dockerignore(case: dict) -> None:
    patterns = read_dockerignore("\n".join(case["patterns"]))
    if case.get("error"):
        with pytest.raises(DockerignoreError):
            DockerIgnore(patterns).ignored(case["path"])
        return
    matcher = DockerIgnore(patterns)
    assert matcher.ignored(case["path"]) is case["ignored"]
    if "matches_or_parent_matches" in case:
        assert matcher.matches_or_parent_matches(case["path"]) is case["matches_or_parent_matches"]


@pytest.mark.parametrize("case", _IGNORE["read_cases"])
def test_dockerignore_reader(case: dict) -> None:
    assert read_dockerignore(case["dockerignore"]) == case["patterns"]
