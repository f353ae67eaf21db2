"""The reproducible layer tar: order, headers, compression, one-pass digests."""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ci_layers.build.tarwriter import Entry, sort_key, write_layer
from ci_layers.errors import BuildError
from ci_layers.oci.manifest import LAYER_GZIP, LAYER_ZSTD
from ci_layers.oci.store import OciStore

ENTRIES = [
    Entry("usr", "dir", 0o755),
    Entry("usr/bin", "dir", 0o755),
    Entry("usr/bin/tool", "file", 0o755, data=b"#!/bin/sh\n"),
    Entry("usr/bin-old", "whiteout"),
    Entry("usr/lib", "opaque"),
    Entry("usr/lib", "dir", 0o755),
    Entry("usr/lib/a.so", "file", data=b"\0" * 100, uid=1000, gid=1000),
    Entry("usr/lib/b.so", "hardlink", target="usr/lib/a.so"),
    Entry("etc", "dir", 0o755),
    Entry("etc/link", "symlink", 0o777, target="/usr/bin/tool"),
    Entry("etc/.hidden", "file", data=b"x", mtime=2_000_000_000),
    Entry("a-b", "file", data=b"-"),
]


def _names(store, layer):
    with gzip.open(store.blob_path(layer.descriptor.digest)) as f, tarfile.open(fileobj=f) as t:
        return [(m.name, m) for m in t.getmembers()]


def test_order_parents_first_whiteouts_first(store):
    layer = write_layer(ENTRIES, store)
    names = [n for n, _m in _names(store, layer)]
    assert names == [
        "a-b",
        "etc",
        "etc/.hidden",
        "etc/link",
        "usr",
        "usr/.wh.bin-old",
        "usr/bin",
        "usr/bin/tool",
        "usr/lib",
        "usr/lib/.wh..wh..opq",
        "usr/lib/a.so",
        "usr/lib/b.so",
    ]
    assert sort_key("a/.wh..wh..opq") < sort_key("a/.wh.b") < sort_key("a/-")


def test_headers_are_normalised(store):
    layer = write_layer(ENTRIES, store, epoch=1_000)
    members = dict(_names(store, layer))
    for m in members.values():
        assert (m.uname, m.gname) == ("", "")
        assert m.mtime <= 1_000  # clamped, never the host's time
    assert members["etc/.hidden"].mtime == 1_000
    assert (members["usr/lib/a.so"].uid, members["usr/lib/a.so"].gid) == (1000, 1000)
    assert members["usr/lib/b.so"].islnk()
    assert members["etc/link"].linkname == "/usr/bin/tool"


def test_gzip_header_has_no_name_and_no_time(store):
    layer = write_layer(ENTRIES, store)
    blob = store.blob_path(layer.descriptor.digest).read_bytes()
    assert blob[:3] == b"\x1f\x8b\x08"
    assert blob[3] & 0x08 == 0  # FNAME unset
    assert blob[4:8] == b"\0\0\0\0"  # MTIME 0
    assert layer.descriptor.media_type == LAYER_GZIP


def test_diff_id_and_digest_from_one_pass(store):
    layer = write_layer(ENTRIES, store)
    blob = store.blob_path(layer.descriptor.digest).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == layer.descriptor.digest.hex
    assert layer.descriptor.size == len(blob)
    assert hashlib.sha256(gzip.decompress(blob)).hexdigest() == layer.diff_id.hex


def test_zstd_has_the_same_diff_id(store):
    zstd = write_layer(ENTRIES, store, compression="zstd")
    gz = write_layer(ENTRIES, store)
    assert zstd.diff_id == gz.diff_id
    assert zstd.descriptor.digest != gz.descriptor.digest
    assert zstd.descriptor.media_type == LAYER_ZSTD
    import zstandard

    raw = zstandard.ZstdDecompressor().stream_reader(
        io.BytesIO(store.blob_path(zstd.descriptor.digest).read_bytes())
    )
    assert hashlib.sha256(raw.read()).hexdigest() == zstd.diff_id.hex


