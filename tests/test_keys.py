from __future__ import annotations

import io
import json
import os
import subprocess

import yaml
from hypothesis import given
from hypothesis import strategies as st

from ci_layers.cli import main
from ci_layers.explain import explain_difference
from ci_layers.graph import ImageLayer
from ci_layers.keys import compute_keys
from ci_layers.repo import RepoFiles, blob_id, tree_files, worktree_files
from ci_layers.spec import parse_spec

from .dags import brute_descendants, dags
from .gitrepo import GitRepo


def spec_text(
    layers: list[ImageLayer], *, rename: dict[str, str] | None = None, edit: str | None = None
) -> str:
    """A spec for `layers`; each layer copies its own file files/<name>.txt."""
    r = rename or {}
    doc: dict = {"version": 1, "global_inputs": ["/global.cfg"], "layers": {}}
    for x in layers:
        d: dict = {"run": list(x.run) + (["echo edited"] if x.name == edit else [])}
        if x.parent:
            d["parent"] = r.get(x.parent, x.parent)
        else:
            d["from"] = x.base
        d["copy"] = [{"src": f"files/{x.name}.txt", "dest": "/f.txt"}] + [
            {"src": list(c.src), "dest": c.dest, "from_layer": r.get(c.from_layer, c.from_layer)}
            for c in x.copy
        ]
        doc["layers"][r.get(x.name, x.name)] = d
    return yaml.safe_dump(doc, sort_keys=False)


def files_for(layers: list[ImageLayer], changed: str | None = None) -> RepoFiles:
    entries = {"global.cfg": "100644 " + blob_id(b"g"), "README.md": "100644 " + blob_id(b"r")}
    for x in layers:
        content = f"{x.name}{'!' if x.name == changed else ''}".encode()
        entries[f"files/{x.name}.txt"] = "100644 " + blob_id(content)
    return RepoFiles(entries)


def changed_keys(a: dict, b: dict) -> set[str]:
    return {n for n in a if a[n].digest != b[n].digest}


@given(dags(max_layers=15), st.data())
def test_definition_change_changes_exactly_that_layer_and_descendants(layers, data) -> None:
    target = data.draw(st.sampled_from([x.name for x in layers]))
    files = files_for(layers)
    before = compute_keys(parse_spec(spec_text(layers)), files)
    after = compute_keys(parse_spec(spec_text(layers, edit=target)), files)
    assert changed_keys(before, after) == brute_descendants(layers, {target})


@given(dags(max_layers=15), st.data())
def test_file_change_changes_exactly_its_readers_and_descendants(layers, data) -> None:
    target = data.draw(st.sampled_from([x.name for x in layers]))
    spec = parse_spec(spec_text(layers))
    before = compute_keys(spec, files_for(layers))
    after = compute_keys(spec, files_for(layers, changed=target))
    assert changed_keys(before, after) == brute_descendants(layers, {target})


@given(dags(max_layers=15), st.data())
def test_rename_and_reorder_keep_every_key(layers, data) -> None:
    names = [x.name for x in layers]
    renamed = data.draw(st.sets(st.sampled_from(names)))
    mapping = {n: f"renamed-{n}" for n in renamed}
    files = files_for(layers)
    before = compute_keys(parse_spec(spec_text(layers)), files)
    shuffled = data.draw(st.permutations(layers))
    after = compute_keys(parse_spec(spec_text(shuffled, rename=mapping)), files)
    for n in names:
        assert after[mapping.get(n, n)].digest == before[n].digest


@given(dags(max_layers=10))
def test_global_input_changes_every_key_and_unrelated_files_none(layers) -> None:
    spec = parse_spec(spec_text(layers))
    files = files_for(layers)
    base = compute_keys(spec, files)
    entries = dict(files.entries)
    entries["README.md"] = "100644 " + blob_id(b"other")
    assert changed_keys(base, compute_keys(spec, RepoFiles(entries))) == set()
    entries["global.cfg"] = "100644 " + blob_id(b"other")
    assert changed_keys(base, compute_keys(spec, RepoFiles(entries))) == set(base)


