"""Short-lived caches of the two lookups every request made: its API key and its model.

- :class:`KeyCache`: API key digest -> tenant, for ``ttl_s`` seconds (``EFNF_AUTH_CACHE_TTL_S``,
  default 1 s). A revoked key is therefore refused at most ``ttl_s`` after the revocation is
  committed (0 turns the cache off: every request reads the key row). Only accepted keys are
  cached; a rejected key is looked up again each time.
- :class:`ResolutionCache`: (tenant, model id) -> the job, its newest checkpoint and the loaded
  model. A finished job (succeeded, failed, cancelled) gets no further checkpoints, so its entry
  stays valid until it is evicted; a queued or running job's entry is re-resolved after
  ``refresh_s`` (``EFNF_CHECKPOINT_REFRESH_S``, default 1 s), so a newer checkpoint is served at
  most that long after it is written.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Generic, TypeVar

from app.core.db.models import TERMINAL_JOB_STATES

Value = TypeVar("Value")


class _TimedLru(Generic[Value]):
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[object, tuple[Value, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: object) -> Value | None:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[1] <= now:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: object, value: Value, ttl_s: float) -> None:
        if ttl_s <= 0:
            return
        with self._lock:
            self._entries[key] = (value, time.monotonic() + ttl_s)
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def discard(self, key: object) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class KeyCache(_TimedLru[str]):
    """Digest of an accepted API key -> its tenant, for ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float, capacity: int = 4096) -> None:
        super().__init__(capacity)
        self.ttl_s = ttl_s

    def remember(self, key_digest: str, tenant: str) -> None:
        self.put(key_digest, tenant, self.ttl_s)


class ResolutionCache(_TimedLru[Value]):
    """(tenant, model id) -> a resolved model; finished jobs' entries do not expire."""

    # A finished job's entry: valid until evicted (a day bounds a clock oddity, nothing more).
    FINISHED_TTL_S = 86_400.0

    def __init__(self, refresh_s: float, capacity: int = 256) -> None:
        super().__init__(capacity)
        self.refresh_s = refresh_s

    def remember(self, owner: str, model_id: str, job_state: str, value: Value) -> None:
        ttl = self.FINISHED_TTL_S if job_state in TERMINAL_JOB_STATES else self.refresh_s
        self.put((owner, model_id), value, ttl if self.refresh_s > 0 else 0.0)

    def forget(self, owner: str, model_id: str) -> None:
        """Drops the entry of a deleted job at once (it would otherwise stay until evicted)."""
        self.discard((owner, model_id))
