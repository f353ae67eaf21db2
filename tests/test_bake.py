"""Bake files as definitions (issue 24): targets resolved as `docker buildx bake` resolves
them, planned over real git histories, read at each end of the comparison."""

from __future__ import annotations

import json

import pytest

from ci_layers.bakefile import BakeError, read_bake

from .gitrepo import GitRepo
from .test_dockerfiles import plan, run

R = "ghcr.io/acme"


def affected(repo: GitRepo, base: str) -> list[str]:
    return [n.removeprefix(R + "/") for n in plan(repo, base)["affected"]]


def one(text: str, name: str = "docker-bake.hcl", **kw) -> dict[str, object]:
    """The resolved targets, by name, as plain fields (bake --print's shape)."""
    out = {}
    for t in read_bake([(name, text)], **kw):
        out[t.name] = {
            "context": t.context,
            "dockerfile": t.dockerfile,
            **({"dockerfile-inline": t.dockerfile_inline} if t.dockerfile_inline else {}),
            **({"args": dict(t.args)} if t.args else {}),
            **({"labels": dict(t.labels)} if t.labels else {}),
            **({"tags": list(t.tags)} if t.tags else {}),
            **({"target": t.target} if t.target else {}),
            **({"platforms": list(t.platforms)} if t.platforms else {}),
            **({"contexts": dict(t.contexts)} if t.contexts else {}),
        }
    return out


# --- bake's own reference examples, resolved as `docker buildx bake --print` shows ----


def test_reference_inherits_merges_args_and_replaces_the_rest() -> None:
    # docs/bake-reference.md, "target.inherits"
    text = """
target "_common" {
  args = {
    GO_VERSION = "1.23"
    BUILDKIT_CONTEXT_KEEP_GIT_DIR = 1
  }
}
target "lint" {
  inherits = ["_common"]
  dockerfile = "./dockerfiles/lint.Dockerfile"
  output = ["type=cacheonly"]
}
target "docs" {
  inherits = ["_common"]
  dockerfile = "./dockerfiles/docs.Dockerfile"
  args = { GO_VERSION = "1.22" }
}
group "default" { targets = ["lint", "docs"] }
"""
    assert one(text) == {
        "lint": {
            "context": ".",
            "dockerfile": "./dockerfiles/lint.Dockerfile",
            "args": {"GO_VERSION": "1.23", "BUILDKIT_CONTEXT_KEEP_GIT_DIR": "1"},
        },
        "docs": {
            "context": ".",
            "dockerfile": "./dockerfiles/docs.Dockerfile",
            "args": {"GO_VERSION": "1.22", "BUILDKIT_CONTEXT_KEEP_GIT_DIR": "1"},
        },
    }


def test_reference_variables_functions_and_env_overrides() -> None:
    # docs/bake-reference.md, "variable" and "function": a function of a variable
    text = """
variable "TAG" { default = "latest" }
variable "REPO" { default = "user/repo" }
function "tag" {
  params = [tag]
  result = ["${REPO}:${tag}"]
}
target "webapp" {
  tags = tag("v1")
  args = { IMAGE_TAG = TAG, DEBUG = "${TAG == "latest" ? "yes" : "no"}" }
}
"""
    assert one(text)["webapp"] == {
        "context": ".",
        "dockerfile": "Dockerfile",
        "args": {"IMAGE_TAG": "latest", "DEBUG": "yes"},
        "tags": ["user/repo:v1"],
    }
    got = one(text, env={"TAG": "2.0", "REPO": "other/x"})["webapp"]
    assert got["tags"] == ["other/x:v1"]
    assert got["args"] == {"IMAGE_TAG": "2.0", "DEBUG": "no"}
    spec_wins = one(text, env={"TAG": "2.0"}, variables={"TAG": "3.0"})["webapp"]
    assert spec_wins["args"]["IMAGE_TAG"] == "3.0"


