"""Builds that are stopped: SIGTERM unwinds as Ctrl-C does, a `kill -9` leaves nothing
the next build or gc does not clear, `run` has a time limit, and gc never sweeps what a
running pull or squash has written but not yet tagged."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ci_layers.build.scratch import sweep
from ci_layers.oci.store import OciStore

from .buildhelp import BASE, CLI, build, scratch_left
from .conftest import require

SLEEP = 31416  # a number no other process sleeps for


def _sleepers() -> list[int]:
    """Pids of the containers' `sleep SLEEP` (the host sees every pid namespace)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.split(b"\0")[:2] == [b"sleep", str(SLEEP).encode()]:
                found.append(int(entry))
    return found


def _mounts_in(store: Path) -> list[str]:
    top = str(store.resolve())
    points = [line.split(" ")[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p.startswith(top + "/")]


def _wait_for(what, seconds: float = 60.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if found := what():
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what.__name__}")


SPEC = f"""
version: 1
layers:
  slow:
    from: {BASE}
    run: echo started > /started && sleep {SLEEP}
  quick:
    from: {BASE}
    run: echo quick > /quick
"""


@pytest.fixture
def slow(git_repo, busybox_store, runc):
    git_repo.write("ci-layers.yaml", SPEC)
    git_repo.commit()
    yield git_repo, busybox_store
    for pid in _sleepers():  # never leave one behind, whatever the test found
        os.kill(pid, signal.SIGKILL)


def _start(repo, store: OciStore, *targets: str) -> subprocess.Popen:
    """The build in the background, its output to files (a pipe would stay open as long
    as the runc it starts, which `kill -9` does not stop)."""
    log = repo.root.parent / "build.log"
    with log.open("w") as f:
        proc = subprocess.Popen(
            [CLI, "build", *targets, "-C", str(repo.root), "--store", str(store.path)],
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    proc.log = log  # type: ignore[attr-defined]
    return proc


def test_sigterm_during_run_kills_the_container_and_removes_mounts_and_scratch(slow):
    repo, store = slow
    proc = _start(repo, store, "slow")
    _wait_for(_sleepers)
    assert _mounts_in(store.path)  # the overlay is up
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    err = proc.log.read_text()
    assert proc.returncode == 143, err
    assert "terminated" in err
    assert "Traceback" not in err
    assert _sleepers() == []
    assert _mounts_in(store.path) == []
    assert scratch_left(store.path) == []
    assert store.verify() == []


@pytest.mark.parametrize("cleaner", ["build", "gc"])
def test_what_kill_9_left_is_cleared_by_the_next_build_or_gc(slow, cleaner):
    repo, store = slow
    proc = _start(repo, store, "slow")
    _wait_for(_sleepers)
    proc.kill()
    proc.wait(timeout=60)
    # what kill -9 leaves: the container still running, its overlay mounted, scratch
    assert _sleepers()
    assert _mounts_in(store.path)
    assert scratch_left(store.path)
    if cleaner == "build":
        done = subprocess.run(
            [CLI, "build", "quick", "-C", str(repo.root), "--store", str(store.path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "cleared what 1 interrupted builds left" in done.stdout
    else:
        done = subprocess.run(
            [CLI, "gc", "-C", str(repo.root), "--store", str(store.path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "cleared what 1 interrupted builds left" in done.stdout
    _wait_for(lambda: not _sleepers(), 30)
    assert _mounts_in(store.path) == []
    assert scratch_left(store.path) == []
    assert store.verify() == []


def test_sweep_leaves_a_running_build_alone(slow):
    repo, store = slow
    proc = _start(repo, store, "slow")
    try:
        _wait_for(_sleepers)
        assert sweep(store.path) == []
        assert _sleepers()
        assert _mounts_in(store.path)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


@pytest.mark.parametrize("how", ["spec", "flag"])
def test_run_past_its_timeout_is_killed_and_named(slow, how):
    repo, store = slow
    argv = [CLI, "build", "slow", "-C", str(repo.root), "--store", str(store.path)]
    if how == "spec":
        repo.write("ci-layers.yaml", SPEC.replace("  quick:", "    timeout: 2s\n  quick:"))
    else:
        argv += ["--run-timeout", "2s"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 1, done.stderr
    assert (
        f"error: layer 'slow': run[0] still running after the layer's timeout of 2s, killed: "
        f"echo started > /started && sleep {SLEEP}"
    ) in done.stderr
    assert _sleepers() == []
    assert _mounts_in(store.path) == []
    assert scratch_left(store.path) == []


def test_a_bad_run_timeout_flag_is_a_usage_error(git_repo, busybox_store):
    git_repo.write("ci-layers.yaml", SPEC)
    done = subprocess.run(
        [CLI, "build", "--run-timeout", "soon", "-C", str(git_repo.root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "--run-timeout soon: a duration such as 90s, 15m or 1h30m" in done.stderr


def _gc(repo, store: OciStore) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "gc", "-C", str(repo.root), "--store", str(store.path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_gc_refuses_while_a_pull_has_blobs_not_yet_tagged(git_repo, busybox_store, tmp_path, proxy):
    """The pull is held at its layer's download (its config blob is in the store, not
    yet tagged); a gc then must not sweep it."""
    import threading

    from ci_layers.oci.manifest import ImageManifest
    from ci_layers.oci.registry import Registry
    from ci_layers.oci.transfer import TransferStats, push_image

    desc = busybox_store.resolve(BASE)
    push_image(busybox_store, desc, Registry(proxy.host), "acme/base", ["1"], stats=TransferStats())
    layer = ImageManifest.load(busybox_store, desc).layers[0].descriptor.digest
    held, release = threading.Event(), threading.Event()

    def hold(path: str) -> bool:
        if path.endswith(f"/blobs/{layer}"):
            held.set()
            release.wait(60)
        return False

    proxy.corrupt = hold
    git_repo.write("ci-layers.yaml", "version: 1\nlayers: {}\n")
    store = OciStore(tmp_path / "pulled")
    pull = subprocess.Popen(
        [
            CLI,
            "pull",
            f"{proxy.host}/acme/base:1",
            "-C",
            str(git_repo.root),
            "--store",
            str(store.path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert held.wait(60)
        gc = _gc(git_repo, store)
        assert gc.returncode == 1
        assert "in use by a build, pull, push, squash or export" in gc.stderr
    finally:
        release.set()
    _out, err = pull.communicate(timeout=60)
    assert pull.returncode == 0, err
    assert store.verify() == []
    ImageManifest.load(store, store.resolve(f"{proxy.host}/acme/base:1"))  # whole
    assert _gc(git_repo, store).returncode == 0  # nothing running now


def test_gc_refuses_while_squash_has_written_layers_not_yet_tagged(
    git_repo, busybox_store, monkeypatch
):
    """A real gc process started while squash is between writing merged layers and
    tagging the image they make."""
    from ci_layers.build import squash

    git_repo.write(
        "ci-layers.yaml",
        f"""
version: 1
layers:
  a: {{from: {BASE}, run: echo a > /a}}
  b: {{parent: a, run: echo b > /b}}
  c: {{parent: b, run: echo c > /c}}
images:
  app: {{layer: c, tags: [ci-layers.local/app:1]}}
""",
    )
    git_repo.commit()
    require("runc", root=True)
    build(git_repo.root, busybox_store)
    real, seen = squash.merge_layers, []

    def merge_then_gc(*args, **kwargs):
        merged = real(*args, **kwargs)
        seen.append(_gc(git_repo, busybox_store))
        return merged

    monkeypatch.setattr(squash, "merge_layers", merge_then_gc)
    from .test_cli_build import run

    code, _out, err = run(
        "squash",
        "ci-layers.local/app:1",
        "--max-layers",
        "2",
        "-C",
        str(git_repo.root),
        "--store",
        str(busybox_store.path),
    )
    assert code == 0, err
    assert seen
    assert all(g.returncode == 1 and "in use" in g.stderr for g in seen)
    assert busybox_store.verify() == []
    squashed = busybox_store.resolve("ci-layers.local/app:1-squashed")
    from ci_layers.oci.manifest import ImageManifest

    assert len(ImageManifest.load(busybox_store, squashed).layers) == 2


def test_sweep_reads_only_runc_s_own_state_not_an_image_s_files(store):
    """A dead build's scratch holds an image's files (the tree compare's copy, the upper
    folder): a state.json there naming a host process must not get it killed."""
    victim = subprocess.Popen(["sleep", "300"])
    try:
        start = Path(f"/proc/{victim.pid}/stat").read_text().rpartition(")")[2].split()[19]
        tmp = store.path / "tmp"
        for where in ("lower/state/x", "ovl/upper/state/x", "guard/state/x"):
            fake = tmp / "build-dead" / where
            fake.mkdir(parents=True, exist_ok=True)
            (fake / "state.json").write_text(
                f'{{"init_process_pid": {victim.pid}, "init_process_start": {start}}}'
            )
        (tmp / "build-dead" / "lower" / "loop").symlink_to("/")  # never followed
        assert sweep(store.path) == ["build-dead"]
        assert victim.poll() is None  # alive
        assert scratch_left(store.path) == []
    finally:
        victim.kill()
        victim.wait()
