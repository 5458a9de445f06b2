"""The serving process's garbage collector: a young collection every 10 000 net allocations
instead of CPython's 700.

Why: the service's heap is large and long-lived (torch, escnn, sympy for autograd, the loaded
models: millions of objects), and every request allocates a few thousand short-lived container
objects (ASGI scopes, headers, FastAPI's dependency bookkeeping). With 700, collections run
several times per request; under concurrency the objects of the requests in flight survive
them, are promoted, and soon trigger full collections that walk the whole heap, stalling the
event loop and every request in flight for tens to hundreds of milliseconds. Measured with
``bench/serving.py``'s clients on 2 shared cores (1-item point scoring, 32 clients): p99 302 ms
at p50 32 ms with 700, 40 ms at 24 ms with 10 000, and the event loop's CPU per request fell
from 0.97 to 0.58 ms. Cycles are still collected (later), so nothing leaks; the older
generations keep their thresholds.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def collect_young_objects_less_often() -> None:
    """Raises the youngest generation's threshold to :data:`YOUNG_THRESHOLD` (never lowers it)."""
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_THRESHOLD), middle, old)
