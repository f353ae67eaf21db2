"""What plans keep between runs (memo.py): the same plan, byte for byte, and less work."""

from __future__ import annotations

import io
import itertools
import json
import os
import pickle
import subprocess
from pathlib import Path

import pytest

from ci_layers import discover, memo
from ci_layers import spec as spec_module
from ci_layers.cli import main
from ci_layers.repo import _BLOBS, tree_files

from .conftest import FIXTURES
from .gitrepo import GitRepo


def _plan_bytes(repo: GitRepo, cache: Path | str, *revs: str) -> str:
    os.environ["CI_LAYERS_CACHE_DIR"] = str(cache)
    argv = ["plan", "--format", "json", "-C", str(repo.root), "--base", revs[0]]
    argv += ["--head", revs[1]]
    out, err = io.StringIO(), io.StringIO()
    assert main(argv, out=out, err=err) == 0, err.getvalue()
    return out.getvalue()


def _forget_parses() -> None:
    """As a fresh process starts: no Dockerfile parse in memory."""
    discover._PARSED.clear()
    discover._KEPT.clear()
    spec_module._parse_cached.cache_clear()


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_LAYERS_CACHE_DIR", "off")  # each test says which it uses


def _history(repo: GitRepo, fixture: str, edits: list[tuple[str, str]]) -> list[str]:
    repo.copy_fixture(FIXTURES / fixture)
    revs = [repo.commit("start")]
    for path, text in edits:
        repo.write(path, text)
        revs.append(repo.commit(f"edit {path}"))
    return revs


@pytest.mark.parametrize(
    ("fixture", "edits"),
    [
        (
            "monorepo",
            [
                ("services/api/src/api/routes.py", "# changed\n"),
                ("ci-layers.yaml", None),  # the spec itself changes: a new text, new entries
                ("base/os/packages.txt", "curl\n"),
            ],
        ),
        (
            "dockerfiles",
            [("images/new/Dockerfile", "FROM alpine:3.19\nRUN true\n"), (".dockerignore", "x\n")],
        ),
    ],
)
def test_a_plan_is_byte_identical_with_the_cache_cold_warm_or_off(
    git_repo: GitRepo, tmp_path: Path, fixture: str, edits: list
) -> None:
    spec = FIXTURES / fixture / "ci-layers.yaml"
    edits = [(p, t if t is not None else spec.read_text() + "\n# a comment\n") for p, t in edits]
    revs = _history(git_repo, fixture, edits)
    cache = tmp_path / "cache"
    for base, head in itertools.pairwise(revs):
        _forget_parses()
        off = _plan_bytes(git_repo, "off", base, head)
        _forget_parses()
        cold = _plan_bytes(git_repo, cache, base, head)  # the base as an earlier plan left it
        _forget_parses()
        warm = _plan_bytes(git_repo, cache, base, head)  # both ends kept
        assert cold == off
        assert warm == off
    kept = {p.name for p in cache.iterdir()}
    assert {"end", "spec"} <= kept
    assert ("dockerfiles" in kept) == (fixture == "dockerfiles")


def test_a_kept_end_stands_in_for_the_base_computation(git_repo: GitRepo, tmp_path: Path) -> None:
    """The base's keys come from what the plan of the base kept: seeded from a plan where
    the base was the head, the plan between them reads no base key from the files."""
    revs = _history(git_repo, "monorepo", [("services/api/src/api/routes.py", "# x\n")])
    cache = tmp_path / "cache"
    expected = _plan_bytes(git_repo, "off", revs[0], revs[1])
    _plan_bytes(git_repo, cache, revs[0], revs[0])  # the base's own plan
    from ci_layers import plan as plan_module

    computed: list[int] = []
    real = plan_module.compute_keys

    def counting(spec, files):  # type: ignore[no-untyped-def]
        computed.append(len(files))
        return real(spec, files)

    plan_module.compute_keys = counting  # type: ignore[assignment]
    try:
        assert _plan_bytes(git_repo, cache, revs[0], revs[1]) == expected
    finally:
        plan_module.compute_keys = real  # type: ignore[assignment]
    assert len(computed) == 1  # head's only: the base was kept


