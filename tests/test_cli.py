"""The CLI on the seed example of the README, as a user runs it."""

from __future__ import annotations

import ast
import io
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

import ci_layers
from ci_layers.cli import main
from ci_layers.graph import ImageLayer, LayerGraph
from ci_layers.report import graph_dot, graph_mermaid

from .conftest import FIXTURES
from .gitrepo import GitRepo


def run(repo: GitRepo, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "-C", str(repo.root)], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_validate(seed_repo: GitRepo) -> None:
    assert run(seed_repo, "validate") == (0, "ci-layers.yaml: ok, 4 layers, 1 image\n", "")


def test_validate_from_a_subdirectory_finds_the_repo_root(seed_repo: GitRepo) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(["validate", "-C", str(seed_repo.root / "src")], out=out, err=err) == 0


def test_graph_formats(seed_repo: GitRepo) -> None:
    code, text, _ = run(seed_repo, "graph")
    assert code == 0
    assert text.splitlines()[1:] == ["└── python-3.9", "    └── app-deps", "        └── my-app"]
    code, out, _ = run(seed_repo, "graph", "--format", "json")
    data = json.loads(out)
    assert data["order"] == ["ubuntu-base", "python-3.9", "app-deps", "my-app"]
    assert data["roots"] == ["ubuntu-base"]
    assert data["leaves"] == ["my-app"]
    assert data["layers"][3] == {
        "name": "my-app",
        "parents": ["app-deps"],
        "children": [],
        "depth": 3,
        "from": None,
    }
    _, mermaid, _ = run(seed_repo, "graph", "--format", "mermaid")
    assert mermaid.startswith("graph TD\n")
    assert "n2 --> n3" in mermaid
    _, dot, _ = run(seed_repo, "graph", "--format", "dot")
    assert '"app-deps" -> "my-app";' in dot


def test_order_and_affected(seed_repo: GitRepo) -> None:
    _, out, _ = run(seed_repo, "order", "app-deps", "--format", "json")
    assert json.loads(out) == {
        "targets": ["app-deps"],
        "order": ["ubuntu-base", "python-3.9", "app-deps"],
    }
    _, out, _ = run(seed_repo, "affected", "python-3.9", "--format", "json")
    assert json.loads(out) == {
        "changed": ["python-3.9"],
        "affected": ["python-3.9", "app-deps", "my-app"],
        "stages": [["python-3.9"], ["app-deps"], ["my-app"]],
    }
    code, _, err = run(seed_repo, "affected", "pyhton-3.9")
    assert code == 2
    assert err == (
        "error: no layer named 'pyhton-3.9' (did you mean 'python-3.9'?) in the spec "
        "(ci-layers graph lists them)\n"
    )
    code, _, err = run(seed_repo, "affected", "my-ap", "zzz", "app-deps")
    assert code == 2
    assert err.startswith("error: no layers named 'my-ap' (did you mean 'my-app'?), 'zzz' in")


def test_keys_are_stable_and_json(seed_repo: GitRepo) -> None:
    _, out1, _ = run(seed_repo, "keys", "--format", "json")
    _, out2, _ = run(seed_repo, "keys", "--format", "json", "--recipe")
    keys, full = json.loads(out1), json.loads(out2)
    assert list(keys["layers"]) == ["ubuntu-base", "python-3.9", "app-deps", "my-app"]
    for name, entry in keys["layers"].items():
        assert entry["key"] == full["layers"][name]["key"]
        assert entry["key"].startswith("sha256:")
        assert len(entry["key"]) == 71
    assert full["layers"]["python-3.9"]["recipe"]["parent"] == keys["layers"]["ubuntu-base"]["key"]
    assert "ci/build-env.sh" in full["layers"]["ubuntu-base"]["recipe"]["global_inputs"]


def test_schema_is_a_valid_json_schema_that_accepts_the_seed() -> None:
    out = io.StringIO()
    assert main(["schema"], out=out) == 0
    schema = json.loads(out.getvalue())
    jsonschema.Draft7Validator.check_schema(schema)
    seed = yaml.safe_load((FIXTURES / "seed" / "ci-layers.yaml").read_text())
    jsonschema.validate(seed, schema)


def test_demo_runs_and_explains_the_change() -> None:
    out = io.StringIO()
    assert main(["demo"], out=out) == 0
    text = out.getvalue()
    assert "keys that differ now: app-deps, my-app" in text
    assert "copy[0].files requirements.txt:" in text
    assert "reused from cache: ubuntu-base, python-3.9" in text


def test_demo_builds_the_build_fixture(monkeypatch) -> None:
    """The demo's last part builds fixtures/build; after the edit only `app` is rebuilt."""
    from .conftest import require

    require("busybox", "runc", root=True)
    out = io.StringIO()
    assert main(["demo"], out=out) == 0
    text = out.getvalue().split("== fixtures/build", 1)[1]
    first, second = text.split("== Edit src/main.sh", 1)
    assert "4 built, 0 reused" in first
    assert "1 built, 3 reused" in second
    assert "app    built" in second
    assert "only the copy layers build here" not in text


def test_demo_without_root_builds_the_copy_layers(monkeypatch) -> None:
    """Where `run` cannot run, the copy layers still build and the demo says why."""
    from .conftest import require

    require("busybox")
    monkeypatch.setattr("os.geteuid", lambda: 1000)  # the platform: a user without root
    out = io.StringIO()
    assert main(["demo"], out=out) == 0
    text = out.getvalue().split("== fixtures/build", 1)[1]
    assert "only the copy layers build here" in text
    assert "need root for runc" in text
    assert "2 built, 0 reused" in text.split("== Edit", 1)[0]  # os and docs


