"""The comment and the job summary at the sizes monorepos have: what a reviewer sees
without unfolding anything fits one screen and says what changed and what that rebuilds;
every part fits GitHub's limits, filled rather than halved."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ci_layers.comment import COMMENT_LIMIT, SUMMARY_BYTES, UNFOLDED_LINES

from .gitrepo import GitRepo
from .monorepos import PREFIX, dockerfile_monorepo, spec_monorepo
from .test_gha import _github_size, pr_event_from, run_gha


def unfolded(body: str) -> list[str]:
    """The non-blank lines outside every <details> (and not the hidden marker)."""
    text = re.sub(r"<details>.*?</details>", "", body, flags=re.S)
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("<!--")]


SIZES = [10, 40, 120, 400, 1000]


@pytest.fixture(scope="module")
def planned(tmp_path_factory) -> dict[tuple[str, int], tuple[dict, str, str, str]]:
    """For each kind and size: (outputs, comment, summary, stdout) of one pull request."""
    found = {}
    for kind in ("spec", "dockerfile"):
        for n in SIZES:
            repo = GitRepo(tmp_path_factory.mktemp(f"{kind}-{n}") / "repo")
            if kind == "spec":
                base, head = spec_monorepo(repo, n, fan=max(1, n // 4))
            else:
                base, head = dockerfile_monorepo(repo, n)
            event = pr_event_from(repo, 7, base=base, head=head)
            done, out, summary = run_gha(
                repo,
                "pull_request",
                event,
                runner_env={"GITHUB_SERVER_URL": "https://github.com"},
            )
            assert done.returncode == 0, done.stdout + done.stderr
            comment = Path(out["comment-file"]).read_text().rstrip("\n")
            found[kind, n] = (out, comment, summary, done.stdout)
    return found


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", ["spec", "dockerfile"])
def test_the_top_fits_a_screen_and_says_what_changed_and_what_it_rebuilds(planned, kind, n):
    out, comment, summary, _ = planned[kind, n]
    changed = "os/release" if kind == "spec" else "images/base/base-debian/packages.txt"
    word = "layers" if kind == "spec" else "images"
    for body, limit in ((comment, COMMENT_LIMIT), (summary, SUMMARY_BYTES)):
        assert len(body) <= limit
        top = unfolded(body)
        assert len(top) <= UNFOLDED_LINES, "\n".join(top)
        assert max(len(line) for line in top) <= 300
        assert top[0].startswith(f"### ci-layers: {n + 1} of {n + 1} layers to rebuild")
        # the cause, with how much it rebuilds
        assert f"- `{changed}` changed → **{n + 1}** {word} to rebuild" in top
        stages = [line for line in top if line.startswith("- **Stage ")]
        assert stages == [line for line in top if "**Stage " in line]  # one line each
        assert sum(int(re.search(r": (\d+) ", s)[1]) for s in stages) == n + 1
        assert all(len(s) <= 300 for s in stages)
    assert _github_size(out) <= 1_000_000


@pytest.mark.parametrize("n", [400, 1000])
def test_a_shared_registry_prefix_is_said_once(planned, n):
    _, comment, _, _ = planned["dockerfile", n]
    assert comment.count(PREFIX) == 1
    assert f"Names below leave out the prefix they share, `{PREFIX}/`." in comment


@pytest.mark.parametrize("kind", ["spec", "dockerfile"])
def test_shortening_fills_the_comment_rather_than_halving_it(planned, kind):
    """At 1,000 layers the table is cut to what fits: the comment is nearly full, and the
    headline, the causes and the stages are all there."""
    _, comment, _, _ = planned[kind, 1000]
    assert COMMENT_LIMIT - 2_000 < len(comment) <= COMMENT_LIMIT
    assert "_Shortened to fit a comment: the job summary has the full plan._" in comment
    assert "**Why:**" in comment
    assert "- **Stage 2**" in comment
    rows = [ln for ln in comment.splitlines() if re.match(r"\| \d+ \| `", ln)]
    assert 100 < len(rows) < 1001
    assert f"| | … | {1001 - len(rows)} more: see the job summary |" in comment


def test_a_small_plan_shows_its_diagram_and_table_open(planned):
    _, comment, _, _ = planned["dockerfile", 10]
    top = "\n".join(unfolded(comment))
    assert "```mermaid" in top
    assert '["base-debian"]' in top


def test_a_parent_and_its_child_in_one_job_say_which_builds_first(planned):
    """Packed into 3 stage jobs, a chain's links share a stage number: the table says
    which is built first."""
    _, comment, _, _ = planned["spec", 40]
    row = next(ln for ln in comment.splitlines() if ln.startswith("| 2 | `layer-0010` |"))
    assert "built after `layer-0000`, in its job" in row
    assert "(10 build a layer and then what is built on it)" in comment


def test_causes_count_what_each_change_rebuilds(git_repo: GitRepo):
    """Two changes: the base's rebuilds everything; a leaf's own change adds no cause
    (it is rebuilt anyway); a change beside the base's tree is a cause of its own."""
    base, _ = spec_monorepo(git_repo, 6, fan=2)
    git_repo.write("os/release", "3\n")
    git_repo.write("l/5", "changed too\n")
    head = git_repo.commit("two changes")
    event = pr_event_from(git_repo, 8, base=base, head=head)
    _done, out, _ = run_gha(git_repo, "pull_request", event)
    comment = Path(out["comment-file"]).read_text()
    why = comment.split("**Why:**\n")[1].split("\n\n")[0].splitlines()
    assert why == ["- `os/release` changed → **7** layers to rebuild"]


def test_spec_errors_link_to_their_line_at_the_commit(git_repo: GitRepo):
    git_repo.write("ci-layers.yaml", "version: 1\nlayers:\n  a: {parent: nope}\n")
    base = git_repo.commit("broken")
    git_repo.write("x", "1\n")
    head = git_repo.commit("head")
    event = pr_event_from(git_repo, 9, base=base, head=head)
    done, _out, summary = run_gha(
        git_repo, "pull_request", event, runner_env={"GITHUB_SERVER_URL": "https://github.com"}
    )
    assert done.returncode == 2
    assert (
        f"- [ci-layers.yaml:3:15](https://github.com/o/r/blob/{head}/ci-layers.yaml#L3): "
        "error: layer &#39;a&#39;: unknown parent" in summary
    )


def test_the_footer_says_the_comparison_once(planned):
    _, comment, _, _ = planned["spec", 10]
    footer = comment.splitlines()[-1]
    assert footer.startswith("Compared [`")
    assert "merge-base: " not in footer  # the mode is not said twice
    assert "pull request &#35;7: merge-base of the base branch and the head" in footer


def test_the_outputs_and_notice_at_1000_images(planned):
    out, _, _, stdout = planned["dockerfile", 1000]
    assert json.loads(out["stages"])[1][0]["compact"] is True
    assert "::notice::1001 layers' entries would pass GitHub's 1 MB" in stdout
