"""`run` layers through runc over a busybox root: the layer is exactly what the
commands changed, checked file by file after umoci unpacks the image."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from ci_layers.build import snapshot
from ci_layers.errors import BuildError
from ci_layers.oci.store import OciStore

from .buildhelp import BASE, CLI, build, built, members, skopeo_inspect, tag_of, unpack
from .conftest import require

CHANGES = f"""
version: 1
layers:
  base:
    from: {BASE}
    run:
      - mkdir -p /data/dir/sub /data/opq && echo keep > /data/keep && echo gone > /data/gone
      - echo x > /data/dir/sub/x && echo old > /data/opq/old && echo m > /data/mode
    env:
      LANG: C.UTF-8
  change:
    parent: base
    run:
      - echo changed > /data/keep && rm /data/gone && rm -r /data/dir
      - rm -rf /data/opq && mkdir /data/opq && echo new > /data/opq/new
      - mkdir -p /data/new/deep && echo n > /data/new/deep/n && chmod 0600 /data/mode
      - ln -s ../keep /data/new/link && ln /data/keep /data/hard && mkfifo /data/fifo
      - rm -rf /var && touch /tmp/scratch && rm /tmp/scratch
"""


@pytest.fixture
def changes(git_repo, busybox_store, runc):
    git_repo.write("ci-layers.yaml", CHANGES)
    git_repo.commit()
    return git_repo, busybox_store, build(git_repo.root, busybox_store)


def test_run_changes_unpacked_by_umoci(changes):
    require("umoci")
    repo, store, _results = changes
    rootfs = unpack(store, tag_of(repo.root, store, "change"), repo.root.parent / "unpacked")
    data = rootfs / "data"
    assert (data / "keep").read_text() == "changed\n"
    assert not (data / "gone").exists()
    assert not (data / "dir").exists()
    assert sorted(os.listdir(data / "opq")) == ["new"]  # the old child is hidden
    assert (data / "new/deep/n").read_text() == "n\n"
    assert stat.S_IMODE((data / "mode").stat().st_mode) == 0o600
    assert os.readlink(data / "new/link") == "../keep"
    assert os.stat(data / "hard").st_ino == os.stat(data / "keep").st_ino
    assert stat.S_ISFIFO(os.lstat(data / "fifo").st_mode)
    assert not (rootfs / "var").exists()
    assert (rootfs / "bin/busybox").is_file()


def test_run_layer_holds_only_the_difference(changes):
    _repo, store, results = changes
    names = [m.name for m in members(store, results["change"].layer)]
    assert ".wh.var" in names
    assert "data/.wh.gone" in names
    assert "data/.wh.dir" in names
    # a folder made anew: explicit whiteouts for what the lower one held (as BuildKit
    # writes them), and its own entry kept
    assert "data/opq/.wh.old" in names
    assert "data/opq" in names
    assert not [n for n in names if n.endswith(".wh..wh..opq")]
    assert not [n for n in names if n.split("/")[0] in ("proc", "dev", "sys")]
    assert not [n for n in names if n.startswith(("etc/resolv.conf", "etc/hosts", "etc/hostname"))]
    assert "tmp" not in names  # a file made and removed again is no change
    assert "bin/busybox" not in names  # the parent's files are not copied up
    kinds = {m.name: m for m in members(store, results["change"].layer)}
    assert kinds["data/hard"].islnk() or kinds["data/keep"].islnk()
    for m in kinds.values():
        assert (m.mtime, m.uname, m.gname) == (0, "", "")


def test_tree_compare_gives_the_same_image(git_repo, busybox_store, runc, monkeypatch):
    """Where overlay cannot be mounted, the stat compare stands in: same unpacked result."""
    require("umoci")
    git_repo.write("ci-layers.yaml", CHANGES)
    git_repo.commit()
    build(git_repo.root, busybox_store)
    ref = tag_of(git_repo.root, busybox_store, "change")
    with_overlay = unpack(busybox_store, ref, git_repo.root.parent / "a")
    other = OciStore(git_repo.root.parent / "other")
    from ci_layers.build.busybox import busybox_image

    busybox_image(other)
    monkeypatch.setattr("ci_layers.build.builder.overlay_works", lambda _scratch: False)
    build(git_repo.root, other)
    compared = unpack(other, ref, git_repo.root.parent / "b")
    assert _listing(with_overlay) == _listing(compared)


def _listing(root):
    out = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            content = None
            if stat.S_ISREG(st.st_mode):
                content = Path(path).read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            out[os.path.relpath(path, root)] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                content,
            )
    return out


def test_same_build_twice_gives_the_same_digests(git_repo, tmp_path, runc):
    from ci_layers.build.busybox import busybox_image

    git_repo.write("ci-layers.yaml", CHANGES)
    git_repo.commit()
    digests = []
    for i in range(2):
        store = OciStore(tmp_path / f"empty{i}")
        busybox_image(store)
        results = build(git_repo.root, store)
        digests.append({n: str(r.manifest.digest) for n, r in results.items()})
    assert digests[0] == digests[1]


def test_rebuilds_only_what_changed_and_reuses_renamed(git_repo, busybox_store, runc):
    spec = f"""
