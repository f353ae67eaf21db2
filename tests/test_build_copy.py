"""Copy layers: exactly the files the key reads, Docker's COPY semantics, the same bytes
on any machine, and no root or runtime needed."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from ci_layers.errors import BuildError
from ci_layers.sources import copy_source

from .buildhelp import BASE, build, builder, built, members, tag_of, unpack
from .conftest import require
from .gitrepo import GitRepo

SPEC = f"""
version: 1
layers:
  os:
    from: {BASE}
  app:
    parent: os
    copy:
      - src: src/
        dest: /app/src/
      - src: requirements.txt
        dest: /app/
      - src: conf/app.conf
        dest: /etc/app.conf
      - src: "scripts/*.sh"
        dest: /usr/local/bin/
        chmod: "0750"
      - src: assets/
        dest: /srv/assets/
        exclude: ["*.md", "tmp/"]
        chown: "nobody"
"""


def _repo(git_repo: GitRepo) -> GitRepo:
    git_repo.write("ci-layers.yaml", SPEC)
    git_repo.write("src/main.py", "print('hi')\n")
    git_repo.write("src/pkg/util.py", "X = 1\n", mode=0o600)  # the checkout's mode: no part
    git_repo.write("src/run.sh", "#!/bin/sh\n", mode=0o755)
    os.symlink("main.py", git_repo.root / "src/link.py")
    git_repo.write("requirements.txt", "flask\n")
    git_repo.write("conf/app.conf", "port=80\n")
    git_repo.write("scripts/a.sh", "echo a\n")
    git_repo.write("scripts/b.sh", "echo b\n")
    git_repo.write("scripts/c.txt", "not copied\n")
    git_repo.write("assets/logo.svg", "<svg/>\n")
    git_repo.write("assets/README.md", "excluded\n")
    git_repo.write("assets/tmp/cache", "excluded\n")
    git_repo.write(".gitignore", "*.pyc\n")
    git_repo.write("src/main.pyc", "ignored by git: no input, not copied\n")
    git_repo.commit("app")
    git_repo.write("src/untracked.py", "untracked files are part of the working tree\n")
    return git_repo


def _tar(store, results, name):
    return {m.name: m for m in members(store, results[name].layer)}


def test_copy_layer_holds_what_the_key_reads(git_repo, busybox_store):
    repo = _repo(git_repo)
    results = build(repo.root, busybox_store)
    entries = _tar(busybox_store, results, "app")
    files = {n for n, m in entries.items() if not m.isdir()}
    assert files == {
        "app/src/main.py",
        "app/src/link.py",
        "app/src/pkg/util.py",
        "app/src/run.sh",
        "app/src/untracked.py",
        "app/requirements.txt",
        "etc/app.conf",
        "usr/local/bin/a.sh",
        "usr/local/bin/b.sh",
        "srv/assets/logo.svg",
    }
    # the folders the copy creates; `etc` and `usr`, which the parent has, keep theirs
    assert {n for n, m in entries.items() if m.isdir()} == {
        "app",
        "app/src",
        "app/src/pkg",
        "usr/local",
        "usr/local/bin",
        "srv",
        "srv/assets",
    }
    assert entries["srv"].uid == 65534  # made for a chown copy: the owner's (MkdirAll)
    # the same enumeration the key is computed from, file by file
    b = builder(repo.root, busybox_store)
    landed = {f"app/src/{rel}" for rel, _p in copy_source("src/").landed(b.files)}
    assert landed == {n for n in files if n.startswith("app/src/")}


def test_copy_modes_owners_and_links(git_repo, busybox_store):
    repo = _repo(git_repo)
    entries = _tar(busybox_store, build(repo.root, busybox_store), "app")
    assert stat.S_IMODE(entries["app/src/pkg/util.py"].mode) == 0o644  # git's, not 0600
    assert stat.S_IMODE(entries["app/src/run.sh"].mode) == 0o755
    assert stat.S_IMODE(entries["usr/local/bin/a.sh"].mode) == 0o750  # chmod
    assert entries["app/src/link.py"].issym()
    assert entries["app/src/link.py"].linkname == "main.py"
    assert (entries["srv/assets/logo.svg"].uid, entries["srv/assets/logo.svg"].gid) == (
        65534,
        65534,
    )  # chown by name, from the parent's /etc/passwd; no group: gid = uid
    for m in entries.values():
        assert (m.mtime, m.uname, m.gname) == (0, "", "")
        if m.name.split("/")[0] != "srv":
            assert (m.uid, m.gid) == (0, 0)


def test_copy_into_a_folder_the_parent_has(git_repo, busybox_store):
    """One file to a dest without a slash: the file itself, unless dest is a folder in
    the parent image (Docker looks)."""
    git_repo.write(
        "ci-layers.yaml",
        f"""
