"""A base image whose config Docker could not decode: refused where it is read, naming
the image and the field, never a traceback; in the store or pulled from a registry."""

from __future__ import annotations

import json
import subprocess

import pytest

from ci_layers.oci.manifest import CONFIG, MANIFEST, ImageManifest, check_config
from ci_layers.oci.registry import Registry
from ci_layers.oci.store import OciStore
from ci_layers.oci.transfer import TransferStats, push_image

from .buildhelp import BASE, CLI

# (what is changed in busybox's config, the field named, what it must be)
SHAPES = {
    "env-a-number": (lambda c: c["config"].update(Env=5), "Env", "a list of strings"),
    "labels-a-list": (lambda c: c["config"].update(Labels=["a"]), "Labels", "a map of strings"),
    "label-a-number": (lambda c: c["config"].update(Labels={"a": 1}), "Labels", "a map of strings"),
    "entrypoint-a-number": (
        lambda c: c["config"].update(Entrypoint=5),
        "Entrypoint",
        "a string or a list of strings",
    ),
    "cmd-a-map": (lambda c: c["config"].update(Cmd={}), "Cmd", "a string or a list of strings"),
    "user-a-number": (lambda c: c["config"].update(User=5), "User", "a string"),
    "workdir-a-list": (lambda c: c["config"].update(WorkingDir=["/"]), "WorkingDir", "a string"),
    "exposed-ports-a-number": (
        lambda c: c["config"].update(ExposedPorts=5),
        "ExposedPorts",
        "a map",
    ),
    "config-a-string": (lambda c: c.update(config="x"), "config", "a map"),
    "rootfs-a-string": (lambda c: c.update(rootfs="layers"), "rootfs", "a map"),
    "diff-id-no-string": (
        lambda c: c["rootfs"].update(diff_ids=[5]),
        "rootfs.diff_ids",
        "a list of digests",
    ),
    "diff-id-no-digest": (
        lambda c: c["rootfs"].update(diff_ids=["sha256:xyz"]),
        "rootfs.diff_ids",
        "a digest",
    ),
    "history-of-numbers": (lambda c: c.update(history=[1]), "history[0]", "a map"),
    "history-a-map": (lambda c: c.update(history={}), "history", "a list"),
    "empty-layer-a-string": (
        lambda c: c.update(history=[{"empty_layer": "yes"}]),
        "history[0].empty_layer",
        "true or false",
    ),
    "os-a-number": (lambda c: c.update(os=5), "os", "a string"),
    "architecture-a-list": (lambda c: c.update(architecture=[]), "architecture", "a string"),
    "the-config-a-list": (lambda _c: [], "(the config)", "a map"),
}


def _odd(store: OciStore, change, ref: str) -> str:
    """busybox with its config changed; its manifest's digest."""
    desc = store.resolve(BASE)
    manifest = store.read_json(desc)
    config = store.read_json(
        type(desc)(CONFIG, type(desc.digest).parse(manifest["config"]["digest"]), 0)
    )
    changed = change(config)
    body = json.dumps(config if changed is None else changed).encode()
    new_config = store.put_bytes(body, media_type=CONFIG)
    manifest["config"] = new_config.to_json()
    new = store.put_bytes(json.dumps(manifest).encode(), media_type=MANIFEST)
    store.tag(ref, new)
    return str(new.digest)


SPEC = """
version: 1
layers:
  top:
    from: {ref}
    copy: [{{src: f, dest: /f}}]
"""


def _build(repo, store_path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "build", "-C", str(repo.root), "--store", str(store_path)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_an_odd_base_config_in_the_store_is_a_named_error(git_repo, busybox_store, shape):
    change, field, kind = shape
    ref = "ci-layers.local/odd:1"
    digest = _odd(busybox_store, change, ref)
    git_repo.write("f", "x\n")
    git_repo.write("ci-layers.yaml", SPEC.format(ref=ref))
    git_repo.commit()
    done = _build(git_repo, busybox_store.path)
    assert done.returncode == 1, done.stderr
    assert f"error: layer 'top': base image {ref}: image {digest}: config field {field} is " in (
        done.stderr
    )
    assert f", not {kind}\n" in done.stderr
    assert "Traceback" not in done.stderr
    assert "internal error" not in done.stderr


@pytest.mark.parametrize("name", ["env-a-number", "rootfs-a-string", "the-config-a-list"])
def test_an_odd_base_config_pulled_from_a_registry_is_a_named_error(
    git_repo, busybox_store, registry, tmp_path, name
):
    change, field, _kind = SHAPES[name]
    digest = _odd(busybox_store, change, "odd")
    ref = f"{registry.host}/acme/odd:1"
    push_image(
        busybox_store,
        busybox_store.resolve("odd"),
        Registry(registry.host),
        "acme/odd",
        ["1"],
        stats=TransferStats(),
    )
    git_repo.write("f", "x\n")
    git_repo.write("ci-layers.yaml", SPEC.format(ref=ref))
    git_repo.commit()
    done = _build(git_repo, tmp_path / "empty-store")  # the base is pulled first
    assert done.returncode == 1, done.stderr
    assert f"base image {ref}: image {digest}: config field {field} is " in done.stderr
    assert "Traceback" not in done.stderr


def test_what_docker_accepts_is_accepted():
    """null is absent; Entrypoint and Cmd may be one string (Docker's StrSlice)."""
    check_config(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": None, "Entrypoint": "/bin/sh", "Cmd": None, "Labels": None},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": None,
        },
        where="image x",
    )
    check_config({"architecture": "amd64", "os": "linux"}, where="image x")


def test_a_string_entrypoint_is_docker_s_one_element_list(busybox_store):
    _odd(busybox_store, lambda c: c["config"].update(Entrypoint="/bin/sh"), "one")
    image = ImageManifest.load(busybox_store, busybox_store.resolve("one"))
    assert image.config.entrypoint == ("/bin/sh",)
