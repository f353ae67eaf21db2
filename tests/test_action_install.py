"""The composite action as another repository runs it: the caller's checkout in the
workspace, the action in the runner's `_actions` folder outside it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from .composite import Runner, StepFailed
from .conftest import FIXTURES
from .fake_github import FakeGitHub
from .gitrepo import GitRepo

ROOT = Path(__file__).resolve().parents[1]
SHA = "0123456789abcdef0123456789abcdef01234567"


def _copy_action(dest: Path) -> None:
    """The action as `uses: owner/name@sha` unpacks it: this checkout's files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        rel = raw.decode()
        src = ROOT / rel
        if src.is_file() and not rel.startswith(("tests/", "bench/")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes(src.read_bytes())


def _setup_python(runner: Runner, given: dict[str, str]) -> dict[str, str]:
    """actions/setup-python: with `cache`, its dependency files are globbed in the
    workspace only (actions/setup-python#361), and none found fails the step."""
    assert given.get("python-version"), "setup-python needs a python-version"
    if given.get("cache"):
        deps = given.get("cache-dependency-path") or "**/requirements.txt"
        if not runner.glob_in_workspace(deps):
            raise StepFailed(
                f"No file in {runner.workspace} matched to [{deps}], make sure you have "
                "checked out the target repository"
            )
    # This machine's interpreter, whose venvs see the test environment's packages (the
    # pinned versions requirements/action.txt names), so pip needs no network.
    outer = sysconfig.get_paths()["purelib"]
    wrapper = runner.temp / "setup-python" / "python3"
    wrapper.parent.mkdir(exist_ok=True)
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = -m ] && [ "$2" = venv ]; then\n'
        f'  "{sys.executable}" "$@" || exit\n'
        '  site=$("$3/bin/python" -c "import sysconfig; print(sysconfig.get_paths()[\'purelib\'])")\n'
        f'  echo "{outer}" > "$site/_outer.pth"\n'
        "  exit 0\n"
        "fi\n"
        f'exec "{sys.executable}" "$@"\n'
    )
    wrapper.chmod(0o755)
    version = ".".join(map(str, sys.version_info[:3]))
    return {"python-path": str(wrapper), "python-version": version, "cache-hit": "false"}


def _cache(runner: Runner, given: dict[str, str]) -> dict[str, str]:
    """actions/cache: a path and a key, whose parts must all have been filled in."""
    assert given.get("path"), "actions/cache needs a path"
    key = given.get("key", "")
    assert key, "actions/cache needs a key"
    assert "," not in key, key
    assert len(key) <= 512, key
    assert not re.search(r"--|-$", key), f"a part of the cache key is empty: {key!r}"
    runner.log.append(f"cache key: {key}")
    return {"cache-hit": "false"}


def _runner(tmp_path: Path, repo: GitRepo, action: Path, gh: FakeGitHub, event: dict) -> Runner:
    temp = tmp_path / "runner-temp"
    temp.mkdir(parents=True)
    (temp / "event.json").write_text(json.dumps(event))
    (temp / "summary.md").write_text("")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(repo.root),
        "RUNNER_TEMP": str(temp),
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(temp / "event.json"),
        "GITHUB_STEP_SUMMARY": str(temp / "summary.md"),
        "GITHUB_REPOSITORY": "o/r",
        "GITHUB_API_URL": gh.url,
        # offline: what pip installs is here already; no isolated build (pip reads this
        # negated option's variable inverted: 0 turns isolation off)
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",
        "PIP_CONFIG_FILE": os.devnull,
    }
    github = {"sha": event["pull_request"]["head"]["sha"], "token": "ghs_runner_token"}
    return Runner(
        workspace=repo.root,
        action_path=action,
        temp=temp,
        env=env,
        github=github,
        handlers={"actions/setup-python": _setup_python, "actions/cache": _cache},
    )


