"""Work kept between runs on disk: a parsed spec by its text, keys by commit and spec.

What is kept is named by everything it was computed from (the text's sha256, a commit's
tree id, ci-layers' version), so a hit is the value the computation would return, and
a plan is byte-identical with or without it (tests assert so). It lives in
`$CI_LAYERS_CACHE_DIR`, else `$XDG_CACHE_HOME/ci-layers`, else `~/.cache/ci-layers`;
`CI_LAYERS_CACHE_DIR=off` turns it off. In CI, `actions/cache` can keep the folder.

Entries are pickles read back by an unpickler that makes only ci-layers' own types and
plain containers: a cache folder someone else wrote can fail a load, not run code.
Any failure to read or write is a miss, never an error.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import pickle
from pathlib import Path
from typing import Any

from .atomic import write_atomic

__all__ = ["cache_dir", "load", "store"]

# bumped whenever a kept type changes shape; with the package version, in every name
FORMAT = 4  # 2: platforms; 3: bake (Spec.bake, rule and node fields); 4: pickling.py
MAX_BYTES = 256 * 1024 * 1024
KEEP = 16  # entries of a kind: the least recently used go (the base of a PR is recent)

_PLAIN = {
    ("builtins", n)
    for n in ("dict", "list", "set", "frozenset", "tuple", "str", "bytes", "int", "object")
}
_PLAIN |= {("copyreg", "_reconstructor"), ("copyreg", "__newobj__"), ("types", "MappingProxyType")}
_PLAIN |= {("collections", "OrderedDict"), ("yaml.error", "Mark")}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "ci_layers" or module.startswith("ci_layers.") or (module, name) in _PLAIN:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not kept in this cache")


def cache_dir() -> Path | None:
    """Where entries are kept; None when turned off."""
    where = os.environ.get("CI_LAYERS_CACHE_DIR")
    if where is not None:
        return None if where.strip().lower() in ("", "off", "0", "false", "no") else Path(where)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ci-layers"


def _path(kind: str, *parts: str) -> Path | None:
    where = cache_dir()
    if where is None:
        return None
    name = hashlib.sha256("\0".join((_code(), kind, *parts)).encode())
    return where / kind / name.hexdigest()


@functools.cache
def _code() -> str:
    """This ci-layers: its version and its modules' sizes and times, so that an edited
    checkout never reads what another version of the code computed."""
    from . import __version__

    top = Path(__file__).parent
    stats = []
    for path in sorted(top.rglob("*.py")):
        st = path.stat()
        stats.append(f"{path.relative_to(top)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join([str(FORMAT), __version__, *stats]).encode()).hexdigest()


def load(kind: str, *parts: str) -> Any | None:
    """The value stored under (kind, parts), or None."""
    path = _path(kind, *parts)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            return None
        value = _Unpickler(io.BytesIO(data)).load()
        os.utime(path)  # recently used: kept by the pruning below
        return value
    except Exception:  # a miss: missing, truncated, foreign or from another version
        return None


def store(kind: str, value: Any, *parts: str) -> None:
    """Keep `value` under (kind, parts), atomically; silently not where it cannot."""
    path = _path(kind, *parts)
    if path is None:
        return
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        if len(data) > MAX_BYTES:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data, durable=False)
        _prune(path.parent)
    except Exception:  # a read-only home, a full disk, an unpicklable value: no cache
        return


def _prune(folder: Path) -> None:
    """Keep the KEEP most recently used entries of a folder, so that a folder carried
    from run to run (actions/cache) does not grow without end."""
    entries = []
    for entry in os.scandir(folder):
        with contextlib.suppress(OSError):
            entries.append((entry.stat().st_mtime_ns, entry.path))
    for _mtime, path in sorted(entries, reverse=True)[KEEP:]:
        with contextlib.suppress(OSError):
            os.unlink(path)