version: 1
layers:
  os:
    from: {BASE}
    run: echo os > /os
  mid:
    parent: os
    run: echo {{MID}} > /mid
  top:
    parent: mid
    run: cat /mid > /top
  side:
    parent: os
    run: echo side > /side
"""
    git_repo.write("ci-layers.yaml", spec.replace("{MID}", "one"))
    git_repo.commit()
    first = build(git_repo.root, busybox_store)
    assert built(first) == {"os", "mid", "top", "side"}
    git_repo.write("ci-layers.yaml", spec.replace("{MID}", "two"))
    second = build(git_repo.root, busybox_store)
    assert built(second) == {"mid", "top"}
    assert second["os"].manifest == first["os"].manifest
    renamed = spec.replace("{MID}", "two").replace("side:", "sidecar:")
    git_repo.write("ci-layers.yaml", renamed)
    third = build(git_repo.root, busybox_store)
    assert built(third) == set()
    assert third["sidecar"].manifest == first["side"].manifest


def test_config_env_user_workdir_and_build_args(git_repo, busybox_store, runc):
    require("skopeo")
    git_repo.write(
        "ci-layers.yaml",
        f"""
version: 1
layers:
  os:
    from: {BASE}
    env: {{GREETING: hello}}
    build_args: {{VERSION: "1.2"}}
    run: echo "$GREETING $VERSION" > /greeting && mkdir -m 1777 /out
  app:
    parent: os
    user: nobody
    workdir: /work
    run: id -u > /out/uid && id -g > /out/gid && pwd > /out/pwd && echo "$GREETING" > /out/env
    entrypoint: ["sh", "-c"]
    cmd: ["echo hi"]
    labels: {{org.opencontainers.image.title: app}}
images:
  app:
    layer: app
    tags: [registry.example.com/app:1]
""",
    )
    git_repo.commit()
    build(git_repo.root, busybox_store, annotations={"org.opencontainers.image.revision": "abc"})
    rootfs = unpack(busybox_store, "registry.example.com/app:1", git_repo.root.parent / "u")
    assert (rootfs / "greeting").read_text() == "hello 1.2\n"
    assert (rootfs / "out/uid").read_text() == "65534\n"
    assert (rootfs / "out/gid").read_text() == "65534\n"
    assert (rootfs / "out/pwd").read_text() == "/work\n"
    assert (rootfs / "out/env").read_text() == "hello\n"
    config = skopeo_inspect(busybox_store, "registry.example.com/app:1", config=True)["config"]
    assert config["User"] == "nobody"
    assert config["WorkingDir"] == "/work"
    assert config["Entrypoint"] == ["sh", "-c"]
    assert config["Cmd"] == ["echo hi"]
    assert "GREETING=hello" in config["Env"]
    assert not [e for e in config["Env"] if e.startswith("VERSION=")]  # build args: run only
    assert config["Labels"] == {"org.opencontainers.image.title": "app"}
    raw = skopeo_inspect(busybox_store, "registry.example.com/app:1")
    assert raw["Layers"]
    assert raw["Os"] == "linux"
    manifest = busybox_store.read_json(busybox_store.resolve("registry.example.com/app:1"))
    notes = manifest["annotations"]
    assert notes["org.opencontainers.image.revision"] == "abc"
    assert notes["org.opencontainers.image.base.name"] == BASE
    assert notes["org.opencontainers.image.base.digest"].startswith("sha256:")


def test_network_none_has_only_loopback(git_repo, busybox_store, runc):
    require("umoci")
    git_repo.write(
        "ci-layers.yaml",
        f"""
