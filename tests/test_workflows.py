"""action.yml and the workflows, validated offline as GitHub would read them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is not installed: run scripts/test, which installs it"
    return found


@pytest.mark.parametrize(
    ("schema", "files"),
    [
        ("vendor.github-workflows", WORKFLOWS),
        ("vendor.github-actions", [ROOT / "action.yml", ROOT / "job" / "action.yml"]),
    ],
)
def test_schema(schema: str, files: list[Path]) -> None:
    cmd = [tool("check-jsonschema"), "--builtin-schema", schema, *map(str, files)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor_offline_finds_nothing() -> None:
    done = subprocess.run(
        [tool("zizmor"), "--offline", "--no-progress", str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _steps(doc: dict) -> list[dict]:
    if "runs" in doc:
        return doc["runs"].get("steps", [])
    return [s for job in doc["jobs"].values() for s in job.get("steps", [])]


@pytest.mark.parametrize(
    "path",
    [ROOT / "action.yml", ROOT / "job" / "action.yml", *WORKFLOWS],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_every_use_is_pinned_and_no_expression_reaches_a_script(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    for step in _steps(doc):
        uses = step.get("uses")
        if uses and not uses.startswith("./"):
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", uses), uses
        assert "${{" not in step.get("run", ""), step.get("run")


def test_action_inputs_reach_the_tool_through_env() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    plan = next(s for s in action["runs"]["steps"] if s.get("id") == "plan")
    for name in action["inputs"]:
        var = "INPUT_" + name.upper().replace("-", "_")
        assert plan["env"][var] == "${{ inputs." + name + " }}"
    for name, out in action["outputs"].items():
        assert out["value"] == "${{ steps.plan.outputs." + name + " }}"


def _readme_workflows() -> list[str]:
    """The README's YAML snippets that are workflows (they have `jobs:`)."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    return [b for b in blocks if re.search(r"^jobs:", b, flags=re.M)]


def test_the_readme_workflow_snippets_are_valid_workflows(tmp_path: Path) -> None:
    snippets = _readme_workflows()
    assert snippets, "the README shows a workflow"
    files = []
    for i, text in enumerate(snippets):
        path = tmp_path / f"readme-{i}.yml"
        path.write_text(text.replace("<commit sha>", "0" * 40))
        files.append(str(path))
    cmd = [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_max_stages_is_one_number_in_the_tool_the_action_and_the_examples() -> None:
    from ci_layers.gha import DEFAULT_STAGES

    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["inputs"]["max-stages"]["default"] == str(DEFAULT_STAGES)
    example = yaml.safe_load((ROOT / ".github/workflows/example-build.yml").read_text())
    stage_jobs = [j for j in example["jobs"] if re.fullmatch(r"stage-\d+", j)]
    plan_step = next(s for s in example["jobs"]["plan"]["steps"] if s.get("id") == "plan")
    assert plan_step["with"]["max-stages"] == str(len(stage_jobs)) == str(DEFAULT_STAGES)
    for text in _readme_workflows():
        if "outputs.stages" in text:  # a workflow of stage jobs
            assert f'max-stages: "{DEFAULT_STAGES}"' in text


def test_stage_jobs_are_named_by_their_stage_and_matrix_name() -> None:
    """Without `name:`, GitHub's checks list spells out every matrix value of a job."""
    example = yaml.safe_load((ROOT / ".github/workflows/example-build.yml").read_text())
    for job, body in example["jobs"].items():
        if m := re.fullmatch(r"stage-(\d+)", job):
            assert body["name"] == f"stage {m[1]}: ${{{{ matrix.name }}}}", job


def test_the_readme_describes_every_input_and_output_of_the_action() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The GitHub Action", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `([\w-]+)`(?: / `([\w-]+)`)? \|", section, flags=re.M))
    described = {name for row in rows for name in row if name}
    missing = (set(action["inputs"]) | set(action["outputs"])) - described
    assert not missing, f"README rows missing for {sorted(missing)}"
