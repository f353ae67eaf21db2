"""Pick the commits to compare for an event, fetch what a shallow clone lacks, and diff.

The rules (see the README's table) follow what GitHub shows and what peers learnt the
hard way: a pull request is compared with its merge-base (three-dot), a push with
`before`, a merge queue entry with its base. When no comparison is possible the result
says *everything* is affected and why: never an empty plan because the diff failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git

from .errors import GitError, UsageError
from .repo import GITLINK, RepoFiles, git_reason

__all__ = [
    "ChangeSet",
    "Comparison",
    "FileChange",
    "GitHistory",
    "changes_between",
    "choose_comparison",
    "read_event",
]

ZERO = "0" * 40
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


@dataclass(frozen=True, slots=True)
class Comparison:
    """What is compared with what, and why."""

    base: str | None  # a commit id; None when everything is affected
    head: str | None  # a commit id; None for the working tree
    mode: str  # "merge-base" | "range" | "working-tree" | "all" | "none"
    reason: str
    event: str | None = None


@dataclass(frozen=True, slots=True)
class FileChange:
    status: str  # git's letter: A, D, M, T (type), R (rename), C (copy)
    path: str
    old_path: str | None = None  # the path at base, for renames and copies
    submodule: bool = False  # a gitlink: everything below `path` changed
    old: str | None = None  # "<mode> <type> <id>" at base (of old_path when renamed)
    new: str | None = None  # the same at head; None where the path is gone


@dataclass(frozen=True)
class ChangeSet:
    comparison: Comparison
    changes: tuple[FileChange, ...]

    def paths(self) -> set[str]:
        """Every changed path, a rename counting as both its old and new path."""
        out = {c.path for c in self.changes}
        out.update(c.old_path for c in self.changes if c.old_path)
        return out

    def as_files(self) -> RepoFiles:
        """The changed paths as a searchable snapshot (gitlinks marked as such)."""
        entries: dict[str, str] = {}
        for c in self.changes:
            mark = f"{GITLINK} changed" if c.submodule else "changed"
            entries[c.path] = mark
            if c.old_path:
                entries[c.old_path] = mark
        return RepoFiles(entries)


class GitHistory:
    """The repository's commits, fetched on demand from `remote` in shallow clones."""

    def __init__(self, root: Path, *, remote: str = "origin") -> None:
        try:
            self.repo = git.Repo(root)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise GitError(f"{root} is not a git repository") from None
        self.g = self.repo.git
        self.remote = remote if remote in [r.name for r in self.repo.remotes] else None

    def resolve(self, rev: str) -> str | None:
        try:
            return str(self.g.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}"))
        except git.GitCommandError:
            return None

    def ensure(self, rev: str, *, depth: int = 1) -> str | None:
        """The commit id of `rev`, fetching it if this clone lacks it (with `depth`
        commits of its history): by id, or by name as a branch, then as a tag; a
        relative revision (`origin/main~2`) with the history it needs."""
        found = self.resolve(rev)
        if found or not self.remote:
            return found
        back = re.search(r"([~^]\d*)+$", rev)
        if back:  # fetch what it is relative to, deep enough to reach it
            steps = sum(int(n or 1) for n in re.findall(r"[~^](\d*)", back.group()))
            self._fetch(rev[: back.start()], depth + steps)
            return self.resolve(rev)
        return self._fetch(rev, depth)

    def _fetch(self, rev: str, depth: int) -> str | None:
        for ref, local in self._fetchable(rev):
            try:
                self.g.fetch("--no-tags", "--quiet", f"--depth={depth}", self.remote, ref)
            except git.GitCommandError:
                continue
            if found := self.resolve(local):
                return found
        return None

    def _fetchable(self, rev: str) -> list[tuple[str, str]]:
        """(refspec, local ref) to try for `rev`, in order."""
        if _SHA.match(rev):
            return [(rev, rev)]
        if rev.startswith("refs/") and not rev.startswith(f"refs/remotes/{self.remote}/"):
            return [(f"+{rev}:{rev}", rev)]
        # a branch (maybe written as the remote-tracking `origin/main`), else a tag
        branch = rev.removeprefix("refs/remotes/").removeprefix(f"{self.remote}/")
        local = f"refs/remotes/{self.remote}/{branch}"
        return [
            (f"+refs/heads/{branch}:{local}", local),
            (f"+refs/tags/{rev}:refs/tags/{rev}", f"refs/tags/{rev}"),
        ]

    def deepen(self, rev: str, by: int = 1) -> None:
        # on failure the caller sees that the commit is still missing
        with contextlib.suppress(git.GitCommandError):
            self.g.fetch("--no-tags", "--quiet", f"--deepen={by}", self.remote or "origin", rev)

    def is_shallow(self) -> bool:
        return str(self.g.rev_parse("--is-shallow-repository")) == "true"

    def merge_base(self, a: str, b: str) -> str | None:
        """The best common ancestor; in a shallow clone, deepen (doubling) until found,
        then unshallow as the last resort."""
        depth = 32
        while True:
            try:
                return str(self.g.merge_base(a, b)).splitlines()[0]
            except git.GitCommandError:
                pass
            if not self.remote or not self.is_shallow():
                return None
            before = self._commit_count()
            try:
                if depth <= 4096:
                    self.g.fetch("--no-tags", "--quiet", f"--deepen={depth}", self.remote, a, b)
                else:
                    self.g.fetch("--no-tags", "--quiet", "--unshallow", self.remote, a, b)
            except git.GitCommandError:
                return None
            if self._commit_count() == before:
                depth = 8192  # deepening stopped helping: unshallow next
            else:
                depth *= 2

    def _commit_count(self) -> int:
        return int(self.g.rev_list("--count", "--all"))

    def is_ancestor(self, a: str, b: str) -> bool:
        try:
            self.g.merge_base("--is-ancestor", a, b)
            return True
        except git.GitCommandError:
            return False

    def default_branch(self, payload: Mapping[str, Any]) -> str | None:
        name = _text(_obj(payload.get("repository")).get("default_branch"))
        if not name and self.remote:
            try:
                ref = str(self.g.symbolic_ref(f"refs/remotes/{self.remote}/HEAD"))
                name = ref.removeprefix(f"refs/remotes/{self.remote}/")
            except git.GitCommandError:
                name = None
        if not name:
            name = next((b for b in ("main", "master") if self.resolve(b)), None)
        return name

    def branch_tip(self, name: str) -> str | None:
        """The default branch's commit, as the remote has it where possible."""
        if self.remote:
            tip = self.resolve(f"{self.remote}/{name}") or self.ensure(name)
            if tip:
                return tip
        return self.resolve(name)

    def diff(self, comparison: Comparison) -> ChangeSet:
        """`git diff --raw -z -M base head`: renames on, each with both its paths."""
        assert comparison.base
        assert comparison.head
        try:
            out = self.g.diff(
                "--raw",
                "-z",
                "-M",
                "--no-abbrev",
                "--no-ext-diff",
                "--ignore-submodules=none",
                comparison.base,
                comparison.head,
                stdout_as_string=False,
            )
        except git.GitCommandError as exc:
            raise GitError(
                f"git diff {comparison.base[:12]} {comparison.head[:12]} failed: {git_reason(exc)}",
                rev=comparison.base,
            ) from None
        return ChangeSet(comparison, tuple(_parse_raw(out)))