version: 1
layers:
  os:
    from: {BASE}
  app:
    parent: os
    copy:
      - {{src: a.txt, dest: /etc}}
      - {{src: a.txt, dest: /opt/renamed.txt}}
""",
    )
    git_repo.write("a.txt", "a\n")
    git_repo.commit()
    names = set(_tar(busybox_store, build(git_repo.root, busybox_store), "app"))
    assert names == {"etc/a.txt", "opt", "opt/renamed.txt"}  # busybox has /etc, no /opt


def test_copy_layer_needs_no_runtime(git_repo, busybox_store, monkeypatch, tmp_path):
    repo = _repo(git_repo)
    only_git = tmp_path / "bin"
    only_git.mkdir()
    os.symlink(shutil.which("git"), only_git / "git")
    monkeypatch.setenv("PATH", str(only_git))  # no runc, no mount: nothing but git runs
    results = build(repo.root, busybox_store, runtime="/nonexistent/runc")
    assert built(results) == {"os", "app"}


def test_copy_layer_is_the_same_on_any_machine(tmp_path, busybox_store):
    """Two clones with other paths, umasks and mtimes give the same blob."""
    digests = []
    for i, umask in enumerate((0o022, 0o077)):
        old = os.umask(umask)
        try:
            repo = _repo(GitRepo(tmp_path / f"clone{i}"))
            os.utime(repo.root / "src/main.py", (1_000_000 * (i + 1),) * 2)
            results = build(repo.root, busybox_store)
        finally:
            os.umask(old)
        digests.append((results["app"].layer.diff_id, results["app"].layer.descriptor.digest))
    assert digests[0] == digests[1]


def test_copy_from_another_layer(git_repo, busybox_store):
    git_repo.write(
        "ci-layers.yaml",
        f"""
version: 1
layers:
  os:
    from: {BASE}
  assets:
    parent: os
    copy: [{{src: web/, dest: /build/out/}}]
  app:
    parent: os
    copy:
      - {{src: /build/out/, dest: /srv/, from_layer: assets}}
      - {{src: /bin/sh, dest: /srv/shell, from_layer: assets}}
""",
    )
    git_repo.write("web/index.html", "<h1/>\n")
    git_repo.write("web/css/site.css", "a{}\n")
    git_repo.commit()
    entries = _tar(busybox_store, build(git_repo.root, busybox_store), "app")
    assert {"srv/index.html", "srv/css/site.css", "srv/css"} <= set(entries)
    # /bin/sh is a link in that image: a source that names a link copies what it points to
    assert entries["srv/shell"].isfile()
    assert entries["srv/shell"].size > 100_000


def test_a_later_copy_wins(git_repo, busybox_store):
    git_repo.write(
        "ci-layers.yaml",
        f"""
version: 1
layers:
  os:
    from: {BASE}
  app:
    parent: os
    copy:
      - {{src: one/, dest: /x/}}
      - {{src: two/, dest: /x/}}
""",
    )
    git_repo.write("one/f", "one\n")
    git_repo.write("two/f", "two\n")
    git_repo.commit()
    store = busybox_store
    results = build(git_repo.root, store)
    require("umoci")
    rootfs = unpack(store, tag_of(git_repo.root, store, "app"), git_repo.root.parent / "unpacked")
    assert (rootfs / "x/f").read_text() == "two\n"
    assert results["app"].layer is not None


def test_copy_source_that_matches_nothing_is_an_error(git_repo, busybox_store):
    git_repo.write(
        "ci-layers.yaml",
        f"""
version: 1
layers:
  os:
    from: {BASE}
  app:
    parent: os
    copy: [{{src: "missing/*.txt", dest: /x/}}]
