"""`user` and `chown` values to numeric ids, read from the image's /etc/passwd and
/etc/group, the way Docker resolves USER and COPY --chown."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import BuildError

__all__ = ["chown_ids", "user_ids"]

Reader = Callable[[str], bytes | None]  # file contents by path in the image ("etc/passwd")


def _table(read: Reader, path: str) -> list[list[str]]:
    data = read(path) or b""
    rows = []
    for line in data.decode("utf-8", "replace").splitlines():
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def _uid(name: str, read: Reader, *, what: str) -> tuple[int, int | None]:
    """(uid, primary gid or None when the user is not in /etc/passwd)."""
    for row in _table(read, "etc/passwd"):
        if len(row) >= 4 and (row[0] == name or (name.isdigit() and row[2] == name)):
            try:
                return int(row[2]), int(row[3])
            except ValueError:
                break
    if name.isdigit():
        return int(name), None
    raise BuildError(f"{what}: no user '{name}' in the image's /etc/passwd")


def _gid(name: str, read: Reader, *, what: str) -> int:
    if name.isdigit():
        return int(name)
    for row in _table(read, "etc/group"):
        if len(row) >= 3 and row[0] == name:
            try:
                return int(row[2])
            except ValueError:
                break
    raise BuildError(f"{what}: no group '{name}' in the image's /etc/group")


_MAX_ID = (1 << 32) - 2  # (uid_t)-1 means "no change" to the kernel


def _checked(value: str, *ids: int) -> None:
    for n in ids:
        if n > _MAX_ID:
            raise BuildError(f"'{value}': {n} is no valid user or group id (at most {_MAX_ID})")


def chown_ids(value: str, read: Reader) -> tuple[int, int]:
    """COPY --chown: `user[:group]`. Without a group, a numeric user's gid is the uid and
    a named user's is its primary group (BuildKit's readUser)."""
    user, _, group = value.partition(":")
    if user.isdigit():
        uid, primary = int(user), int(user)
    else:
        uid, found = _uid(user, read, what=f"chown {value}")
        primary = found if found is not None else uid
    gid = _gid(group, read, what=f"chown {value}") if group else primary
    _checked(value, uid, gid)
    return uid, gid


def user_ids(value: str, read: Reader) -> tuple[int, int, tuple[int, ...]]:
    """USER: `user[:group]` -> (uid, gid, supplementary gids), as runc wants them."""
    user, _, group = (value or "0").partition(":")
    uid, primary = _uid(user, read, what=f"user {value}")
    gid = _gid(group, read, what=f"user {value}") if group else (primary or 0)
    extra: list[int] = []
    if not group:
        names = {user}
        for row in _table(read, "etc/passwd"):
            if len(row) >= 3 and row[2] == str(uid):
                names.add(row[0])
        for row in _table(read, "etc/group"):
            member = len(row) >= 4 and names & set(row[3].split(","))
            if member and row[2].isdigit() and int(row[2]) != gid:
                extra.append(int(row[2]))
    _checked(value, uid, gid)
    return uid, gid, tuple(sorted(set(extra)))
