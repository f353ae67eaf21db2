"""`ci-layers build` and `export` from the command line: outputs, exit codes, errors."""

from __future__ import annotations

import io
import json
import subprocess

from ci_layers.cli import main

from .buildhelp import BASE, CLI
from .conftest import require

SPEC = f"""
version: 1
layers:
  os:
    from: {BASE}
    copy: [{{src: etc/, dest: /etc/}}]
  app:
    parent: os
    copy: [{{src: app/, dest: /app/}}]
    cmd: ["sh"]
images:
  app:
    layer: app
    tags: [registry.example.com/app:1]
"""


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def _repo(git_repo):
    git_repo.write("ci-layers.yaml", SPEC)
    git_repo.write("etc/motd", "hi\n")
    git_repo.write("app/main.sh", "echo app\n")
    git_repo.commit()
    return git_repo


def _keys(root) -> dict[str, str]:
    code, out, _err = run("keys", "-C", str(root), "--format", "json")
    assert code == 0
    return {n: v["key"] for n, v in json.loads(out)["layers"].items()}


def test_build_then_reuse(git_repo, busybox_store):
    repo = _repo(git_repo)
    store = str(busybox_store.path)
    code, out, err = run("build", "-C", str(repo.root), "--store", store)
    assert code == 0, err
    assert "[1/2] building os" in out
    assert "2 built, 0 reused" in out
    code, out, _ = run("build", "app", "-C", str(repo.root), "--store", store)
    assert code == 0
    assert "0 built, 2 reused" in out
    assert busybox_store.resolve("registry.example.com/app:1") is not None


def test_build_job_builds_its_layers(git_repo, busybox_store):
    repo = _repo(git_repo)
    keys = _keys(repo.root)
    job = {"name": "os", "key": keys["os"], "layers": [{"name": "os", "key": keys["os"]}]}
    code, out, err = run(
        "build", "-C", str(repo.root), "--store", str(busybox_store.path), "--job", json.dumps(job)
    )
    assert code == 0, err
    assert "1 built, 0 reused" in out
    assert "app" not in out


def test_build_job_planned_for_another_commit_is_refused(git_repo, busybox_store):
    repo = _repo(git_repo)
    stale = "sha256:" + "0" * 64
    job = json.dumps({"name": "os", "key": stale})
    code, _out, err = run(
        "build", "-C", str(repo.root), "--store", str(busybox_store.path), "--job", job
    )
    assert code == 1
    assert "layer 'os': the checkout gives key sha256:" in err
    assert f"the job was planned with {stale}" in err


def test_bad_job_is_a_usage_error(git_repo, busybox_store):
    repo = _repo(git_repo)
    code, _out, err = run("build", "-C", str(repo.root), "--job", "{not json")
    assert code == 2
    assert "error: --job: not JSON" in err
    code, _out, err = run("build", "-C", str(repo.root), "--job", "[1, 2]")
    assert code == 2
    assert "expected a matrix entry" in err
    compact = {"name": "os", "stage": 1, "job": "1.1", "packed": False, "compact": True}
    code, _out, err = run("build", "-C", str(repo.root), "--job", json.dumps(compact))
    assert code == 2
    assert "error: --job: the entry of job 1.1 holds its id only" in err
    assert "uses: ci-layers/ci-layers/job" in err


def test_missing_base_says_how_to_get_it(git_repo, store):
    repo = _repo(git_repo)
    code, _out, err = run("build", "-C", str(repo.root), "--store", str(store.path))
    assert code == 1
    assert f"layer 'os': base image {BASE} is not in the store" in err
    assert "skopeo copy docker://" in err
    assert "Traceback" not in err


def test_dockerfile_image_names_bake(git_repo, busybox_store):
    git_repo.write(
        "ci-layers.yaml",
        'version: 1\ndockerfiles:\n  - path: "images/{name}/Dockerfile"\n    image: "reg/{name}"\n',
    )
    git_repo.write("images/web/Dockerfile", "FROM scratch\nCOPY a /a\n")
    git_repo.write("images/web/a", "a\n")
    git_repo.commit()
    code, _out, err = run(
        "build", "reg/web", "-C", str(git_repo.root), "--store", str(busybox_store.path)
    )
    assert code == 1
    assert "is built from images/web/Dockerfile" in err
    assert "ci-layers bake" in err