def test_reference_matrix_names_each_combination() -> None:
    # docs/bake-reference.md, "target.matrix" (with a map value, and a group naming it)
    text = """
target "app" {
  name = "app-${item.tgt}-${replace(item.version, ".", "-")}"
  matrix = {
    item = [
      { tgt = "foo", version = "1.0" },
      { tgt = "bar", version = "1.1" },
    ]
  }
  target = item.tgt
  args = { VERSION = item.version }
}
group "default" { targets = ["app"] }
"""
    assert one(text) == {
        "app-foo-1-0": {
            "context": ".",
            "dockerfile": "Dockerfile",
            "args": {"VERSION": "1.0"},
            "target": "foo",
        },
        "app-bar-1-1": {
            "context": ".",
            "dockerfile": "Dockerfile",
            "args": {"VERSION": "1.1"},
            "target": "bar",
        },
    }


def test_reference_contexts_link_targets_and_bake_builds_the_linked_one() -> None:
    text = """
target "base" { dockerfile = "baseapp.Dockerfile" }
target "app" {
  contexts = { baseapp = "target:base" }
}
group "default" { targets = ["app"] }
"""
    assert one(text) == {
        "app": {"context": ".", "dockerfile": "Dockerfile", "contexts": {"baseapp": "target:base"}},
        "base": {"context": ".", "dockerfile": "baseapp.Dockerfile"},
    }


def test_json_files_are_templates_as_hcl_json_reads_them() -> None:
    text = json.dumps(
        {
            "variable": {"TAG": {"default": "1"}},
            "group": {"default": {"targets": ["a"]}},
            "target": {"a": {"tags": ["r/a:${TAG}"], "args": {"X": "$${literal}"}}},
        }
    )
    assert one(text, "docker-bake.json")["a"]["tags"] == ["r/a:1"]
    assert one(text, "docker-bake.json")["a"]["args"] == {"X": "${literal}"}


def test_files_merge_as_dash_f_a_dash_f_b() -> None:
    base = 'target "a" {\n  tags = ["r/a:1"]\n  args = { X = "1", Y = "1" }\n}\n'
    override = 'target "a" {\n  args = { Y = "2" }\n}\n'
    (t,) = read_bake([("docker-bake.hcl", base), ("docker-bake.override.hcl", override)])
    assert dict(t.args) == {"X": "1", "Y": "2"}
    assert t.tags == ("r/a:1",)


@pytest.mark.parametrize(
    ("text", "line", "said"),
    [
        ('target "a" {\n  tags = [\n}\n', 3, "HCL syntax error"),
        ('target "a" {\n  tags = [nosuch("x")]\n}\n', 2, "unknown function nosuch()"),
        ('target "a" {\n  tags = [uper("x")]\n}\n', 2, "did you mean upper()?"),
        ('target "a" {\n  tags = [timestamp()]\n}\n', 2, "changes every second"),
        (
            'target "a" {\n  inherits = ["b"]\n  tags = ["a"]\n}\n'
            'target "b" {\n  inherits = ["a"]\n}\n',
            5,
            "inherits cycle",
        ),
        ('target "a" {\n  tags = [NOPE]\n}\n', 2, "unknown variable 'NOPE'"),
        ('target "a" {\n  bogus = 1\n}\n', 2, "attribute bake does not know: bogus"),
        ('target "a" {\n  name = "x"\n}\n', 2, "name requires matrix"),
        (
            'group "default" {\n  targets = ["nope"]\n}\ntarget "a" {}\n',
            2,
            "no target or group 'nope'",
        ),
        ('target "a" {\n  tags = ["%{ if true }x%{ endif }"]\n}\n', 2, "template directives"),
    ],
)
def test_bad_bake_files_are_located_errors(text: str, line: int, said: str) -> None:
    with pytest.raises(BakeError) as err:
        read_bake([("docker-bake.hcl", text)])
    assert said in err.value.message
    assert (err.value.file, err.value.line) == ("docker-bake.hcl", line)


# --- plans over real histories ------------------------------------------------------

BAKE = f"""
variable "REG" {{ default = "{R}" }}
variable "DEBIAN" {{ default = "bookworm" }}
group "default" {{ targets = ["app", "py"] }}
target "_common" {{
  args = {{ DEBIAN = DEBIAN, PIP = "24" }}
}}
target "base" {{
  inherits = ["_common"]
  context = "images/base"
  tags = ["${{REG}}/base:latest"]
}}
target "py" {{
  name = "py-${{replace(v, ".", "")}}"
  matrix = {{ v = ["3.11", "3.12"] }}
  inherits = ["_common"]
  context = "images/py"
  args = {{ PY = v }}
  tags = ["${{REG}}/py:${{v}}"]
}}
target "app" {{
  context = "images/app"
  contexts = {{ base = "target:base" }}
  tags = ["${{REG}}/app:1"]
}}
"""