def test_gnu_tar_reads_it(store, tmp_path):
    layer = write_layer(
        [*ENTRIES, Entry("long/" + "n" * 150, "file", data=b"long"), Entry("é\udcff", "file")],
        store,
    )
    done = subprocess.run(
        ["tar", "--quoting-style=literal", "-tzf", str(store.blob_path(layer.descriptor.digest))],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    listed = done.stdout.decode("utf-8", "surrogateescape").splitlines()
    assert "long/" + "n" * 150 in listed
    assert "é\udcff" in listed  # a name that is no UTF-8 keeps its bytes


def test_two_entries_for_one_path_are_refused(store):
    with pytest.raises(BuildError, match="two entries for 'x' in one layer"):
        write_layer([Entry("x", "file", data=b"1"), Entry("x", "file", data=b"2")], store)


def test_unknown_compression_is_refused(store):
    with pytest.raises(BuildError, match="unknown compression 'lz4'"):
        write_layer(ENTRIES, store, compression="lz4")


_paths = st.lists(
    st.lists(st.sampled_from(["a", "b", "a-b", ".x", "é", "z"]), min_size=1, max_size=3).map(
        "/".join
    ),
    min_size=1,
    max_size=12,
    unique=True,
)


@given(_paths, st.randoms())
def test_same_entries_in_any_order_give_the_same_blob(tmp_path_factory, paths, rnd):
    """The host's listing order never reaches the bytes; parents precede children."""
    store = OciStore(tmp_path_factory.mktemp("s"))
    entries = [Entry(p, "file", data=p.encode()) for p in paths]
    shuffled = entries[:]
    rnd.shuffle(shuffled)
    first, second = write_layer(entries, store), write_layer(shuffled, store)
    assert first == second
    names = [n for n, _m in _names(store, first)]
    for i, name in enumerate(names):
        for later in names[i + 1 :]:
            assert not name.startswith(later + "/")  # no child before its folder


_entry = st.builds(
    lambda path, kind, mode, uid, data, mtime, xattr, target: Entry(
        path,
        kind,
        mode,
        uid,
        uid,
        target=target if kind in ("symlink", "hardlink") else "",
        data=data if kind == "file" else None,
        mtime=mtime,
        xattrs=(("security.capability", b"\x00\x01\xff"),) if xattr else (),
    ),
    st.text(st.sampled_from("abé/_-.\udcff"), min_size=1, max_size=8).filter(
        lambda p: all(p.split("/")) and ".wh." not in p
    )
    | st.just("n" * 120),
    st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo", "whiteout", "opaque"]),
    st.integers(0, 0o7777),
    st.sampled_from([0, 1000, 65534, 3_000_000]),
    st.binary(max_size=1500),
    st.sampled_from([0, 1_700_000_000, 9_000_000_000_000]),
    st.booleans(),
    st.sampled_from(["x", "/usr/bin/" + "t" * 120, "é"]),
)


def _tarfile_reference(entries, epoch):
    """The same layer written by Python's tarfile: the oracle of the fast writer."""
    out = io.BytesIO()
    with tarfile.open(
        fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, errors="surrogateescape"
    ) as tar:
        for e in sorted(entries, key=lambda e: sort_key(e.name)):
            info = tarfile.TarInfo(e.name)
            info.mtime, info.mode = min(e.mtime, epoch), e.mode & 0o7777
            info.uid, info.gid, info.uname, info.gname = e.uid, e.gid, "", ""
            if e.xattrs:
                info.pax_headers = {
                    f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in e.xattrs
                }
            kinds = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
            }
            kinds["fifo"] = tarfile.FIFOTYPE
            info.type = kinds.get(e.kind, tarfile.REGTYPE)
            if e.kind in ("symlink", "hardlink"):
                info.linkname = e.target
            if e.kind in ("whiteout", "opaque"):
                info.mode, info.uid, info.gid = 0o644, 0, 0
            body = None
            if e.kind == "file":
                info.size = len(e.data)
                body = io.BytesIO(e.data)
            tar.addfile(info, body)
    return out.getvalue()


@given(
    st.lists(_entry, max_size=10, unique_by=lambda e: e.name), st.sampled_from([0, 2_000_000_000])
)
def test_fast_writer_writes_what_tarfile_writes(entries, epoch):
    from ci_layers.build.tarwriter import tar_stream

    kept, written = [], set()
    for e in sorted(entries, key=lambda e: sort_key(e.name)):
        if e.kind != "hardlink" or e.target in written:  # a tar links to what came before
            kept.append(e)
            written.add(e.name)
    entries = kept
    out = io.BytesIO()
    tar_stream(entries, out, epoch=epoch)
    assert out.getvalue() == _tarfile_reference(entries, epoch)