def _parse_raw(out: bytes) -> list[FileChange]:
    parts = out.split(b"\0")
    changes: list[FileChange] = []
    i = 0
    while i < len(parts) - 1:
        meta = parts[i].decode()
        if not meta.startswith(":"):
            i += 1
            continue
        old_mode, new_mode, old_oid, new_oid, status = meta[1:].split(" ")
        letter = status[0]
        sub = GITLINK in (old_mode, new_mode)
        before, after = _digest(old_mode, old_oid), _digest(new_mode, new_oid)
        if letter in "RC":
            old, new = os.fsdecode(parts[i + 1]), os.fsdecode(parts[i + 2])
            renamed = old if letter == "R" else None
            changes.append(
                FileChange(letter, new, renamed, sub, before if renamed else None, after)
            )
            i += 3
        else:
            path = os.fsdecode(parts[i + 1])
            changes.append(FileChange(letter, path, None, sub, before, after))
            i += 2
    return changes


def _digest(mode: str, oid: str) -> str | None:
    """A diff side as ls-tree prints it; None for "no file here" (mode 000000)."""
    if mode == "000000":
        return None
    kind = "commit" if mode == GITLINK else "blob"
    return f"{mode} {kind} {oid}"


def changes_between(old: RepoFiles, new: RepoFiles, comparison: Comparison) -> ChangeSet:
    """The difference of two snapshots (no rename detection: both paths count anyway)."""
    out: list[FileChange] = []
    for path in sorted(set(old.entries) | set(new.entries)):
        a, b = old.entries.get(path), new.entries.get(path)
        if a == b:
            continue
        status = "A" if a is None else "D" if b is None else "M"
        sub = any(x is not None and x.startswith(GITLINK) for x in (a, b))
        out.append(FileChange(status, path, submodule=sub))
    return ChangeSet(comparison, tuple(out))


