"""Building layers: a copy layer next to GNU tar + gzip/zstd, and a `run` snapshot as the
parent grows.

1. A `copy` layer (`from: scratch`) of a committed tree, built by `LayerBuilder` into an
   empty store, against `tar --sort=name -cf - . | gzip -6 > /dev/null` (and `zstd -3`)
   on the same tree in the same run, best of R. Once with many small text files (100,000
   in ~1,000 folders), once with ~1 GB of large, partly compressible files. Goals: copy
   layer / tar+gzip <= 1.5; the zstd layer faster than the tar+gzip floor (ratio < 1).
2. A child `run: echo hi > /hello` on busybox parents of 10,000 and 100,000 files (root
   and runc needed, otherwise skipped): the child's whole build, the overlay snapshot
   alone (`upper_entries`), and the tree compare fallback (`record_tree` before and
   `changed_entries` after) on the same extracted parent. Goal: the overlay snapshot flat
   as the parent grows (100k/10k close to 1); the tree compare is expected linear.

    .venv/bin/python bench/build_bench.py [--small-files 100000 --large-mb 1024 --repeat 3]
    .venv/bin/python bench/build_bench.py --quick   # 10,000 files, 128 MB: about a minute
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, cast

import yaml
from timing import best

import ci_layers.build.builder as builder_module
from ci_layers.build.builder import LayerBuilder, key_tag
from ci_layers.build.busybox import BUSYBOX_REF, busybox_image
from ci_layers.build.rootfs import assemble_rootfs
from ci_layers.build.snapshot import changed_entries, record_tree
from ci_layers.keys import LayerKey, compute_keys
from ci_layers.oci.layers import open_layer
from ci_layers.oci.store import OciStore
from ci_layers.repo import RepoFiles, worktree_files
from ci_layers.spec import Spec, load_spec

MIB = 1 << 20
LARGE_FILE_MB = 16
FILES_PER_FOLDER = 100
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


# --- the repositories -------------------------------------------------------------------


@dataclass(frozen=True)
class Repo:
    """A committed repository with its spec, file snapshot and keys (computed once)."""

    root: Path
    spec: Spec
    files: RepoFiles
    keys: dict[str, LayerKey]

    def builder(self, store: OciStore, compression: str = "gzip") -> LayerBuilder:
        return LayerBuilder(
            spec=self.spec,
            keys=self.keys,
            files=self.files,
            root=self.root,
            store=store,
            compression=compression,
        )


def text_pool(rng: random.Random, size: int) -> bytes:
    """`size` bytes of word-like text: compressible about as source code is."""
    letters = "abcdefghijklmnopqrstuvwxyz_"
    words = ["".join(rng.choices(letters, k=rng.randrange(2, 12))) for _ in range(3000)]
    words += ["\n", "\n    ", "(", ")", "=", "return", "def", "self.", "{", "}"]
    out: list[str] = []
    length = 0
    while length < size:
        chunk = " ".join(rng.choices(words, k=4096))
        out.append(chunk)
        length += len(chunk) + 1
    return " ".join(out).encode()[:size]


def small_tree(top: Path, count: int, pool: bytes, rng: random.Random) -> None:
    """`count` text files of 200-2000 bytes in ~count/100 folders, two levels deep."""
    folders = max(1, count // FILES_PER_FOLDER)
    made: set[Path] = set()
    for i in range(count):
        k = i % folders
        folder = top / f"g{k // 32:03d}" / f"d{k % 32:02d}"
        if folder not in made:
            folder.mkdir(parents=True, exist_ok=True)
            made.add(folder)
        size = rng.randrange(200, 2001)
        start = rng.randrange(0, len(pool) - size)
        (folder / f"f{i:06d}.txt").write_bytes(b"file %d\n" % i + pool[start : start + size])


def large_tree(top: Path, total_mb: int, pool: bytes, rng: random.Random) -> None:
    """`total_mb` MiB in 16 MiB files, each 64 KiB block half random bytes, half text."""
    top.mkdir(parents=True, exist_ok=True)
    block, files = 64 << 10, max(1, total_mb // LARGE_FILE_MB)
    per_file = min(total_mb, LARGE_FILE_MB) * MIB
    for i in range(files):
        with (top / f"blob{i:03d}.bin").open("wb") as f:
            for _ in range(per_file // block):
                start = rng.randrange(0, len(pool) - block // 2)
                f.write(os.urandom(block // 2) + pool[start : start + block // 2])


def tiny_tree(top: Path, count: int) -> None:
    """`count` small files in folders of 100 (a parent whose size is its file count)."""
    for i in range(count):
        folder = top / f"d{i // FILES_PER_FOLDER:04d}"
        if i % FILES_PER_FOLDER == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:06d}").write_bytes(b"%d\n" % i)


def git(root: Path, *args: str) -> None:
    env = {**os.environ, **GIT_ENV, "HOME": str(root.parent)}
    subprocess.run(["git", *args], cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)


def commit_repo(root: Path, layers: dict[str, Any]) -> Repo:
    """Write the spec, commit everything and read the repository as a build does."""
    text = yaml.safe_dump({"version": 1, "layers": layers}, sort_keys=False)
    (root / "ci-layers.yaml").write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "commit.gpgsign", "false")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "bench")
    spec = load_spec(root / "ci-layers.yaml", display="ci-layers.yaml")
    files = worktree_files(root)
    return Repo(root, spec, files, compute_keys(spec, files))


def tree_size(top: Path) -> tuple[int, int]:
    """(files, bytes) below `top`."""
    count = size = 0
    for folder, _dirs, names in os.walk(top):
        for name in names:
            count += 1
            size += os.lstat(os.path.join(folder, name)).st_size
    return count, size


# --- 1. copy layers against tar | gzip, tar | zstd --------------------------------------

BASELINES = {"gzip": "gzip -6", "zstd": "zstd -3 -q"}


def time_layer(
    repo: Repo, name: str, compression: str, work: Path, repeat: int
) -> tuple[float, int]:
    """Seconds of the fastest `build_layer(name)` into a fresh empty store, and the
    size of the layer blob it wrote."""
    times, size = [], 0
    for i in range(repeat):
        where = work / f"store-{compression}-{i}"
        builder = repo.builder(OciStore(where), compression)
        start = time.perf_counter()
        result = builder.build_layer(name)
        times.append(time.perf_counter() - start)
        assert result.layer is not None
        size = result.layer.descriptor.size
        shutil.rmtree(where)
    return min(times), size


def tar_pipe(tree: Path, compressor: str, sink: str) -> list[str]:
    return [
        "bash",
        "-c",
        f"set -o pipefail; tar --sort=name -cf - -C {tree} . | {compressor}{sink}",
    ]


def baseline(tree: Path, compression: str, repeat: int) -> tuple[float, int]:
    """Seconds of the fastest `tar | compressor > /dev/null`, and (untimed) its output size."""
    seconds = best(tar_pipe(tree, BASELINES[compression], " > /dev/null"), tree, repeat)
    out = subprocess.run(
        tar_pipe(tree, BASELINES[compression], " | wc -c"), check=True, capture_output=True
    ).stdout
    return seconds, int(out)


def copy_case(title: str, repo: Repo, name: str, tree: Path, work: Path, repeat: int) -> None:
    count, size = tree_size(tree)
    print(f"\n{title}: {count:,} files, {size / MIB:,.0f} MiB (best of {repeat})")
    print(f"  {'':<22}{'seconds':>9}{'MiB/s':>9}{'blob MiB':>10}")
    rows: dict[str, float] = {}
    for compression in ("gzip", "zstd"):
        t_base, base_size = baseline(tree, compression, repeat)
        t_ours, our_size = time_layer(repo, name, compression, work, repeat)
        rows[compression] = t_ours
        rows["base-" + compression] = t_base
        label = f"tar | {BASELINES[compression].split()[0]}"
        for what, t, blob in (
            (label, t_base, base_size),
            (f"ci-layers {compression}", t_ours, our_size),
        ):
            print(f"  {what:<22}{t:>9.2f}{size / MIB / t:>9.0f}{blob / MIB:>10.1f}")
    print(f"  ratio ci-layers/tar+gzip:  {rows['gzip'] / rows['base-gzip']:.2f}  (goal <= 1.5)")
    print(f"  ratio ci-layers/tar+zstd:  {rows['zstd'] / rows['base-zstd']:.2f}")
    print(f"  zstd vs gzip floor:        {rows['zstd'] / rows['base-gzip']:.2f}  (goal < 1)")


def copy_part(work: Path, small_files: int, large_mb: int, repeat: int) -> None:
    rng = random.Random(1)
    root = work / "copy-repo"
    start = time.perf_counter()
    pool = text_pool(rng, 8 * MIB)
    small_tree(root / "tree", small_files, pool, rng)
    large_tree(root / "big", large_mb, pool, rng)
    layers = {
        "small": {"from": "scratch", "copy": [{"src": "tree/", "dest": "/tree/"}]},
        "large": {"from": "scratch", "copy": [{"src": "big/", "dest": "/big/"}]},
    }
    repo = commit_repo(root, layers)
    print(f"\ngenerated and committed the copy trees in {time.perf_counter() - start:.1f}s")
    copy_case("copy layer, small files", repo, "small", root / "tree", work, repeat)
    copy_case("copy layer, large files", repo, "large", root / "big", work, repeat)


# --- 2. a run layer's snapshot as the parent grows --------------------------------------


def snapshot_unavailable() -> str:
    """Why the run snapshot cannot be measured here ("" if it can)."""
    missing = []
    if shutil.which("runc") is None:
        missing.append("runc is not installed")
    if os.geteuid() != 0:
        missing.append("needs root")
    if not Path("/bin/busybox").is_file() and shutil.which("busybox") is None:
        missing.append("no static busybox (apt-get install busybox-static)")
    return "; ".join(missing)


@contextlib.contextmanager
def timed(name: str) -> Iterator[list[float]]:
    """Seconds of each call the builder makes to its function `name` (`upper_entries`,
    `assemble_rootfs`), while inside."""
    real: Callable[..., Any] = getattr(builder_module, name)
    laps: list[float] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            laps.append(time.perf_counter() - start)

    setattr(builder_module, name, wrapper)
    try:
        yield laps
    finally:
        setattr(builder_module, name, real)


def extract(repo: Repo, store: OciStore, layer: str, where: Path) -> None:
    """Extract the image as of `layer` into `where` as the builder does."""
    image = repo.builder(store).image(layer)
    openers = [
        (str(x.descriptor.digest), (lambda x=x: cast(BinaryIO, open_layer(store, x))))
        for x in image.layers
    ]
    assemble_rootfs(where, openers, privileged=True)


def tree_compare(root: Path, repeat: int) -> float:
    """Seconds of the fastest tree compare around a run writing /hello."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        before = record_tree(root)
        (root / "hello").write_bytes(b"hi\n")
        entries = changed_entries(root, before)
        times.append(time.perf_counter() - start)
        assert [e.path for e in entries] == ["hello"], [e.path for e in entries]
        (root / "hello").unlink()
    return min(times)


