"""`plan --check-registry`: Dockerfile images whose hand-off tag is in their repository
are built already (no job), their children pointed at that tag; a registry that cannot
be asked leaves the git plan, said; never a wrong `reused`. Against the real loopback
docker-registry, with images pushed by ci-layers standing in for BuildKit's."""

from __future__ import annotations

import json

import pytest

from ci_layers.docker import key_tag
from ci_layers.oci.registry import Registry
from ci_layers.oci.store import OciStore
from ci_layers.oci.transfer import TransferStats, push_image

from .conftest import require
from .gitrepo import GitRepo
from .registry import htpasswd, proxy_to, start_registry
from .test_cli_build import run


def images_repo(repo: GitRepo, host: str) -> tuple[str, str]:
    """base <- api, base <- worker, all under `host`; head changes base. (base, head)."""
    repo.write(
        "ci-layers.yaml",
        f'version: 1\ndockerfiles:\n  - path: "images/{{name}}/Dockerfile"\n'
        f'    image: "{host}/acme/{{name}}"\n',
    )
    repo.write("images/base/Dockerfile", "FROM scratch\nCOPY motd /etc/motd\n")
    repo.write("images/base/motd", "1\n")
    for name in ("api", "worker"):
        repo.write(f"images/{name}/Dockerfile", f"FROM {host}/acme/base\nCOPY app /app\n")
        repo.write(f"images/{name}/app", f"{name}\n")
    base = repo.commit("images")
    repo.write("images/base/motd", "2\n")
    return base, repo.commit("base 2")


def _plan(repo: GitRepo, base: str, head: str, *more: str, env=None) -> tuple[dict, str]:
    code, out, err = run(
        "plan", "-C", str(repo.root), "--base", base, "--head", head, "--format", "json", *more
    )
    assert code == 0, err
    return json.loads(out), err


def _push(store: OciStore, reference: str, host: str | None = None) -> None:
    """An image under `reference` (busybox: what BuildKit would have pushed there)."""
    host_, _, rest = reference.partition("/")
    repo, _, tag = rest.rpartition(":")
    desc = store.resolve("ci-layers.local/busybox:latest")
    push_image(store, desc, Registry(host or host_), repo, [tag], stats=TransferStats())


@pytest.fixture
def images(git_repo, registry, busybox_store):
    base, head = images_repo(git_repo, registry.host)
    plan, _ = _plan(git_repo, base, head)
    handoff = {n: key_tag(n, plan["layers"][n]["key"]) for n in plan["affected"]}
    return git_repo, base, head, handoff, busybox_store


def test_an_image_built_already_gets_no_job_and_its_children_take_its_tag(images, registry):
    repo, base, head, handoff, store = images
    b = f"{registry.host}/acme/base"
    _push(store, handoff[b])
    plan, err = _plan(repo, base, head, "--check-registry")
    assert plan["affected"] == [f"{registry.host}/acme/api", f"{registry.host}/acme/worker"]
    assert plan["layers"][b]["status"] == "reused"
    assert plan["layers"][b]["reasons"][0] == f"built before: {handoff[b]} exists"
    assert plan["cache"]["reused"] == [b]
    assert err.count("warning") == 0
    code, bake, err = run(
        "bake", "-C", str(repo.root), "--base", base, "--head", head, "--check-registry"
    )
    assert code == 0, err
    targets = json.loads(bake)["target"]
    assert len(targets) == 2  # api and worker; base is built
    for target in targets.values():
        assert target["contexts"] == {b: f"docker-image://{handoff[b]}"}
    code, text, _ = run(
        "plan", "-C", str(repo.root), "--base", base, "--head", head, "--check-registry"
    )
    assert "2 of 3 layers to rebuild, 1 reused (1 found built already)" in text


def test_every_image_found_means_nothing_to_build(images):
    repo, base, head, handoff, store = images
    for tag in handoff.values():
        _push(store, tag)
    plan, _ = _plan(repo, base, head, "--check-registry")
    assert plan["affected"] == []
    assert sorted(plan["cache"]["reused"]) == sorted(handoff)


def test_a_missing_repository_is_nothing_built_and_no_warning(images):
    repo, base, head, _handoff, _store = images
    plan, err = _plan(repo, base, head, "--check-registry")
    assert len(plan["affected"]) == 3
    assert "warning" not in err


