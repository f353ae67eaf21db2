from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from .gitrepo import GitRepo

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# Machines here are noisy: no per-example deadline; CI runs a few more examples.
settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200
)
settings.load_profile("ci" if os.environ.get("CI") else "default")

# What plans keep between runs (memo.py) goes to a folder of this run, not ~/.cache:
# every test then also checks that a kept value changes no result.
os.environ["CI_LAYERS_CACHE_DIR"] = tempfile.mkdtemp(prefix="ci-layers-test-cache-")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(os.environ["CI_LAYERS_CACHE_DIR"], ignore_errors=True)


@pytest.fixture
def git_repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path / "repo")


@pytest.fixture
def seed_repo(git_repo: GitRepo) -> GitRepo:
    """The seed example of the README, committed once."""
    git_repo.copy_fixture(FIXTURES / "seed")
    git_repo.commit("seed")
    return git_repo


OPENAPI = Path(__file__).resolve().parent.parent / ".cache/github-openapi/api.github.com.json"


@pytest.fixture(scope="session")
def github_openapi():
    """GitHub's OpenAPI description (from @octokit/openapi, fetched by scripts/setup)."""
    from openapi_core import Config, OpenAPI

    assert OPENAPI.exists(), f"{OPENAPI} is missing: run scripts/test, which fetches it"
    spec = json.loads(OPENAPI.read_text())
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))


@pytest.fixture
def gh(github_openapi):
    """A fake GitHub REST API on loopback; every request must match the OpenAPI."""
    from openapi_core.testing import MockRequest

    from .fake_github import FakeGitHub, serve

    def validate(rec) -> str | None:
        args = {k: v[0] for k, v in rec.query.items()}
        data = None if rec.body is None else json.dumps(rec.body).encode()
        request = MockRequest(
            "https://api.github.com",
            rec.method.lower(),
            rec.path,
            args=args,
            data=data,
            headers={k.lower(): v for k, v in rec.headers.items()},
            content_type="application/json" if data is not None else None,
        )
        try:
            github_openapi.validate_request(request)
        except Exception as exc:  # openapi-core raises many kinds; all mean "invalid"
            return f"{type(exc).__name__}: {exc}"
        return None

    fake = FakeGitHub(validate=validate)
    server = serve(fake)
    yield fake
    server.shutdown()
    assert fake.violations == [], fake.violations


def require(*tools: str, root: bool = False) -> None:
    """Skip a test whose host tools are missing, except in CI (`CI` set), where
    scripts/test installs them: there a missing tool fails the test, never skips it."""
    missing = [t for t in tools if shutil.which(t) is None]
    problem = ", ".join(missing) + " not installed" if missing else ""
    if root and os.geteuid() != 0:
        problem = (problem + "; " if problem else "") + "needs root"
    if not problem:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{problem}: scripts/test installs and runs everything as root in CI")
    pytest.skip(problem)


@pytest.fixture
def store(tmp_path: Path):
    from ci_layers.oci.store import OciStore

    return OciStore(tmp_path / "store")


@pytest.fixture
def busybox_store(store):
    """A store holding the busybox-static root image, tagged ci-layers.local/busybox."""
    from ci_layers.build.busybox import busybox_image

    require("busybox")
    busybox_image(store)
    return store


@pytest.fixture
def runc() -> str:
    """runc, as root: what `run` layers need."""
    require("runc", root=True)
    return shutil.which("runc") or "runc"


@pytest.fixture
def registry(tmp_path: Path):
    """Debian's docker-registry (distribution 2.8) on a free loopback port, plain HTTP."""
    from .registry import start_registry

    require("docker-registry")
    running = start_registry(tmp_path / "registry")
    yield running
    running.stop()


@pytest.fixture
def proxy(registry):
    """A recording (and, when told, misbehaving) proxy in front of `registry`."""
    from .registry import proxy_to

    with proxy_to(registry.host) as p:
        yield p