@dataclass(frozen=True)
class Row:
    """Seconds measured on one parent size (the snapshots: None if not measured)."""

    HEADER: ClassVar[tuple[str, ...]] = (
        "parent files",
        "parent build s",
        "child, cold s",
        "of it extract s",
        "child, warm s",
        "overlay snap ms",
        "tree-cmp snap ms",
    )
    files: int
    parent: float
    child: float  # the first child build: the parent's root is extracted
    extract: float
    warm: float  # later child builds: the extracted root is the store's already
    overlay: float | None
    tree: float

    def cells(self) -> tuple[str, ...]:
        overlay = f"{self.overlay * 1000:.1f}" if self.overlay is not None else "n/a"
        seconds = (f"{t:.2f}" for t in (self.parent, self.child, self.extract, self.warm))
        return (f"{self.files:,}", *seconds, overlay, f"{self.tree * 1000:.1f}")


def snapshot_row(
    repo: Repo, builder: LayerBuilder, store: OciStore, n: int, work: Path, repeat: int
) -> Row:
    """Build parent-n once, then child-n 1 + `repeat` times (untagged before each build):
    the first extracts the parent's root, the others find it in the store. The builder's
    extraction and overlay snapshot are timed inside; then the tree compare on the same
    parent, extracted."""
    start = time.perf_counter()
    builder.build_layer(f"parent-{n}")
    t_parent = time.perf_counter() - start
    child, builds = f"child-{n}", []
    with timed("assemble_rootfs") as extracts, timed("upper_entries") as snaps:
        for _ in range(repeat + 1):
            store.untag(key_tag(repo.keys[child].digest))
            start = time.perf_counter()
            builder.build_layer(child)
            builds.append(time.perf_counter() - start)
    lower = work / f"lower-{n}"
    extract(repo, store, f"parent-{n}", lower)
    t_tree = tree_compare(lower, repeat)
    shutil.rmtree(lower)
    overlay = min(snaps) if snaps else None
    return Row(n, t_parent, builds[0], min(extracts), min(builds[1:]), overlay, t_tree)