def test_dockerfile_parses_are_kept_across_runs(
    git_repo: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    revs = _history(git_repo, "dockerfiles", [("README.md", "changed\n")])
    cache = tmp_path / "cache"
    _forget_parses()
    first = _plan_bytes(git_repo, cache, revs[0], revs[1])
    _forget_parses()
    for end in (cache / "end").iterdir():
        end.unlink()  # only the parses are left to reuse

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr(discover, "parse_dockerfile", refuse)
    assert _plan_bytes(git_repo, cache, revs[0], revs[1]) == first


def test_a_foreign_or_broken_entry_is_a_miss_never_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI_LAYERS_CACHE_DIR", str(tmp_path))
    memo.store("spec", {"a": (1, 2)}, "x")
    assert memo.load("spec", "x") == {"a": (1, 2)}
    path = next((tmp_path / "spec").iterdir())
    ran = tmp_path / "ran"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (subprocess.call, (["touch", str(ran)],))

    path.write_bytes(pickle.dumps(Evil()))
    assert memo.load("spec", "x") is None
    assert not ran.exists()
    path.write_bytes(pickle.dumps({"a": 1})[:-3])  # truncated
    assert memo.load("spec", "x") is None
    assert memo.load("spec", "never stored") is None
    monkeypatch.setenv("CI_LAYERS_CACHE_DIR", "off")
    memo.store("spec", 1, "y")
    assert memo.load("spec", "y") is None
    assert memo.cache_dir() is None


def test_a_cache_that_cannot_be_written_is_no_error(git_repo: GitRepo, tmp_path: Path) -> None:
    revs = _history(git_repo, "monorepo", [("services/api/src/api/routes.py", "# x\n")])
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert _plan_bytes(git_repo, blocked, *revs) == _plan_bytes(git_repo, "off", *revs)


def test_prefetch_reads_many_blobs_in_one_batch(git_repo: GitRepo) -> None:
    git_repo.write("a/Dockerfile", "FROM a\n")
    git_repo.write("b/Dockerfile", "FROM b\n" * 1000)
    git_repo.write("c/.dockerignore", "")
    head = git_repo.commit("three")
    files = tree_files(git_repo.root, head)
    paths = ["a/Dockerfile", "b/Dockerfile", "c/.dockerignore", "not/there"]
    _BLOBS.clear()
    files.prefetch(paths)
    where = str(git_repo.root)
    oids = {p: files.digest(p).rpartition(" ")[2] for p in paths[:3]}
    assert _BLOBS[(where, oids["a/Dockerfile"])] == b"FROM a\n"
    assert _BLOBS[(where, oids["b/Dockerfile"])] == b"FROM b\n" * 1000
    assert _BLOBS[(where, oids["c/.dockerignore"])] == b""
    assert files.read("b/Dockerfile") == b"FROM b\n" * 1000


def test_only_the_most_recently_used_entries_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI_LAYERS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(memo, "KEEP", 3)
    for i in range(3):
        memo.store("end", i, str(i))
        for j, path in enumerate(sorted((tmp_path / "end").iterdir(), key=os.path.getmtime)):
            os.utime(path, ns=(j * 10**9, j * 10**9))  # in order of storing, a second apart
    assert memo.load("end", "0") == 0  # used again: now the most recent
    memo.store("end", 3, "3")
    assert [memo.load("end", str(i)) for i in range(4)] == [0, None, 2, 3]


class _Forgetful(dict):  # type: ignore[type-arg]
    def __setitem__(self, key: object, value: object) -> None:
        pass


def test_a_context_unchanged_at_both_ends_is_read_once_with_the_same_plan(
    git_repo: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a Dockerfile's context gives is reused between ends by the context's tree id;
    a link in it to a file outside the context (BuildKit resolves it inside) and a
    change outside it must not make that differ from reading it again."""
    git_repo.write(
        "ci-layers.yaml",
        "version: 1\ndockerfiles:\n  - path: img/{name}/Dockerfile\n    image: acme/{name}\n",
    )
    git_repo.write("img/a/Dockerfile", "FROM alpine:3.19\nCOPY . /src\n")
    git_repo.write("img/a/app.txt", "a\n")
    (git_repo.root / "img/a/out").symlink_to("../../shared/x.txt")
    git_repo.write("img/b/Dockerfile", "FROM alpine:3.19\nCOPY x.txt /x\n")
    git_repo.write("img/b/x.txt", "b\n")
    git_repo.write("shared/x.txt", "1\n")
    base = git_repo.commit("images")
    git_repo.write("shared/x.txt", "2\n")
    git_repo.write("img/b/x.txt", "b2\n")
    head = git_repo.commit("change outside a, inside b")
    from ci_layers import sources

    _forget_parses()
    reused = _plan_bytes(git_repo, "off", base, head)
    assert sources._CONTEXT_READS  # kept by tree id
    monkeypatch.setattr(sources, "_CONTEXT_READS", _Forgetful())
    _forget_parses()
    assert _plan_bytes(git_repo, "off", base, head) == reused
    assert json.loads(reused)["affected"] == ["acme/b"]
