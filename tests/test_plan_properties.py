"""Random histories: the plan equals a brute-force model, and the key comparison."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ci_layers.cli import main
from ci_layers.graph import ImageLayer
from ci_layers.keys import compute_keys
from ci_layers.lazytree import TreeStore, lazy_tree_files
from ci_layers.repo import tree_files
from ci_layers.spec import parse_spec

from .dags import brute_descendants, dags
from .gitrepo import GitRepo


def spec_for(layers: list[ImageLayer], edited: set[str]) -> str:
    doc: dict = {"version": 1, "layers": {}}
    for x in layers:
        d: dict = {"parent": x.parent} if x.parent else {"from": "scratch"}
        d["run"] = [f"build {x.name}"] + (["patched"] if x.name in edited else [])
        d["copy"] = [{"src": f"files/{x.name}", "dest": "/app"}] + [
            {"src": "/out", "dest": c.dest, "from_layer": c.from_layer} for c in x.copy
        ]
        d["inputs"] = [f"/cfg/{x.name}.cfg"]
        doc["layers"][x.name] = d
    return yaml.safe_dump(doc, sort_keys=False)


def owner(path: str) -> str | None:
    """The layer that reads `path` in this model: files/<name>/… or cfg/<name>.cfg."""
    parts = path.split("/")
    if parts[0] == "files" and len(parts) > 2:
        return parts[1]
    if parts[0] == "cfg":
        return parts[1].removesuffix(".cfg")
    return None


OPS = st.sampled_from(["modify", "add", "delete", "rename", "chmod", "edit", "noise"])


@settings(max_examples=25, deadline=None)
@given(dags(max_layers=7), st.lists(st.tuples(OPS, st.integers(0, 10**6)), min_size=1, max_size=6))
def test_plan_matches_brute_force_and_keys(layers: list[ImageLayer], ops: list) -> None:
    names = sorted(x.name for x in layers)
    with tempfile.TemporaryDirectory() as tmp:
        repo = GitRepo(Path(tmp) / "repo")
        model: dict[str, tuple[str, bool]] = {}

        def put(path: str, text: str, exe: bool = False) -> None:
            repo.write(path, text, mode=0o755 if exe else 0o644)
            model[path] = (text, exe)

        for n in names:
            put(f"files/{n}/a.txt", f"a {n}")
            put(f"cfg/{n}.cfg", f"cfg {n}")
        put("README.md", "readme")
        repo.write("ci-layers.yaml", spec_for(layers, set()))
        base = repo.commit("base")
        before = dict(model)
        edited: set[str] = set()
        for op, seed in ops:
            paths = sorted(model)
            target = names[seed % len(names)]
            path = paths[seed % len(paths)]
            if op == "modify":
                put(path, model[path][0] + f" +{seed}", model[path][1])
            elif op == "add":
                put(f"files/{target}/new{seed}.txt", f"new {seed}")
            elif op == "delete" and len(model) > 1:
                repo.remove(path)
                del model[path]
            elif op == "rename":
                new = f"files/{target}/moved{seed}.txt"
                if new not in model:
                    os.renames(repo.root / path, repo.root / new)
                    model[new] = model.pop(path)
            elif op == "chmod":
                put(path, model[path][0], not model[path][1])
            elif op == "edit":
                edited.add(target)
            elif op == "noise":
                put(f"docs/n{seed}.md", "noise")
        repo.write("ci-layers.yaml", spec_for(layers, edited))
        repo.commit("head")

        out = io.StringIO()
        code = main(
            ["plan", "--format", "json", "-C", str(repo.root), "--base", base, "--head", "HEAD"],
            out=out,
        )
        assert code == 0
        affected = json.loads(out.getvalue())["affected"]

        changed = {p for p in set(before) | set(model) if before.get(p) != model.get(p)}
        touched = {o for p in changed if (o := owner(p)) in names} | edited
        assert set(affected) == brute_descendants(layers, touched)

        # the lazily read trees the plan used answer as full listings do, at both ends
        with TreeStore(repo.root) as store:
            for rev in (base, "HEAD"):
                lazy, listed = lazy_tree_files(repo.root, rev, store), tree_files(repo.root, rev)
                for p in [*listed.paths, *listed.trees, *changed]:
                    assert lazy.entries.get(p) == listed.entries.get(p)
                    assert lazy.trees.get(p) == listed.trees.get(p)
                assert list(lazy.under("files/")) == list(listed.under("files/"))

        old = compute_keys(parse_spec(spec_for(layers, set())), tree_files(repo.root, base))
        new = compute_keys(parse_spec(spec_for(layers, edited)), tree_files(repo.root, "HEAD"))
        assert set(affected) == {n for n in names if old[n].digest != new[n].digest}