SPEC = """\
version: 1
layers:
  base:
    from: scratch
    copy:
      - {src: "conf/*.ini", dest: /etc/app/}
  app:
    parent: base
    copy:
      - {src: src, dest: /app}
      - {src: bin/run, dest: /usr/bin/run}
    inputs: ["*.lock"]
"""


def make_repo(git_repo: GitRepo) -> GitRepo:
    git_repo.write("ci-layers.yaml", SPEC)
    git_repo.write("conf/a.ini", "a=1\n")
    git_repo.write("conf/notes.txt", "not copied\n")
    git_repo.write("src/main.py", "print('hi')\n")
    git_repo.write("src/pkg/util.py", "x = 1\n")
    git_repo.write("bin/run", "#!/bin/sh\n", mode=0o755)
    git_repo.write("deps/poetry.lock", "lock\n")
    git_repo.write(".gitignore", "build/\n")
    git_repo.commit("initial")
    return git_repo


def keys_now(repo: GitRepo) -> dict:
    spec = parse_spec((repo.root / "ci-layers.yaml").read_text())
    return compute_keys(spec, worktree_files(repo.root))


def test_clean_tree_uses_git_blob_ids_and_matches_the_commit(git_repo: GitRepo) -> None:
    repo = make_repo(git_repo)
    spec = parse_spec(SPEC)
    at_head = compute_keys(spec, tree_files(repo.root, "HEAD"))
    assert {n: k.digest for n, k in keys_now(repo).items()} == {
        n: k.digest for n, k in at_head.items()
    }
    # a whole directory is its git tree id; files are "<mode> <blob id>"
    assert at_head["app"].recipe["copy"][0]["files"] == [
        ["", "040000 tree " + repo.git("rev-parse", "HEAD:src")]
    ]
    conf = at_head["base"].recipe["copy"][0]["files"]
    assert conf == [["a.ini", "100644 blob " + repo.git("rev-parse", "HEAD:conf/a.ini")]]
    assert at_head["app"].recipe["copy"][1]["files"][0][1].startswith("100755 ")
    assert list(at_head["app"].recipe["inputs"]) == ["deps/poetry.lock"]


def test_modified_staged_or_not_hash_like_git(git_repo: GitRepo) -> None:
    repo = make_repo(git_repo)
    before = keys_now(repo)
    repo.write("src/main.py", "print('bye')\n")
    unstaged = keys_now(repo)
    assert changed_keys(before, unstaged) == {"app"}
    repo.git("add", "src/main.py")
    staged = keys_now(repo)
    assert staged["app"].digest == unstaged["app"].digest
    repo.commit("bye")
    assert (
        compute_keys(parse_spec(SPEC), tree_files(repo.root, "HEAD"))["app"].digest
        == staged["app"].digest
    )


def test_what_counts_and_what_does_not(git_repo: GitRepo) -> None:
    repo = make_repo(git_repo)
    before = keys_now(repo)
    repo.write("conf/more.txt", "no\n")  # not matched by conf/*.ini
    repo.write("build/out.ini", "ignored by .gitignore\n")
    repo.write("docs/index.md", "unrelated\n")
    assert changed_keys(before, keys_now(repo)) == set()
    repo.write("conf/b.ini", "b=2\n")  # untracked, but the wildcard now matches it
    assert changed_keys(before, keys_now(repo)) == {"base", "app"}
    repo.remove("conf/b.ini")
    os.chmod(repo.root / "bin/run", 0o644)  # the executable bit is part of the content
    assert changed_keys(before, keys_now(repo)) == {"app"}
    os.chmod(repo.root / "bin/run", 0o755)
    repo.write("poetry.lock", "a second lockfile\n")
    assert changed_keys(before, keys_now(repo)) == {"app"}