def test_bad_epoch_is_a_usage_error(git_repo):
    repo = _repo(git_repo)
    code, _out, err = run("build", "-C", str(repo.root), "--epoch", "yesterday")
    assert code == 2
    assert "epoch 'yesterday' is not a number of seconds" in err


def test_epoch_sets_created_and_clamps(git_repo, busybox_store):
    repo = _repo(git_repo)
    code, _out, err = run(
        "build", "-C", str(repo.root), "--store", str(busybox_store.path), "--epoch", "1700000000"
    )
    assert code == 0, err
    manifest = busybox_store.read_json(busybox_store.resolve("registry.example.com/app:1"))
    from ci_layers.oci.digest import Descriptor

    config = busybox_store.read_json(Descriptor.from_json(manifest["config"], where="t"))
    assert config["created"] == "2023-11-14T22:13:20Z"


def test_export_oci_archive_for_skopeo(git_repo, busybox_store, tmp_path):
    require("skopeo")
    repo = _repo(git_repo)
    store = str(busybox_store.path)
    assert run("build", "-C", str(repo.root), "--store", store)[0] == 0
    archive = tmp_path / "app.tar"
    code, out, err = run(
        "export",
        "registry.example.com/app:1",
        "-C",
        str(repo.root),
        "--store",
        store,
        "--oci-archive",
        str(archive),
    )
    assert code == 0, err
    assert out.startswith(f"{archive}: registry.example.com/app:1 (5 blobs")
    done = subprocess.run(
        ["skopeo", "inspect", f"oci-archive:{archive}"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["Layers"]) == 3
    copied = subprocess.run(
        ["skopeo", "copy", f"oci-archive:{archive}", f"oci:{tmp_path / 'copy'}:app"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert copied.returncode == 0, copied.stderr
    # a layer name exports the image as of that layer
    code, out, _ = run(
        "export",
        "os",
        "-C",
        str(repo.root),
        "--store",
        store,
        "--oci-archive",
        str(tmp_path / "os.tar"),
    )
    assert code == 0
    assert ": ci-layers-" in out


def test_export_unknown_image_lists_what_is_there(git_repo, busybox_store, tmp_path):
    repo = _repo(git_repo)
    code, _out, err = run(
        "export",
        "nope",
        "-C",
        str(repo.root),
        "--store",
        str(busybox_store.path),
        "--oci-archive",
        str(tmp_path / "x.tar"),
    )
    assert code == 2
    assert f"no image 'nope' in the store {busybox_store.path} (tagged there: {BASE})" in err


def test_matrix_script_builds_the_job(git_repo, busybox_store):
    """scripts/build-layers-from-matrix, as the example workflow's stage jobs run it."""
    import os
    from pathlib import Path

    repo = _repo(git_repo)
    keys = _keys(repo.root)
    job = {"name": "app", "key": keys["app"], "layers": [{"name": "app", "key": keys["app"]}]}
    script = Path(__file__).resolve().parent.parent / "scripts/build-layers-from-matrix"
    done = subprocess.run(
        [str(script), "--store", str(busybox_store.path)],
        cwd=repo.root,
        env={**os.environ, "JOB": json.dumps(job), "CI_LAYERS": CLI},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "2 built, 0 reused" in done.stdout  # app, and os, which this machine lacked


def test_export_to_a_missing_folder_is_a_clear_error(git_repo, busybox_store, tmp_path):
    repo = _repo(git_repo)
    store = str(busybox_store.path)
    assert run("build", "-C", str(repo.root), "--store", store)[0] == 0
    target = tmp_path / "nowhere" / "x.tar"
    code, _out, err = run(
        "export", "os", "-C", str(repo.root), "--store", store, "--oci-archive", str(target)
    )
    assert code == 1
    assert f"cannot write {target}: No such file or directory" in err
    assert not (tmp_path / "nowhere").exists()


def test_job_key_must_be_a_string(git_repo):
    repo = _repo(git_repo)
    code, _out, err = run("build", "-C", str(repo.root), "--job", '{"name": "os", "key": 5}')
    assert code == 2
    assert "--job: layer 'os' has a key that is no string" in err


def test_a_copy_source_that_is_a_link_leaving_the_repository_is_refused(git_repo, store):
    """Docker's COPY fails on such a source; build would have written the dangling link.
    A link inside a copied folder stays a link, as Docker copies it."""
    import os

    git_repo.write("d/real", "x\n")
    os.symlink("/etc/passwd", git_repo.root / "d" / "pw")
    os.symlink("../../../etc", git_repo.root / "up")
    git_repo.write(
        "ci-layers.yaml",
        """version: 1
layers:
  a:
    from: scratch
    copy:
      - {src: d/pw, dest: /pw}
  b:
    from: scratch
    copy:
      - {src: [d/real, up], dest: /x/}
  c:
    from: scratch
    copy:
      - {src: d/, dest: /d/}
""",
    )
    git_repo.commit()
    expected = [
        "ci-layers.yaml:6:15: error: layer 'a': copy source 'd/pw' goes through a link "
        "that leaves the repository, or links that loop: Docker's COPY fails on it",
        "ci-layers.yaml:10:24: error: layer 'b': copy source 'up' goes through a link "
        "that leaves the repository, or links that loop: Docker's COPY fails on it",
        "2 problems in the spec",
    ]
    for command in ("validate", "build"):
        where = ["--store", str(store.path)] if command == "build" else []
        code, _out, err = run(command, "-C", str(git_repo.root), *where)
        assert code == 2, err
        assert err.splitlines() == expected
    assert store.index() == []  # nothing was built


def test_an_images_name_or_tag_works_wherever_a_layer_is_taken(
    git_repo, busybox_store, tmp_path, registry
):
    """`images: {demo-app: {layer: app}}`: `build demo-app` builds `app`; export,
    squash, push and pull take the image by its name or its tag too."""
    from ci_layers.oci.registry import Registry

    tag = f"{registry.host}/acme/web:1"
    git_repo.write("etc/motd", "hi\n")
    git_repo.write("app/main.sh", "echo app\n")
    git_repo.write(
        "ci-layers.yaml",
        SPEC.split("images:")[0]
        + f"images:\n  demo-app: {{layer: app}}\n  web: {{layer: app, tags: [{tag}]}}\n",
    )
    git_repo.commit()
    where = ["-C", str(git_repo.root), "--store", str(busybox_store.path)]
    for name in ("demo-app", tag):
        code, out, err = run("build", name, *where)
        assert code == 0, err
        rows = {
            line.split()[0]
            for line in out.splitlines()
            if line.split()[1:2] in (["built"], ["reused"])
        }
        assert rows == {"os", "app"}
    assert busybox_store.resolve(tag) is not None  # the published image, as build tagged it
    for name, expected in (("demo-app", "ci-layers-"), ("web", tag)):
        archive = tmp_path / f"{name}.tar"
        code, out, err = run("export", name, "--oci-archive", str(archive), *where)
        assert code == 0, err
        assert out.startswith(f"{archive}: {expected}")
    code, out, err = run("squash", "web", "--max-layers", "2", *where)
    assert code == 0, err
    assert f"tagged {tag}-squashed" in out
    cache = f"{registry.host}/acme/cache"
    code, out, err = run("push", "web", *where)
    assert code == 0, err
    assert Registry(registry.host).manifest_descriptor("acme/web", "1") is not None
    code, out, err = run("push", "demo-app", "--cache", cache, *where)
    assert code == 0, err
    assert f"-> {cache}:ci-layers-" in out
    fresh = ["-C", str(git_repo.root), "--store", str(tmp_path / "fresh")]
    code, out, err = run("pull", "web", *fresh)
    assert code == 0, err
    assert out.startswith(f"{tag} -> ")
    code, out, err = run("pull", "demo-app", "--cache", cache, *fresh)
    assert code == 0, err
    assert f"{cache}:ci-layers-" in out
