"""Pause the cyclic garbage collector around bulk allocation.

Loading a spec or computing keys allocates many small objects and no garbage cycles;
the collector's passes over them cost more than the work itself on large specs
(2.6x at 10k layers). Reference counting still frees everything as usual.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["paused_gc"]


@contextlib.contextmanager
def paused_gc(*, freeze: bool = False) -> Iterator[None]:
    """`freeze`: what was allocated stays out of later passes too (a plan's spec, keys
    and plan live until the process ends; the first pass after a long pause otherwise
    walks all of them, 70 ms at 5,000 layers)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if freeze:
                gc.freeze()
            gc.enable()