version: 1
layers:
  os:
    from: {BASE}
    network: none
    run: cat /proc/net/dev > /netdev
  open:
    parent: os
    run: cat /proc/net/dev > /netdev-host
""",
    )
    git_repo.commit()
    build(git_repo.root, busybox_store)
    rootfs = unpack(
        busybox_store, tag_of(git_repo.root, busybox_store, "open"), git_repo.root.parent / "u"
    )
    isolated = [
        line.split(":")[0].strip() for line in (rootfs / "netdev").read_text().splitlines()[2:]
    ]
    host = [
        line.split(":")[0].strip() for line in (rootfs / "netdev-host").read_text().splitlines()[2:]
    ]
    assert isolated == ["lo"]
    assert sorted(host) == sorted(
        line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]
    )


def test_failing_command_names_the_layer_and_command(git_repo, busybox_store, runc):
    git_repo.write(
        "ci-layers.yaml",
        f"version: 1\nlayers:\n  os:\n    from: {BASE}\n    run: [echo ok, exit 3]\n",
    )
    git_repo.commit()
    with pytest.raises(BuildError, match=r"layer 'os': run\[1\] exited with 3: exit 3"):
        build(git_repo.root, busybox_store)
    assert busybox_store.resolve(tag_of(git_repo.root, busybox_store, "os")) is None


def test_capability_xattr_is_kept(tmp_path, runc):
    """security.capability survives the snapshot into the tar (kaniko and BuildKit keep it)."""
    upper, lower = tmp_path / "upper", tmp_path / "lower"
    upper.mkdir()
    lower.mkdir()
    (upper / "ping").write_bytes(b"\x7fELF")
    cap = bytes.fromhex("0000000200200000000000000000000000000000")  # cap_net_raw+ep
    os.setxattr(upper / "ping", "security.capability", cap)
    (entry,) = snapshot.upper_entries(upper, lower)
    assert entry.xattrs == (("security.capability", cap),)


def test_runtime_missing_or_not_root_fails_before_building(git_repo, busybox_store, monkeypatch):
    from ci_layers.build.run import find_runtime

    with pytest.raises(BuildError, match="--runtime /nonexistent/runc: no such executable"):
        find_runtime("/nonexistent/runc")
    monkeypatch.setattr("shutil.which", lambda _name: None)
    with pytest.raises(BuildError, match="install runc"):
        find_runtime(None)
    monkeypatch.undo()
    require("runc")
    monkeypatch.setattr("os.geteuid", lambda: 1000)  # the platform: a user without root
    with pytest.raises(BuildError, match=r"need root for runc.*sudo"):
        find_runtime(None)


def test_cli_build_with_runc(git_repo, busybox_store, runc):
    git_repo.write("ci-layers.yaml", CHANGES)
    git_repo.commit()
    done = subprocess.run(
        [CLI, "build", "change", "--store", str(busybox_store.path)],
        cwd=git_repo.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "[1/2] building base" in done.stdout
    assert "2 built, 0 reused" in done.stdout


def test_workdir_through_a_link_stays_in_the_root(git_repo, busybox_store, runc, tmp_path):
    """A parent whose /app links to a host path: the workdir is made inside the root."""
    host = tmp_path / "hostdir"
    host.mkdir()
    git_repo.write(
        "ci-layers.yaml",
        f"""
version: 1
layers:
  evil:
    from: {BASE}
    run: ln -s {host} /app
  child:
    parent: evil
    workdir: /app/made-by-build
    run: pwd > /where