def test_a_tag_list_over_pages_is_read_to_its_end(images, registry):
    """Split into pages of 2 (Debian's docker-registry sends the whole list at once, so
    the proxy pages it as the distribution spec says), the tag is on the last one."""
    _repo, _base, _head, handoff, store = images
    b = f"{registry.host}/acme/base"
    for i in range(5):
        _push(store, f"{b}:a-{i}")
    _push(store, handoff[b])  # ci-layers-… sorts after a-…: on the last page
    with proxy_to(registry.host) as proxy:
        proxy.page = 2
        found, _notes = _check(handoff, registry.host, proxy.host)
        pages = [r for r in proxy.requests if "/acme/base/tags/list" in r.path]
    assert found == {b}
    assert len(pages) >= 3


def _check(handoff: dict[str, str], real: str, front: str, env=None) -> set[str]:
    from ci_layers.registry_check import check_registry

    through = {n: t.replace(real, front) for n, t in handoff.items()}
    result = check_registry(through, env=env or {})
    return {n.replace(front, real) for n in result.found}, result.notes  # type: ignore[return-value]


def test_a_refused_listing_falls_back_to_a_head_of_each_tag(images, registry):
    _repo, _base, _head, handoff, store = images
    b = f"{registry.host}/acme/base"
    _push(store, handoff[b])
    with proxy_to(registry.host) as proxy:
        proxy.status = lambda method, path: 403 if "/tags/list" in path else 0
        found, notes = _check(handoff, registry.host, proxy.host)
        heads = [r for r in proxy.requests if r.method == "HEAD" and "/manifests/" in r.path]
    assert found == {b}
    assert notes == ()
    assert len(heads) == 3  # one per image, for want of a list


@pytest.mark.parametrize("status", [401, 429, 500, 503])
def test_a_registry_that_cannot_be_asked_leaves_every_job_and_says_so(images, registry, status):
    _repo, _base, _head, handoff, store = images
    for tag in handoff.values():
        _push(store, tag)  # all built: a wrong "not asked" must still not drop a job
    with proxy_to(registry.host) as proxy:
        proxy.status = lambda method, path: status
        env = {"CI_LAYERS_REGISTRY_ATTEMPTS": "1"}
        found, notes = _check(handoff, registry.host, proxy.host, env=env)
    assert found == set()
    assert notes
    for note in notes:
        assert proxy.host in note
        assert "keep" in note


def test_behind_basic_auth_without_credentials_nothing_is_reused(git_repo, tmp_path, busybox_store):
    """The registry wants credentials for every read: the listing and the HEADs are
    refused, so every image keeps its job, each named."""
    require("docker-registry")
    reg = start_registry(tmp_path / "reg", htpasswd=htpasswd(tmp_path, "ci", "pw"))
    try:
        base, head = images_repo(git_repo, reg.host)
        plan, _ = _plan(git_repo, base, head)
        handoff = {n: key_tag(n, plan["layers"][n]["key"]) for n in plan["affected"]}
        env = {"HOME": str(tmp_path / "nobody")}
        from ci_layers.registry_check import check_registry

        result = check_registry(handoff, env=env)
        assert result.found == {}
        assert len(result.notes) == 3
        assert all(reg.host in note and "needs credentials" in note for note in result.notes)
        with_creds = {
            **env,
            "CI_LAYERS_REGISTRY_USERNAME": "ci",
            "CI_LAYERS_REGISTRY_PASSWORD": "pw",
        }
        b = f"{reg.host}/acme/base"
        push_image(
            busybox_store,
            busybox_store.resolve("ci-layers.local/busybox:latest"),
            Registry(reg.host, env=with_creds),
            "acme/base",
            [handoff[b].rpartition(":")[2]],
            stats=TransferStats(),
        )
        assert check_registry(handoff, env=with_creds).found == {b: handoff[b]}
    finally:
        reg.stop()


def test_the_action_marks_them_and_the_comment_counts_them(images, registry):
    from .test_gha import pr_event_from, run_gha

    repo, base, head, handoff, store = images
    b = f"{registry.host}/acme/base"
    _push(store, handoff[b])
    event = pr_event_from(repo, 3, base=base, head=head)
    done, out, summary = run_gha(repo, "pull_request", event, check_registry="true")
    assert done.returncode == 0, done.stdout + done.stderr
    assert summary.startswith("### ci-layers: 2 of 3 layers to rebuild, 1 reused (1 found built")
    assert f"Affected but built before, found under their hand-off tags: `{b}`" in summary
    entries = [e for stage in json.loads(out["stages"]) for e in stage]
    assert sorted(e["name"] for e in entries) == [
        f"{registry.host}/acme/api",
        f"{registry.host}/acme/worker",
    ]
    for entry in entries:
        assert entry["docker"]["build-contexts"] == f"{b}=docker-image://{handoff[b]}"
