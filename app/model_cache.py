"""An in-process LRU cache of loaded flows, keyed by checkpoint id.

A checkpoint never changes once written, so its id is a safe key: a newer checkpoint of the
same job is a new entry. Inference on a loaded model runs on its batcher's thread
(``app.batching``), not under a lock here.
The cache counts its hits, misses and loads for ``/metrics`` (``app.metrics``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from flows import Flow
from flows.checkpoint import CheckpointInfo, load_flow_with_info


@dataclass(frozen=True)
class CacheStats:
    """Lookups served from the cache (hits) or not (misses), checkpoints loaded, failed loads,
    and models held now. A miss that waits for another thread's load of the same checkpoint is
    a miss without a load."""

    hits: int
    misses: int
    loads: int
    load_failures: int
    size: int


@dataclass
class LoadedModel:
    checkpoint_id: str
    flow: Flow
    info: CheckpointInfo


class ModelCache:
    def __init__(self, capacity: int, device: str) -> None:
        self._capacity = capacity
        self._device = device
        self._entries: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._hits = self._misses = self._loads = self._load_failures = 0

    def count_hit(self) -> None:
        """Counts a model served from memory through a cache in front of this one
        (``app.resolution.ResolutionCache``), so the hit figures cover every request."""
        with self._lock:
            self._hits += 1

    def get(self, checkpoint_id: str, load_blob: Callable[[], bytes]) -> LoadedModel:
        """The loaded model of ``checkpoint_id``; ``load_blob`` is called on a miss only."""
        with self._lock:
            if checkpoint_id in self._entries:
                self._hits += 1
                self._entries.move_to_end(checkpoint_id)
                return self._entries[checkpoint_id]
            self._misses += 1
            loading = self._loading.setdefault(checkpoint_id, threading.Lock())
        with loading:
            with self._lock:
                if checkpoint_id in self._entries:
                    return self._entries[checkpoint_id]
            try:
                flow, info = load_flow_with_info(load_blob(), device=self._device)
                model = LoadedModel(checkpoint_id=checkpoint_id, flow=flow, info=info)
            except BaseException:
                with self._lock:
                    self._load_failures += 1
                    self._loading.pop(checkpoint_id, None)
                raise
            with self._lock:
                self._loads += 1
                self._entries[checkpoint_id] = model
                self._loading.pop(checkpoint_id, None)
                while len(self._entries) > self._capacity:
                    self._entries.popitem(last=False)
            return model

    def discard(self, checkpoint_ids: list[str]) -> None:
        """Forgets these checkpoints (their job was deleted); unknown ids are ignored."""
        with self._lock:
            for checkpoint_id in checkpoint_ids:
                self._entries.pop(checkpoint_id, None)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                self._hits, self._misses, self._loads, self._load_failures, len(self._entries)
            )

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