def test_renaming_a_source_folder_with_its_copy_entry_keeps_the_key(git_repo: GitRepo) -> None:
    repo = make_repo(git_repo)
    before = keys_now(repo)
    repo.git("mv", "src", "source")
    repo.write("ci-layers.yaml", SPEC.replace("src: src,", "src: source,"))
    assert changed_keys(before, keys_now(repo)) == set()


def test_explain_names_the_field_that_differs(git_repo: GitRepo) -> None:
    repo = make_repo(git_repo)
    repo.write("conf/a.ini", "a=2\n")
    repo.write("ci-layers.yaml", SPEC.replace("inputs:", "env: {MODE: fast}\n    inputs:"))
    out, err = io.StringIO(), io.StringIO()
    code = main(["explain", "app", "--against", "HEAD", "-C", str(repo.root)], out=out, err=err)
    assert code == 0, err.getvalue()
    text = out.getvalue()
    assert "app: working tree vs HEAD" in text
    assert "env.MODE: (absent) -> 'fast'" in text
    assert "parent 'base' has a different key:" in text
    assert "copy[0].files a.ini:" in text


def test_explain_helper_on_a_new_layer() -> None:
    spec = parse_spec(SPEC)
    keys = compute_keys(spec, RepoFiles({}))
    g = spec.graph
    assert explain_difference("app", keys, {}, graph=g) == ["app: not defined at the other commit"]
    assert explain_difference("app", keys, keys, graph=g)[0].startswith("app: same key sha256:")


def test_copy_source_order_is_part_of_the_key() -> None:
    files = RepoFiles({"a/x": "100644 " + blob_id(b"a"), "b/x": "100644 " + blob_id(b"b")})
    text = "version: 1\nlayers:\n  l:\n    from: scratch\n    copy: [{src: [%s], dest: /d/}]\n"
    one = compute_keys(parse_spec(text % "a/x, b/x"), files)["l"].digest
    two = compute_keys(parse_spec(text % "b/x, a/x"), files)["l"].digest
    assert one != two  # both land on /d/x: the later source wins


def test_nested_repository_without_a_commit_is_left_out(git_repo: GitRepo) -> None:
    repo = make_repo(git_repo)
    before = keys_now(repo)
    nested = repo.root / "src" / "scratch"
    nested.mkdir()
    subprocess.run(["git", "init", "-q", str(nested)], check=True)
    (nested / "notes.txt").write_text("x")
    assert changed_keys(before, keys_now(repo)) == set()


def test_non_utf8_file_names_give_valid_json(git_repo: GitRepo) -> None:
    repo = make_repo(git_repo)
    (repo.root / os.fsdecode(b"deps/x\xff.lock")).write_text("lock")
    out = io.StringIO()
    assert main(["keys", "--format", "json", "--recipe", "-C", str(repo.root)], out=out) == 0
    out.getvalue().encode("ascii")
    data = json.loads(out.getvalue())
    assert os.fsdecode(b"deps/x\xff.lock") in data["layers"]["app"]["recipe"]["inputs"]


def test_explain_outside_git_is_a_clear_error(tmp_path) -> None:
    (tmp_path / "ci-layers.yaml").write_text(SPEC)
    err = io.StringIO()
    code = main(
        ["explain", "app", "--against", "HEAD", "-C", str(tmp_path)], out=io.StringIO(), err=err
    )
    assert code == 1
    assert "is not a git repository" in err.getvalue()


def test_explain_follows_a_long_chain_without_recursion(git_repo: GitRepo) -> None:
    lines = ["version: 1", "layers:", "  l0: {from: scratch, run: x}"]
    lines += [f"  l{i}: {{parent: l{i - 1}}}" for i in range(1, 1500)]
    git_repo.write("ci-layers.yaml", "\n".join(lines) + "\n")
    git_repo.commit("chain")
    git_repo.write("ci-layers.yaml", "\n".join(lines).replace("run: x", "run: y") + "\n")
    out = io.StringIO()
    assert main(["explain", "l1499", "--against", "HEAD", "-C", str(git_repo.root)], out=out) == 0
    assert "run[0]: 'x' -> 'y'" in out.getvalue()


