"""Classes pickled as their constructor call come back equal, field for field."""

from __future__ import annotations

import dataclasses
import importlib
import io
import pickle
import pkgutil

import ci_layers
from ci_layers import memo
from ci_layers.keys import compute_keys
from ci_layers.pickling import slotted_reduce
from ci_layers.repo import tree_files
from ci_layers.spec import load_spec

from .gitrepo import GitRepo


def _reduced_classes() -> list[type]:
    found = []
    for info in pkgutil.walk_packages(ci_layers.__path__, "ci_layers."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and value.__dict__.get("__reduce__") is slotted_reduce:
                found.append(value)
    return found


def test_each_class_is_rebuilt_by_its_constructor() -> None:
    classes = _reduced_classes()
    assert len(classes) >= 8
    for cls in classes:
        assert dataclasses.is_dataclass(cls), cls
        assert all(f.init for f in dataclasses.fields(cls)), cls
        assert not hasattr(cls, "__post_init__"), cls
        assert cls.__slots__ == tuple(f.name for f in dataclasses.fields(cls)), cls


def test_a_kept_plan_end_comes_back_equal(git_repo: GitRepo) -> None:
    git_repo.write(
        "ci-layers.yaml",
        "version: 1\nlayers:\n  base:\n    from: scratch\n    copy: [{src: a, dest: /a}]\n"
        "  app:\n    parent: base\n    env: {X: '1'}\n    inputs: ['/b/*.txt']\n",
    )
    git_repo.write("a/f", "1\n")
    git_repo.write("b/c.txt", "2\n")
    git_repo.commit()
    spec = load_spec(git_repo.root / "ci-layers.yaml")
    keys = compute_keys(spec, tree_files(git_repo.root, "HEAD"))
    data = pickle.dumps((spec, keys), protocol=pickle.HIGHEST_PROTOCOL)
    back_spec, back_keys = memo._Unpickler(io.BytesIO(data)).load()
    assert back_keys == keys
    assert back_spec.layers == spec.layers
    for name, layer in spec.layers.items():
        again = back_spec.layers[name]
        for f in dataclasses.fields(layer):  # compare=False fields too (places)
            assert getattr(again, f.name) == getattr(layer, f.name), (name, f.name)