""",
    )
    git_repo.commit()
    build(git_repo.root, busybox_store)
    assert list(host.iterdir()) == []
    rootfs = unpack(busybox_store, tag_of(git_repo.root, busybox_store, "child"), tmp_path / "u")
    assert (rootfs / "where").read_text() == f"{host}/made-by-build\n"  # getcwd: the real path
    assert (rootfs / str(host).lstrip("/") / "made-by-build").is_dir()


def test_workdir_mode_does_not_follow_the_umask(git_repo, busybox_store, runc):
    git_repo.write(
        "ci-layers.yaml",
        f"version: 1\nlayers:\n  os:\n    from: {BASE}\n    user: nobody\n"
        "    workdir: /app/sub\n    run: id -u > /tmp/id\n",
    )
    git_repo.commit()
    old = os.umask(0o077)
    try:
        results = build(git_repo.root, busybox_store)
    finally:
        os.umask(old)
    entries = {m.name: m for m in members(busybox_store, results["os"].layer)}
    assert stat.S_IMODE(entries["app"].mode) == 0o755
    assert stat.S_IMODE(entries["app/sub"].mode) == 0o755


def test_workdir_that_is_a_file_is_a_clear_error(git_repo, busybox_store, runc):
    git_repo.write(
        "ci-layers.yaml",
        f"version: 1\nlayers:\n  os:\n    from: {BASE}\n    workdir: /etc/passwd/x\n    run: 'true'\n",
    )
    git_repo.commit()
    with pytest.raises(
        BuildError, match=r"layer 'os': workdir /etc/passwd/x: /etc/passwd is not a folder"
    ):
        build(git_repo.root, busybox_store)


def test_mount_stub_through_a_link_is_not_kept(git_repo, busybox_store, runc):
    """/etc/resolv.conf linking to a missing file: what runc makes there is no content."""
    git_repo.write(
        "ci-layers.yaml",
        f"""
version: 1
layers:
  os:
    from: {BASE}
    copy: [{{src: etcfiles/, dest: /etc/}}]
  child:
    parent: os
    run: echo hi > /hi
""",
    )
    os.makedirs(git_repo.root / "etcfiles")
    os.symlink("../run/systemd/resolve/stub-resolv.conf", git_repo.root / "etcfiles/resolv.conf")
    git_repo.commit()
    results = build(git_repo.root, busybox_store)
    assert [m.name for m in members(busybox_store, results["child"].layer)] == ["hi"]


def test_overlay_and_tree_compare_write_the_same_layer(git_repo, tmp_path, runc, monkeypatch):
    from ci_layers.build.busybox import busybox_image

    git_repo.write("ci-layers.yaml", CHANGES)
    git_repo.commit()
    layers = []
    for i, mounted in enumerate((True, False)):
        store = OciStore(tmp_path / f"s{i}")
        busybox_image(store)
        monkeypatch.setattr("ci_layers.build.builder.overlay_works", lambda _s, m=mounted: m)
        layers.append(build(git_repo.root, store)["change"].layer.diff_id)
    assert layers[0] == layers[1]


def test_children_share_one_extracted_parent(git_repo, busybox_store, runc):
    """The parent's root is extracted once (by ChainID) and only read by the overlays."""
    git_repo.write(
        "ci-layers.yaml",
        f"""
version: 1
layers:
  os:
    from: {BASE}
    copy: [{{src: a, dest: /a}}]
  one:
    parent: os
    run: echo 1 > /one
  two:
    parent: os
    run: echo 2 > /two && rm /a
""",
    )
    git_repo.write("a", "a\n")
    git_repo.commit()
    results = build(git_repo.root, busybox_store)
    from ci_layers.oci.manifest import ImageManifest, chain_id

    parent = ImageManifest.load(busybox_store, results["os"].manifest)
    roots = sorted(p.name for p in (busybox_store.path / "rootfs").iterdir())
    assert roots == [chain_id(parent.layers).hex]  # one extraction for both children
    cached = busybox_store.path / "rootfs" / roots[0]
    assert (cached / "a").read_text() == "a\n"  # the run layers never wrote into it
    assert not (cached / "one").exists()
    assert not (cached / "two").exists()
    assert [m.name for m in members(busybox_store, results["two"].layer)] == [".wh.a", "two"]