@pytest.fixture
def baked(git_repo: GitRepo) -> GitRepo:
    git_repo.write("ci-layers.yaml", "version: 1\nbake:\n  - files: [docker-bake.hcl]\n")
    git_repo.write("docker-bake.hcl", BAKE)
    git_repo.write("images/base/Dockerfile", "ARG DEBIAN\nFROM debian:${DEBIAN}\nCOPY f /f\n")
    git_repo.write("images/base/f", "1\n")
    git_repo.write(
        "images/py/Dockerfile", f"FROM {R}/base:latest\nARG PY\nARG PIP\nRUN echo $PY $PIP\n"
    )
    git_repo.write("images/app/Dockerfile", "FROM base\nCOPY a /a\n")
    git_repo.write("images/app/a", "1\n")
    git_repo.commit("bake")
    return git_repo


def test_targets_are_images_by_first_tag_with_edges_by_tag_and_target_context(
    baked: GitRepo,
) -> None:
    code, out, err = run(baked, "graph", "--format", "json")
    assert code == 0, err
    layers = {x["name"].removeprefix(R + "/"): x for x in json.loads(out)["layers"]}
    assert sorted(layers) == ["app:1", "base:latest", "py:3.11", "py:3.12"]
    assert layers["app:1"]["parents"] == [f"{R}/base:latest"]  # contexts: target:base
    assert layers["py:3.12"]["parents"] == [f"{R}/base:latest"]  # FROM its tag


def test_a_change_under_one_target_rebuilds_it_and_what_is_built_on_it(baked: GitRepo) -> None:
    before = baked.git("rev-parse", "HEAD")
    baked.write("images/base/f", "2\n")
    baked.commit("base")
    assert sorted(affected(baked, before)) == ["app:1", "base:latest", "py:3.11", "py:3.12"]
    before = baked.git("rev-parse", "HEAD")
    baked.write("images/app/a", "2\n")
    baked.commit("app")
    assert affected(baked, before) == ["app:1"]


def test_an_inherited_arg_changed_rebuilds_the_targets_that_inherit_it(baked: GitRepo) -> None:
    before = baked.git("rev-parse", "HEAD")
    baked.write("docker-bake.hcl", BAKE.replace('PIP = "24"', 'PIP = "25"'))
    baked.commit("pip 25")
    # base declares no PIP (an arg no ARG declares does not reach the build): not rebuilt
    assert sorted(affected(baked, before)) == ["py:3.11", "py:3.12"]


def test_a_variable_default_changed_rebuilds_what_reads_it(baked: GitRepo) -> None:
    before = baked.git("rev-parse", "HEAD")
    baked.write("docker-bake.hcl", BAKE.replace('default = "bookworm"', 'default = "trixie"'))
    baked.commit("trixie")
    assert sorted(affected(baked, before)) == ["app:1", "base:latest", "py:3.11", "py:3.12"]
    p = plan(baked, before)
    reasons = p["layers"][f"{R}/base:latest"]["reasons"]
    assert any("externals" in r or "build_args" in r for r in reasons), reasons


def test_an_edit_elsewhere_in_the_file_rebuilds_nothing(baked: GitRepo) -> None:
    before = baked.git("rev-parse", "HEAD")
    baked.write("docker-bake.hcl", "# a comment\n" + BAKE + '\ntarget "unused" {}\n')
    baked.commit("comment and a target no group names")
    assert affected(baked, before) == []


def test_a_target_added_is_a_new_image(baked: GitRepo) -> None:
    before = baked.git("rev-parse", "HEAD")
    baked.write(
        "docker-bake.hcl",
        BAKE.replace('targets = ["app", "py"]', 'targets = ["app", "py", "tool"]')
        + 'target "tool" {\n  context = "images/app"\n  tags = ["${REG}/tool:1"]\n  contexts = { base = "target:base" }\n}\n',
    )
    baked.commit("tool")
    p = plan(baked, before)
    assert [n.removeprefix(R + "/") for n in p["affected"]] == ["tool:1"]
    # built as app is (same context, same base): the build app pushed serves, by key
    assert p["layers"][f"{R}/tool:1"]["reasons"] == [
        f"new name: same content as '{R}/app:1' at base, not pushed as this one"
    ]


