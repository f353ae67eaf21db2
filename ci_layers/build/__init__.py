"""LayerBuilder: turn one planned layer into a layer blob."""

from __future__ import annotations