@pytest.mark.parametrize("mounted", [True, False], ids=["overlay", "tree-compare"])
def test_a_folder_made_anew_keeps_its_own_mode_and_owner(
    git_repo, tmp_path, runc, monkeypatch, mounted
):
    from ci_layers.build.busybox import busybox_image

    git_repo.write(
        "ci-layers.yaml",
        f"version: 1\nlayers:\n  os:\n    from: {BASE}\n    run: >-\n"
        "      rm -rf /usr/sbin && mkdir -m 700 /usr/sbin && chown 65534 /usr/sbin\n"
        "      && echo x > /usr/sbin/x\n",
    )
    git_repo.commit()
    store = OciStore(tmp_path / "s")
    busybox_image(store)
    monkeypatch.setattr("ci_layers.build.builder.overlay_works", lambda _s: mounted)
    entries = {m.name: m for m in members(store, build(git_repo.root, store)["os"].layer)}
    assert (stat.S_IMODE(entries["usr/sbin"].mode), entries["usr/sbin"].uid) == (0o700, 65534)
    assert entries["usr/sbin/x"].isfile()
    assert "usr/sbin/.wh.chroot" in entries  # one of busybox's applets there


def test_a_store_path_with_commas_and_colons(git_repo, tmp_path, runc):
    """Overlay options cannot carry `,` or `:`; the mount never sees the store's path."""
    from ci_layers.build.busybox import busybox_image

    store = OciStore(tmp_path / "st,ore:x")
    busybox_image(store)
    git_repo.write(
        "ci-layers.yaml", f"version: 1\nlayers:\n  os:\n    from: {BASE}\n    run: echo > /x\n"
    )
    git_repo.commit()
    assert built(build(git_repo.root, store)) == {"os"}


def test_the_extracted_parents_are_for_root_only(git_repo, busybox_store, runc):
    """The store's extracted roots hold the images' setuid files: no one else may reach them."""
    git_repo.write(
        "ci-layers.yaml", f"version: 1\nlayers:\n  os:\n    from: {BASE}\n    run: 'true'\n"
    )
    git_repo.commit()
    build(git_repo.root, busybox_store)
    assert stat.S_IMODE((busybox_store.path / "rootfs").stat().st_mode) == 0o700


def test_early_cutoff_runs_nothing_below_a_parent_rebuilt_to_the_same_bytes(
    git_repo, busybox_store, runc, tmp_path
):
    """A comment edited in a parent's command changes every key below it, but the parent's
    layer comes out byte for byte the same: its child is not run again."""
    spec = f"""
version: 1
layers:
  tools:
    from: {BASE}
    run: ["echo hello > /greeting  # v1"]
  app:
    parent: tools
    run: ["cat /greeting /greeting > /app.txt"]
"""
    git_repo.write("ci-layers.yaml", spec)
    calls = tmp_path / "calls"
    wrapper = tmp_path / "runtime"
    wrapper.write_text(
        f'#!/bin/sh\ncase " $* " in *" run "*) echo run >> {calls};; esac\nexec {runc} "$@"\n'
    )
    wrapper.chmod(0o755)
    first = build(git_repo.root, busybox_store, runtime=str(wrapper))
    assert built(first) == {"tools", "app"}
    assert calls.read_text().count("run") == 2
    git_repo.write("ci-layers.yaml", spec.replace("# v1", "# v2"))
    calls.unlink()
    second = build(git_repo.root, busybox_store, runtime=str(wrapper))
    assert second["tools"].status == "built"
    assert second["app"].status == "cut off"
    assert calls.read_text().count("run") == 1  # tools only
    assert second["app"].key != first["app"].key
    assert second["app"].layer == first["app"].layer  # the very same blob
    root = unpack(busybox_store, tag_of(git_repo.root, busybox_store, "app"), tmp_path / "u")
    assert (root / "app.txt").read_text() == "hello\nhello\n"
    # a real change to the parent's output builds the child again
    git_repo.write("ci-layers.yaml", spec.replace("echo hello", "echo bye"))
    third = build(git_repo.root, busybox_store, runtime=str(wrapper))
    assert built(third) == {"tools", "app"}