def test_a_matrix_value_added_is_one_new_image(baked: GitRepo) -> None:
    before = baked.git("rev-parse", "HEAD")
    baked.write("docker-bake.hcl", BAKE.replace('["3.11", "3.12"]', '["3.11", "3.12", "3.13"]'))
    baked.commit("3.13")
    assert affected(baked, before) == ["py:3.13"]


def test_a_tag_moving_between_targets_moves_the_edge(git_repo: GitRepo) -> None:
    """`latest` given to the newest version's target: a child `FROM …:latest` follows it,
    and is rebuilt when it moves (at every commit, as each end reads its own files)."""
    git_repo.write("ci-layers.yaml", "version: 1\nbake:\n  - glob: 'bake/*.json'\n")

    def release(versions: list[str]) -> str:
        targets = {}
        for v in versions:
            tags = [f"{R}/py:{v}"] + ([f"{R}/py:latest"] if v == versions[-1] else [])
            targets[f"py{v.replace('.', '')}"] = {
                "context": ".",
                "dockerfile": f"py_{v}.Dockerfile",
                "tags": tags,
            }
        targets["tool"] = {"context": ".", "dockerfile": "tool.Dockerfile", "tags": [f"{R}/tool:1"]}
        return json.dumps({"target": targets}, indent=2)

    for v in ("3.11", "3.12"):
        git_repo.write(f"py_{v}.Dockerfile", f"FROM python:{v}-slim\n")
    git_repo.write("tool.Dockerfile", f"FROM {R}/py:latest\nRUN true\n")
    git_repo.write("bake/main.json", release(["3.11"]))
    first = git_repo.commit("3.11 is latest")
    code, out, err = run(git_repo, "graph", "--format", "json")
    assert code == 0, err
    parents = {x["name"]: x["parents"] for x in json.loads(out)["layers"]}
    assert parents[f"{R}/tool:1"] == [f"{R}/py:3.11"]
    git_repo.write("bake/main.json", release(["3.11", "3.12"]))
    git_repo.commit("3.12 is latest")
    # 3.12 is new; 3.11 only lost a tag (nothing to push); tool follows latest to 3.12
    assert sorted(affected(git_repo, first)) == ["py:3.12", "tool:1"]
    p = plan(git_repo, first)
    assert p["layers"][f"{R}/tool:1"]["parents"] == [f"{R}/py:3.12"]


def test_each_glob_match_is_a_definition_of_its_own(git_repo: GitRepo) -> None:
    git_repo.write("ci-layers.yaml", "version: 1\nbake:\n  - glob: 'releases/*.hcl'\n")
    for name in ("a", "b"):  # both define a target "img": one each, no merge
        git_repo.write(
            f"releases/{name}.hcl",
            f'target "img" {{\n  context = "{name}"\n  tags = ["{R}/{name}:1"]\n}}\n',
        )
        git_repo.write(f"{name}/Dockerfile", "FROM busybox\n")
    git_repo.commit("two releases")
    code, out, err = run(git_repo, "graph", "--format", "json")
    assert code == 0, err
    assert sorted(x["name"] for x in json.loads(out)["layers"]) == [f"{R}/a:1", f"{R}/b:1"]


def test_bad_input_in_the_repository_is_a_located_error(baked: GitRepo) -> None:
    baked.write(
        "docker-bake.hcl", BAKE.replace('context = "images/app"', 'context = "images/nope"')
    )
    baked.commit("no such context")
    code, _out, err = run(baked, "validate")
    assert code != 0
    assert "docker-bake.hcl:21:1: error" in err
    assert "bake target 'app': its Dockerfile images/nope/Dockerfile does not exist" in err
    baked.write(
        "docker-bake.hcl",
        BAKE.replace('context = "images/app"', 'context = "images/py"\n  dockerfile = "Nope"'),
    )
    baked.commit("no such Dockerfile")
    code, _out, err = run(baked, "validate")
    assert "bake target 'app': its Dockerfile images/py/Nope does not exist" in err
    baked.write("docker-bake.hcl", BAKE + 'target "x" {\n  tags = [lowr("X")]\n}\n')
    baked.commit("typo")
    code, _out, err = run(baked, "validate")
    assert code != 0
    assert "docker-bake.hcl:27:1: error: unknown function lowr(); did you mean lower()?" in err
    assert "Traceback" not in err


