"""The OCI store: verified reads, atomic blobs, concurrent writers, a killed build."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from ci_layers.errors import DigestMismatch, StoreError
from ci_layers.oci.digest import Descriptor, Digest

from .buildhelp import BASE, CLI, build, built, members
from .gitrepo import GitRepo


def test_blob_round_trip_and_layout(store):
    desc = store.put_bytes(b"hello", media_type="application/octet-stream")
    assert desc.digest == Digest.of(b"hello")
    assert store.read_bytes(desc.digest) == b"hello"
    assert (store.path / "oci-layout").read_bytes() == b'{"imageLayoutVersion":"1.0.0"}'
    assert os.listdir(store.path / "ingest") == []


def test_corrupted_blob_is_refused(store):
    desc = store.put_bytes(b"hello world", media_type="application/octet-stream")
    store.blob_path(desc.digest).write_bytes(b"hello w0rld")
    with pytest.raises(DigestMismatch, match=f"blob {desc.digest}: read 11 bytes that hash to"):
        store.read_bytes(desc.digest)
    assert store.verify() == [
        f"blob {desc.digest}: read 11 bytes that hash to {Digest.of(b'hello w0rld')}; refused"
    ]


def test_symlinked_blob_is_refused(store, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.write_bytes(b"x")
    digest = Digest.of(b"x")
    os.symlink(outside, store.blob_path(digest))
    with pytest.raises(StoreError, match=r"Too many levels of symbolic links|not a regular"):
        store.read_bytes(digest)


def test_commit_refuses_the_wrong_digest(store):
    with store.writer() as w:
        w.write(b"abc")
        with pytest.raises(DigestMismatch):
            w.commit(expect=Digest.of(b"abd"))
    assert not store.has(Digest.of(b"abc"))
    assert os.listdir(store.path / "ingest") == []


def test_tags_replace_and_untag(store):
    a = store.put_bytes(b"{}", media_type="application/vnd.oci.image.manifest.v1+json")
    b = store.put_bytes(b"[]", media_type="application/vnd.oci.image.manifest.v1+json")
    store.tag("x", a)
    store.tag("x", b)
    assert store.resolve("x").digest == b.digest
    assert len(store.index()) == 1
    assert store.untag("x")
    assert store.resolve("x") is None


def test_concurrent_taggers_lose_nothing(store):
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from ci_layers.oci.store import OciStore
        store = OciStore(Path({str(store.path)!r}))
        who = sys.argv[1]
        for i in range(40):
            d = store.put_bytes(f"{{who}}-{{i}}".encode(), media_type="application/json")
            store.tag(f"{{who}}-{{i}}", d)
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, w]) for w in ("a", "b", "c")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    tags = {d.annotation("org.opencontainers.image.ref.name") for d in store.index()}
    assert tags == {f"{w}-{i}" for w in "abc" for i in range(40)}
    assert store.verify() == []


def test_killed_while_writing_a_blob_leaves_the_store_valid(git_repo, busybox_store):
    """A writer killed mid-blob leaves only a temp file in ingest/; the next build works."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from ci_layers.oci.store import OciStore
        store = OciStore(Path({str(busybox_store.path)!r}))
        w = store.writer()
        w.write(b"x" * (1 << 20))
        print("writing", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "writing\n"
    blobs_before = set(os.listdir(busybox_store.path / "blobs/sha256"))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert set(os.listdir(busybox_store.path / "blobs/sha256")) == blobs_before
    assert busybox_store.verify() == []
    git_repo.write(
        "ci-layers.yaml",
        f"version: 1\nlayers:\n  os:\n    from: {BASE}\n    copy: [{{src: a, dest: /a}}]\n",
    )
    git_repo.write("a", "a\n")
    git_repo.commit()
    assert built(build(git_repo.root, busybox_store)) == {"os"}
    assert busybox_store.verify() == []


def test_two_builds_into_one_store_at_once(tmp_path, busybox_store):
    repos = []
    for name in ("one", "two"):
        repo = GitRepo(tmp_path / name)
        repo.write(
            "ci-layers.yaml",
            f"version: 1\nlayers:\n  {name}:\n    from: {BASE}\n"
            f"    copy: [{{src: files/, dest: /{name}/}}]\n",
        )
        for i in range(200):
            repo.write(f"files/{i}.txt", f"{name} {i}\n" * 50)
        repo.commit()
        repos.append(repo)
    procs = [
        subprocess.Popen(
            [CLI, "build", "--store", str(busybox_store.path)],
            cwd=r.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in repos
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "1 built, 0 reused" in out
    assert busybox_store.verify() == []
    for r in repos:
        assert built(build(r.root, busybox_store)) == set()  # both recorded under their keys


def test_descriptor_from_bad_json_is_a_store_error():
    with pytest.raises(StoreError, match="is no sha256 digest"):
        Descriptor.from_json({"mediaType": "x", "digest": "sha256:nothex", "size": 1}, where="t")


def test_image_view_looks_up_without_extracting(store):
    """What a copy asks of its parent: whiteouts, opaque folders and links applied."""
    from ci_layers.build.tarwriter import Entry, write_layer
    from ci_layers.build.view import ImageView
    from ci_layers.oci.layers import open_layer
    from ci_layers.oci.manifest import ImageManifest

    lower = write_layer(
        [
            Entry("etc", "dir", 0o755),
            Entry("etc/passwd", "file", data=b"root:x:0:0::/:/bin/sh\n"),
            Entry("opt/old", "dir", 0o755),
            Entry("opt/old/f", "file", data=b"f"),
            Entry("srv/a", "file", data=b"a"),
            Entry("usr/lib", "dir", 0o755),
            Entry("lib", "symlink", target="/usr/lib"),
            Entry("etc/shadow", "hardlink", target="etc/passwd"),
        ],
        store,
    )
    upper = write_layer(
        [
            Entry("opt/old", "whiteout"),
            Entry("srv", "opaque"),
            Entry("srv", "dir", 0o755),
            Entry("srv/b", "file", data=b"b"),
        ],
        store,
    )
    image = ImageManifest.scratch()
    image = ImageManifest(config=image.config, layers=(lower, upper))
    view = ImageView(image, lambda x: open_layer(store, x))
    assert view.is_dir("etc")
    assert view.is_dir("lib")  # through the link
    assert view.is_dir("/lib/../lib")  # .. of a link is the target's parent: /usr/lib
    assert not view.is_dir("opt/old")
    assert view.read("opt/old/f") is None
    assert view.read("srv/a") is None  # hidden by the opaque marker
    assert view.read("srv/b") == b"b"
    assert view.read("etc/passwd") == b"root:x:0:0::/:/bin/sh\n"
    assert view.read("etc/shadow") == view.read("etc/passwd")  # a hardlink reads its target


def test_a_corrupted_layer_is_rebuilt_and_repaired(git_repo, busybox_store):
    git_repo.write(
        "ci-layers.yaml",
        f"version: 1\nlayers:\n  os:\n    from: {BASE}\n    copy: [{{src: a, dest: /a}}]\n",
    )
    git_repo.write("a", "a\n" * 100)
    git_repo.commit()
    layer = build(git_repo.root, busybox_store)["os"].layer
    path = busybox_store.blob_path(layer.descriptor.digest)
    path.write_bytes(b"garbage")  # cut short under its own name
    again = build(git_repo.root, busybox_store)
    assert built(again) == {"os"}  # the reuse saw the blob was not whole
    assert busybox_store.intact(layer.descriptor.digest)
    assert busybox_store.verify() == []


def test_a_corrupt_parent_layer_is_refused_clearly(git_repo, busybox_store):
    import io

    from ci_layers.cli import main

    git_repo.write(
        "ci-layers.yaml",
        f"version: 1\nlayers:\n  os:\n    from: {BASE}\n    copy: [{{src: a, dest: /etc}}]\n",
    )
    git_repo.write("a", "a\n")
    git_repo.commit()
    base = busybox_store.read_json(busybox_store.resolve(BASE))
    blob = busybox_store.blob_path(Digest.parse(base["layers"][0]["digest"]))
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    err = io.StringIO()
    code = main(
        ["build", "-C", str(git_repo.root), "--store", str(busybox_store.path)],
        out=io.StringIO(),
        err=err,
    )
    assert code == 1, err.getvalue()
    assert "refused" in err.getvalue()
    assert "internal error" not in err.getvalue()


def test_an_unwritable_store_is_a_clear_error(git_repo, busybox_store):
    import io

    from ci_layers.cli import main

    git_repo.write(
        "ci-layers.yaml",
        f"version: 1\nlayers:\n  os:\n    from: {BASE}\n    copy: [{{src: a, dest: /a}}]\n",
    )
    git_repo.write("a", "a\n")
    git_repo.commit()
    ingest = busybox_store.path / "ingest"
    ingest.rmdir()
    ingest.write_text("not a folder")
    err = io.StringIO()
    code = main(
        ["build", "-C", str(git_repo.root), "--store", str(busybox_store.path)],
        out=io.StringIO(),
        err=err,
    )
    assert code == 1
    assert f"cannot use {busybox_store.path} as the store: File exists" in err.getvalue()


def test_a_docker_schema2_base_gives_an_oci_image(git_repo, store):
    """A base skopeo copied in Docker's format: its layers keep their bytes and take the
    OCI media types in the image built on it."""
    import json as jsonlib

    from ci_layers.build.tarwriter import Entry, write_layer

    layer = write_layer([Entry("etc", "dir", 0o755), Entry("etc/os", "file", data=b"x\n")], store)
    config = store.put_bytes(
        jsonlib.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Env": ["PATH=/bin"], "ExposedPorts": {"80/tcp": {}}},
                "rootfs": {"type": "layers", "diff_ids": [str(layer.diff_id)]},
            }
        ).encode(),
        media_type="application/vnd.docker.container.image.v1+json",
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            **config.to_json(),
            "mediaType": "application/vnd.docker.container.image.v1+json",
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "digest": str(layer.descriptor.digest),
                "size": layer.descriptor.size,
            }
        ],
    }
    desc = store.put_bytes(
        jsonlib.dumps(manifest).encode(),
        media_type="application/vnd.docker.distribution.manifest.v2+json",
    )
    store.tag("docker.io/library/base:1", desc)
    git_repo.write(
        "ci-layers.yaml",
        f"version: 1\nlayers:\n  app:\n    from: base:1@{desc.digest}\n"
        "    copy: [{src: a, dest: /etc/a}]\n",
    )
    git_repo.write("a", "a\n")
    git_repo.commit()
    result = build(git_repo.root, store)["app"]
    built_manifest = store.read_json(result.manifest)
    assert [x["mediaType"] for x in built_manifest["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar+gzip"
    ] * 2
    assert built_manifest["layers"][0]["digest"] == str(layer.descriptor.digest)
    config_json = store.read_json(Descriptor.from_json(built_manifest["config"], where="t"))
    assert config_json["config"]["ExposedPorts"] == {"80/tcp": {}}  # the base's config
    assert built_manifest["annotations"]["org.opencontainers.image.base.digest"] == str(desc.digest)


def test_image_view_as_an_extraction_sees_it(store):
    """Folders only their contents imply, a hardlink outliving its first name, entries
    written through a linked folder."""
    from ci_layers.build.tarwriter import Entry, write_layer
    from ci_layers.build.view import ImageView
    from ci_layers.oci.layers import open_layer
    from ci_layers.oci.manifest import ImageManifest

    one = write_layer(
        [
            Entry("opt/impl/file", "file", data=b"f"),  # no header for opt or opt/impl
            Entry("etc/a.new", "file", data=b"app:x:1000:2000::/:/bin/sh\n"),
            Entry("etc/passwd", "hardlink", target="etc/a.new"),
            Entry("usr/lib", "dir", 0o750, uid=7),
            Entry("lib", "symlink", target="usr/lib"),
            Entry("dang", "symlink", target="/nowhere"),
        ],
        store,
    )
    two = write_layer(
        [Entry("etc/a.new", "whiteout"), Entry("lib/libx.so", "file", data=b"x")], store
    )
    image = ImageManifest(config=ImageManifest.scratch().config, layers=(one, two))
    view = ImageView(image, lambda x: open_layer(store, x))
    assert view.is_dir("opt")
    assert view.is_dir("opt/impl")
    assert view.read("etc/passwd") == b"app:x:1000:2000::/:/bin/sh\n"
    assert view.read("etc/a.new") is None
    assert view.read("usr/lib/libx.so") == b"x"  # written through the link
    assert view.meta("usr/lib") == (0o750, 7, 0)
    assert view.realpath("dang/y") == "nowhere/y"
    assert view.realpath("lib") == "usr/lib"


def test_copy_through_a_dangling_link_writes_where_it_points(git_repo, busybox_store):
    from ci_layers.build.tarwriter import Entry, write_layer
    from ci_layers.oci.manifest import History, ImageManifest

    base = ImageManifest.load(busybox_store, busybox_store.resolve(BASE))
    link = write_layer([Entry("dang", "symlink", target="/nowhere")], busybox_store)
    image = ImageManifest(
        config=base.config,
        layers=(*base.layers, link),
        history=(*base.history, History("link")),
    )
    busybox_store.tag("local/linked:1", image.write(busybox_store))
    git_repo.write(
        "ci-layers.yaml",
        "version: 1\nlayers:\n  app:\n    from: local/linked:1\n"
        "    copy: [{src: f.txt, dest: /dang/y/}]\n",
    )
    git_repo.write("f.txt", "f\n")
    git_repo.commit()
    names = [
        m.name for m in members(busybox_store, build(git_repo.root, busybox_store)["app"].layer)
    ]
    assert names == ["nowhere", "nowhere/y", "nowhere/y/f.txt"]
