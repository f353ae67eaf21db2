"""`plan --check-registry` on 1,000 images in 1,000 repositories of a loopback
docker-registry (half of them built already), against the same plan without the check,
in one run. Goal: at most 2x.

    .venv/bin/python bench/check_registry_bench.py [--images 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.registry

from timing import best

from ci_layers.build.tarwriter import FILE, Entry, write_layer
from ci_layers.docker import key_tag
from ci_layers.oci.manifest import ImageManifest
from ci_layers.oci.registry import Registry
from ci_layers.oci.store import OciStore
from ci_layers.oci.transfer import TransferStats, push_image
from tests.gitrepo import GitRepo
from tests.registry import start_registry

PLAN = [sys.executable, "-m", "ci_layers.cli", "plan", "--format", "json"]


def _repo(root: Path, host: str, n: int) -> GitRepo:
    repo = GitRepo(root)
    repo.write(
        "ci-layers.yaml",
        f'version: 1\ndockerfiles:\n  - path: "images/{{team}}/{{name}}/Dockerfile"\n'
        f'    image: "{host}/{{team}}/{{name}}"\n',
    )
    for i in range(n):
        d = f"images/team-{i:04d}/service-{i:04d}"
        repo.write(f"{d}/Dockerfile", "FROM scratch\nCOPY app /app\n")
        repo.write(f"{d}/app", f"{i}\n")
    repo.commit("images")
    for i in range(n):  # every image changed: each one is asked about
        repo.write(f"images/team-{i:04d}/service-{i:04d}/app", f"{i} v2\n")
    repo.commit("all changed")
    return repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        registry = start_registry(where / "registry")
        try:
            repo = _repo(where / "repo", registry.host, args.images)
            plan = json.loads(
                subprocess.check_output(
                    [*PLAN, "--base", "HEAD~1", "--head", "HEAD"], cwd=repo.root
                )
            )
            store = OciStore(where / "store")
            image = ImageManifest.scratch()
            layer = write_layer([Entry("app", FILE, data=b"built")], store)
            desc = ImageManifest(image.config, (layer,)).write(store)
            built = plan["affected"][::2]  # half of them built already
            for name in built:
                tag = key_tag(name, plan["layers"][name]["key"])
                repository, _, t = tag.partition("/")[2].rpartition(":")
                push_image(
                    store, desc, Registry(registry.host), repository, [t], stats=TransferStats()
                )
            env = {**os.environ, "CI_LAYERS_CACHE_DIR": "off"}
            ends = ["--base", "HEAD~1", "--head", "HEAD"]
            git_only = best([*PLAN, *ends], repo.root, args.repeat, env=env)
            checked = best([*PLAN, *ends, "--check-registry"], repo.root, args.repeat, env=env)
            found = json.loads(
                subprocess.check_output([*PLAN, *ends, "--check-registry"], cwd=repo.root, env=env)
            )
        finally:
            registry.stop()
    print(f"{args.images} images in {args.images} repositories, {len(built)} built already")
    print(f"plan                    {git_only:6.2f} s")
    print(f"plan --check-registry   {checked:6.2f} s  ({len(found['cache']['reused'])} found)")
    print(f"ratio {checked / git_only:.2f} (goal: at most 2)")


if __name__ == "__main__":
    main()