def test_keys_outside_git_read_the_directory(tmp_path) -> None:
    (tmp_path / "ci-layers.yaml").write_text(SPEC)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text("print('hi')\n")
    out, err = io.StringIO(), io.StringIO()
    assert main(["keys", "--format", "json", "-C", str(tmp_path)], out=out, err=err) == 0, (
        err.getvalue()
    )
    assert set(json.loads(out.getvalue())["layers"]) == {"base", "app"}


def test_which_wildcard_match_lands_last_is_in_the_key() -> None:
    spec = parse_spec(
        "version: 1\nlayers:\n  base:\n    from: scratch\n"
        "    copy: [{src: 'conf/*', dest: /etc/app/}]\n"
    )

    def key(files: dict[str, bytes]) -> str:
        snap = RepoFiles({p: "100644 blob " + blob_id(b) for p, b in files.items()})
        return compute_keys(spec, snap)["base"].digest

    # conf/a and conf/b both land on /etc/app/app.conf; the later match, conf/b, wins
    one = key({"conf/a/app.conf": b"dev", "conf/b/app.conf": b"prod"})
    assert key({"conf/a/app.conf": b"prod", "conf/b/app.conf": b"dev"}) != one
    assert key({"conf/a/app.conf": b"other", "conf/b/app.conf": b"prod"}) == one  # overwritten
    # "a" is walked before "a-b" (although the path a-b/app.conf sorts first): a-b wins
    two = key({"conf/a/app.conf": b"x", "conf/a-b/app.conf": b"y"})
    assert two == key({"conf/a/app.conf": b"other", "conf/a-b/app.conf": b"y"})
    assert two != key({"conf/a/app.conf": b"x", "conf/a-b/app.conf": b"other"})


def test_the_working_tree_keys_symlinks_as_git_does(git_repo: GitRepo) -> None:
    git_repo.write(
        "ci-layers.yaml",
        "version: 1\nlayers:\n  dl: {from: scratch, copy: [{src: dirlink, dest: /x/}]}\n"
        "  fl: {from: scratch, copy: [{src: filelink, dest: /x}]}\n",
    )
    git_repo.write("real/f", "1\n")
    git_repo.write("conf", "c\n")
    (git_repo.root / "dirlink").symlink_to("real")
    (git_repo.root / "filelink").symlink_to("conf")
    git_repo.commit("links")
    spec = parse_spec((git_repo.root / "ci-layers.yaml").read_text())
    committed = compute_keys(spec, tree_files(git_repo.root, "HEAD"))
    clean = compute_keys(spec, worktree_files(git_repo.root))
    assert {n: k.digest for n, k in clean.items()} == {n: k.digest for n, k in committed.items()}
    git_repo.write("real/f", "2\n")
    git_repo.write("conf", "changed\n")
    edited = compute_keys(spec, worktree_files(git_repo.root))
    assert all(edited[n].digest != clean[n].digest for n in ("dl", "fl"))


def test_symlinked_inputs_and_global_inputs_are_read_through_the_link() -> None:
    spec = parse_spec(
        "version: 1\nglobal_inputs: [/ci/env.sh]\nlayers:\n"
        "  inp: {from: scratch, inputs: [/constraints.txt]}\n"
    )

    def key(files: dict[str, tuple[str, bytes]]) -> str:
        snap = RepoFiles({p: f"{mode} blob {blob_id(b)}" for p, (mode, b) in files.items()})
        snap.reader = lambda p: files[p][1]
        return compute_keys(spec, snap)["inp"].digest

    base = {
        "constraints.txt": ("120000", b"deps/constraints.txt"),
        "deps/constraints.txt": ("100644", b"a==1"),
        "ci/env.sh": ("120000", b"../scripts/env.sh"),
        "scripts/env.sh": ("100644", b"X=1"),
    }
    k = key(base)
    assert key({**base, "deps/constraints.txt": ("100644", b"a==2")}) != k
    assert key({**base, "scripts/env.sh": ("100644", b"X=2")}) != k
    assert key({**base, "unrelated": ("100644", b"")}) == k


