"""ci-layers: which container layers must be rebuilt for a commit, in what order, and
building them."""

from __future__ import annotations

__version__ = "0.1.0"

from typing import Any

from .errors import CiLayersError
from .graph import ImageLayer, LayerGraph
from .resolver import DependencyResolver

__all__ = [
    "CiLayersError",
    "DependencyResolver",
    "ImageLayer",
    "ImageManifest",
    "LayerBuilder",
    "LayerGraph",
    "__version__",
]

# The build path loads when first used: planning commands never pay for it.
_LAZY = {"LayerBuilder": "ci_layers.build.builder", "ImageManifest": "ci_layers.oci.manifest"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ci_layers' has no attribute {name!r}")
