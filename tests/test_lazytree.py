"""The lazily read tree answers exactly as the full listing does, and reads little."""

from __future__ import annotations

import io
import json
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ci_layers import lazytree
from ci_layers.changes import Comparison, GitHistory
from ci_layers.cli import main
from ci_layers.discover import resolve_dockerfiles
from ci_layers.errors import GitError
from ci_layers.keys import compute_keys
from ci_layers.lazytree import LazyFiles, TreeStore, lazy_tree_files
from ci_layers.plan import build_plan
from ci_layers.repo import RepoFiles, tree_files
from ci_layers.spec import parse_spec

from .gitrepo import GitRepo

NAMES = st.sampled_from(["a", "b", "ab", "a-b", "a.b", "src", "x y", "é", "Z", "_"])
PATHS = st.lists(NAMES, min_size=1, max_size=4).map("/".join)
KINDS = st.sampled_from(["file", "exe", "link", "gitlink"])


def _build(repo: GitRepo, files: dict[str, tuple[str, str]]) -> str:
    """A commit holding `files` (path -> (kind, content)), written straight to the
    index so that symlinks and submodules need no checkout."""
    repo.git("read-tree", "--empty")
    for path, (kind, content) in files.items():
        mode = {"file": "100644", "exe": "100755", "link": "120000", "gitlink": "160000"}[kind]
        if kind == "gitlink":
            oid = (content.encode().hex() * 40)[:40]
        else:
            oid = repo.git("hash-object", "-w", "--stdin", input_text=content)
        repo.git("update-index", "--add", "--cacheinfo", f"{mode},{oid},{path}")
    tree = repo.git("write-tree")
    return repo.git("commit-tree", tree, "-m", "t")