# --- choosing the comparison ----------------------------------------------------------


def _obj(value: Any) -> Mapping[str, Any]:
    """A payload field that should be an object; anything else reads as empty."""
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def read_event(path: str | None) -> dict[str, Any]:
    """A GitHub event payload file (GITHUB_EVENT_PATH); {} when there is none."""
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"event file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"event file {path} is not JSON: {exc}") from None
    except RecursionError:
        raise UsageError(f"event file {path} is nested too deeply to be an event") from None
    if not isinstance(data, dict):
        raise UsageError(f"event file {path} does not hold a JSON object")
    return data


def choose_comparison(
    history: GitHistory,
    *,
    event_name: str | None,
    payload: Mapping[str, Any],
    base: str | None,
    head: str | None,
) -> Comparison:
    """The base and head to compare, by the rules of the README."""
    if base or (head and not event_name):
        return _explicit(history, base=base, head=head, event=event_name)
    if head:  # the event chooses the base, the caller the head
        chosen = choose_comparison(
            history, event_name=event_name, payload=payload, base=None, head=None
        )
        if chosen.base:
            return _explicit(history, base=chosen.base, head=head, event=event_name)
        head_id = history.ensure(head)  # no base: still the head the caller asked for
        if head_id is None:
            raise GitError(
                f"unknown revision '{head}' (--head): not in this clone; check the name, "
                "or git fetch it",
                rev=head,
            )
        return Comparison(None, head_id, chosen.mode, chosen.reason, event_name)
    if event_name in ("pull_request", "pull_request_target"):
        return _pull_request(history, payload, event_name)
    if event_name == "push":
        return _push(history, payload)
    if event_name == "merge_group":
        group = _obj(payload.get("merge_group"))
        b, h = _text(group.get("base_sha")), _text(group.get("head_sha"))
        return _range(history, b, h, event_name, "merge queue: base_sha..head_sha")
    if event_name:
        return Comparison(
            None,
            history.resolve(head or "HEAD"),
            "all",
            f"a {event_name} event has no base to compare with: everything is affected "
            "(pass --base to compare with a commit)",
            event_name,
        )
    at_head = history.resolve("HEAD")
    if at_head is None:
        return Comparison(None, None, "all", "the repository has no commit yet", None)
    return Comparison(
        at_head, None, "working-tree", "the working tree (staged, unstaged, untracked) vs HEAD"
    )


def _explicit(
    history: GitHistory, *, base: str | None, head: str | None, event: str | None
) -> Comparison:
    head_id = None
    if head:
        head_id = history.ensure(head)
        if head_id is None:
            raise GitError(
                f"unknown revision '{head}' (--head): not in this clone; check the name, "
                "or git fetch it",
                rev=head,
            )
    base_id = history.ensure(base or "HEAD")
    if base_id is None:
        raise GitError(
            f"unknown revision '{base}' (--base): not in this clone; check the name, "
            "or git fetch it",
            rev=base,
        )
    b, h = _shown(base or "HEAD"), _shown(head or "")
    if head_id is None:
        return Comparison(base_id, None, "working-tree", f"the working tree vs {b}", event)
    merge_base = history.merge_base(base_id, head_id)
    if merge_base is None:
        return Comparison(
            base_id,
            head_id,
            "range",
            f"{b} and {h} share no history: their trees are compared directly",
            event,
        )
    return Comparison(merge_base, head_id, "merge-base", f"merge-base of {b} and {h}", event)


def _shown(rev: str) -> str:
    """A revision as people read it: a full commit id shortened."""
    return rev[:12] if _SHA.fullmatch(rev) else rev


