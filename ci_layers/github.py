"""The sticky pull-request comment, through PyGithub.

One comment per spec, found again by a hidden marker across every page of comments and
edited in place. Two runs that raced may both have created one: after writing, copies by
the same author are deleted and the oldest is kept. Nothing here fails a job: a
read-only token (fork pull requests), a rate limit that outlasts the retries, or any
other API failure comes back as a warning. The token is never printed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from github import Auth, Github, GithubException
from github.GithubRetry import GithubRetry

__all__ = ["CommentResult", "marker_for", "upsert_comment"]

_METHODS = frozenset({"GET", "POST", "PATCH", "DELETE", "HEAD", "OPTIONS", "PUT"})


@dataclass(frozen=True, slots=True)
class CommentResult:
    action: str  # "created" | "updated" | "unchanged" | "skipped" | "stale" | "failed"
    url: str | None = None
    warning: str | None = None
    deleted_copies: int = 0
    id: int | None = None  # the comment's, for the `comment-id` output


def _comment_safe(text: str) -> str:
    """Text that cannot end an HTML comment or its line."""
    return " ".join(text.replace("--", "- -").replace(">", "").split())


def marker_for(spec_name: str, header: str = "") -> str:
    """The hidden first line a sticky comment is found by: one per spec and `header`
    (several plans of one spec in one pull request each keep their own). A header is
    percent-encoded after `plan[`: two headers never share a marker, nor a header a spec
    name (whose markers, `plan <name>`, are as they always were)."""
    if not header:
        return f"<!-- ci-layers:plan {_comment_safe(spec_name)} -->"
    label = quote(header, safe="")
    return f"<!-- ci-layers:plan[{label}] {_comment_safe(spec_name)} -->"


# a whole first line: the name holds no `>` (_comment_safe), so nothing follows the marker
MARKER = re.compile(r"<!-- ci-layers:plan(\[[^\]\s>]*\])? [^>\s][^>]* -->")


# PyGithub logs every retried request to stderr at INFO: noise next to the warning
# annotation this module returns when it gives up.
logging.getLogger("github").setLevel(logging.WARNING)


def _client(api_url: str, token: str, *, retries: int, backoff: float) -> Github:
    retry = GithubRetry(
        total=retries,
        backoff_factor=backoff,
        secondary_rate_wait=60,
        max_rate_limit_wait=300,
        allowed_methods=_METHODS,  # PATCH and DELETE too: an edit is idempotent
        status_forcelist=[403, 429, 500, 502, 503, 504],
    )
    return Github(
        auth=Auth.Token(token),
        base_url=api_url.rstrip("/"),
        retry=retry,
        per_page=100,
        lazy=True,
        timeout=30,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )


def upsert_comment(
    *,
    api_url: str,
    token: str,
    repository: str,
    number: int,
    body: str,
    marker: str,
    create: bool,
    head_sha: str | None = None,
    retries: int = 5,
    backoff: float = 0.5,
) -> CommentResult:
    """Create or update the marked comment on pull request `number`.

    `create` False only updates an existing comment (an empty plan under
    `comment: auto` says "nothing to rebuild" where it said something before). With
    `head_sha`, the pull request's head must be that commit: a `workflow_run` job takes
    the number from the planning run's artifact, which the pull request's code wrote.
    """
    if not body.startswith(marker):
        body = f"{marker}\n{body}"
    try:
        gh = _client(api_url, token, retries=retries, backoff=backoff)
        repo = gh.get_repo(repository)
        if head_sha is not None:
            actual = repo.get_pull(number).head.sha
            if actual != head_sha:
                why = f"pull request #{number}'s head is {actual[:12]}, not {head_sha[:12]}"
                return CommentResult("stale", warning=f"{why}: the comment was not written")
        issue = repo.get_issue(number)
        marked = [c for c in issue.get_comments() if (c.body or "").startswith(marker)]
        login = _own_login(gh) if marked else None
        mine = sorted((c for c in marked if _written_by(c, login)), key=lambda c: c.id)
        if not mine:
            if not create:
                return CommentResult("skipped")
            comment = issue.create_comment(body)
            action = "created"
        else:
            comment = mine[0]
            if comment.body == body:
                action = "unchanged"
            else:
                comment.edit(body)
                action = "updated"
        comment, deleted = _settle(issue, comment, marker, body)
        return CommentResult(action, url=comment.html_url, deleted_copies=deleted, id=comment.id)
    except GithubException as exc:
        return CommentResult("failed", warning=_describe(exc))
    except requests.exceptions.RetryError:
        return CommentResult(
            "failed", warning="GitHub API kept failing (5xx or rate limits) after retries"
        )
    except requests.RequestException as exc:
        return CommentResult("failed", warning=f"GitHub API unreachable: {type(exc).__name__}")


def _own_login(gh: Github) -> str | None:
    """The token's user, where GitHub tells it (a personal token); None for the
    Actions token and app tokens, which may not read /user and comment as a bot."""
    try:
        return str(gh.get_user().login)
    except GithubException:
        return None


def _written_by(comment: Any, login: str | None) -> bool:
    """Whether a marked comment is this tool's: by the token's user, or by a bot when
    the user is unknown. A person quoting the marker must never have their text replaced."""
    if login is not None:
        return bool(comment.user.login == login)
    return bool(comment.user.type == "Bot")


def _settle(issue: Any, ours: Any, marker: str, body: str) -> tuple[Any, int]:
    """Runs that raced may each have created a comment: the oldest of this author's
    stays, with this run's body, and the others go."""
    author = ours.user.login
    copies = sorted(
        (
            c
            for c in issue.get_comments()
            if (c.body or "").startswith(marker) and c.user.login == author
        ),
        key=lambda c: c.id,
    )
    if not copies:
        return ours, 0
    keep = copies[0]
    if keep.id != ours.id and keep.body != body:
        keep.edit(body)
    for c in copies[1:]:
        c.delete()
    return keep, len(copies) - 1


def _describe(exc: GithubException) -> str:
    status = exc.status
    message = ""
    if isinstance(exc.data, dict):
        message = str(exc.data.get("message", ""))
    if status == 403 and "rate limit" not in message.lower():
        return (
            "the token may not comment on this pull request (read-only, e.g. a fork's pull "
            f"request: grant `pull-requests: write`, or comment from a workflow_run job): {message}"
        )
    if status in (403, 429):
        return f"GitHub rate limit: the comment was not written ({message})"
    return f"GitHub API error {status}: the comment was not written ({message})"
