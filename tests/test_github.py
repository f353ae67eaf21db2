"""The sticky comment through PyGithub against a local fake of the GitHub REST API."""

from __future__ import annotations

from ci_layers.github import marker_for, upsert_comment

from .fake_github import FakeGitHub, serve

MARK = marker_for("ci-layers.yaml")


def upsert(gh: FakeGitHub, body: str, *, create: bool = True, number: int = 7):
    return upsert_comment(
        api_url=gh.url,
        token="ghs_secret_token_value",
        repository="o/r",
        number=number,
        body=f"{MARK}\n{body}",
        marker=MARK,
        create=create,
        retries=4,
        backoff=0.01,
    )


def test_creates_then_updates_in_place(gh: FakeGitHub) -> None:
    first = upsert(gh, "plan one")
    assert first.action == "created"
    second = upsert(gh, "plan two")
    assert second.action == "updated"
    assert upsert(gh, "plan two").action == "unchanged"
    assert gh.bodies(7) == [f"{MARK}\nplan two"]
    methods = [(r.method, r.path) for r in gh.requests]
    assert ("PATCH", f"/repos/o/r/issues/comments/{1001}") in methods
    assert all(
        r.headers.get("Authorization") == "token ghs_secret_token_value" for r in gh.requests
    )


def test_finds_the_marker_past_the_first_page(gh: FakeGitHub) -> None:
    for i in range(250):
        gh.add_comment(7, f"chatter {i}", login="someone")
    gh.add_comment(7, f"{MARK}\nold plan")
    result = upsert(gh, "new plan")
    assert result.action == "updated"
    assert gh.bodies(7)[-1] == f"{MARK}\nnew plan"
    lists = [r for r in gh.requests if r.method == "GET" and r.path.endswith("/comments")]
    pages = [r.query.get("page", ["1"])[0] for r in lists]
    assert {"1", "2", "3"} <= set(pages)
    assert all(r.query.get("per_page") == ["100"] for r in lists)


def test_raced_copies_are_reduced_to_the_oldest(gh: FakeGitHub) -> None:
    a = gh.add_comment(7, f"{MARK}\nrun A")
    gh.add_comment(7, f"{MARK}\nrun B")
    gh.add_comment(7, f"{MARK}\nspoofed by someone else", login="mallory")
    result = upsert(gh, "run C")
    assert result.action == "updated"
    assert result.deleted_copies == 1
    ours = [c for c in gh.comments[7] if c["user"]["login"] == gh.login]
    assert [c["id"] for c in ours] == [a["id"]]
    assert ours[0]["body"] == f"{MARK}\nrun C"


def test_a_person_quoting_the_marker_keeps_their_comment(gh: FakeGitHub) -> None:
    quoted = gh.add_comment(7, f"> {MARK}\n> old plan\n\nwhy is api rebuilt?", login="alice")
    copied = gh.add_comment(7, f"{MARK}\nmy own notes", login="alice")
    assert upsert(gh, "plan").action == "created"
    by_id = {c["id"]: c["body"] for c in gh.comments[7]}
    assert by_id[quoted["id"]].endswith("why is api rebuilt?")
    assert by_id[copied["id"]] == f"{MARK}\nmy own notes"
    assert upsert(gh, "plan 2").action == "updated"  # its own comment, found again
    assert len(gh.comments[7]) == 3


def test_a_personal_token_finds_its_own_comment_by_its_login() -> None:
    fake = FakeGitHub(login="release-bot-user")
    server = serve(fake)
    try:
        fake.add_comment(7, f"{MARK}\nby someone else", login="alice")
        mine = fake.add_comment(7, f"{MARK}\nold plan")
        assert upsert(fake, "new plan").action == "updated"
        assert {c["id"]: c["body"] for c in fake.comments[7]}[mine["id"]] == f"{MARK}\nnew plan"
        assert ("GET", "/user") in [(r.method, r.path) for r in fake.requests]
    finally:
        server.shutdown()


def test_auto_does_not_create_for_an_empty_plan(gh: FakeGitHub) -> None:
    assert upsert(gh, "nothing to rebuild", create=False).action == "skipped"
    assert gh.comments.get(7, []) == []
    upsert(gh, "something")
    assert upsert(gh, "nothing to rebuild", create=False).action == "updated"


def test_read_only_token_is_a_warning(gh: FakeGitHub) -> None:
    gh.read_only = True
    result = upsert(gh, "plan")
    assert result.action == "failed"
    assert "read-only" in (result.warning or "")
    assert "ghs_secret_token_value" not in (result.warning or "")


def test_server_errors_are_retried(gh: FakeGitHub) -> None:
    gh.fail_next = [502, 503]
    assert upsert(gh, "plan").action == "created"
    assert [r.status for r in gh.requests[:3]] == [502, 503, 200]


def test_secondary_rate_limit_waits_for_retry_after(gh: FakeGitHub) -> None:
    gh.rate_limit_next = 1
    assert upsert(gh, "plan").action == "created"
    assert gh.requests[0].status == 403
    assert gh.bodies(7) == [f"{MARK}\nplan"]


def test_unreachable_api_is_a_warning() -> None:
    result = upsert_comment(
        api_url="http://127.0.0.1:9",
        token="t",
        repository="o/r",
        number=1,
        body="x",
        marker=MARK,
        create=True,
        retries=0,
    )
    assert result.action == "failed"
    assert "unreachable" in (result.warning or "")


def test_persistent_errors_give_up_with_a_warning(gh: FakeGitHub) -> None:
    gh.fail_next = [500] * 20
    result = upsert(gh, "plan")
    assert result.action == "failed"
    assert result.warning is not None
    assert result.warning == "GitHub API kept failing (5xx or rate limits) after retries"


def test_the_fake_checks_requests_against_github_openapi(gh: FakeGitHub) -> None:
    import requests

    requests.post(f"{gh.url}/repos/o/r/issues/7/comments", json={"bod": "typo"}, timeout=5)
    requests.get(f"{gh.url}/repos/o/r/issues/seven/comments", timeout=5)
    assert len(gh.violations) == 2
    assert "InvalidRequestBody" in gh.violations[0]
    gh.violations.clear()


def test_markers_of_different_plans_never_coincide() -> None:
    from ci_layers.github import MARKER, marker_for

    plans = [("a [b]", ""), ("a", "b"), ("a", "b]"), ("a", "b)"), ("a", "x>y"), ("a", "xy")]
    plans += [("a", "x--y"), ("a", "x- -y"), ("a", "amd64 arm64"), ("a", "amd64"), ("a b", "")]
    markers = [marker_for(spec, header) for spec, header in plans]
    assert len(set(markers)) == len(plans)
    # and none is the start of another, which is how a comment is found
    for m in markers:
        assert all(m == other or not other.startswith(m) for other in markers), m
        assert MARKER.fullmatch(m)
        assert "-->" not in m[4:-3]
    assert marker_for("ci-layers.yaml") == "<!-- ci-layers:plan ci-layers.yaml -->"  # as before


def test_a_marker_line_is_the_marker_alone() -> None:
    from ci_layers.github import MARKER

    assert MARKER.fullmatch("<!-- ci-layers:plan images/a b/ci-layers.yaml -->")
    assert MARKER.fullmatch("<!-- ci-layers:plan[arm64%20v8] ci-layers.yaml -->")
    assert not MARKER.fullmatch("<!-- ci-layers:plan x --> @octocat <!-- -->")
    assert not MARKER.fullmatch("<!-- ci-layers:plan  -->")