""",
    )
    git_repo.commit()
    with pytest.raises(BuildError, match=r"copy source 'missing/\*.txt' matches no file"):
        build(git_repo.root, busybox_store)


def test_unpacked_by_umoci_and_inspected_by_skopeo(git_repo, busybox_store):
    require("umoci", "skopeo")
    repo = _repo(git_repo)
    build(repo.root, busybox_store)
    rootfs = unpack(busybox_store, tag_of(repo.root, busybox_store, "app"), repo.root.parent / "u")
    assert (rootfs / "app/src/main.py").read_text() == "print('hi')\n"
    assert os.readlink(rootfs / "app/src/link.py") == "main.py"
    assert (rootfs / "etc/app.conf").read_text() == "port=80\n"
    assert (rootfs / "bin/busybox").is_file()  # the base layer is there too
    assert not (rootfs / "srv/assets/README.md").exists()
    done = subprocess.run(
        [
            "skopeo",
            "inspect",
            f"oci:{busybox_store.path}:{tag_of(repo.root, busybox_store, 'app')}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"Layers"' in done.stdout


def _one(git_repo, busybox_store, copies: str, files: dict[str, str], *, extra: str = ""):
    git_repo.write(
        "ci-layers.yaml",
        f"version: 1\nlayers:\n  os:\n    from: {BASE}\n{extra}  app:\n    parent: os\n{copies}",
    )
    for path, text in files.items():
        git_repo.write(path, text)
    git_repo.commit()
    return _tar(busybox_store, build(git_repo.root, busybox_store), "app")


def test_wildcard_copies_only_its_matches(git_repo, busybox_store):
    entries = _one(
        git_repo,
        busybox_store,
        '    copy:\n      - {src: "scripts/*.sh", dest: /usr/local/bin/}\n'
        '      - {src: "*.txt", dest: /one.txt}\n',
        {"scripts/a.sh": "a\n", "scripts/sub/c.txt": "c\n", "top.txt": "t\n"},
    )
    assert set(entries) == {"usr/local", "usr/local/bin", "usr/local/bin/a.sh", "one.txt"}
    assert entries["one.txt"].isfile()


def test_dest_dot_is_the_working_directory(git_repo, busybox_store):
    entries = _one(
        git_repo,
        busybox_store,
        "    workdir: /work\n    copy:\n      - {src: a.txt, dest: .}\n"
        "      - {src: a.txt, dest: /opt/.}\n",
        {"a.txt": "a\n"},
    )
    assert {"work/a.txt", "opt/a.txt"} <= set(entries)
    assert entries["work"].isdir()


def test_folders_the_parent_has_keep_their_metadata(git_repo, busybox_store):
    """COPY into / must not reset /tmp's 1777 or /root's 0700 (fsutil writes file info
    only for folders it creates)."""
    require("umoci")
    _one(
        git_repo,
        busybox_store,
        "    copy:\n      - {src: overlay/, dest: /, chown: nobody}\n",
        {"overlay/etc/app.conf": "x\n", "overlay/root/.profile": "p\n", "overlay/tmp/x": "x\n"},
    )
    rootfs = unpack(
        busybox_store, tag_of(git_repo.root, busybox_store, "app"), git_repo.root.parent / "u"
    )
    assert stat.S_IMODE((rootfs / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((rootfs / "root").stat().st_mode) == 0o700
    assert (rootfs / "etc").stat().st_uid == 0
    assert (rootfs / "etc/app.conf").stat().st_uid == 65534


def test_new_dest_folders_take_the_owner(git_repo, busybox_store):
    entries = _one(
        git_repo,
        busybox_store,
        "    copy:\n      - {src: single, dest: /opt/deep/dir/single, chown: '1000:1000'}\n",
        {"single": "s\n"},
    )
    for d in ("opt", "opt/deep", "opt/deep/dir"):
        assert entries[d].isdir()
        assert (entries[d].uid, entries[d].gid) == (1000, 1000)


def test_chown_by_name_uses_the_primary_group(git_repo, busybox_store):
    entries = _one(
        git_repo,
        busybox_store,
        "    copy:\n      - {src: a, dest: /a, chown: app}\n"
        "      - {src: a, dest: /b, chown: '1000'}\n",
        {"a": "a\n", "etc/passwd": "root:x:0:0::/root:/bin/sh\napp:x:1000:2000::/:/bin/sh\n"},
        extra="    copy: [{src: etc/passwd, dest: /etc/passwd}]\n",
    )
    assert (entries["a"].uid, entries["a"].gid) == (1000, 2000)
    assert (entries["b"].uid, entries["b"].gid) == (1000, 1000)


def test_chown_of_an_unknown_user_names_the_layer(git_repo, busybox_store):
    with pytest.raises(BuildError, match=r"layer 'app': chown ghost: no user 'ghost' in the image"):
        _one(
            git_repo,
            busybox_store,
            "    copy:\n      - {src: a, dest: /a, chown: ghost}\n",
            {"a": "a"},
        )


def test_submodule_is_copied_at_the_keys_commit(git_repo, busybox_store, tmp_path):
    """The key holds the submodule's commit: edits in its checkout are not copied."""
    lib = GitRepo(tmp_path / "lib")
    lib.write("lib.txt", "committed\n")
    lib.commit("lib")
    git_repo.git(
        "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib.root), "vendor/lib"
    )
    git_repo.write(
        "ci-layers.yaml",
        f"version: 1\nlayers:\n  os:\n    from: {BASE}\n"
        "  app:\n    parent: os\n    copy: [{src: vendor/, dest: /vendor/}]\n",
    )
    git_repo.commit("with a submodule")
    (git_repo.root / "vendor/lib/lib.txt").write_text("edited, not committed\n")
    (git_repo.root / "vendor/lib/untracked.o").write_text("x")
    entries = _tar(busybox_store, build(git_repo.root, busybox_store), "app")
    assert "vendor/lib/untracked.o" not in entries
    assert entries["vendor/lib/lib.txt"].size == len("committed\n")


