"""optimize_layer_stack (`ci-layers squash`): fewer layers in a published image, with the
per-key layers (the build cache) untouched and shared bytes still shared.

Which layers may merge: only those above the image's last *shared* layer, i.e. its base
image's layers and every spec layer that other layers build on (a branch point) stay
exactly as they are, and so does everything below them, since a sibling image holds
the same blobs. Above it, the layers are cut into at most the budget's groups so that
the bytes a typical change re-uploads are fewest: a group is uploaded again when any of
its layers changes, so its cost is its size times the share of recent commits (from
`--history`) in which any of its layers' keys changed. Layers that change together or
rarely end up together. Dynamic programming over the cut points finds the best split.

A merged group is exactly its layers applied in order: later files replace earlier
ones, whiteouts remove what came before in the group (and are kept, to hide what lies
below it), an opaque folder hides what came before and stays opaque, a folder made anew
over a deleted one becomes opaque.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from ..errors import BuildError, UsageError
from ..oci.digest import Descriptor
from ..oci.layers import open_layer
from ..oci.manifest import History, ImageManifest, Layer
from ..oci.store import OciStore
from .tarwriter import (
    DIR,
    FIFO,
    FILE,
    HARDLINK,
    OPAQUE,
    SYMLINK,
    WHITEOUT,
    Entry,
    sort_key,
    write_layer,
)

__all__ = ["MAX_LAYERS", "SquashPlan", "merge_layers", "plan_groups", "squash_image"]

MAX_LAYERS = 125  # moby's maxLayerDepth: an image with more cannot be run
_WH, _OPQ = ".wh.", ".wh..wh..opq"


@dataclass(frozen=True, slots=True)
class SquashPlan:
    groups: tuple[tuple[int, ...], ...]  # layer indices per output layer, in order
    cost_before: float  # expected bytes re-uploaded per change, layer by layer
    cost_after: float


def plan_groups(
    sizes: Sequence[int],
    changes: Sequence[frozenset[int]],
    commits: int,
    *,
    fixed: int,
    max_layers: int,
) -> SquashPlan:
    """Groups of layer indices: the first `fixed` layers alone, the rest cut into at
    most `max_layers - fixed` consecutive groups of least expected re-upload."""
    n = len(sizes)
    if not 1 <= max_layers <= MAX_LAYERS:
        raise UsageError(f"--max-layers {max_layers}: from 1 to {MAX_LAYERS} (Docker's limit)")
    if fixed > max_layers or (fixed == max_layers and n > fixed):
        raise UsageError(
            f"--max-layers {max_layers}: the image's first {fixed} layers are shared (its "
            "base, and layers other layers build on) and are never merged; "
            f"ask for at least {fixed + (1 if n > fixed else 0)}"
        )

    def cost(i: int, j: int) -> float:  # layers i..j-1 as one group
        share = len(frozenset().union(*changes[i:j])) / commits if commits else 1.0
        return sum(sizes[i:j]) * share

    budget = min(max_layers - fixed, n - fixed)
    rest = n - fixed
    best: dict[tuple[int, int], tuple[float, int]] = {}  # (start, groups) -> (cost, cut)

    def solve(start: int, groups: int) -> float:
        """Least cost of layers start..n-1 in exactly `groups` groups."""
        if (start, groups) in best:
            return best[start, groups][0]
        if groups == 1:
            best[start, groups] = (cost(start, n), n)
            return best[start, groups][0]
        found = (float("inf"), n)
        for cut in range(start + 1, n - groups + 2):
            c = cost(start, cut) + solve(cut, groups - 1)
            if c < found[0] - 1e-9:
                found = (c, cut)
        best[start, groups] = found
        return found[0]

    groups: list[tuple[int, ...]] = [(i,) for i in range(fixed)]
    if rest:
        k = min(range(1, budget + 1), key=lambda g: (solve(fixed, g), -g))
        start = fixed
        while start < n:
            _c, cut = best[start, k]
            groups.append(tuple(range(start, cut)))
            start, k = cut, k - 1
    before = sum(cost(i, i + 1) for i in range(n))
    after = sum(cost(g[0], g[-1] + 1) for g in groups)
    return SquashPlan(tuple(groups), before, after)


def merge_layers(store: OciStore, layers: Sequence[Layer], *, compression: str) -> Layer:
    """The layers applied in order, as one layer."""
    with tempfile.NamedTemporaryFile(prefix="ci-layers-squash-") as spool:
        merged = _Merged()
        for layer in layers:
            with open_layer(store, layer) as blob, tarfile.open(fileobj=blob, mode="r|") as tar:
                for m in tar:
                    merged.apply(m, tar, spool)
        spool.flush()
        return write_layer(merged.entries(), store, compression=compression)


class _Node:
    """A path of the merged group: what the group has there, and what it hides below."""

    __slots__ = ("children", "deleted", "entry", "opaque")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.entry: Entry | None = None
        self.deleted = False  # a whiteout to keep: it hides what lies below the group
        self.opaque = False  # a folder whose lower contents stay hidden


class _Merged:
    """The group's layers applied in order, held as a tree of paths, so that dropping
    what lies below a path costs what it drops (linear in the entries, issue 20 item 6).
    Hardlinks are indexed by the file holding their bytes: when that file is replaced or
    removed, the links keep its old content, as they keep its inode on disk."""

    def __init__(self) -> None:
        self.root = _Node()
        self.links: dict[str, set[str]] = {}  # the file holding the bytes -> its links

    def find(self, path: str) -> _Node | None:
        node: _Node | None = self.root
        for part in path.split("/"):
            node = node.children.get(part) if node is not None else None
        return node

    def node(self, path: str) -> _Node:
        node = self.root
        for part in path.split("/"):
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = _Node()
            node = child
        return node

    def apply(self, m: tarfile.TarInfo, tar: tarfile.TarFile, spool: IO[bytes]) -> None:
        path = posixpath.normpath(m.name.lstrip("/")).removeprefix("./")
        if path in (".", "") or path.startswith("../"):
            return
        head, base = posixpath.split(path)
        if base == _OPQ:
            node = self.node(head) if head else self.root
            self.drop(head, node, itself=False, marks=True)
            node.opaque = True
            return
        if base.startswith(_WH):
            gone = posixpath.join(head, base[len(_WH) :])
            node = self.node(gone)
            self.drop(gone, node, itself=True, marks=True)
            node.opaque, node.deleted = False, True
            return
        entry = _entry(m, tar, path, spool)
        if entry is None:
            return  # devices are not written by ci-layers' layers, and extraction skips them
        node = self.node(path)
        old = node.entry
        if entry.kind != DIR:
            # a non-folder replaces whatever was there, below the group too: a folder made
            # there later in the group must hide what that one held (it becomes opaque)
            self.drop(path, node, itself=True, marks=True)
            node.opaque, node.deleted = False, True
        elif old is not None and old.kind != DIR:
            self.drop(path, node, itself=True, marks=False)
        if entry.kind == DIR and node.deleted:
            node.deleted, node.opaque = False, True  # made anew: nothing of the old shows
        if entry.kind == HARDLINK:
            held = self.find(entry.target)
            if held is not None and held.entry is not None and held.entry.kind == HARDLINK:
                entry = replace(entry, target=held.entry.target)  # to the bytes' holder
            self.links.setdefault(entry.target, set()).add(path)
        node.entry = entry

    def drop(self, path: str, node: _Node, *, itself: bool, marks: bool) -> None:
        """Drop the entries below `path` (its own too when `itself`) and, with `marks`,
        the whiteouts and opaque marks below it."""
        gone: list[tuple[str, Entry]] = []
        if itself and node.entry is not None:
            gone.append((path, node.entry))
            node.entry = None
        stack = [(f"{path}/{k}" if path else k, c) for k, c in node.children.items()]
        while stack:
            p, n = stack.pop()
            if n.entry is not None:
                gone.append((p, n.entry))
                n.entry = None
            stack.extend((f"{p}/{k}", c) for k, c in n.children.items())
        if marks:
            node.children = {}
        removed = {p for p, _e in gone}
        for p, e in gone:
            if e.kind == HARDLINK:
                self.links.get(e.target, set()).discard(p)
        for p, e in gone:
            if e.kind == FILE:
                self._keep_linked(p, e, removed)

    def _keep_linked(self, path: str, old: Entry, removed: set[str]) -> None:
        """`path`'s file goes; the links to it that stay keep its bytes (the first of
        them in tar order holds them now, the others link to it)."""
        left = sorted(self.links.pop(path, set()) - removed, key=sort_key)
        if not left:
            return
        holder, *others = left
        own = self._entry(holder)
        self.node(holder).entry = replace(
            old, path=holder, mode=own.mode, uid=own.uid, gid=own.gid, mtime=own.mtime
        )
        for other in others:
            self.node(other).entry = replace(self._entry(other), target=holder)
        if others:
            self.links[holder] = set(others)

    def _entry(self, path: str) -> Entry:
        entry = self.node(path).entry
        if entry is None:
            raise AssertionError(f"no entry at {path}")  # a link index out of step
        return entry

    def entries(self) -> list[Entry]:
        """The merged layer: every entry, the whiteouts no kept whiteout above already
        says, the opaque marks outside deleted folders, hardlinks in tar order."""
        out: list[Entry] = []
        stack = [(k, c, False) for k, c in self.root.children.items()]
        while stack:
            path, node, hidden = stack.pop()  # hidden: a folder above is a kept whiteout
            if node.entry is not None:
                out.append(node.entry)
            elif node.deleted and not hidden:
                out.append(Entry(path, WHITEOUT))
            if node.opaque and not hidden:
                out.append(Entry(path, OPAQUE))
            below = hidden or node.deleted
            stack.extend((f"{path}/{k}", c, below) for k, c in node.children.items())
        if self.root.opaque:
            out.append(Entry("", OPAQUE))
        return self._links_whole(out)

    @staticmethod
    def _links_whole(out: list[Entry]) -> list[Entry]:
        """Each hardlink names a file of the merged layer (a tar's link names an entry
        written before it: a link's target sorts first in its own layer, a kept link's
        new holder is the first of them, so the order holds)."""
        files = {e.path for e in out if e.kind == FILE}
        for e in out:
            if e.kind == HARDLINK and e.target not in files:
                raise BuildError(
                    f"cannot squash: hardlink '{e.path}' to '{e.target}', which is not in it"
                )
        return out


def _entry(m: tarfile.TarInfo, tar: tarfile.TarFile, path: str, spool: IO[bytes]) -> Entry | None:
    """The tar member as an entry; a regular file's bytes are appended to `spool` (one
    file for all: an overwrite never clobbers what an earlier entry wrote)."""
    xattrs = tuple(
        (k.removeprefix("SCHILY.xattr."), v.encode("utf-8", "surrogateescape"))
        for k, v in sorted(m.pax_headers.items())
        if k.startswith("SCHILY.xattr.")
    )
    common = {"mode": m.mode, "uid": m.uid, "gid": m.gid, "mtime": int(m.mtime), "xattrs": xattrs}
    if m.isreg():
        source = tar.extractfile(m)
        assert source is not None
        start = spool.seek(0, os.SEEK_END)
        with source:
            while chunk := source.read(1 << 20):
                spool.write(chunk)
        span = (start, spool.tell() - start)
        return Entry(path, FILE, source=spool.name, span=span, **common)  # type: ignore[arg-type]
    if m.isdir():
        return Entry(path, DIR, **common)  # type: ignore[arg-type]
    if m.issym():
        return Entry(path, SYMLINK, target=m.linkname, **common)  # type: ignore[arg-type]
    if m.islnk():
        target = posixpath.normpath(m.linkname.lstrip("/")).removeprefix("./")
        return Entry(path, HARDLINK, target=target, **common)  # type: ignore[arg-type]
    if m.isfifo():
        return Entry(path, FIFO, **common)  # type: ignore[arg-type]
    return None


def squash_image(
    store: OciStore,
    desc: Descriptor,
    *,
    shared: int,
    sizes_changes: tuple[Sequence[frozenset[int]], int] | None,
    max_layers: int,
    compression: str = "gzip",
) -> tuple[Descriptor, SquashPlan, ImageManifest]:
    """Write the squashed image (its first `shared` layers kept) and return it."""
    image = ImageManifest.load(store, desc)
    sizes = [x.descriptor.size for x in image.layers]
    changes, commits = sizes_changes or ([frozenset()] * len(sizes), 0)
    plan = plan_groups(sizes, changes, commits, fixed=shared, max_layers=max_layers)
    layers: list[Layer] = []
    for group in plan.groups:
        if len(group) == 1:
            layers.append(image.layers[group[0]])
        else:
            layers.append(
                merge_layers(store, [image.layers[i] for i in group], compression=compression)
            )
    history = _history(image.history, plan.groups)
    squashed = replace(image, layers=tuple(layers), history=history)
    return squashed.write(store), plan, squashed


def _history(history: Sequence[History], groups: Sequence[tuple[int, ...]]) -> tuple[History, ...]:
    """One non-empty entry per output layer: a merged group's earlier entries become
    empty, its last one holds the layer, and says what it merged."""
    out, layer = [], -1
    last_of = {g[-1]: g for g in groups}
    for h in history:
        if h.empty_layer:
            out.append(h)
            continue
        layer += 1
        group = last_of.get(layer)
        if group is None:
            out.append(replace(h, empty_layer=True, comment=(h.comment + " (squashed)").strip()))
        elif len(group) > 1:
            out.append(
                replace(h, comment=(h.comment + f" (squashed: {len(group)} layers)").strip())
            )
        else:
            out.append(h)
    return tuple(out)


def key_history(root: Path, spec_rel: str, commits: int) -> tuple[dict[str, frozenset[int]], int]:
    """For each layer name, the indices of the last `commits` first-parent commits whose
    change moved its key; and how many commit pairs were compared."""
    import subprocess

    from ..discover import resolve_dockerfiles
    from ..errors import CiLayersError
    from ..keys import compute_keys
    from ..repo import read_at, tree_files
    from ..spec import parse_spec

    if commits <= 0:
        return {}, 0
    done = subprocess.run(
        ["git", "rev-list", "--first-parent", f"--max-count={commits + 1}", "HEAD"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    revs = done.stdout.split() if done.returncode == 0 else []
    keyed: list[dict[str, str] | None] = []
    for rev in revs:
        try:
            text = read_at(root, rev, spec_rel)
            if text is None:
                keyed.append(None)
                continue
            files = tree_files(root, rev)
            spec = resolve_dockerfiles(parse_spec(text, filename=spec_rel), files)
            keyed.append({n: k.digest for n, k in compute_keys(spec, files).items()})
        except CiLayersError:
            keyed.append(None)
    changed: dict[str, set[int]] = {}
    pairs = 0
    for i in range(len(keyed) - 1):
        new, old = keyed[i], keyed[i + 1]
        if new is None or old is None:
            continue
        pairs += 1
        for name, key in new.items():
            if old.get(name) != key:
                changed.setdefault(name, set()).add(i)
    return {n: frozenset(s) for n, s in changed.items()}, pairs
