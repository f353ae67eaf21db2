"""Bad specs: every problem named with file:line:col and layer, all in one run, exit 2."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from ci_layers.cli import main
from ci_layers.errors import SpecInvalid
from ci_layers.spec import parse_spec

from .gitrepo import GitRepo

GOOD = """\
version: 1
layers:
  base:
    from: debian@sha256:aaaa
  app:
    parent: base
"""


def run_cli(repo: GitRepo, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "-C", str(repo.root)], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def check(repo: GitRepo, spec: str) -> tuple[int, str]:
    repo.write("ci-layers.yaml", textwrap.dedent(spec))
    code, _, err = run_cli(repo, "validate")
    return code, err


CASES = [
    pytest.param(
        """\
        version: 1
        layers:
          base:
            from: debian@sha256:aaaa
            run: [ "unclosed
        """,
        ["ci-layers.yaml:6:1: error: invalid YAML"],
        id="yaml-syntax",
    ),
    pytest.param(
        """\
        version: 1
        layers:
          base:
            from: debian@sha256:aaaa
            enviroment: {A: b}
            comands: [true]
        """,
        [
            "ci-layers.yaml:5:5: error: layer 'base': unknown key 'enviroment' (did you mean 'env'?)",
            "ci-layers.yaml:6:5: error: layer 'base': unknown key 'comands' (did you mean 'run'?)",
        ],
        id="unknown-keys",
    ),
    pytest.param(
        """\
        version: 1
        layerz: {}
        """,
        ["ci-layers.yaml:2:1: error: unknown key 'layerz' in the spec (did you mean 'layers'?)"],
        id="unknown-top-level-key",
    ),
    pytest.param(
        """\
        version: 1
        layers:
          base:
            from: debian@sha256:aaaa
            run: 5
            env: [A]
            copy:
              - src: a
        """,
        [
            "ci-layers.yaml:5:10: error: layer 'base': run must be a string or a list of strings, not a number",
            "ci-layers.yaml:6:10: error: layer 'base': env must be a mapping, not a list",
            "ci-layers.yaml:8:9: error: layer 'base': copy[0] is missing the required key 'dest'",
        ],
        id="wrong-types",
    ),
    pytest.param(
        """\
        version: 1
        layers:
          base:
            from: debian@sha256:aaaa
          app:
            parent: bsae
        """,
        ["ci-layers.yaml:6:13: error: layer 'app': unknown parent 'bsae' (did you mean 'base'?)"],
        id="unknown-parent",
    ),
    pytest.param(
        """\
        version: 1
        layers:
          base:
            from: debian@sha256:aaaa
          base:
            from: debian@sha256:bbbb
        """,
        ["ci-layers.yaml:5:3: error: duplicate key 'base' (first on line 3)"],
        id="duplicate-name",
    ),
    pytest.param(
        """\
        version: 1
        layers:
          root:
            from: scratch
          a:
            parent: c
          b:
            parent: a
          c:
            parent: b
          x:
            parent: y
          y:
            parent: x
        """,
        [
            "ci-layers.yaml:5:3: error: layer 'a': dependency cycle: a -> b -> c -> a",
            "ci-layers.yaml:11:3: error: layer 'x': dependency cycle: x -> y -> x",
        ],
        id="cycles",
    ),
    pytest.param(
        """\
        version: 1
        layers:
          base:
            from: scratch
          app:
            parent: base
            copy:
              - src: tools
                dest: /tools
                from_layer: app
        """,
        ["error: layer 'app': dependency cycle: app -> app"],
        id="copy-from-itself",
    ),
    pytest.param(
        """\
        version: 1
        layers:
          base:
            from: debian@sha256:aaaa
          app:
            parent: base
            from: debian@sha256:aaaa
        """,
        ["ci-layers.yaml:5:3: error: layer 'app': has both 'parent' and 'from'"],
        id="parent-and-from",
    ),
    pytest.param(
        """\
        version: 1
        layers:
          app:
            run: make
        """,
        ["ci-layers.yaml:3:3: error: layer 'app': needs 'parent' (another layer) or 'from'"],
        id="neither-parent-nor-from",
    ),
    pytest.param(
        """\
        version: 1
        layers:
          app:
            from: scratch
            copy:
              - src: ../secrets/key.pem
                dest: /k
              - src: [ok.txt, /etc/passwd]
                dest: /e
              - src: a/../../b
                dest: /b
        """,
        [
            "ci-layers.yaml:6:14: error: layer 'app': copy source '../secrets/key.pem' escapes the repository",
            "ci-layers.yaml:8:23: error: layer 'app': copy source '/etc/passwd' is absolute",
            "ci-layers.yaml:10:14: error: layer 'app': copy source 'a/../../b' escapes the repository",
        ],
        id="copy-escapes",
    ),
    pytest.param(
        """\
        version: 1
        layers:
          app:
            from: scratch
            copy:
              - {src: x, dest: /x, from_layer: buidler}
        """,
        ["ci-layers.yaml:6:40: error: layer 'app': copy from unknown layer 'buidler'"],
        id="unknown-from-layer",
    ),
    pytest.param(
        """\
        version: 2
        layers: {}
        images:
          web: {layer: nope}
        """,
        [
            "ci-layers.yaml:1:10: error: unsupported spec version 2",
            "ci-layers.yaml:4:16: error: image 'web' names unknown layer 'nope'",
        ],
        id="version-and-image",
    ),
    pytest.param(
        """\
        version: 1
        layers:
          "bad name":
            from: scratch
        """,
        ["ci-layers.yaml:3:3: error: layer 'bad name': invalid name 'bad name': use letters"],
        id="bad-name",
    ),
    pytest.param(
        "",
        ["ci-layers.yaml:1:1: error: spec is empty"],
        id="empty",
    ),
    pytest.param(
        """\
        version: 1
        dockerfiles:
          - path: "images/{name}/Dockerfile"
            image: "reg.example/{nme}"
            tags: ["reg.example/{name}:{ver}"]
        """,
        [
            "ci-layers.yaml:4:12: error: {nme} is not a placeholder of path "
            "'images/{name}/Dockerfile' (it has {name}) (did you mean 'name'?)",
            "ci-layers.yaml:5:12: error: {ver} is not a placeholder of path "
            "'images/{name}/Dockerfile' (it has {name})",
        ],
        id="unknown-placeholder",
    ),
    pytest.param(
        """\
        version: 1
        dockerfiles:
          - {path: "{a}/{a}/Dockerfile", image: "reg.example/{a}"}
        """,
        ["ci-layers.yaml:3:12: error: placeholder {a} appears twice in path '{a}/{a}/Dockerfile'"],
        id="placeholder-twice",
    ),
    pytest.param(
        """\
        version: 1
        layers:
          a:
            from: scratch
            workdir: /srv/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
          b:
            from: scratch
            workdir: "/srv/a\\0b"
        """,
        [
            "ci-layers.yaml:5:14: error: layer 'a': workdir has a part of 256 bytes "
            "('xxxxxxxxxxxxxxxxxxxx…'); a file name takes at most 255",
            "ci-layers.yaml:8:14: error: layer 'b': workdir '/srv/a\\x00b' contains a NUL byte",
        ],
        id="workdir-that-cannot-exist",
    ),
    pytest.param(
        """\
        version: 1
        layers:
          a:
            from: scratch
            copy: [{src: f, dest: /opt/éééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé/f}]
            run: echo
          b:
            from: scratch
            copy: [{src: f, dest: "/opt/\\0"}]
        """,
        [
            "ci-layers.yaml:5:27: error: layer 'a': copy dest has a part of 256 bytes "
            "('éééééééééééééééééééé…'); a file name takes at most 255",
            "ci-layers.yaml:9:27: error: layer 'b': copy dest '/opt/\\x00' contains a NUL byte",
        ],
        id="copy-dest-that-cannot-exist",
    ),
    pytest.param(
        """\
        version: 1
        layers:
          a: {from: scratch, timeout: soon}
          b: {from: scratch, timeout: 0}
          c: {from: scratch, timeout: 1h-30m}
          d: {from: scratch, timeout: [90]}
        """,
        [
            "ci-layers.yaml:3:31: error: layer 'a': timeout 'soon' is not a duration",
            "ci-layers.yaml:4:31: error: layer 'b': timeout 0 is not a duration",
            "ci-layers.yaml:5:31: error: layer 'c': timeout '1h-30m' is not a duration",
            "ci-layers.yaml:6:31: error: layer 'd': timeout must be a duration such as",
        ],
        id="timeout",
    ),
]


def test_a_long_dest_is_fine_in_a_layer_that_only_copies() -> None:
    """A tar takes a name past 255 bytes; only a root on disk cannot."""
    spec = parse_spec(
        "version: 1\nlayers:\n  a:\n    from: scratch\n"
        "    copy: [{src: f, dest: /opt/" + "x" * 256 + "/f}]\n"
    )
    assert spec.layers["a"].copy[0].dest == "/opt/" + "x" * 256 + "/f"


def test_timeouts_are_durations_and_no_part_of_the_key(tmp_path: Path) -> None:
    from ci_layers.keys import compute_keys
    from ci_layers.repo import worktree_files
    from ci_layers.spec import parse_duration

    assert [parse_duration(t) for t in ("90s", "15m", "1h30m", "2h", "600", 45)] == [
        90,
        900,
        5400,
        7200,
        600,
        45,
    ]
    assert [parse_duration(t) for t in ("", "1.5h", "m", "-5", 0, "1m2h", "0s")] == [None] * 7
    repo = GitRepo(tmp_path / "r")
    keys = []
    for extra in ("", "\n    timeout: 2h"):
        spec = parse_spec(f"version: 1\nlayers:\n  a:\n    from: scratch\n    run: x{extra}\n")
        assert spec.layers["a"].timeout == (7200 if extra else None)
        keys.append(compute_keys(spec, worktree_files(repo.root))["a"].digest)
    assert keys[0] == keys[1]


@pytest.mark.parametrize(("spec", "expected"), CASES)
def test_bad_spec_is_reported_with_place_and_exit_2(
    git_repo: GitRepo, spec: str, expected: list[str]
) -> None:
    code, err = check(git_repo, spec)
    assert code == 2
    for line in expected:
        assert line in err, f"{line!r} not in:\n{err}"
    assert "Traceback" not in err
    n = len([ln for ln in err.splitlines() if ": error: " in ln])
    assert f"{n} problem" in err.splitlines()[-1]


def test_all_problems_are_reported_in_one_run(git_repo: GitRepo) -> None:
    code, err = check(
        git_repo,
        """\
        version: 1
        layers:
          a: {from: scratch, colour: red}
          b: {parent: nope}
          c: {parent: a, run: 3}
          d: {parent: d}
        """,
    )
    assert code == 2
    assert "3:22: error: layer 'a': unknown key 'colour'" in err
    assert "4:15: error: layer 'b': unknown parent 'nope'" in err
    assert "5:23: error: layer 'c': run must be" in err
    assert "6:3: error: layer 'd': dependency cycle: d -> d" in err
    assert err.splitlines()[-1] == "4 problems in the spec"


def test_unpinned_base_is_a_warning_not_an_error(git_repo: GitRepo) -> None:
    code, err = check(
        git_repo,
        """\
        version: 1
        layers:
          base: {from: ubuntu:22.04}
        """,
    )
    assert code == 0
    assert (
        "ci-layers.yaml:3:16: warning: layer 'base': base image 'ubuntu:22.04' is not pinned" in err
    )


def test_annotations_under_github_actions(
    git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, err = check(git_repo, "version: 1\nlayers:\n  a: {parent: zz}\n")
    assert code == 2
    assert "::error file=ci-layers.yaml,line=3,col=15::a: unknown parent 'zz'" in err


def test_missing_spec_file(git_repo: GitRepo) -> None:
    code, _, err = run_cli(git_repo, "validate")
    assert code == 2
    assert "ci-layers.yaml: error: spec file not found" in err


def test_spec_outside_the_repository_is_named_by_its_path(
    git_repo: GitRepo, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text("version: 1\nlayers:\n  a: {from: scratch, run: [1]}\n")
    code, _, err = run_cli(git_repo, "validate", "--spec", str(elsewhere))
    assert code == 2
    assert f"{elsewhere}:3:28: error: layer 'a': run[0] must be a string" in err


def test_the_console_script_exits_2_without_traceback(git_repo: GitRepo) -> None:
    git_repo.write("ci-layers.yaml", "version: 1\nlayers:\n  a: {parent: b}\n  b: {parent: a}\n")
    done = subprocess.run(
        [sys.executable, "-m", "ci_layers.cli", "validate", "-C", str(git_repo.root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "ci-layers.yaml:3:3: error: layer 'a': dependency cycle: a -> b -> a" in done.stderr
    assert "Traceback" not in done.stderr


def test_parse_builds_frozen_layers() -> None:
    spec = parse_spec(GOOD)
    assert spec.graph.topological_order() == ["base", "app"]
    assert spec.layers["app"].where is not None
    assert spec.layers["app"].where.line == 5
    with pytest.raises(AttributeError):
        spec.layers["app"].parent = "x"  # type: ignore[misc]


def test_string_commands_are_docker_shell_form() -> None:
    spec = parse_spec(GOOD.replace("parent: base", "parent: base\n    entrypoint: run.sh --fast"))
    assert spec.layers["app"].entrypoint == ("/bin/sh", "-c", "run.sh --fast")


def test_invalid_spec_error_lists_all() -> None:
    with pytest.raises(SpecInvalid) as info:
        parse_spec("version: 1\nlayers:\n  a: {parent: x}\n  b: {parent: y}\n")
    assert [e.layer for e in info.value.errors] == ["a", "b"]


HOSTILE = [
    pytest.param(
        "version: 1\nlayers: {a: {from: scratch}}\nimages: [a]\n",
        "images must be a mapping",
        id="images-list",
    ),
    pytest.param(
        "version: 1\nglobal_inputs: 5\nlayers: {a: {from: scratch}}\n",
        "global_inputs must be a glob or a list of globs",
        id="globals-number",
    ),
    pytest.param(
        "version: 1\nlayers: {a: {from: scratch, inputs: ['[z-a]']}}\n",
        "invalid glob '[z-a]'",
        id="bad-input-range",
    ),
    pytest.param(
        "version: 1\nlayers: {a: {from: scratch, copy: [{src: 'x[', dest: /}]}}\n",
        "copy source 'x[': unterminated character class",
        id="bad-copy-glob",
    ),
    pytest.param(
        "version: 1\nlayers: {a: {from: scratch, copy: [{src: '[z-a]/x', dest: /}]}}\n",
        "copy source '[z-a]/x': bad pattern",
        id="bad-copy-range",
    ),
    pytest.param(
        "version: 1\nlayers: {a: {from: scratch, run: " + "[" * 400 + "]" * 400 + "}}\n",
        "nested too deeply",
        id="deep-nesting",
    ),
    pytest.param(
        "version: 1\nlayers:\n  1: {from: scratch}\n  true: {from: scratch}\n",
        "key 'true' must be a string: quote it",
        id="non-string-names",
    ),
    pytest.param(
        "version: 1\nlayers:\n  2001-12-14: {from: scratch}\n",
        "key '2001-12-14' must be a string: quote it",
        id="date-name",
    ),
    pytest.param(
        'version: 1\nlayers:\n  "a\\n": {from: scratch}\n',
        "a layer name cannot contain a line break",
        id="newline-name",
    ),
    pytest.param(
        'version: 1\nlayers: {a: {from: scratch, copy: [{src: x, dest: /, chmod: "755\\n"}]}}\n',
        "chmod must be an octal mode",
        id="newline-chmod",
    ),
]


@pytest.mark.parametrize(("spec", "message"), HOSTILE)
def test_hostile_specs_get_a_clear_error(git_repo: GitRepo, spec: str, message: str) -> None:
    git_repo.write("ci-layers.yaml", spec)
    code, _, err = run_cli(git_repo, "validate")
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err
    assert "internal error" not in err


def test_every_problem_at_once_even_among_broken_layers(git_repo: GitRepo) -> None:
    code, err = check(
        git_repo,
        """\
        version: 1
        layers:
          a: {parent: b, enviroment: {}}
          b: {parent: a}
          "x y": {from: scratch}
          "p q": {from: scratch}
          c: {from: ubuntu}
          d: {from: scratch, copy: [{chmod: "0755"}]}
        """,
    )
    assert code == 2
    assert "layer 'a': unknown key 'enviroment'" in err
    assert "layer 'a': dependency cycle: a -> b -> a" in err
    assert "invalid name 'x y'" in err
    assert "invalid name 'p q'" in err
    assert "warning: layer 'c': base image 'ubuntu' is not pinned" in err
    assert "copy[0] is missing the required key 'src'" in err
    assert "copy[0] is missing the required key 'dest'" in err


def test_merge_keys_may_be_overridden() -> None:
    spec = parse_spec(
        "version: 1\nlayers:\n  base: &b {from: scratch, run: x}\n  other:\n    <<: *b\n    run: y\n"
    )
    assert spec.layers["other"].run == ("y",)


def test_scalars_reach_the_image_as_written() -> None:
    spec = parse_spec(
        "version: 1\nlayers:\n  a:\n    from: scratch\n    user: 1000\n"
        "    env: {MODE: 0755, BIG: 1_000, HEX: 0x1F, F: 1.0, FLAG: yes}\n"
    )
    assert dict(spec.layers["a"].env) == {
        "MODE": "0755",
        "BIG": "1_000",
        "HEX": "0x1F",
        "F": "1.0",
        "FLAG": "yes",
    }
    assert spec.layers["a"].user == "1000"


def test_pinning_needs_a_whole_digest_and_drive_letters_only_count_with_a_slash() -> None:
    spec = parse_spec(
        "version: 1\nlayers:\n  a:\n    from: x@sha256:abc\n    copy: [{src: 'a:b', dest: /}]\n"
    )
    assert [w.message for w in spec.warnings] == [
        "base image 'x@sha256:abc' is not pinned by digest"
    ]
    with pytest.raises(SpecInvalid, match="is absolute"):
        parse_spec("version: 1\nlayers:\n  a: {from: scratch, copy: [{src: 'C:/x', dest: /}]}\n")


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, width=16),
    st.sampled_from(
        ["", "x", "../x", "/abs", "a@sha256:" + "0" * 64, "scratch", "[z-a]", "*", "!", "b"]
    ),
)
_KEYS = st.sampled_from(
    [
        "version",
        "layers",
        "images",
        "global_inputs",
        "dockerfiles",
        "image_overrides",
        "a",
        "b",
        "parent",
        "from",
        "run",
        "copy",
        "src",
        "dest",
        "from_layer",
        "exclude",
        "env",
        "inputs",
        "layer",
        "tags",
        "path",
        "image",
        "context",
        "build_args",
        "chmod",
        "user",
        "cmd",
    ]
)
_DOCS = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_KEYS, inner, max_size=5)),
    max_leaves=30,
)


_LAYER = st.dictionaries(
    st.sampled_from(["parent", "from", "run", "copy", "env", "inputs", "user", "cmd", "labels"]),
    st.one_of(
        _SCALARS,
        st.lists(_SCALARS, max_size=3),
        st.lists(st.dictionaries(_KEYS, _SCALARS, max_size=4), max_size=3),
        st.dictionaries(_KEYS, _SCALARS, max_size=3),
    ),
    max_size=5,
)
_SPECS = st.fixed_dictionaries(
    {"version": st.just(1), "layers": st.dictionaries(st.sampled_from(["a", "b", "c"]), _LAYER)},
    optional={"images": _DOCS, "global_inputs": _DOCS, "dockerfiles": _DOCS},
)


def _load(text: str) -> SpecInvalid | None:
    try:
        parse_spec(text)
    except SpecInvalid as exc:
        return exc
    return None


@given(st.one_of(_DOCS, _SPECS))
def test_any_document_is_a_spec_or_a_located_error(doc) -> None:
    """No input makes the loader fail in any other way (that would be exit 3)."""
    if isinstance(doc, dict):
        doc.setdefault("version", 1)
    problem = _load(yaml.safe_dump(doc))
    if problem is not None:
        assert problem.errors
        assert all(e.where.file == "ci-layers.yaml" for e in problem.errors)


def test_two_images_entries_pushing_one_tag_is_an_error() -> None:
    text = (
        "version: 1\nlayers:\n  a: {from: scratch}\n  b: {from: scratch}\n"
        "images:\n  one: {layer: a, tags: [r.example/app:1]}\n"
        "  two: {layer: b, tags: [r.example/app:1]}\n"
    )
    with pytest.raises(SpecInvalid) as info:
        parse_spec(text)
    assert "image 'two' pushes 'r.example/app:1', which image 'one' pushes too" in str(info.value)


@pytest.mark.parametrize("kind", ["device", "fifo", "folder"])
def test_a_spec_that_is_no_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    """/dev/zero was read for ever and a FIFO blocked (issue 12, case 8)."""
    import io
    import os

    from ci_layers.cli import main

    if kind == "device":
        path = "/dev/zero"
    elif kind == "fifo":
        path = str(tmp_path / "spec.fifo")
        os.mkfifo(path)
    else:
        path = str(tmp_path)
    err = io.StringIO()
    assert main(["validate", "-C", str(tmp_path), "--spec", path], out=io.StringIO(), err=err) == 2
    assert "the spec must be a regular file" in err.getvalue()


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("!!int abc", "'abc' is no valid int"),
        ("!!float x", "'x' is no valid float"),
        ("!!bool x", "'x' is no valid bool"),
        ("!!timestamp 2020-13-45", "'2020-13-45' is no valid timestamp"),
        ("1" * 5000, "is no valid int"),
    ],
)
def test_bad_scalars_are_located_errors(value: str, shown: str) -> None:
    """They raised a ValueError out of the loader: exit 3 (issue 12, case 8b)."""
    text = f"version: 1\nlayers:\n  a:\n    from: scratch\n    env:\n      X: {value}\n"
    with pytest.raises(SpecInvalid) as caught:
        parse_spec(text, filename="ci-layers.yaml")
    assert any(
        str(e).startswith("ci-layers.yaml:6:10: error:") and shown in str(e)
        for e in caught.value.errors
    )


def test_a_spec_linking_out_of_the_repository_is_refused(git_repo, tmp_path: Path) -> None:
    """A committed `ci-layers.yaml -> /runner/file` was read (issue 12, case 8c)."""
    import io
    import os

    from ci_layers.cli import main

    outside = tmp_path / "secret.yaml"
    outside.write_text("version: 1\nlayers: {}\n")
    os.symlink(outside, git_repo.root / "ci-layers.yaml")
    err = io.StringIO()
    assert main(["validate", "-C", str(git_repo.root)], out=io.StringIO(), err=err) == 2
    assert "ci-layers.yaml is a link that leaves the repository" in err.getvalue()
    # an explicit --spec outside the repository still works
    out = io.StringIO()
    assert main(["validate", "-C", str(git_repo.root), "--spec", str(outside)], out=out) == 0


def test_an_alias_bomb_is_refused_at_once() -> None:
    """Ten nested levels of ten aliases kept validate busy with no end (issue 12, case 4)."""
    lines = ["version: 1", "x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        lines.append(f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    lines += ["layers:", "  a:", "    from: scratch", "    run: *a9"]
    with pytest.raises(SpecInvalid) as caught:
        parse_spec("\n".join(lines) + "\n", filename="ci-layers.yaml")
    (error,) = caught.value.errors
    assert "aliases (*name) expand this value past 100,000 copies" in str(error)
    assert str(error).startswith("ci-layers.yaml:")


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    with pytest.raises(SpecInvalid, match="aliases"):
        parse_spec("version: 1\nx: &a [*a]\nlayers: {}\n", filename="ci-layers.yaml")


def test_modest_aliases_still_work() -> None:
    text = (
        "version: 1\nlayers:\n  a:\n    from: scratch\n    env: &e {A: '1'}\n"
        "  b:\n    parent: a\n    env: *e\n"
    )
    spec = parse_spec(text, filename="ci-layers.yaml")
    assert dict(spec.layers["b"].env) == {"A": "1"}


@pytest.mark.parametrize(
    ("typo", "meant"), [("layr-01234", "layer-01234"), ("layre-01234", "layer-01234")]
)
def test_suggestions_among_thousands_of_names(typo: str, meant: str) -> None:
    """Suggestions look at the names that share a start or an end with the typo, a bounded
    few, not at every name for every error (issue 12, case 8d)."""
    lines = ["version: 1", "layers:"]
    for i in range(2000):
        lines += [f"  layer-{i:05d}:", "    from: scratch"]
    lines += ["  child:", f"    parent: {typo}"]
    with pytest.raises(SpecInvalid) as caught:
        parse_spec("\n".join(lines) + "\n", filename="ci-layers.yaml")
    assert f"unknown parent '{typo}' (did you mean '{meant}'?)" in str(caught.value)


def test_an_input_glob_climbing_out_is_a_warning() -> None:
    """`../shared.lock` matched nothing, silently (issue 12, case 11)."""
    spec = parse_spec(
        "version: 1\nglobal_inputs: [../shared.lock]\nlayers:\n  a:\n    from: scratch\n"
        "    inputs: [ok.lock, ../x/y.lock]\n",
        filename="ci-layers.yaml",
    )
    shown = [str(w) for w in spec.warnings]
    assert any(
        w.startswith("ci-layers.yaml:2:") and "'../shared.lock' matches nothing" in w for w in shown
    )
    assert any("'../x/y.lock' matches nothing" in w for w in shown)