def _range(
    history: GitHistory, base: str | None, head: str | None, event: str, why: str
) -> Comparison:
    head_id = history.ensure(head) if head else history.resolve("HEAD")
    base_id = history.ensure(base) if base else None
    if head_id is None:
        return Comparison(None, None, "all", f"{why}: head {head} cannot be fetched", event)
    if base_id is None:
        return Comparison(
            None, head_id, "all", f"{why}: base {base} cannot be fetched; everything", event
        )
    return Comparison(base_id, head_id, "range", why, event)


def _pull_request(history: GitHistory, payload: Mapping[str, Any], event: str) -> Comparison:
    pr = _obj(payload.get("pull_request"))
    b = _text(_obj(pr.get("base")).get("sha"))
    h = _text(_obj(pr.get("head")).get("sha"))
    number = pr.get("number", "?")
    head_id = history.ensure(h) if h else history.resolve("HEAD")
    base_id = history.ensure(b) if b else None
    if head_id is None or base_id is None:
        missing = h if head_id is None else b
        return Comparison(
            None,
            head_id,
            "all",
            f"pull request #{number}: commit {missing} cannot be fetched: everything is affected",
            event,
        )
    merge_base = history.merge_base(base_id, head_id)
    if merge_base is None:
        return Comparison(
            None,
            head_id,
            "all",
            f"pull request #{number}: no merge-base of base and head: everything is affected",
            event,
        )
    return Comparison(
        merge_base,
        head_id,
        "merge-base",
        f"pull request #{number}: merge-base of the base branch and the head (three-dot)",
        event,
    )


_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def _push(history: GitHistory, payload: Mapping[str, Any]) -> Comparison:
    fields = (payload.get("before"), payload.get("after"), payload.get("ref"))
    if not all(isinstance(x, str) for x in fields) or not all(
        _SHA.fullmatch(str(x)) for x in fields[:2]
    ):
        # A truncated or hand-made payload: no way to tell a new branch from a lost
        # `before`, so never an empty plan (issue 12, case 12).
        why = "push: the event has no usable before, after and ref; everything is affected"
        return Comparison(None, history.resolve("HEAD"), "all", why, "push")
    before, after = _text(payload.get("before")) or ZERO, _text(payload.get("after")) or ""
    ref = _text(payload.get("ref")) or ""
    if ref.startswith("refs/tags/"):
        return Comparison(
            None, history.ensure(after), "all", f"tag push {ref}: everything is affected", "push"
        )
    if payload.get("deleted") or after == ZERO:
        return Comparison(None, None, "none", f"{ref} was deleted: nothing to build", "push")
    head_id = history.ensure(after) if after else history.resolve("HEAD")
    if head_id is None:
        return Comparison(None, None, "all", f"push: {after} cannot be fetched", "push")
    branch = ref.removeprefix("refs/heads/")
    default = history.default_branch(payload)
    on_default = branch == default

    def with_default(what: str) -> Comparison | None:
        """The merge-base with the default branch, for a branch other than it."""
        if default and not on_default and (tip := history.branch_tip(default)):
            merge_base = history.merge_base(tip, head_id)
            if merge_base:
                why = f"{what}: merge-base with {default}"
                return Comparison(merge_base, head_id, "merge-base", why, "push")
        return None

    if before == ZERO or payload.get("created"):
        if found := with_default(f"first push of {branch}"):
            return found
        commits = payload.get("commits")
        first = _text(_obj(commits[0]).get("id")) if isinstance(commits, list) and commits else None
        parent = None
        if first and (history.ensure(first, depth=2) or history.resolve(first)):
            parent = history.resolve(f"{first}^")
            if parent is None and history.is_shallow():  # the clone stops at `first`
                history.deepen(first)
                parent = history.resolve(f"{first}^")
        if parent:
            return Comparison(
                parent,
                head_id,
                "range",
                f"first push of {branch}: parent of its first commit",
                "push",
            )
        return Comparison(
            None, head_id, "all", f"first push of {branch}: no base found, everything", "push"
        )
    before_id = history.ensure(before)
    forced = bool(payload.get("forced"))
    if before_id is not None and not forced:
        return Comparison(before_id, head_id, "range", f"push to {branch}: before..after", "push")
    what = "force push" if forced else f"push: before {before[:12]} is unreachable"
    if found := with_default(f"{what} to {branch}"):
        return found
    if before_id is not None:  # a force push to the default branch: what was built is before
        return Comparison(before_id, head_id, "range", f"{what} to {branch}: before..after", "push")
    return Comparison(None, head_id, "all", f"{what} to {branch}: everything is affected", "push")