def _trees_of(files: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Drop paths that would sit below a file (a file cannot be a folder too)."""
    kept: dict[str, tuple[str, str]] = {}
    for path in sorted(files, key=len):
        parts = path.split("/")
        if any("/".join(parts[:i]) in kept for i in range(1, len(parts))):
            continue
        if any(k.startswith(path + "/") for k in kept):
            continue
        kept[path] = files[path]
    return kept


def _same_answers(lazy: RepoFiles, full: RepoFiles, probes: list[str]) -> None:
    for p in [*full.paths, *full.trees, *probes]:
        assert lazy.entries.get(p) == full.entries.get(p), p
        assert lazy.trees.get(p) == full.trees.get(p), p
        assert (p in lazy) == (p in full), p
        assert lazy.gitlink_above(p) == full.gitlink_above(p), p
        for prefix in filter(None, (p, p + "/", p[:-1])):  # "" is the whole tree
            assert list(lazy.under(prefix)) == list(full.under(prefix)), prefix


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(PATHS, st.tuples(KINDS, st.sampled_from(["1", "2", "a/b"])), max_size=14),
    st.lists(PATHS, max_size=6),
)
def test_lazy_tree_answers_as_the_full_listing(files: dict, probes: list[str]) -> None:
    files = _trees_of(files)
    with tempfile.TemporaryDirectory() as tmp:
        repo = GitRepo(Path(tmp) / "repo")
        commit = _build(repo, files)
        full = tree_files(repo.root, commit)
        lazy = lazy_tree_files(repo.root, commit, TreeStore(repo.root))
        _same_answers(lazy, full, probes)
        assert lazy._full is None  # nothing above asked for the whole tree
        assert list(lazy.under("")) == list(full.under(""))
        assert lazy.named("a") == full.named("a")
        assert lazy.gitlinks() == full.gitlinks()
        assert lazy.paths == full.paths
        assert len(lazy) == len(full)
        assert dict(lazy.entries) == full.entries
        assert dict(lazy.trees) == full.trees
        for p in full.paths:
            if full.entries[p].startswith("100"):
                assert lazy.read(p) == full.read(p)


def _spec_repo(repo: GitRepo, layers: int) -> None:
    doc: dict = {"version": 1, "global_inputs": ["/ci/*.sh"], "layers": {}}
    for i in range(layers):
        layer: dict = {"from": "scratch"} if i == 0 else {"parent": f"l{i - 1}"}
        layer["copy"] = [{"src": f"layers/l{i}/src", "dest": "/app"}]
        layer["inputs"] = [f"/layers/l{i}/lock.txt"]
        doc["layers"][f"l{i}"] = layer
        for d in range(3):
            repo.write(f"layers/l{i}/src/d{d}/deep/f.txt", f"{i} {d}\n")
        repo.write(f"layers/l{i}/lock.txt", f"lock {i}\n")
    repo.write("docs/many/more/folders/readme.md", "docs\n")
    repo.write("ci/build.sh", "#!/bin/sh\n")
    repo.write("ci-layers.yaml", yaml.safe_dump(doc, sort_keys=False))


def _plan_json(root: Path, base: str, head: str) -> dict:
    out = io.StringIO()
    code = main(
        ["plan", "--format", "json", "-C", str(root), "--base", base, "--head", head], out=out
    )
    assert code == 0
    return json.loads(out.getvalue())


def _listed_plan_json(root: Path, base: str, head: str) -> dict:
    """The plan made the old way: both commits listed in full."""
    text_at = {rev: (root / "ci-layers.yaml").read_text() for rev in (base, head)}
    history = GitHistory(root)
    comparison = Comparison(base, head, "range", f"comparing {base} with {head}")
    ends = {}
    for rev in (base, head):
        files = tree_files(root, rev)
        spec = resolve_dockerfiles(parse_spec(text_at[rev], filename="ci-layers.yaml"), files)
        ends[rev] = (spec, compute_keys(spec, files))
    plan = build_plan(
        spec=ends[head][0],
        keys=ends[head][1],
        comparison=comparison,
        base_spec=ends[base][0],
        base_keys=ends[base][1],
        changes=history.diff(comparison),
    )
    return plan.to_json()


def _never_listed(self: LazyFiles) -> None:
    raise AssertionError("the plan listed a whole tree")


def _lazy_plan(monkeypatch, root: Path, base: str, head: str) -> tuple[dict, list[TreeStore]]:
    """The plan's JSON, made with no whole tree listed, and the tree stores it used."""
    made: list[TreeStore] = []
    init = TreeStore.__init__

    def spy(self: TreeStore, where: Path) -> None:
        init(self, where)
        made.append(self)

    with monkeypatch.context() as m:
        m.setattr(TreeStore, "__init__", spy)
        m.setattr(LazyFiles, "complete", _never_listed)
        return _plan_json(root, base, head), made


def _planned(plan: dict) -> dict:
    """A plan's JSON without how its comparison was chosen."""
    return {k: v for k, v in plan.items() if k not in ("base", "head", "mode", "reason")}


def test_a_plan_reads_only_the_folders_its_spec_names(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CI_LAYERS_CACHE_DIR", "off")
    repo = GitRepo(tmp_path / "repo")
    _spec_repo(repo, 40)
    base = repo.commit("base")
    repo.write("layers/l7/src/d1/deep/f.txt", "changed\n")
    repo.write("layers/l30/lock.txt", "changed\n")
    head = repo.commit("head")
    trees = len(repo.git("ls-tree", "-r", "-d", head).splitlines())

    plan, made = _lazy_plan(monkeypatch, repo.root, base, head)

    assert plan["affected"] == [f"l{i}" for i in range(7, 40)]
    [store] = made
    # the root, layers/, each layers/lN, ci/, docs/ at head, and the two changed folders'
    # paths at base; never the 160 folders below the copied src/ folders
    assert store.read_count <= 40 + 10, (store.read_count, trees)
    assert trees > 200
    assert _planned(_listed_plan_json(repo.root, base, head)) == _planned(plan)


def test_dockerfile_plans_are_the_same_as_from_full_listings(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CI_LAYERS_CACHE_DIR", "off")
    repo = GitRepo(tmp_path / "repo")
    repo.write(
        "ci-layers.yaml",
        'version: 1\ndockerfiles:\n  - path: "images/{name}/Dockerfile"\n'
        '    image: "example.com/{name}"\n',
    )
    for i in range(6):
        base = "debian:12" if i == 0 else f"example.com/img{i - 1}"
        repo.write(f"images/img{i}/Dockerfile", f"FROM {base}\nCOPY app/ /app/\n")
        repo.write(f"images/img{i}/app/main.py", f"print({i})\n")
        repo.write(f"images/img{i}/.dockerignore", "**/*.md\n")
        repo.write(f"images/img{i}/app/notes.md", "n\n")
    for i in range(50):  # the rest of the monorepo, which no rule looks into
        repo.write(f"src/pkg{i}/mod/x.py", "x\n")
    base = repo.commit("base")
    repo.write("images/img3/app/main.py", "changed\n")
    repo.write("images/img1/app/notes.md", "ignored change\n")
    repo.write("src/pkg7/mod/x.py", "changed, read by no image\n")
    head = repo.commit("head")

    plan, made = _lazy_plan(monkeypatch, repo.root, base, head)
    assert plan["affected"] == [f"example.com/img{i}" for i in (3, 4, 5)]
    # images/ and below at head, the changed ones at base, and the root, src/ and
    # images/'s siblings' listings: none of src/'s 100 folders below its packages
    assert made[0].read_count < 40
    assert _planned(_listed_plan_json(repo.root, base, head)) == _planned(plan)


def test_a_missing_tree_is_a_clear_error(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CI_LAYERS_CACHE_DIR", "off")
    repo = GitRepo(tmp_path / "repo")
    _spec_repo(repo, 2)
    base = repo.commit("base")
    repo.write("layers/l1/lock.txt", "changed\n")
    head = repo.commit("head")
    folder = repo.git("rev-parse", f"{head}:layers/l0")  # the same at both ends: no diff reads it
    (repo.root / ".git" / "objects" / folder[:2] / folder[2:]).unlink()

    code = main(["plan", "-C", str(repo.root), "--base", base, "--head", head])

    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    assert folder in err
    assert "missing" in err


def test_the_store_reads_each_tree_once_for_both_ends(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    _spec_repo(repo, 5)
    base = repo.commit("base")
    repo.write("layers/l2/src/d0/deep/f.txt", "changed\n")
    head = repo.commit("head")
    store = TreeStore(repo.root)
    a, b = lazy_tree_files(repo.root, base, store), lazy_tree_files(repo.root, head, store)
    assert isinstance(a, LazyFiles)
    assert a.store is b.store
    before = a.store.read_count
    list(a.under("layers/"))
    read_once = a.store.read_count - before
    list(b.under("layers/"))
    # only the folders the change made new: src, d0, deep of l2, l2 and layers/
    assert a.store.read_count - before - read_once == 5


@pytest.mark.parametrize("prefix", ["", "layers/", "layers/l1", "layers/l1/src/", "nope/"])
def test_under_lists_in_the_order_of_the_full_listing(tmp_path: Path, prefix: str) -> None:
    repo = GitRepo(tmp_path / "repo")
    _spec_repo(repo, 12)  # l1, l10, l11 and l1/… interleave only in sorted order
    head = repo.commit("head")
    full, lazy = tree_files(repo.root, head), lazy_tree_files(repo.root, head, TreeStore(repo.root))
    assert list(lazy.under(prefix)) == list(full.under(prefix))


def test_foreign_modes_are_read_as_git_reads_them(tmp_path: Path) -> None:
    """A tree written by old git or another tool may hold `100664` or a zero-padded
    `040000`; git prints them canonical (`canon_mode`), and so must the lazy tree."""
    repo = GitRepo(tmp_path / "repo")
    blob = bytes.fromhex(repo.git("hash-object", "-w", "--stdin", input_text="x\n"))

    def tree(raw: bytes) -> str:
        out = subprocess.run(
            ["git", "hash-object", "-w", "-t", "tree", "--literally", "--stdin"],
            cwd=repo.root,
            input=raw,
            capture_output=True,
            check=True,
        )
        return out.stdout.decode().strip()

    inner = tree(b"100664 old.txt\0" + blob + b"100775 run.sh\0" + blob)
    top = tree(b"100664 f\0" + blob + b"040000 sub\0" + bytes.fromhex(inner))
    commit = repo.git("commit-tree", top, "-m", "foreign")
    full = tree_files(repo.root, commit)
    lazy = lazy_tree_files(repo.root, commit, TreeStore(repo.root))
    _same_answers(lazy, full, [])
    assert lazy.entries["sub/run.sh"].startswith("100755 blob ")
    assert lazy.entries["f"].startswith("100644 blob ")


def test_a_sha256_repository(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CI_LAYERS_CACHE_DIR", "off")
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "--object-format=sha256", str(root)], check=True)
    repo = GitRepo(root)
    _spec_repo(repo, 6)
    base = repo.commit("base")
    repo.write("layers/l3/src/d0/deep/f.txt", "changed\n")
    head = repo.commit("head")
    assert len(head) == 64
    for rev in (base, head):
        full = tree_files(repo.root, rev)
        lazy = lazy_tree_files(repo.root, rev, TreeStore(repo.root))
        _same_answers(lazy, full, ["layers/l3/src", "nope"])
    plan = _plan_json(repo.root, base, head)
    assert plan["affected"] == ["l3", "l4", "l5"]
    assert _planned(_listed_plan_json(repo.root, base, head)) == _planned(plan)


def test_a_missing_tree_among_many_neither_hangs_nor_leaves_git_behind(
    tmp_path: Path, monkeypatch
) -> None:
    """More asked at once than a pipe holds, the first missing: git stops reading once
    its answers fill its pipe, so the writer is blocked when the reader gives up."""
    repo = GitRepo(tmp_path / "repo")
    blob = repo.git("hash-object", "-w", "--stdin", input_text="x\n")
    batch = "".join(f"100644 blob {blob}\tf{i}\n\n" for i in range(3000))
    trees = repo.git("mktree", "--batch", input_text=batch).split()
    monkeypatch.setattr(lazytree, "_CHUNK", 5000)
    store = TreeStore(repo.root)
    outcome: list[BaseException] = []

    def ask() -> None:
        try:
            store.listings(["0" * 40, *trees])
        except GitError as exc:
            outcome.append(exc)

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    asking.join(timeout=60)
    assert not asking.is_alive(), "the store hung"
    assert outcome
    assert "missing" in str(outcome[0])
    # and it reads again afterwards
    assert len(store.listings(trees[:3])) == 3
    store.close()


def test_a_lookup_in_a_wide_folder_reads_one_tree_and_many_read_in_few_trips(
    tmp_path: Path,
) -> None:
    repo = GitRepo(tmp_path / "repo")
    blob = repo.git("hash-object", "-w", "--stdin", input_text="x\n")
    batch = "".join(f"100644 blob {blob}\tf{i}\n\n" for i in range(300))
    inner = repo.git("mktree", "--batch", input_text=batch).split()
    pkgs = repo.git(
        "mktree", input_text="".join(f"040000 tree {t}\tp{i}\n" for i, t in enumerate(inner))
    )
    top = repo.git("mktree", input_text=f"040000 tree {pkgs}\tpkgs\n")
    commit = repo.git("commit-tree", top, "-m", "wide")
    store = TreeStore(repo.root)
    trips: list[int] = []
    read = store._read

    def counted(oids: list[str]) -> None:
        trips.append(len(oids))
        read(oids)

    store._read = counted  # type: ignore[method-assign]
    lazy = lazy_tree_files(repo.root, commit, store)
    assert "pkgs/p7/f7" in lazy
    assert store.read_count == 3  # the root, pkgs/ and pkgs/p7: not its 299 siblings
    for i in range(300):
        assert lazy.entries.get(f"pkgs/p{i}/f{i}") == f"100644 blob {blob}"
    assert store.read_count == 302
    assert len(trips) <= lazytree._ONE_BY_ONE + 3, trips
    store.close()
