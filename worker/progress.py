"""A training loop's speed, smoothed so that an ETA computed from it does not jump about, and
its recent loss (:class:`WindowMean`), so that the loss shown moves between metric steps.

Between two observations ``(t₀, s₀)`` and ``(t₁, s₁)`` the instantaneous rate is
``r = (s₁ - s₀) / (t₁ - t₀)`` steps per second. The smoothed rate is an exponential moving
average with a time constant ``τ`` rather than a fixed weight per observation:

    rate ← rate + α (r - rate),   α = 1 - exp(-(t₁ - t₀) / τ)

so it forgets the past at the same pace in seconds whatever the observation period, and an
observation after a long gap counts for more. The first interval, from the loop's first step to
the first sample, initialises it: start-up (building the flow, loading data) is left out, and
the first heartbeat after two steps already has a speed.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

DEFAULT_TIME_CONSTANT_S = 20.0


class StepRate:
    """Thread-safe: the training loop calls :meth:`report`, the heartbeat :meth:`sample`."""

    def __init__(
        self,
        time_constant_s: float = DEFAULT_TIME_CONSTANT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if time_constant_s <= 0:
            raise ValueError(f"time_constant_s must be positive, got {time_constant_s}")
        self._time_constant_s = time_constant_s
        self._clock = clock
        self._lock = threading.Lock()
        self._step: int | None = None
        self._step_at = 0.0
        self._sampled_step: int | None = None
        self._sampled_at = 0.0
        self._rate: float | None = None

    def report(self, step: int) -> None:
        """The loop has done ``step`` steps (called after every step: must be cheap)."""
        with self._lock:
            self._step, self._step_at = step, self._clock()
            if self._sampled_step is None:
                self._sampled_step, self._sampled_at = self._step, self._step_at

    def sample(self) -> tuple[int | None, float | None]:
        """(newest step, smoothed steps per second); either is None until known."""
        with self._lock:
            step, step_at = self._step, self._step_at
            if step is None:
                return None, None
            if self._sampled_step is None or step < self._sampled_step:
                # First report, or a rewind: start measuring from here.
                self._sampled_step, self._sampled_at = step, step_at
                return step, self._rate
            elapsed = step_at - self._sampled_at
            if step > self._sampled_step and elapsed > 0:
                instant = (step - self._sampled_step) / elapsed
                if self._rate is None:
                    self._rate = instant
                else:
                    alpha = 1.0 - math.exp(-elapsed / self._time_constant_s)
                    self._rate += alpha * (instant - self._rate)
                self._sampled_step, self._sampled_at = step, step_at
            return step, self._rate


class WindowMean:
    """The mean of the finite values added since the last :meth:`take` (thread-safe).

    The heartbeat takes the mean training loss of the steps since its previous beat; a NaN or
    infinite loss (a diverging run, which the loop itself reports) is left out.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0.0
        self._count = 0

    def add(self, value: float) -> None:
        if math.isfinite(value):
            with self._lock:
                self._total += value
                self._count += 1

    def take(self) -> float | None:
        """The mean since the last call, or None if nothing finite was added since."""
        with self._lock:
            if self._count == 0:
                return None
            mean = self._total / self._count
            self._total, self._count = 0.0, 0
            return mean
