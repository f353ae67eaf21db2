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

import posixpath
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import BuildError, UsageError
from ..oci.digest import Descriptor
from ..oci.layers import open_layer
from ..oci.manifest import History, ImageManifest, Layer
from ..oci.store import OciStore
from .tarwriter import DIR, FIFO, FILE, HARDLINK, OPAQUE, SYMLINK, WHITEOUT, Entry, write_layer

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
    entries: dict[str, Entry] = {}
    deleted: set[str] = set()  # hidden below the group: whiteouts to keep
    opaque: set[str] = set()  # folders whose lower contents stay hidden
    with tempfile.TemporaryDirectory(prefix="ci-layers-squash-") as tmp:
        spool = Path(tmp)
        count = 0
        for layer in layers:
            with open_layer(store, layer) as blob, tarfile.open(fileobj=blob, mode="r|") as tar:
                for m in tar:
                    count += 1  # one spool file per entry: an overwrite must not clobber
                    _apply(m, tar, entries, deleted, opaque, spool / str(count))
        out = list(entries.values())
        for path in sorted(deleted):
            if path not in entries and not _under_any(path, deleted - {path}):
                out.append(Entry(path, WHITEOUT))
        out += [Entry(d, OPAQUE) for d in sorted(opaque) if not _under_any(d, deleted)]
        out = _links_in_order(out, entries)
        return write_layer(out, store, compression=compression)


def _under_any(path: str, parents: set[str]) -> bool:
    return any(path.startswith(p + "/") for p in parents)


def _drop_below(entries: dict[str, Entry], marks: set[str], root: str, *, itself: bool) -> None:
    prefix = root + "/" if root else ""
    for p in [p for p in entries if p.startswith(prefix) or (itself and p == root)]:
        del entries[p]
    for p in [p for p in marks if p.startswith(prefix) and p != root]:
        marks.discard(p)


def _apply(
    m: tarfile.TarInfo,
    tar: tarfile.TarFile,
    entries: dict[str, Entry],
    deleted: set[str],
    opaque: set[str],
    spool: Path,
) -> None:
    path = posixpath.normpath(m.name.lstrip("/")).removeprefix("./")
    if path in (".", "") or path.startswith("../"):
        return
    head, base = posixpath.split(path)
    if base == _OPQ:
        _drop_below(entries, deleted, head, itself=False)
        _drop_below(entries, opaque, head, itself=False)
        opaque.add(head)
        return
    if base.startswith(_WH):
        gone = posixpath.join(head, base[len(_WH) :])
        _drop_below(entries, deleted, gone, itself=True)
        _drop_below(entries, opaque, gone, itself=False)
        opaque.discard(gone)
        deleted.add(gone)
        return
    old = entries.get(path)
    if old is not None and not (old.kind == DIR and m.isdir()):
        _drop_below(entries, set(), path, itself=True)  # a non-folder replaces it whole
    if path in deleted:
        deleted.discard(path)
        if m.isdir():
            opaque.add(path)  # made anew: nothing of the deleted one shows through
    xattrs = tuple(
        (k.removeprefix("SCHILY.xattr."), v.encode("utf-8", "surrogateescape"))
        for k, v in sorted(m.pax_headers.items())
        if k.startswith("SCHILY.xattr.")
    )
    common = {"mode": m.mode, "uid": m.uid, "gid": m.gid, "mtime": int(m.mtime), "xattrs": xattrs}
    if m.isreg():
        source = tar.extractfile(m)
        assert source is not None
        with source, open(spool, "wb") as f:
            while chunk := source.read(1 << 20):
                f.write(chunk)
        entries[path] = Entry(path, FILE, source=str(spool), **common)  # type: ignore[arg-type]
    elif m.isdir():
        entries[path] = Entry(path, DIR, **common)  # type: ignore[arg-type]
    elif m.issym():
        entries[path] = Entry(path, SYMLINK, target=m.linkname, **common)  # type: ignore[arg-type]
    elif m.islnk():
        target = posixpath.normpath(m.linkname.lstrip("/")).removeprefix("./")
        entries[path] = Entry(path, HARDLINK, target=target, **common)  # type: ignore[arg-type]
    elif m.isfifo():
        entries[path] = Entry(path, FIFO, **common)  # type: ignore[arg-type]
    else:
        return  # devices are not written by ci-layers' layers and are skipped, as extraction does
    if not m.isdir():
        # a non-folder replaces whatever was there, below the group too: a folder made
        # there later in the group must hide what that one held (it becomes opaque)
        opaque.discard(path)
        _drop_below({}, opaque, path, itself=False)
        _drop_below({}, deleted, path, itself=False)
        deleted.add(path)


def _links_in_order(out: list[Entry], entries: Mapping[str, Entry]) -> list[Entry]:
    """A tar hardlink names an entry written before it: a link whose target now sorts
    after it, or is gone, becomes a copy of the target's file."""
    from .tarwriter import sort_key

    fixed = []
    for e in out:
        if e.kind != HARDLINK:
            fixed.append(e)
            continue
        target = entries.get(e.target)
        if target is None or target.kind != FILE:
            raise BuildError(
                f"cannot squash: hardlink '{e.path}' to '{e.target}', which is not in it"
            )
        if sort_key(e.target) < sort_key(e.path):
            fixed.append(e)
        else:
            fixed.append(replace(target, path=e.path, mode=e.mode, uid=e.uid, gid=e.gid))
    return fixed


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