@given(
    st.lists(
        st.sampled_from(
            ["/a/b ", "a/b", "/a/b\\ ", "b ", "a/", "/a/*.txt", "**/c", "!a/b/c", "c", "a/b/"]
        ),
        min_size=1,
        max_size=4,
    )
)
def test_input_globs_select_what_gitignore_rules_match(patterns: list[str]) -> None:
    import pathspec

    from ci_layers.sources import InputGlobs

    paths = ["a/b/c", "a/b /c", "a/x.txt", "c", "d/c", "e/b", "b /x"]
    dirs = {p.rsplit("/", i)[0] for p in paths for i in range(1, p.count("/") + 1)}
    files = RepoFiles(
        {p: "100644 blob " + blob_id(p.encode()) for p in paths},
        trees={d: blob_id(d.encode()) for d in dirs},
    )
    spec = pathspec.GitIgnoreSpec.from_lines(patterns)
    assert InputGlobs(patterns).select(files) == sorted(p for p in paths if spec.match_file(p))


def test_an_input_named_through_a_symlinked_folder_is_read() -> None:
    spec = parse_spec("version: 1\nlayers:\n  inp: {from: scratch, inputs: [conf/app.conf]}\n")

    def key(target: bytes) -> str:
        files = {"conf": ("120000", b"real"), "real/app.conf": ("100644", target)}
        snap = RepoFiles(
            {p: f"{mode} blob {blob_id(b)}" for p, (mode, b) in files.items()},
            trees={"real": "1" * 40},
        )
        snap.reader = lambda p: files[p][1]
        return compute_keys(spec, snap)["inp"].digest

    assert key(b"a=1") != key(b"a=2")


def test_a_wildcard_match_that_is_a_link_is_read_through(git_repo: GitRepo) -> None:
    """BuildKit follows each wildcard match: editing what a matched link names changes
    the key (before, only the link's own text counted), and the plan says why."""
    git_repo.write(
        "ci-layers.yaml",
        "version: 1\nlayers:\n  app:\n    from: scratch\n"
        "    copy: [{src: 'bin/*.sh', dest: /bin/}]\n",
    )
    git_repo.write("real/tool.sh", "echo 1\n")
    git_repo.write("real/lib/x.sh", "x\n")
    (git_repo.root / "bin").mkdir()
    os.symlink("../real/tool.sh", git_repo.root / "bin/tool.sh")
    os.symlink("../real/lib", git_repo.root / "bin/lib.sh")
    git_repo.commit()
    spec = parse_spec((git_repo.root / "ci-layers.yaml").read_text(), filename="ci-layers.yaml")
    before = compute_keys(spec, worktree_files(git_repo.root))["app"]
    files = dict(before.recipe["copy"][0]["files"])
    assert set(files) == {"tool.sh", "x.sh"}  # the file, and what the linked folder holds
    assert files["tool.sh"].startswith("100644 blob")
    git_repo.write("real/tool.sh", "echo 2\n")
    after = compute_keys(spec, worktree_files(git_repo.root))["app"]
    assert after.digest != before.digest
    out = io.StringIO()
    assert main(["plan", "-C", str(git_repo.root), "--format", "json"], out=out) == 0
    plan = json.loads(out.getvalue())
    assert plan["affected"] == ["app"]
    assert plan["layers"]["app"]["reasons"]  # generic through a link, as for linked folders