def snapshot_part(work: Path, sizes: list[int], repeat: int) -> None:
    print(f"\nrun layer `echo hi > /hello` on a parent of N files (best of {repeat})")
    why = snapshot_unavailable()
    if why:
        print(f"  skipped: {why}")
        return
    root = work / "snap-repo"
    layers: dict[str, Any] = {}
    for n in sizes:
        tiny_tree(root / f"p{n}", n)
        layers[f"parent-{n}"] = {"from": BUSYBOX_REF, "copy": [{"src": f"p{n}/", "dest": "/data/"}]}
        layers[f"child-{n}"] = {"parent": f"parent-{n}", "run": ["echo hi > /hello"]}
    repo = commit_repo(root, layers)
    store = OciStore(work / "snap-store")
    busybox_image(store)
    builder = repo.builder(store)
    builder.check(list(layers))
    rows = [snapshot_row(repo, builder, store, n, work, repeat) for n in sizes]
    print("  " + "".join(f"{h:>17}" for h in Row.HEADER))
    for row in rows:
        print("  " + "".join(f"{c:>17}" for c in row.cells()))
    first, last = rows[0], rows[-1]
    if first.overlay is None:
        print("  overlay could not be mounted: the child builds used the tree compare")
    grow = f"{last.files // first.files}x"
    print(f"  growth {last.files:,}/{first.files:,} files ({grow}):")
    print(f"    child, cold:       {last.child / first.child:.2f}  (extracts the parent once)")
    print(f"    parent extraction: {last.extract / first.extract:.2f}  (linear: the parent's size)")
    print(f"    child, warm:       {last.warm / first.warm:.2f}  (goal: ~1, flat)")
    if first.overlay is not None and last.overlay is not None:
        print(f"    overlay snapshot:  {last.overlay / first.overlay:.2f}  (goal: ~1, flat)")
    print(f"    tree compare:      {last.tree / first.tree:.2f}  (expected ~{grow}, linear)")


# --- 3. the machine ---------------------------------------------------------------------


def version(cmd: str) -> str:
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else "?"


def machine() -> None:
    print(f"nproc: {len(os.sched_getaffinity(0))}")
    for cmd in ("tar --version", "gzip --version", "zstd --version", "runc --version"):
        print(f"  {version(cmd)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small-files", type=int, default=100_000)
    ap.add_argument("--large-mb", type=int, default=1024)
    ap.add_argument("--parents", default="10000,100000", help="parent file counts, comma-separated")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="10,000 files, 128 MB, parents 1k,10k")
    args = ap.parse_args()
    if args.quick:
        args.small_files, args.large_mb, args.parents = 10_000, 128, "1000,10000"
    machine()
    with tempfile.TemporaryDirectory(prefix="ci-layers-build-bench-") as tmp:
        work = Path(tmp)
        copy_part(work, args.small_files, args.large_mb, args.repeat)
        snapshot_part(work, [int(n) for n in args.parents.split(",")], args.repeat)


if __name__ == "__main__":
    main()