def test_console_script_entry_point(seed_repo: GitRepo) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ci_layers.cli", "order", "my-app", "-C", str(seed_repo.root)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines() == [
        "1. ubuntu-base",
        "2. python-3.9",
        "3. app-deps",
        "4. my-app",
    ]


def test_commands_other_than_gha_do_not_import_pygithub() -> None:
    # PyGithub takes ~0.2 s to import: a quarter of a small plan's run time.
    code = "import sys, ci_layers.cli; print('github' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_git_failure_is_an_error_not_a_traceback(seed_repo: GitRepo) -> None:
    code, _, err = run(seed_repo, "explain", "my-app", "--against", "no-such-branch")
    assert code == 1
    assert err.startswith("error: unknown revision 'no-such-branch'")


def test_hostile_names_cannot_break_diagrams() -> None:
    g = LayerGraph()
    evil = 'x"]; click n0 "javascript:alert(1)"; a[<b>'
    g.add_layer(ImageLayer(name=evil, base="scratch"))
    mermaid = graph_mermaid(g, highlight=[evil])
    label_line = mermaid.splitlines()[1]
    assert label_line.startswith('  n0["')
    assert label_line.endswith('"]')
    inside = label_line[6:-2]
    assert not set(inside) & set('"<>[]')
    dot = graph_dot(g)
    assert '"x\\"]; click n0' in dot


def test_public_api() -> None:
    assert set(ci_layers.__all__) >= {
        "ImageLayer",
        "LayerGraph",
        "DependencyResolver",
        "CiLayersError",
        "LayerBuilder",
        "ImageManifest",
    }
    for name in ci_layers.__all__:
        assert hasattr(ci_layers, name)


STEPS = [
    "errors",
    "gcpause",
    "graph",
    "refs",
    "spec",
    "resolver",
    "repo",
    "sources",
    "keys",
    "report",
    "demo",
    "cli",
]


def test_modules_import_only_earlier_steps() -> None:
    pkg = Path(ci_layers.__file__).parent
    for i, step in enumerate(STEPS):
        tree = ast.parse((pkg / f"{step}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                dep = node.module.split(".")[0]
                if dep in STEPS:
                    assert STEPS.index(dep) < i, f"{step} imports {dep}, a later step"


def test_the_build_path_stays_apart_from_planning() -> None:
    """oci/ knows nothing of planning (it shares only errors, atomic writes and what a
    platform is); planning never imports build/ or oci/."""
    pkg = Path(ci_layers.__file__).parent

    def imports(path: Path) -> set[str]:
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level and node.module:
                found.add(node.module.split(".")[0] if node.level == 1 else node.module)
            elif isinstance(node, ast.ImportFrom) and node.level:
                found.update(a.name for a in node.names)
        return found

    for path in (pkg / "oci").glob("*.py"):
        oci = {"digest", "store", "manifest", "layers", "reference", "auth", "registry", "transfer"}
        assert imports(path) <= {"errors", "atomic", "platforms", "__version__", *oci}, path
    assert not imports(pkg / "atomic.py")  # leaves both halves share
    assert not imports(pkg / "platforms.py")
    for step in ("spec", "keys", "changes", "mapping", "plan", "report", "gha", "outputs"):
        assert not imports(pkg / f"{step}.py") & {"build", "oci"}, step


def test_the_readme_shows_the_seed_spec_as_it_is() -> None:
    readme = (Path(ci_layers.__file__).resolve().parents[1] / "README.md").read_text()
    seed = (FIXTURES / "seed" / "ci-layers.yaml").read_text()
    assert f"```yaml\n{seed}```" in readme


def test_common_mistakes_get_errors_that_say_what_to_do(seed_repo: GitRepo, tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    nowhere = tmp_path / "nowhere"
    assert main(["validate", "-C", str(nowhere)], out=out, err=err) == 2
    assert err.getvalue() == f"error: -C {nowhere}: no such directory\n"
    (tmp_path / "empty").mkdir()
    err = io.StringIO()
    assert main(["validate", "-C", str(tmp_path / "empty")], out=out, err=err) == 2
    assert f"there is no {tmp_path / 'empty' / 'ci-layers.yaml'}; create it" in err.getvalue()
    code, _, err = run(seed_repo, "plan", "--event-name", "pull_request")
    assert (code, err) == (
        2,
        "error: --event-name pull_request needs --event FILE (the event payload)\n",
    )
    seed_repo.write(
        "ci-layers.yaml",
        "version: 1\nlayers:\n  a:\n    from: scratch\n    copy:\n      - {source: x, dest: /x}\n",
    )
    code, _, err = run(seed_repo, "validate")
    assert code == 2
    assert err.splitlines() == [
        "ci-layers.yaml:6:10: error: layer 'a': unknown key 'source' in copy[0] (did you mean 'src'?)",
        "1 problem in the spec",
    ]


def test_bake_says_what_it_leaves_out(seed_repo: GitRepo) -> None:
    code, out, err = run(seed_repo, "bake", "--base", "HEAD", "--head", "HEAD")
    assert code == 0
    assert json.loads(out)["group"]["default"]["targets"] == []
    assert err == ""
    seed_repo.write("src/myapp/new.py", "x = 1\n")
    seed_repo.commit("new module")
    code, out, err = run(seed_repo, "bake", "--base", "HEAD~1", "--head", "HEAD")
    assert (
        err
        == "note: bake covers Dockerfile images only; 1 spec layer(s) to rebuild are not in it: my-app\n"
    )


def test_a_mistyped_option_names_its_command(seed_repo: GitRepo) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ci_layers.cli",
            "keys",
            "--formt",
            "json",
            "-C",
            str(seed_repo.root),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert (
        done.stderr.splitlines()[-1]
        == "ci-layers keys: error: unrecognized arguments: --formt json"
    )
    assert done.stderr.startswith("usage: ci-layers keys ")
