"""ci-layers: which container layers must be rebuilt for a commit, in what order."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import CiLayersError
from .graph import ImageLayer, LayerGraph
from .resolver import DependencyResolver

__all__ = ["CiLayersError", "DependencyResolver", "ImageLayer", "LayerGraph", "__version__"]