@pytest.fixture
def outside(tmp_path: Path, git_repo: GitRepo) -> tuple[GitRepo, Path]:
    """A caller's pull request, and the action unpacked where the runner puts it."""
    git_repo.copy_fixture(FIXTURES / "monorepo")
    git_repo.commit("monorepo")
    action = tmp_path / "_actions" / "ci-layers" / "ci-layers" / SHA
    action.mkdir(parents=True)
    _copy_action(action)
    assert not action.is_relative_to(git_repo.root)
    return git_repo, action


def _pull_request(repo: GitRepo) -> dict:
    base = repo.git("rev-parse", "HEAD")
    repo.git("checkout", "-q", "-b", "pr")
    repo.write("services/api/poetry.lock", "fastapi==0.115.9\n")
    head = repo.commit("pr")
    return {
        "pull_request": {"number": 4, "base": {"sha": base}, "head": {"sha": head}},
        "repository": {"full_name": "o/r"},
    }


def test_the_action_installs_and_plans_from_outside_the_callers_checkout(
    tmp_path: Path, outside: tuple[GitRepo, Path], gh: FakeGitHub
) -> None:
    repo, action = outside
    event = _pull_request(repo)
    runner = _runner(tmp_path, repo, action, gh, event)
    outputs = runner.run_action({"max-stages": "3"})
    assert outputs["has-changes"] == "true", "\n".join(runner.log)
    assert json.loads(outputs["affected"]) == ["api-deps", "api"]
    assert Path(outputs["plan-file"]).is_relative_to(runner.temp)
    assert gh.bodies(4)[0].startswith("<!-- ci-layers:plan ci-layers.yaml -->")
    # ci-layers ran from the venv the action built from its own copy, not from this tree
    venv = runner.temp / "ci-layers-venv"
    where = subprocess.run(
        [venv / "bin/python", "-c", "import ci_layers; print(ci_layers.__file__)"],
        cwd=repo.root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(venv), where
    # pip's cache is keyed by the hash of the action's own requirements file
    requirements = runner.steps["requirements"]["outputs"]["hash"]
    assert re.fullmatch(r"[0-9a-f]{32}", requirements)
    assert any(line.endswith(requirements) for line in runner.log if "ci-layers-pip" in line)
    # the caller's checkout is left as it was
    assert repo.git("status", "--porcelain", "--ignored") == ""


def test_the_harness_fails_as_github_did_for_setup_pythons_cache_of_the_actions_files(
    tmp_path: Path, outside: tuple[GitRepo, Path], gh: FakeGitHub
) -> None:
    """The install step as it was (actions/setup-python#361): the runner here must fail
    it, or the test above proves nothing about the workspace boundary."""
    repo, action = outside
    doc = yaml.safe_load((action / "action.yml").read_text())
    setup = next(s for s in doc["runs"]["steps"] if s.get("id") == "python")
    setup["with"].update(
        {
            "cache": "pip",
            "cache-dependency-path": "${{ github.action_path }}/requirements/action.txt",
        }
    )
    (action / "action.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    runner = _runner(tmp_path, repo, action, gh, _pull_request(repo))
    with pytest.raises(StepFailed, match=r"No file in .* matched to"):
        runner.run_action({})


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("inputs.c == 'true' && format('{0}/x', runner.temp) || 'off'", "/t/x"),
        ("inputs.off == 'true' && format('{0}/x', runner.temp) || 'off'", "off"),
        ("inputs.c == 'TRUE'", True),  # GitHub compares strings ignoring case
        ("!inputs.missing", True),
        ("inputs.missing || 'default'", "default"),
        ("steps.python.outputs.python-version", "3.12.1"),
        ("'1' == 1", True),  # another type: compared as numbers
        ("inputs.missing == null", True),
        ("INPUTS.C", "true"),  # property names ignore case
        ("format('{{0}} {0}', 'a')", "{0} a"),
        ("'x' == 1", False),  # NaN equals nothing
    ],
)
def test_the_harness_reads_expressions_as_github_does(expr: str, value: object) -> None:
    from .composite import evaluate

    context = {
        "inputs": {"c": "true", "off": "false"},
        "runner": {"temp": "/t"},
        "steps": {"python": {"outputs": {"python-version": "3.12.1"}}},
    }
    assert evaluate(expr, context) == value