def test_with_no_spec_the_default_bake_files_are_the_spec(git_repo: GitRepo) -> None:
    git_repo.write("docker-bake.hcl", 'target "default" {\n  tags = ["r/one:1"]\n}\n')
    git_repo.write("Dockerfile", "FROM busybox\nCOPY x /x\n")
    git_repo.write("x", "1\n")
    before = git_repo.commit("zero configuration")
    git_repo.write("x", "2\n")
    git_repo.commit("x")
    p = plan(git_repo, before)
    assert p["affected"] == ["r/one:1"]
    code, out, err = run(git_repo, "bake", "--base", before, "--head", "HEAD")
    assert code == 0, err
    (target,) = json.loads(out)["target"].values()
    assert target["context"] == "."
    assert target["dockerfile"] == "Dockerfile"


def test_the_bake_output_keeps_what_bake_would_build(baked: GitRepo) -> None:
    baked.write(
        "docker-bake.hcl",
        BAKE.replace(
            'tags = ["${REG}/app:1"]',
            'tags = ["${REG}/app:1"]\n  labels = { team = "x" }\n  platforms = ["linux/amd64"]',
        ),
    )
    before = baked.git("rev-parse", "HEAD")
    baked.commit("labels")
    code, out, err = run(baked, "bake", "--base", before, "--head", "HEAD")
    assert code == 0, err
    (app,) = json.loads(out)["target"].values()
    assert app["labels"] == {"team": "x"}
    assert app["platforms"] == ["linux/amd64"]
    assert app["contexts"] == {"base": f"docker-image://{R}/base:latest"}  # not rebuilt
    assert app["context"] == "images/app"


def test_a_variable_set_in_the_environment_is_read_each_time(baked: GitRepo, monkeypatch) -> None:
    """As `docker buildx bake` reads REG from the environment; kept results are keyed by it."""
    code, out, err = run(baked, "graph", "--format", "json")
    assert code == 0, err
    assert f"{R}/app:1" in {x["name"] for x in json.loads(out)["layers"]}
    monkeypatch.setenv("REG", "registry.example.com/other")
    code, out, err = run(baked, "graph", "--format", "json")
    assert code == 0, err
    names = {x["name"] for x in json.loads(out)["layers"]}
    assert "registry.example.com/other/app:1" in names


def test_matrix_entries_of_bake_images_carry_their_named_contexts_and_labels(
    baked: GitRepo,
) -> None:
    from .test_gha import run_gha

    before = baked.git("rev-parse", "HEAD")
    baked.write(
        "docker-bake.hcl",
        BAKE.replace(
            'tags = ["${REG}/app:1"]', 'tags = ["${REG}/app:1"]\n  labels = { team = "x" }'
        ),
    )
    baked.write("images/app/a", "2\n")
    after = baked.commit("app")
    event = {"ref": "refs/heads/main", "before": before, "after": after}
    done, out, _ = run_gha(baked, "push", event)
    assert done.returncode == 0, done.stderr
    entries = {e["name"]: e for e in json.loads(out["matrix"])["include"]}
    assert sorted(entries) == [f"{R}/app:1"], sorted(entries)
    app = entries[f"{R}/app:1"]
    assert app["docker"]["build-contexts"] == f"base=docker-image://{R}/base:latest"
    assert app["docker"]["labels"] == "team=x"
    assert app["docker"]["context"] == "images/app"


# --- what the review found ----------------------------------------------------------


def test_a_plan_reads_the_environment_of_its_run(baked: GitRepo, monkeypatch) -> None:
    """Each end of a comparison with bake files is computed again (not taken from what
    a run under another environment kept)."""
    before = baked.git("rev-parse", "HEAD")
    baked.write("images/app/a", "2\n")
    baked.commit("app")
    code, out, err = run(baked, "bake", "--base", before, "--head", "HEAD")
    assert code == 0, err
    assert next(t["tags"] for t in json.loads(out)["target"].values())[0].startswith(R)
    monkeypatch.setenv("REG", "registry.example.com/other")
    code, out, err = run(baked, "bake", "--base", before, "--head", "HEAD")
    assert code == 0, err
    (tags,) = [t["tags"] for t in json.loads(out)["target"].values()]
    assert tags[0].startswith("registry.example.com/other/app:ci-layers-")