def test_submodule_sources_land_as_folders_do(git_repo, busybox_store, tmp_path):
    """`COPY sub/ /a/` puts what the submodule holds into /a, as for any folder; a file
    inside a submodule is copied from it."""
    lib = GitRepo(tmp_path / "lib")
    lib.write("f.txt", "f\n")
    lib.write("docs/d.md", "d\n")
    lib.commit("lib")
    git_repo.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib.root), "sub")
    git_repo.write(
        "ci-layers.yaml",
        f"version: 1\nlayers:\n  os:\n    from: {BASE}\n  app:\n    parent: os\n"
        "    copy:\n      - {src: sub/, dest: /a/}\n      - {src: sub/docs/d.md, dest: /b.md}\n",
    )
    git_repo.commit("with a submodule")
    entries = _tar(busybox_store, build(git_repo.root, busybox_store), "app")
    assert {"a/f.txt", "a/docs/d.md", "b.md"} <= set(entries)
    assert "a/sub" not in entries


def test_copy_from_a_layer_keeps_owners_links_and_fifos(git_repo, busybox_store, runc):
    git_repo.write(
        "ci-layers.yaml",
        f"""
version: 1
layers:
  os:
    from: {BASE}
  gen:
    parent: os
    run: >-
      mkdir -p /out/sub && echo a > /out/a && chown 1000:1000 /out/a && ln /out/a /out/hl
      && mkfifo /out/fifo && chown 123:45 /out/sub && chmod 4755 /out/a
  app:
    parent: os
    copy: [{{src: /out/, dest: /copied/, from_layer: gen}}]
""",
    )
    git_repo.commit()
    entries = _tar(busybox_store, build(git_repo.root, busybox_store), "app")
    a, hl = entries["copied/a"], entries["copied/hl"]
    assert (a.uid, a.gid, stat.S_IMODE(a.mode)) == (1000, 1000, 0o4755)
    assert hl.islnk()
    assert hl.linkname == "copied/a"
    assert entries["copied/fifo"].isfifo()
    assert (entries["copied/sub"].uid, entries["copied/sub"].gid) == (123, 45)


def test_a_wildcard_match_that_is_a_link_is_copied_as_its_target(git_repo, busybox_store):
    (git_repo.root / "src").mkdir()
    git_repo.write("src/main.py", "print()\n")
    os.symlink("main.py", git_repo.root / "src/link.py")
    entries = _one(
        git_repo, busybox_store, '    copy:\n      - {src: "src/*.py", dest: /app/}\n', {}
    )
    assert entries["app/link.py"].isfile()
    assert entries["app/link.py"].size == len("print()\n")


def test_a_submodule_not_checked_out_says_how_to_get_it(git_repo, busybox_store, tmp_path):
    lib = GitRepo(tmp_path / "lib")
    lib.write("f.txt", "f\n")
    lib.commit("lib")
    git_repo.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib.root), "sub")
    git_repo.write(
        "ci-layers.yaml",
        f"version: 1\nlayers:\n  os:\n    from: {BASE}\n  app:\n    parent: os\n"
        "    copy: [{src: sub/, dest: /a/}]\n",
    )
    git_repo.commit("with a submodule")
    git_repo.git("submodule", "deinit", "-q", "-f", "sub")
    with pytest.raises(
        BuildError,
        match=r"layer 'app': submodule sub: its commit \w+ is not in this clone; run git submodule update --init",
    ):
        build(git_repo.root, busybox_store)