def _artifacts(store: dict[str, dict[str, bytes]]):
    """actions/upload-artifact and download-artifact (v4) over one run's artifacts: an
    existing name is refused unless `overwrite`, no file is an error with
    `if-no-files-found: error`, an unknown name fails the download."""

    def upload(runner: Runner, given: dict[str, str]) -> dict[str, str]:
        name = given.get("name") or "artifact"
        files = [Path(p) for p in given["path"].splitlines() if p.strip()]
        found = [f for f in files if f.is_file()]
        if not found and given.get("if-no-files-found") == "error":
            raise StepFailed(f"No files were found with the provided path: {given['path']}")
        if name in store and given.get("overwrite") != "true":
            raise StepFailed(f"an artifact with this name already exists: {name}")
        store[name] = {f.name: f.read_bytes() for f in found}
        return {"artifact-id": str(len(store))}

    def download(runner: Runner, given: dict[str, str]) -> dict[str, str]:
        name = given["name"]
        if name not in store:
            raise StepFailed(f"Unable to download artifact(s): Artifact not found for name: {name}")
        where = Path(given.get("path") or runner.workspace)
        where.mkdir(parents=True, exist_ok=True)
        for file, data in store[name].items():
            (where / file).write_bytes(data)
        return {"download-path": str(where)}

    return {"actions/upload-artifact": upload, "actions/download-artifact": download}


def test_a_stage_job_reads_its_whole_entry_when_the_outputs_hold_only_its_id(
    tmp_path: Path, git_repo: GitRepo, gh: FakeGitHub
) -> None:
    """400 images under long names: the planning job's outputs hold each stage job's id
    and the action uploads their entries; a stage job's `job` sub-action (another job,
    another runner temp) reads back the entry the jobs file has, docker inputs and all."""
    from .monorepos import dockerfile_monorepo

    action = tmp_path / "_actions" / "ci-layers" / "ci-layers" / SHA
    action.mkdir(parents=True)
    _copy_action(action)
    base, head = dockerfile_monorepo(git_repo, 400)
    event = {"pull_request": {"number": 4, "base": {"sha": base}, "head": {"sha": head}}}
    store: dict[str, dict[str, bytes]] = {}
    plan_job = _runner(tmp_path / "plan", git_repo, action, gh, event)
    plan_job.handlers.update(_artifacts(store))
    outputs = plan_job.run_action({"max-stages": "3"})
    assert outputs["jobs-artifact"] in store, "\n".join(plan_job.log)
    jobs = json.loads(Path(outputs["jobs-file"]).read_text())["jobs"]
    stage_two = json.loads(outputs["stages"])[1]
    for matrix in (stage_two[0], stage_two[-1]):
        stage_job = _runner(tmp_path / f"job-{matrix['job']}", git_repo, action / "job", gh, event)
        stage_job.handlers.update(_artifacts(store))
        got = stage_job.run_action({"job": json.dumps(matrix)})
        entry = json.loads(got["entry"])
        assert entry == jobs[matrix["job"]], "\n".join(stage_job.log)
        assert entry["layers"][0]["docker"]["build-contexts"]
        assert not Path(outputs["jobs-file"]).is_relative_to(stage_job.temp)
    # an entry the outputs held whole is handed on as it is, nothing downloaded
    whole = jobs["1.1"]
    stage_job = _runner(tmp_path / "whole", git_repo, action / "job", gh, event)
    stage_job.handlers.update(_artifacts({}))
    assert json.loads(stage_job.run_action({"job": json.dumps(whole)})["entry"]) == whole
    assert any(line == "skipped: Fetch the plan's job entries" for line in stage_job.log)