def test_inherits_of_blocks_of_one_name_are_joined_as_bake_appends_them() -> None:
    a = 'target "x" {\n  args = { A = "1" }\n}\ntarget "y" {\n  args = { B = "2" }\n}\n'
    a += 'target "app" {\n  inherits = ["x"]\n  tags = ["r/app"]\n}\n'
    b = 'target "app" {\n  inherits = ["y"]\n}\n'
    targets = {t.name: t for t in read_bake([("a.hcl", a), ("b.hcl", b)], targets=["app"])}
    assert dict(targets["app"].args) == {"A": "1", "B": "2"}


def test_the_last_group_of_a_name_wins_and_abstract_targets_are_no_images() -> None:
    a = 'group "default" {\n  targets = ["a", "b"]\n}\ntarget "a" {}\ntarget "b" {}\n'
    b = 'group "default" {\n  targets = ["b"]\n}\n'
    assert [t.name for t in read_bake([("a.hcl", a), ("b.hcl", b)])] == ["b"]
    text = 'target "_common" {\n  args = { A = "1" }\n}\n'
    text += 'target "app" {\n  inherits = ["_common"]\n}\n'
    assert [t.name for t in read_bake([("x.hcl", text)])] == ["app"]  # no default group


def test_values_as_bake_has_them() -> None:
    text = """
variable "EMPTY" {}
variable "LIST" { default = ["a"] }
target "t" {
  args = {
    E = "[${EMPTY}]"
    IS = equal(EMPTY, "")
    BIG = 1e21
    SMALL = 1.5e-7
    J = jsonencode({ b = 1, a = "<" })
    L = join(",", LIST)
    CTX = BAKE_CMD_CONTEXT
  }
}
"""
    (t,) = read_bake([("d.hcl", text)], env={"LIST": "x, y"})
    assert dict(t.args) == {
        "E": "[]",
        "IS": "true",
        "BIG": "1000000000000000000000",
        "SMALL": "0.00000015",
        "J": '{"a":"\\u003c","b":1}',
        "L": "x,y",
        "CTX": ".",
    }
    data = {"target": {"t": [{"tags": ["r/t"]}, {"args": {"A": "1"}}]}}  # blocks as a list
    (t,) = read_bake([("d.json", json.dumps(data))])
    assert (t.tags, dict(t.args)) == (("r/t",), {"A": "1"})


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            'target "a" {\n  dockerfile-inline = <<EOT\nRUN %{ if true }x%{ endif }\nEOT\n}\n',
            "directives",
        ),
        ('target "a" {\n  args = { A = [1] }\n}\n', "cannot be interpolated"),
        ('target "a" {\n  args = { A = divide(1, 0) }\n}\n', "divide()"),
        ('target "a" {\n  args = { A = format("%s %s", "x") }\n}\n', "format()"),
        ('target "a" {\n  args = { A = pow(10, 400) }\n}\n', "pow()"),
        (
            'function "f" {\n  params = [x]\n  result = f(x)\n}\ntarget "a" {\n  args = { A = f(1) }\n}\n',
            "calls itself",
        ),
        ('function "f" {\n  params = ["x"]\n  result = x\n}\ntarget "a" {}\n', "bare name"),
        ('target "p" {\n  name = { a = 1 }\n  matrix = { v = [1] }\n}\n', "string"),
    ],
)
def test_odd_values_are_located_errors_never_a_crash(text: str, said: str) -> None:
    with pytest.raises(BakeError) as err:
        read_bake([("d.hcl", text)])
    assert said in err.value.message
    assert err.value.file == "d.hcl"
    assert err.value.line > 0


