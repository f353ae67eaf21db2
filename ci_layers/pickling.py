"""Frozen slots dataclasses pickled as their constructor call.

Dataclasses give a slots class a `__getstate__` that calls `fields()` for every object
and a `__setstate__` that sets each field through Python; keeping a 5,000-layer plan
end (memo.py) spent 40% of its writing and reading there. `(cls, field values)` is
rebuilt by `cls(*values)` instead, which is the same object for a class whose every
field is an `__init__` argument and which has no `__post_init__` (a test holds both).
"""

from __future__ import annotations

from typing import Any

__all__ = ["slotted_reduce"]


def slotted_reduce(self: Any) -> tuple[type, tuple[Any, ...]]:
    return (type(self), tuple([getattr(self, name) for name in type(self).__slots__]))
