from __future__ import annotations

import os
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


@pytest.fixture
def git_repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path / "repo")


@pytest.fixture
def seed_repo(git_repo: GitRepo) -> GitRepo:
    """The seed example of the README, committed once."""
    git_repo.copy_fixture(FIXTURES / "seed")
    git_repo.commit("seed")
    return git_repo