def test_the_bake_output_writes_literal_dollars_as_bake_reads_them(git_repo: GitRepo) -> None:
    git_repo.write("README", "images\n")
    before = git_repo.commit("nothing yet")
    git_repo.write("ci-layers.yaml", "version: 1\nbake:\n  - files: [docker-bake.hcl]\n")
    git_repo.write(
        "docker-bake.hcl",
        'target "a" {\n  tags = ["r/a"]\n  labels = { home = "$${HOME}" }\n'
        '  dockerfile-inline = "FROM busybox\\nRUN echo $${GREETING}\\n"\n}\n',
    )
    git_repo.commit("literal dollars")
    code, out, err = run(git_repo, "bake", "--base", before, "--head", "HEAD")
    assert code == 0, err
    bake = json.loads(out)
    (entry,) = bake["target"].values()
    assert entry["labels"] == {"home": "$${HOME}"}
    assert entry["dockerfile-inline"] == "FROM busybox\nRUN echo $${GREETING}\n"
    # read back as bake reads it: the literal text again
    (t,) = read_bake([("docker-bake.json", json.dumps(bake))])
    assert dict(t.labels) == {"home": "${HOME}"}
    assert t.dockerfile_inline == "FROM busybox\nRUN echo ${GREETING}\n"


def test_a_remote_named_context_is_a_located_error(baked: GitRepo) -> None:
    baked.write(
        "docker-bake.hcl",
        BAKE.replace(
            'contexts = { base = "target:base" }',
            'contexts = { src = "https://example.com/x.git#v1" }',
        ),
    )
    baked.commit("remote context")
    code, _out, err = run(baked, "validate")
    assert code != 0
    assert "docker-bake.hcl:21:1: error" in err
    assert "its context src = 'https://example.com/x.git#v1' is not in the repository" in err


def test_an_untagged_target_is_built_where_it_is_used_and_never_pushed(git_repo: GitRepo) -> None:
    git_repo.write("ci-layers.yaml", "version: 1\nbake:\n  - files: [docker-bake.hcl]\n")
    git_repo.write(
        "docker-bake.hcl",
        'group "default" {\n  targets = ["app"]\n}\n'
        'target "base" {\n  context = "base"\n}\n'
        'target "app" {\n  context = "app"\n  tags = ["r/app:1"]\n'
        '  contexts = { base = "target:base" }\n}\n',
    )
    git_repo.write("base/Dockerfile", "FROM busybox\nCOPY f /f\n")
    git_repo.write("base/f", "1\n")
    git_repo.write("app/Dockerfile", "FROM base\nCOPY a /a\n")
    git_repo.write("app/a", "1\n")
    before = git_repo.commit("untagged base")
    git_repo.write("app/a", "2\n")
    git_repo.commit("app")
    code, out, err = run(git_repo, "bake", "--base", before, "--head", "HEAD", "--publish")
    assert code == 0, err
    targets = json.loads(out)["target"]
    assert targets["base"]["tags"] == []  # built by the same bake run, pushed nowhere
    assert targets["r-app-1"]["contexts"] == {"base": "target:base"}
    assert targets["r-app-1"]["tags"][0] == "r/app:1"
    # a FROM base elsewhere is Docker Hub's base, not this target
    code, out, err = run(git_repo, "graph", "--format", "json")
    assert {x["name"] for x in json.loads(out)["layers"]} == {"base", "r/app:1"}


def test_the_hcl_parser_loads_only_for_bake_files() -> None:
    """A plan without bake files pays nothing for them (lark's import is 45 ms)."""
    import subprocess
    import sys

    code = "import sys, ci_layers.cli, ci_layers.plan; print('lark' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_the_action_plans_a_repository_that_has_only_bake_files(git_repo: GitRepo) -> None:
    from .test_gha import run_gha

    git_repo.write(
        "docker-bake.hcl",
        'group "default" {\n  targets = ["app"]\n}\n'
        'target "app" {\n  context = "app"\n  tags = ["r/app:1"]\n  platforms = ["linux/amd64", "linux/arm64"]\n}\n',
    )
    git_repo.write("app/Dockerfile", "FROM busybox\nCOPY a /a\n")
    git_repo.write("app/a", "1\n")
    before = git_repo.commit("bake only")
    git_repo.write("app/a", "2\n")
    after = git_repo.commit("app")
    event = {"ref": "refs/heads/main", "before": before, "after": after}
    done, out, summary = run_gha(git_repo, "push", event)
    assert done.returncode == 0, done.stdout + done.stderr
    matrix = json.loads(out["matrix"])["include"]
    assert sorted((e["name"], e["runner"]) for e in matrix) == [
        ("r/app:1 (linux/amd64)", "ubuntu-24.04"),
        ("r/app:1 (linux/arm64)", "ubuntu-24.04-arm"),
    ]
    assert "2 of 2" in summary
