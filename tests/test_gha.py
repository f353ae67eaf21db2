"""`ci-layers gha` end to end, with the variables a runner sets, in real git repositories."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import FIXTURES
from .fake_github import FakeGitHub
from .gitrepo import GitRepo


def parse_outputs(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT as the runner reads it: name<<DELIM ... DELIM, or name=value."""
    out: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := re.match(r"^([\w-]+)<<(ghadelimiter_[0-9a-f-]{36})$", line):
            end = lines.index(m.group(2), i + 1)
            out[m.group(1)] = "\n".join(lines[i + 1 : end])
            i = end + 1
        elif "=" in line:
            k, _, v = line.partition("=")
            out[k] = v
            i += 1
        else:
            assert not line, f"unparsable output line {line!r}"
            i += 1
    return out


@pytest.fixture
def mono(git_repo: GitRepo) -> GitRepo:
    git_repo.copy_fixture(FIXTURES / "monorepo")
    git_repo.commit("monorepo")
    return git_repo


def run_gha(
    repo: GitRepo,
    event_name: str,
    event: dict,
    gh: FakeGitHub | None = None,
    runner_env: dict | None = None,
    **inputs: str,
):
    runner = repo.root.parent / "runner"
    runner.mkdir(exist_ok=True)
    (runner / "event.json").write_text(json.dumps(event))
    for f in ("output", "summary"):
        (runner / f).write_text("")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(runner),
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": event_name,
        "GITHUB_EVENT_PATH": str(runner / "event.json"),
        "GITHUB_OUTPUT": str(runner / "output"),
        "GITHUB_STEP_SUMMARY": str(runner / "summary"),
        "GITHUB_REPOSITORY": "o/r",
        "GITHUB_WORKSPACE": str(repo.root),
        "RUNNER_TEMP": str(runner),
    }
    if gh is not None:
        env["GITHUB_API_URL"] = gh.url
        env["INPUT_GITHUB_TOKEN"] = "ghs_secret_token_value"
    env.update({f"INPUT_{k.upper()}": v for k, v in inputs.items()})
    env.update(runner_env or {})
    done = subprocess.run(
        [sys.executable, "-m", "ci_layers.cli", "gha"],
        cwd=repo.root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    outputs = parse_outputs((runner / "output").read_text())
    return done, outputs, (runner / "summary").read_text()


def pr_event(repo: GitRepo, number: int = 5) -> dict:
    base = repo.git("rev-parse", "main")
    repo.git("checkout", "-q", "-b", f"pr{number}")
    repo.write("services/api/poetry.lock", "fastapi==0.115.9\n")
    repo.write("web/admin/src/index.js", "// admin\n")
    head = repo.commit("pr")
    return pr_event_from(repo, number, base=base, head=head)


def pr_event_from(repo: GitRepo, number: int, *, base: str, head: str) -> dict:
    return {
        "pull_request": {
            "number": number,
            "base": {"sha": base, "repo": {"full_name": "o/r"}},
            "head": {"sha": head, "repo": {"full_name": "o/r"}},
        },
        "repository": {"full_name": "o/r", "default_branch": "main"},
    }


def test_pull_request_outputs_summary_and_comment(mono: GitRepo, gh: FakeGitHub) -> None:
    done, out, summary = run_gha(mono, "pull_request", pr_event(mono), gh)
    assert done.returncode == 0, done.stderr + done.stdout
    assert out["has-changes"] == "true"
    assert json.loads(out["affected"]) == ["api-deps", "admin", "api"]  # build order
    matrix = json.loads(out["matrix"])["include"]
    assert [e["name"] for e in matrix] == ["api-deps", "admin", "api"]
    api = next(e for e in matrix if e["name"] == "api")
    assert api["parent"] == "api-deps"
    assert api["release-tags"] == ["registry.example.com/shop/api"]
    assert api["tags"] == []  # no cache to hand layers off through, no publishing
    assert api["key"].startswith("sha256:")
    stages = json.loads(out["stages"])
    assert out["stage-count"] == str(len(stages)) == "2"
    assert [[e["name"] for e in s] for s in stages] == [["api-deps", "admin"], ["api"]]
    plan = json.loads(Path(out["plan-file"]).read_text())
    assert plan["affected"] == ["api-deps", "admin", "api"]
    assert "\n" not in out["matrix"]
    assert summary.startswith("### ci-layers: 3 of 13 layers to rebuild")
    assert "```mermaid" in summary
    [body] = gh.bodies(5)
    assert body.startswith("<!-- ci-layers:plan ci-layers.yaml -->")
    assert "| 1 | `api-deps` | changed: services/api/poetry.lock |" in body
    assert "ghs_secret_token_value" not in done.stdout + done.stderr
    # a second run on the same PR edits the same comment
    mono.write("services/api/src/api/routes.py", "# more\n")
    event = pr_event_from(mono, 5, base=mono.git("rev-parse", "main"), head=mono.commit("more"))
    done, _, _ = run_gha(mono, "pull_request", event, gh)
    assert done.returncode == 0
    assert len(gh.bodies(5)) == 1
    assert "services/api/src/api/routes.py" in gh.bodies(5)[0]


def test_push_and_merge_group_and_no_changes(mono: GitRepo) -> None:
    before = mono.git("rev-parse", "HEAD")
    mono.write("runtimes/python/requirements-base.txt", "pip==25.0\n")
    after = mono.commit("pip")
    done, out, _ = run_gha(
        mono, "push", {"ref": "refs/heads/main", "before": before, "after": after}
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(out["affected"]) == [
        "python-runtime",
        "api-deps",
        "worker-deps",
        "api",
        "worker",
    ]
    done, out, _ = run_gha(
        mono, "merge_group", {"merge_group": {"base_sha": before, "head_sha": after}}
    )
    assert json.loads(out["stages"])[0][0]["name"] == "python-runtime"
    mono.write("docs/architecture.md", "only docs\n")
    docs = mono.commit("docs")
    done, out, summary = run_gha(
        mono, "push", {"ref": "refs/heads/main", "before": after, "after": docs}
    )
    assert out["has-changes"] == "false"
    assert out["stage-count"] == "0"
    assert json.loads(out["stages"]) == []
    assert "nothing to rebuild" in summary


def test_max_stages_packs_chains(mono: GitRepo) -> None:
    before = mono.git("rev-parse", "HEAD")
    mono.write("base/os-packages.txt", "ca-certificates\n")
    after = mono.commit("base")
    event = {"ref": "refs/heads/main", "before": before, "after": after}
    done, out, _ = run_gha(mono, "push", event, max_stages="2")
    assert done.returncode == 0, done.stderr
    stages = json.loads(out["stages"])
    assert len(stages) == 2
    names = [layer["name"] for s in stages for job in s for layer in job["layers"]]
    assert sorted(names) == sorted(json.loads(out["affected"]))
    assert len(names) == 13


def test_spec_errors_become_annotations_and_fail(mono: GitRepo) -> None:
    mono.write("ci-layers.yaml", "version: 1\nlayers:\n  a: {parent: nope}\n")
    done, out, _ = run_gha(mono, "push", {})
    assert done.returncode == 2
    assert "::error file=ci-layers.yaml,line=3,col=15::a: unknown parent 'nope'" in done.stdout
    assert out["has-changes"] == "false"
    done, _, _ = run_gha(mono, "push", {}, fail_on="never")
    assert done.returncode == 0


def test_bad_input_is_a_clear_error(mono: GitRepo) -> None:
    done, _, _ = run_gha(mono, "push", {}, max_stages="zero")
    assert done.returncode == 2
    assert "input max-stages must be a whole number from 1 to 256, not 'zero'" in done.stderr
    assert "::error::input max-stages must be a whole number" in done.stderr  # an annotation


def test_read_only_token_warns_and_succeeds(mono: GitRepo, gh: FakeGitHub) -> None:
    gh.read_only = True
    done, out, _ = run_gha(mono, "pull_request", pr_event(mono), gh)
    assert done.returncode == 0
    assert "::warning::PR comment not written: the token may not comment" in done.stdout
    assert out["has-changes"] == "true"


def test_untrusted_paths_cannot_inject_workflow_commands(mono: GitRepo) -> None:
    before = mono.git("rev-parse", "HEAD")
    mono.write("services/api/src/api/::error::pwned.py", "x\n")
    after = mono.commit("evil name")
    done, _, _ = run_gha(mono, "push", {"ref": "refs/heads/main", "before": before, "after": after})
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("::stop-commands::"))
    token = lines[start].split("::")[2]
    end = lines.index(f"::{token}::")
    assert any("::error::pwned" in line for line in lines[start:end])


def test_outputs_follow_the_spec_at_head_not_the_one_on_disk(mono: GitRepo) -> None:
    old = mono.git("rev-parse", "HEAD")
    spec = (mono.root / "ci-layers.yaml").read_text()
    mono.write(
        "ci-layers.yaml",
        spec.replace("  admin:\n    parent: web-deps", "  admin:\n    parent: storefront"),
    )
    mono.write("web/storefront/src/index.js", "// changed\n")
    new = mono.commit("admin on storefront")
    mono.git("checkout", "-q", old)  # the disk has the old spec; the plan is for `new`
    done, out, _ = run_gha(mono, "workflow_dispatch", {}, base=old, head=new)
    assert done.returncode == 0, done.stderr
    stages = [[e["name"] for e in s] for s in json.loads(out["stages"])]
    assert stages == [["storefront"], ["admin"]]


def test_odd_inputs_and_payloads_are_clear_errors_or_ignored(mono: GitRepo) -> None:
    done, _, _ = run_gha(mono, "push", {}, max_stages="²")
    assert done.returncode == 2
    assert "input max-stages must be a whole number" in done.stderr
    done, out, _ = run_gha(mono, "pull_request", {"pull_request": "x"})
    assert done.returncode == 0, done.stderr
    assert out["has-changes"] == "true"  # nothing to compare with: everything, never nothing


def test_non_utf8_file_names_do_not_crash_the_action(mono: GitRepo) -> None:
    before = mono.git("rev-parse", "HEAD")
    (mono.root / os.fsdecode(b"services/api/src/api/x\xff.py")).write_text("x")
    after = mono.commit("odd bytes")
    done, out, summary = run_gha(
        mono, "push", {"ref": "refs/heads/main", "before": before, "after": after}
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(out["affected"]) == ["api"]
    assert "x\ufffd.py" in summary


def _commands_outside_stops(stdout: str) -> list[str]:
    """Workflow command lines the runner would act on (not inside ::stop-commands::)."""
    active, token = [], None
    for line in stdout.splitlines():
        if token is not None:
            token = None if line == f"::{token}::" else token
        elif line.startswith("::stop-commands::"):
            token = line.split("::")[2]
        elif line.startswith("::"):
            active.append(line)
    return active


def test_a_broken_dockerfile_is_a_spec_error_of_the_action(git_repo: GitRepo) -> None:
    git_repo.copy_fixture(FIXTURES / "dockerfiles")
    base = git_repo.commit("dockerfiles")
    git_repo.write("images/api/Dockerfile", "FROM scratch\nCOPY only-one\n")
    head = git_repo.commit("broken")
    event = {"ref": "refs/heads/main", "before": base, "after": head}
    done, out, summary = run_gha(git_repo, "push", event, fail_on="never")
    assert done.returncode == 0, done.stderr
    comment = Path(out.pop("comment-file")).read_text()  # what a workflow_run job would post
    assert comment.startswith("<!-- ci-layers:plan ci-layers.yaml -->\n### ci-layers: the spec")
    assert out == {
        "has-changes": "false",
        "matrix": '{"include":[]}',
        "stages": "[]",
        "stage-count": "0",
        "affected": "[]",
        "plan-file": "",
        "bake-file": "",
        "jobs-file": "",
        "jobs-artifact": "",
        "comment-id": "",
    }
    assert summary.startswith("### ci-layers: the spec does not load")
    assert (
        "::error file=images/api/Dockerfile,line=2,col=1::registry.example.com/acme/api: "
        "COPY needs a source and a destination" in _commands_outside_stops(done.stdout)
    )
    done, _, _ = run_gha(git_repo, "push", event)
    assert done.returncode == 2


def test_names_in_errors_cannot_inject_workflow_commands(mono: GitRepo) -> None:
    mono.write("ci-layers.yaml", 'version: 1\nlayers:\n  "a\\n::error::INJECTED": {from: x}\n')
    done, _, _ = run_gha(mono, "push", {}, fail_on="never")
    active = _commands_outside_stops(done.stdout)
    assert active, done.stdout
    assert all(re.match(r"::(error|warning) file=ci-layers\.yaml,", line) for line in active)
    assert "::error::INJECTED" in done.stdout  # shown, but between stop-commands


def test_each_spec_has_its_own_plan_file_and_matrix_stages_are_the_packed_ones(
    mono: GitRepo,
) -> None:
    _, out, _ = run_gha(mono, "workflow_dispatch", {}, max_stages="1")
    other = mono.root / "other.yaml"
    other.write_text((mono.root / "ci-layers.yaml").read_text())
    _, out2, _ = run_gha(mono, "workflow_dispatch", {}, max_stages="1", spec="other.yaml")
    assert out["plan-file"] != out2["plan-file"]
    assert {e["stage"] for e in json.loads(out["matrix"])["include"]} == {1}
    assert out["stage-count"] == "1"


def test_everything_rebuilt_for_a_pull_request_is_a_warning(mono: GitRepo) -> None:
    event = pr_event_from(mono, 9, base="0" * 39 + "1", head=mono.git("rev-parse", "HEAD"))
    done, out, _ = run_gha(mono, "pull_request", event)
    assert done.returncode == 0, done.stderr
    assert out["has-changes"] == "true"
    assert any(
        line.startswith("::warning::everything is rebuilt: ")
        for line in _commands_outside_stops(done.stdout)
    )


def _github_size(outputs: dict[str, str]) -> int:
    """A job's outputs as GitHub counts them: names and values, in UTF-16."""
    return sum(len((k + v).encode("utf-16-le", "surrogatepass")) for k, v in outputs.items())


@pytest.mark.parametrize(("images", "shrunk"), [(400, 2), (5000, 4)])
def test_the_outputs_of_thousands_of_images_under_long_names_fit(
    git_repo: GitRepo, images: int, shrunk: int
) -> None:
    """5,000 images named 120 characters long: every output fits GitHub's 1 MB, each
    stage job is an id whose whole entry the jobs file holds, no stage has more than 256
    jobs, and a notice says what the outputs left out."""
    from .monorepos import dockerfile_monorepo

    base, head = dockerfile_monorepo(git_repo, images)
    done, out, _ = run_gha(git_repo, "workflow_dispatch", {}, base=base, head=head)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _github_size(out) <= 1_000_000
    notices = [c for c in _commands_outside_stops(done.stdout) if c.startswith("::notice::")]
    assert len(notices) == 1
    assert f"{images + 1} layers' entries would pass GitHub's 1 MB of outputs" in notices[0]
    assert notices[0].count("; ") == shrunk - 1
    stages = json.loads(out["stages"])
    assert all(len(stage) <= 256 for stage in stages)
    jobs = json.loads(Path(out["jobs-file"]).read_text())
    assert out["jobs-artifact"] == jobs["artifact"]
    assert out["jobs-artifact"].startswith("ci-layers-jobs-")
    built = []
    for i, stage in enumerate(stages, 1):
        for entry in stage:
            assert entry["compact"] is True
            assert entry["artifact"] == out["jobs-artifact"]
            assert entry["stage"] == i
            assert len(entry["name"]) <= 40
            whole = jobs["jobs"][entry["job"]]
            assert whole["stage"] == i
            assert whole["packed"] == entry["packed"]
            built += [layer["name"] for layer in whole["layers"]]
    plan = json.loads(Path(out["plan-file"]).read_text())
    assert sorted(built) == sorted(plan["affected"])  # each once
    assert built[0] == plan["affected"][0]  # the base first, alone in stage 1
    some = next(iter(jobs["jobs"].values()))["layers"][0]
    assert some["docker"]["tags"] == some["hand-off-tag"]  # every field a job had
    if images == 400:  # what still fits is kept
        assert json.loads(out["affected"]) == plan["affected"]
        assert [e["job"] for e in json.loads(out["matrix"])["include"]] == [
            next(j for j, e in jobs["jobs"].items() if n in [x["name"] for x in e["layers"]])
            for n in plan["affected"]
        ]
    else:
        assert out["affected"] == "[]"
        assert json.loads(out["matrix"]) == {"include": []}


def test_updating_the_comment_with_the_actions_token_prints_no_noise(
    mono: GitRepo, gh: FakeGitHub
) -> None:
    event = pr_event(mono)
    run_gha(mono, "pull_request", event, gh)
    done, _, _ = run_gha(mono, "pull_request", event, gh)  # found again: GET /user is a 403
    assert done.returncode == 0
    assert "PR comment unchanged" in done.stdout or "PR comment updated" in done.stdout
    assert "403" not in done.stderr


def test_a_huge_max_stages_is_a_usage_error() -> None:
    """Past 4,300 digits int() raised a ValueError: exit 3 (issue 12, case 8b)."""
    from ci_layers.errors import UsageError
    from ci_layers.gha import inputs_from_env

    with pytest.raises(UsageError, match="max-stages must be a whole number from 1 to 256"):
        inputs_from_env({"INPUT_MAX_STAGES": "9" * 5000})


def test_an_unwritable_output_file_is_a_clear_error(mono: GitRepo, tmp_path: Path) -> None:
    """A $GITHUB_OUTPUT that is a folder (or /dev/full) ended in a traceback (issue 12, 6)."""
    done, _outputs, _summary = run_gha(
        mono, "push", {}, runner_env={"GITHUB_OUTPUT": str(tmp_path)}
    )
    assert done.returncode == 1, done.stderr
    assert f"error: cannot write $GITHUB_OUTPUT ({tmp_path}): Is a directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unwritable_summary_is_a_warning_and_the_comment_is_posted(
    mono: GitRepo, gh: FakeGitHub
) -> None:
    event = pr_event(mono)
    done, outputs, _summary = run_gha(
        mono, "pull_request", event, gh, runner_env={"GITHUB_STEP_SUMMARY": "/dev/full"}
    )
    assert done.returncode == 0, done.stderr
    assert "::warning::cannot write $GITHUB_STEP_SUMMARY (/dev/full)" in done.stdout
    assert outputs["has-changes"] == "true"
    assert len(gh.comments) == 1


@pytest.mark.parametrize(
    ("change", "runner_env"),
    [
        ({"repository": "o/r"}, {"GITHUB_REPOSITORY": ""}),  # a string, not an object
        ({}, {"GITHUB_API_URL": "not a url"}),
    ],
    ids=["repository-string", "bad-api-url"],
)
def test_odd_payloads_warn_instead_of_crashing(
    mono: GitRepo, change: dict, runner_env: dict
) -> None:
    """They ended in an AttributeError, or a traceback inside PyGithub (issue 12, case 7)."""
    event = {**pr_event(mono), **change}
    env = {"INPUT_GITHUB_TOKEN": "ghs_x", **runner_env}
    done, outputs, _summary = run_gha(mono, "pull_request", event, runner_env=env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "::warning::" in done.stdout
    assert outputs["has-changes"] == "true"


def test_a_boolean_pr_number_is_no_number(mono: GitRepo) -> None:
    event = pr_event(mono)
    event["pull_request"]["number"] = True
    done, _outputs, _summary = run_gha(
        mono, "pull_request", event, runner_env={"INPUT_GITHUB_TOKEN": "ghs_x"}
    )
    assert done.returncode == 0, done.stderr
    assert "PR comment" not in done.stdout


BUILD_FIELDS = {"key", "parent", "from", "tags", "build-args", "docker", "context", "file"}


def test_a_stage_job_is_one_build_or_a_list_of_builds_never_a_blend(mono: GitRepo) -> None:
    """Packed into one stage, jobs holding several layers carry only the list: a step
    reading `matrix.key` or `matrix.docker.context` of such a job gets nothing rather than
    the fields of one of its layers; a job of one layer has every field of that layer."""
    _, out, _ = run_gha(mono, "workflow_dispatch", {}, max_stages="1")
    jobs = [job for stage in json.loads(out["stages"]) for job in stage]
    packed = [job for job in jobs if job["packed"]]
    single = [job for job in jobs if not job["packed"]]
    assert packed, "the monorepo's plan packed into one stage has multi-layer jobs"
    for job in packed:
        assert set(job) == {"name", "stage", "job", "packed", "platform", "runner", "layers"}
        assert len(job["layers"]) > 1
        assert {(x["platform"], x["runner"]) for x in job["layers"]} == {
            (job["platform"], job["runner"])
        }  # where the whole job runs: one runner, its layers' own
        assert job["name"] == f"{job['layers'][0]['name']} (+{len(job['layers']) - 1})"
    matrix = {e.pop("name"): e for e in json.loads(out["matrix"])["include"]}
    for job in single:
        (layer,) = job["layers"]
        assert {k: v for k, v in job.items() if k not in ("packed", "layers", "job")} == layer
        assert {**layer, "job": job["job"]} == {"name": layer["name"], **matrix[layer["name"]]}
    for job in packed:
        for layer in job["layers"]:
            assert BUILD_FIELDS & set(layer) >= {"key", "parent", "from", "tags", "build-args"}
            assert {**layer, "job": job["job"]} == {"name": layer["name"], **matrix[layer["name"]]}
    assert len({job["job"] for job in jobs}) == len(jobs)  # one id each
    assert json.loads(Path(out["jobs-file"]).read_text())["jobs"] == {j["job"]: j for j in jobs}
    assert out["jobs-artifact"] == ""  # the entries are in the outputs: nothing to upload


def test_the_comment_numbers_stages_as_the_stage_jobs_run_and_links_the_commits(
    mono: GitRepo, gh: FakeGitHub
) -> None:
    base = mono.git("rev-parse", "main")
    mono.git("checkout", "-q", "-b", "deep")
    mono.write("base/os-packages.txt", "curl\n")  # everything, four levels deep
    event = pr_event_from(mono, 8, base=base, head=mono.commit("os"))
    runner_env = {"GITHUB_SERVER_URL": "https://github.com"}
    done, out, summary = run_gha(
        mono, "pull_request", event, gh, runner_env=runner_env, max_stages="2"
    )
    assert done.returncode == 0, done.stderr + done.stdout
    job_stage = {
        layer["name"]: job["stage"]
        for stage in json.loads(out["stages"])
        for job in stage
        for layer in job["layers"]
    }
    assert set(job_stage.values()) == {1, 2}
    [body] = gh.bodies(8)
    for text in (body, summary):
        assert "13 of 13 layers to rebuild, 0 reused, in 2 stages (4 levels deep, packed)" in text
        rows = re.findall(r"^\| (\d+) \| `([^`]+)` \|", text, re.M)
        assert {name: int(stage) for stage, name in rows} == job_stage
        head = event["pull_request"]["head"]["sha"]
        assert f"(https://github.com/o/r/compare/{base}..{head})" in text
    assert "stage 2:\n  one job, in this order:" in done.stdout  # the log, packed too


def test_jobs_push_hand_off_tags_always_and_release_tags_only_when_publishing(
    mono: GitRepo, registry
) -> None:
    from ci_layers.oci.reference import key_tag

    event = pr_event(mono)
    cache = f"{registry.host}/shop/layers"  # a real, empty cache: every layer gets its job
    for publish in ("false", "true"):
        done, out, _ = run_gha(mono, "pull_request", event, cache=cache, publish=publish)
        assert done.returncode == 0, done.stderr + done.stdout
        matrix = {e["name"]: e for e in json.loads(out["matrix"])["include"]}
        api = matrix["api"]
        assert api["kind"] == "spec"
        assert api["hand-off-tag"] == f"{cache}:{key_tag(api['key'])}"  # what build pushes
        assert api["release-tags"] == ["registry.example.com/shop/api"]
        release = api["release-tags"] if publish == "true" else []
        assert api["tags"] == [*release, api["hand-off-tag"]]
        # an empty cache: everything not in it is rebuilt, and every job's entries say
        # the same of their layers as the matrix
        jobs = [job for stage in json.loads(out["stages"]) for job in stage]
        entries = {e["name"]: e for job in jobs for e in job["layers"]}
        assert set(entries) == set(matrix)
        assert all(entries[n]["tags"] == matrix[n]["tags"] for n in entries)
        assert entries["api"]["tags"] == api["tags"]
    done, _, _ = run_gha(mono, "pull_request", event, publish="yes")
    assert done.returncode == 2
    assert "input publish must be true or false, not 'yes'" in done.stderr


def test_the_bake_file_output_is_what_ci_layers_bake_prints(git_repo: GitRepo) -> None:
    import io

    from ci_layers.cli import main

    git_repo.copy_fixture(FIXTURES / "dockerfiles")
    base = git_repo.commit("dockerfiles")
    git_repo.git("checkout", "-q", "-b", "clang")
    git_repo.write("images/builder/toolchain.cfg", "cc=clang\n")
    event = pr_event_from(git_repo, 3, base=base, head=git_repo.commit("clang"))
    for publish in ("false", "true"):
        done, out, _ = run_gha(git_repo, "pull_request", event, publish=publish)
        assert done.returncode == 0, done.stderr + done.stdout
        printed, err = io.StringIO(), io.StringIO()
        flags = ["--publish"] if publish == "true" else []
        argv = ["bake", *flags, "--base", base, "--head", "HEAD", "-C", str(git_repo.root)]
        assert main(argv, out=printed, err=err) == 0, err.getvalue()
        assert json.loads(Path(out["bake-file"]).read_text()) == json.loads(printed.getvalue())
        assert Path(out["bake-file"]).parent == Path(out["plan-file"]).parent  # $RUNNER_TEMP


def test_no_bake_file_when_no_dockerfile_image_is_rebuilt(mono: GitRepo) -> None:
    done, out, _ = run_gha(mono, "pull_request", pr_event(mono))
    assert done.returncode == 0, done.stderr + done.stdout
    assert out["has-changes"] == "true"
    assert out["bake-file"] == ""  # spec layers only: docker/bake-action is skipped


def test_pr_number_comments_from_any_event_and_headers_keep_comments_apart(
    mono: GitRepo, gh: FakeGitHub
) -> None:
    event = pr_event(mono, number=9)
    base, head = event["pull_request"]["base"]["sha"], event["pull_request"]["head"]["sha"]
    # a workflow_run job: no pull request in its event, the number and commits as inputs
    run = {"workflow_run": {"id": 1, "head_sha": head}}
    for header in ("amd64", "arm64", "amd64"):
        done, out, _ = run_gha(
            mono, "workflow_run", run, gh, pr_number="9", base=base, head=head, header=header
        )
        assert done.returncode == 0, done.stderr + done.stdout
        ids = {c["id"]: c["body"] for c in gh.comments[9]}
        assert int(out["comment-id"]) in ids
        assert ids[int(out["comment-id"])].startswith(
            f"<!-- ci-layers:plan[{header}] ci-layers.yaml -->\n### ci-layers: 3 of 13"
        )
        assert Path(out["comment-file"]).read_text().rstrip("\n") == ids[int(out["comment-id"])]
    assert len(gh.comments[9]) == 2  # one per header; the second amd64 run edited its own
    done, out, _ = run_gha(mono, "pull_request", event, gh, comment="never")
    assert out["comment-id"] == ""
    assert (
        Path(out["comment-file"]).read_text().startswith("<!-- ci-layers:plan ci-layers.yaml -->")
    )
    done, _, _ = run_gha(mono, "workflow_run", run, gh, pr_number="#9")
    assert done.returncode == 2
    assert "input pr-number must be a pull request's number, not '#9'" in done.stderr


def comment_cli(gh: FakeGitHub, *args: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ["PATH"],
        "GITHUB_TOKEN": "ghs_write_token",
        "GITHUB_REPOSITORY": "o/r",
        "GITHUB_API_URL": gh.url,
    }
    cmd = [sys.executable, "-m", "ci_layers.cli", "comment", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)


def test_a_workflow_run_job_posts_a_forks_comment_file_for_that_pull_request_only(
    mono: GitRepo, gh: FakeGitHub, tmp_path: Path
) -> None:
    gh.read_only = True  # the fork's run: its token may not comment
    event = pr_event(mono, number=11)
    done, out, _ = run_gha(mono, "pull_request", event, gh)
    assert "::warning::PR comment not written" in done.stdout
    assert 11 not in gh.comments
    gh.read_only = False  # the workflow_run job, with pull-requests: write
    head = event["pull_request"]["head"]["sha"]
    gh.heads[11] = head
    body = out["comment-file"]
    moved = comment_cli(gh, "--pr", "11", "--body-file", body, "--head-sha", "f" * 40)
    assert moved.returncode == 0  # the pull request moved on: its newer run comments
    assert f"::warning::PR comment not written: pull request #11's head is {head[:12]}, not " in (
        moved.stdout
    )
    assert 11 not in gh.comments  # an artifact naming another pull request posts nothing
    done = comment_cli(gh, "--pr", "11", "--body-file", body, "--head-sha", head)
    assert done.returncode == 0, done.stdout + done.stderr
    assert gh.bodies(11) == [Path(body).read_text().rstrip("\n")]  # posted as written
    again = comment_cli(gh, "--pr", "11", "--body-file", body, "--head-sha", head, "--update-only")
    assert again.returncode == 0
    assert "PR comment unchanged" in again.stdout
    assert len(gh.bodies(11)) == 1
    gh.heads[12] = head
    only = comment_cli(gh, "--pr", "12", "--body-file", body, "--head-sha", head, "--update-only")
    assert only.returncode == 0
    assert 12 not in gh.comments  # nothing to update: nothing created
    forged = tmp_path / "forged.md"
    forged.write_text("Click here for free CI minutes\n")
    bad = comment_cli(gh, "--pr", "11", "--body-file", str(forged), "--head-sha", head)
    assert bad.returncode == 2
    assert f"{forged}:1: not a ci-layers comment" in bad.stderr
    marker = "<!-- ci-layers:plan images/@acme/ci-layers.yaml -->"
    forged.write_text(f"{marker}\ncc @octo-org/everyone, see `registry.io/app@sha256:ab`\n")
    gh.heads[13] = head
    assert (
        comment_cli(gh, "--pr", "13", "--body-file", str(forged), "--head-sha", head).returncode
        == 0
    )
    [posted] = gh.bodies(13)
    first, rest = posted.split("\n", 1)
    assert first == marker  # the marker as written: the comment is found again by it
    assert "cc @\u200bocto-org/everyone" in rest  # nobody is notified by what a fork wrote
    assert "`registry.io/app@sha256:ab`" in rest  # a reference stays copyable
    no_sha = comment_cli(gh, "--pr", "11", "--body-file", body)
    assert no_sha.returncode == 2
    assert "--head-sha" in no_sha.stderr


def test_a_plan_needing_a_stage_job_the_workflow_lacks_fails_instead_of_going_green(
    mono: GitRepo,
) -> None:
    example = (Path(__file__).parents[1] / ".github/workflows/example-build.yml").read_text()
    head_part, stage3 = example.split("\n  stage-3:\n")
    # stage 3's job commented out: a comment that names stages)[2] declares nothing
    two_jobs = head_part + "\n" + "".join(f"  # {line}\n" for line in stage3.splitlines())
    assert "stages)[2]" in two_jobs
    base = mono.git("rev-parse", "HEAD")
    mono.write(".github/workflows/layers.yml", two_jobs)
    mono.write("base/os-packages.txt", "curl\n")  # four levels deep: three stage jobs
    head = mono.commit("deep")
    event = {"ref": "refs/heads/main", "before": base, "after": head}
    ref = "o/r/.github/workflows/layers.yml@refs/heads/main"
    runner_env = {"GITHUB_WORKFLOW_REF": ref, "GITHUB_SHA": head, "GITHUB_JOB": "plan"}
    done, out, _ = run_gha(mono, "push", event, runner_env=runner_env, max_stages="3")
    assert done.returncode == 1
    assert out["stage-count"] == "3"
    assert (
        "::error::this plan needs 3 stage jobs, and .github/workflows/layers.yml has jobs for "
        "stages 1, 2 only (stage N reads fromJSON(….stages)[N-1]): stage 3 would not run"
    ) in done.stdout
    assert "or set max-stages to 2" in done.stdout
    done, _, _ = run_gha(
        mono, "push", event, runner_env=runner_env, max_stages="3", fail_on="never"
    )
    assert done.returncode == 0
    assert "::warning::this plan needs 3 stage jobs" in done.stdout
    # a plan of two stages fits, but max-stages promises three: said on every run
    shallow = shallow_push(mono, head)
    done, _, _ = run_gha(mono, "push", shallow, runner_env=runner_env)
    assert done.returncode == 0, done.stdout
    assert (
        "::warning::max-stages is 3, and .github/workflows/layers.yml has stage jobs for "
        "stages 1 to 2 only"
    ) in done.stdout
    # the workflow that runs is the one at GITHUB_SHA, not the file in the checkout
    mono.write(".github/workflows/layers.yml", example)
    done, _, _ = run_gha(mono, "push", event, runner_env=runner_env, max_stages="3")
    assert done.returncode == 1
    runner_env["GITHUB_SHA"] = mono.commit("three stage jobs")  # the example: all three
    done, _, _ = run_gha(mono, "push", event, runner_env=runner_env, max_stages="3")
    assert done.returncode == 0, done.stdout
    assert "stage jobs" not in done.stdout
    runner_env["GITHUB_SHA"] = "e" * 40  # a commit this clone lacks: not judged
    done, _, _ = run_gha(mono, "push", event, runner_env=runner_env, max_stages="3")
    assert done.returncode == 0, done.stdout
    assert "stage jobs" not in done.stdout


def shallow_push(repo: GitRepo, base: str) -> dict:
    """A push of one change two stages deep (api-deps, api) on top of `base`."""
    repo.write("services/api/poetry.lock", "fastapi==0.115.9\n")
    return {"ref": "refs/heads/main", "before": base, "after": repo.commit("shallow")}


def test_stage_jobs_are_found_in_any_value_of_any_job_and_gaps_are_named() -> None:
    from ci_layers.stagecheck import StageJobs, declared_stages, stage_jobs_problem

    text = """
jobs:
  s1: {strategy: {matrix: {include: "${{ fromJSON(needs.plan.outputs.stages)[0] }}"}}}
  s2:  # a reusable workflow, handed its stage
    uses: ./.github/workflows/build.yml
    with: {jobs: "${{ toJSON(fromJSON( needs.plan.outputs.stages ) [ 1 ]) }}"}
  s4: {strategy: {matrix: {include: "${{ fromJSON(needs.plan.outputs.stages)[3] }}"}}}
  # s3: {strategy: {matrix: {include: "${{ fromJSON(needs.plan.outputs.stages)[2] }}"}}}
"""
    stages = declared_stages(text)
    assert stages == {1, 2, 4}
    jobs = StageJobs("w.yml", stages)
    assert jobs.contiguous == 2
    problem = stage_jobs_problem(jobs, needed=4, max_stages=4)
    assert problem is not None
    severity, message = problem
    assert severity == "error"
    assert "stage 3 would not run" in message
    assert message.endswith("Declare the missing jobs, or set max-stages to 2")
    assert stage_jobs_problem(jobs, needed=2, max_stages=2) is None
    assert declared_stages("jobs: {build: {runs-on: x}}") is None  # builds another way
    # two plans in one workflow: each planning job ($GITHUB_JOB) has its own stage jobs
    two = """
jobs:
  a1: {strategy: {matrix: {include: "${{ fromJSON(needs.plan-a.outputs.stages)[0] }}"}}}
  a2: {strategy: {matrix: {include: "${{ fromJSON(needs.plan-a.outputs.stages)[1] }}"}}}
  b1: {strategy: {matrix: {include: "${{ fromJSON(needs.plan-b.outputs.build-stages)[0] }}"}}}
"""
    assert declared_stages(two) == {1, 2}
    assert declared_stages(two, "plan-a") == {1, 2}
    assert declared_stages(two, "plan-b") == {1}
    assert declared_stages(two, "plan") is None
    assert declared_stages("{{ not yaml") is None


def test_the_example_workflows_hand_a_forks_comment_from_one_run_to_the_other(
    mono: GitRepo, gh: FakeGitHub, tmp_path: Path
) -> None:
    """The scripts of example-build's "Keep the comment" and example-fork-comment's
    "Post the comment" steps, run as written, with the artifact folder between them."""
    import shutil

    import yaml

    workflows = Path(__file__).parents[1] / ".github/workflows"

    def step(workflow: str, name: str) -> dict:
        doc = yaml.safe_load((workflows / workflow).read_text())
        steps = [s for job in doc["jobs"].values() for s in job.get("steps", [])]
        return next(s for s in steps if s.get("name") == name)

    gh.read_only = True
    event = pr_event(mono, number=21)
    done, out, _ = run_gha(mono, "pull_request", event, gh)
    assert out["has-changes"] == "true"
    keep = step("example-build.yml", "Keep the comment for example-fork-comment.yml")
    planning_temp = tmp_path / "planning"
    planning_temp.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "RUNNER_TEMP": str(planning_temp),
        "COMMENT_FILE": out["comment-file"],
        "PR_NUMBER": "21",
        "HAS_CHANGES": out["has-changes"],
    }
    subprocess.run(["bash", "-e", "-c", keep["run"]], env=env, check=True)
    # upload-artifact, download-artifact: the folder, as it was
    posting_temp = tmp_path / "posting"
    shutil.copytree(planning_temp / "ci-layers-comment", posting_temp / "ci-layers-comment")
    (posting_temp / "ci-layers/bin").mkdir(parents=True)
    cli = posting_temp / "ci-layers/bin/ci-layers"
    cli.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ci_layers.cli "$@"\n')
    cli.chmod(0o755)
    post = step("example-fork-comment.yml", "Post the comment")
    gh.read_only = False
    head = event["pull_request"]["head"]["sha"]
    gh.heads[21] = head
    env = {
        "PATH": os.environ["PATH"],
        "RUNNER_TEMP": str(posting_temp),
        "GITHUB_TOKEN": "ghs_write",
        "GITHUB_REPOSITORY": "o/r",
        "GITHUB_API_URL": gh.url,
        "HEAD_SHA": head,
        "DIR": str(posting_temp / "ci-layers-comment"),
        "PYTHONPATH": str(Path(__file__).parents[1]),
    }
    done = subprocess.run(
        ["bash", "-e", "-c", post["run"]], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert gh.bodies(21) == [Path(out["comment-file"]).read_text().rstrip("\n")]
    # an empty plan's artifact only edits: none exists on a new pull request, none is made
    (posting_temp / "ci-layers-comment/has-changes").write_text("false\n")
    (posting_temp / "ci-layers-comment/pr-number").write_text("22\n")
    gh.heads[22] = head
    done = subprocess.run(
        ["bash", "-e", "-c", post["run"]], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert 22 not in gh.comments


@pytest.mark.parametrize(
    "text",
    [
        "@octocat",
        "(@octocat)",
        "> @octocat",
        "*@octocat*",
        "@@octocat",
        "-@octocat",
        ".@octocat",
        "/@octocat",
        "\u00e9@octocat",
        "`@octocat",
        "\u200b@octocat",
        "&#64;octocat",
        "&#x40;octocat",
        "&commat;octocat",
        "@org/team",
    ],
)
def test_no_at_in_a_posted_comment_file_can_mention_anyone(text: str) -> None:
    """GitHub's rule: an `@name` after the start or an ASCII non-word character, on the
    text with entities decoded."""
    from ci_layers.gha import _no_mentions

    out = _no_mentions(text)
    decoded = out.replace("&#64;", "@")
    assert not re.search(r"(?:^|[^A-Za-z0-9_])@[A-Za-z0-9]", decoded), out
    assert _no_mentions(out) == out  # already broken: left as it is
    assert _no_mentions("registry.io/app@sha256:ab and v1.0@x") == (
        "registry.io/app@sha256:ab and v1.0@x"
    )
