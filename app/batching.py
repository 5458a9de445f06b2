"""Dynamic batching per model: concurrent scoring and sampling requests run as one forward.

As Triton's dynamic batcher and Ray Serve's ``@serve.batch`` do: each loaded model has one
thread that runs its forwards (replacing a lock per model). Requests queue up for it; the thread
takes the oldest, then keeps taking queued requests of the same *kind* until the batch holds
``max_items`` items or ``max_wait_s`` has passed since it started collecting, runs them as one
forward, and splits the results back per request. While a forward runs, new requests queue, so
under load batches form by themselves without any waiting; ``max_wait_s`` only helps requests
that arrive just after an idle period.

What batches together, and what is reproducible:

- **Exact scoring** (``exact`` log-dets of a flow without padding): every request's items are
  concatenated. An item's log-density does not depend on its batch-mates, so a batched result
  equals the unbatched one up to float rounding (BLAS may sum in another order for another
  batch size; observed differences ~1e-6 relative in float32). Image levels are scored at their
  bin centres, so an exact score does not depend on the request's seed.
- **Estimated scoring** (Russian-roulette / Hutchinson probes, padding draws): the probes depend
  on the batch, so each such request runs *alone*, on the model's thread, with its own seed:
  its result is bit-for-bit what the same request gives unbatched.
- **Sampling**: each request draws its latents z from its own seed and temperature (exactly as
  :meth:`flows.flow.Flow.sample`); the latents are inverted together. The fixed-point inverse
  iterates each item until its own bound meets its tolerance, independently of its batch-mates,
  so a sample equals its unbatched value up to float rounding (one more or fewer iteration in a
  borderline case moves it by at most the tolerance). Each sample comes with its certified
  inverse error bound.

A request whose input is bad fails alone: inputs are converted per request before the batch is
formed, and if a batched forward raises, each request of the batch is rerun alone so that only
the offending one gets the error. A request cancelled while it waits (its client went away) is
dropped before its batch runs.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

# torch.autograd.grad imports torch.fx's symbolic shapes (and with them sympy) on its first call:
# 1-2 s that the first exact log-density of the process would otherwise pay. Import it with the
# service, so that a model's first request costs only its own load.
import torch.fx.experimental.symbolic_shapes

from flows.flow import Flow
from flows.metrics import bits_per_dim
from flows.scoring import ScoreResult, score, to_data_convention, to_model_input

__all__ = [
    "BatcherRegistry",
    "ModelBatcher",
    "SampleWork",
    "ScoreWork",
]


@dataclass
class ScoreWork:
    """One scoring request: its array (not yet converted), method as asked, and seed."""

    array: np.ndarray
    method: str
    seed: int
    future: Future[ScoreResult] = field(default_factory=Future)

    @property
    def items(self) -> int:
        return len(self.array)


@dataclass
class SampleWork:
    """One sampling request: n samples at ``temperature`` from ``seed``; the result is the
    samples and each one's certified inverse error bound (None without iterative layers)."""

    n: int
    seed: int
    temperature: float
    future: Future[tuple[np.ndarray, np.ndarray | None]] = field(default_factory=Future)

    @property
    def items(self) -> int:
        return self.n


Work = ScoreWork | SampleWork
_STOP = object()


class ModelBatcher:
    """The forward thread of one model, with its queue of requests.

    Attributes:
        forwards: batched forwards run so far (a batch of one request counts too).
        batch_sizes: the items of each forward, newest last (the last 1024).
    """

    def __init__(self, flow: Flow, max_items: int, max_wait_s: float, name: str = "") -> None:
        self.flow = flow
        self.max_items = max_items
        self.max_wait_s = max_wait_s
        self.forwards = 0
        self.batch_sizes: deque[int] = deque(maxlen=1024)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._held: deque[Work] = deque()
        self._thread = threading.Thread(target=self._run, name=f"efnf-batch-{name}", daemon=True)
        self._thread.start()

    # -- submitting ------------------------------------------------------------------------
    def submit(self, work: Work) -> Future[Any]:
        self._queue.put(work)
        return work.future

    def close(self) -> None:
        """Stops the thread once the requests already queued have run."""
        self._queue.put(_STOP)

    # -- the thread ------------------------------------------------------------------------
    def _kind(self, work: Work) -> Hashable:
        """Requests of one kind run in one forward; a unique kind runs alone."""
        if isinstance(work, SampleWork):
            return "sample"
        resolved = self.flow.resolve_method(work.method)
        if resolved == "exact" and not self.flow.is_lower_bound:
            return "score-exact"
        return ("alone", id(work))

    def _next(self, timeout: float | None) -> Any:
        if self._held:
            return self._held.popleft()
        try:
            if timeout is not None and timeout <= 0:
                return self._queue.get_nowait()
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _collect(self) -> list[Work] | None:
        first = self._next(None)
        if first is _STOP:
            return None
        batch, items, kind = [first], first.items, self._kind(first)
        deadline = time.monotonic() + self.max_wait_s
        skipped: list[Work] = []
        while items < self.max_items and not isinstance(kind, tuple):
            work = self._next(deadline - time.monotonic())
            if work is None:
                break
            if work is _STOP:
                self._queue.put(_STOP)
                break
            if self._kind(work) != kind or items + work.items > self.max_items:
                skipped.append(work)
                if items + work.items > self.max_items:
                    break
                continue
            batch.append(work)
            items += work.items
        self._held.extendleft(reversed(skipped))
        return batch

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            batch = self._collect()
            if batch is None:
                return
            live = [work for work in batch if work.future.set_running_or_notify_cancel()]
            if not live:
                continue
            self.forwards += 1
            self.batch_sizes.append(sum(work.items for work in live))
            try:
                self._run_batch(live)
            except Exception as error:  # reported to the requests
                if len(live) == 1:
                    live[0].future.set_exception(error)
                    continue
                for work in live:  # isolate the request that fails
                    self.forwards += 1
                    try:
                        self._run_batch([work])
                    except Exception as single:
                        work.future.set_exception(single)

    def _run_batch(self, batch: list[Work]) -> None:
        if isinstance(batch[0], SampleWork):
            results = sample_together(self.flow, batch)  # type: ignore[arg-type]
        elif len(batch) == 1 and self._kind(batch[0]) != "score-exact":
            work = batch[0]
            results = [score(self.flow, work.array, method=work.method, seed=work.seed)]
        else:
            results = score_exact_together(self.flow, batch)  # type: ignore[arg-type]
        for work, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                work.future.set_exception(result)
            else:
                work.future.set_result(result)


def score_exact_together(flow: Flow, batch: list[ScoreWork]) -> list[ScoreResult | Exception]:
    """Exact log-densities of every request's items in one forward, split per request.

    A request whose input does not convert (wrong shape, values out of range) gets its
    ``DataError`` and is left out of the forward.
    """
    inputs: list[torch.Tensor | Exception] = []
    for work in batch:
        try:
            inputs.append(to_model_input(flow, work.array))
        except Exception as error:  # the request's own error
            inputs.append(error)
    valid = [x for x in inputs if isinstance(x, torch.Tensor)]
    if not valid:
        return inputs  # type: ignore[return-value]
    log_prob = flow.log_prob(torch.cat(valid), method="exact")
    bpd = None if flow.config.is_points else bits_per_dim(log_prob, flow.dim).cpu().numpy()
    log_prob_np = log_prob.cpu().numpy()
    results: list[ScoreResult | Exception] = []
    start = 0
    for x in inputs:
        if not isinstance(x, torch.Tensor):
            results.append(x)
            continue
        stop = start + len(x)
        results.append(
            ScoreResult(
                log_prob=log_prob_np[start:stop],
                stderr=None,
                bits_per_dim=None if bpd is None else bpd[start:stop],
                method="exact",
                lower_bound=False,
            )
        )
        start = stop
    return results


def sample_together(
    flow: Flow, batch: list[SampleWork]
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Each request's samples, its latents drawn from its own seed, inverted in one pass.

    The latents are :meth:`flows.flow.Flow.draw_latents`'s, which :meth:`~flows.flow.Flow.sample`
    inverts for the same seed and temperature; the output is
    :func:`flows.scoring.to_data_convention`'s.
    """
    latents = [flow.draw_latents(work.n, work.seed, work.temperature) for work in batch]
    x, report = flow.inverse_with_info(torch.cat(latents))
    samples = to_data_convention(flow, x[:, : flow.data_shape[0]])
    bounds = report.item_error_bounds
    bounds = None if bounds is None else bounds.double().cpu().numpy()
    results, start = [], 0
    for work in batch:
        stop = start + work.n
        array = samples[start:stop]
        results.append((array, None if bounds is None else bounds[start:stop]))
        start = stop
    return results


class BatcherRegistry:
    """One :class:`ModelBatcher` per loaded checkpoint, at most ``capacity`` (LRU)."""

    def __init__(self, capacity: int, max_items: int, max_wait_s: float) -> None:
        self._capacity = capacity
        self._max_items = max_items
        self._max_wait_s = max_wait_s
        self._batchers: OrderedDict[str, ModelBatcher] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, checkpoint_id: str, flow: Flow) -> ModelBatcher:
        """The batcher of ``checkpoint_id`` (made for ``flow`` on first use)."""
        with self._lock:
            batcher = self._batchers.get(checkpoint_id)
            if batcher is not None:
                self._batchers.move_to_end(checkpoint_id)
                return batcher
            batcher = ModelBatcher(flow, self._max_items, self._max_wait_s, checkpoint_id[-8:])
            self._batchers[checkpoint_id] = batcher
            while len(self._batchers) > self._capacity:
                _, evicted = self._batchers.popitem(last=False)
                evicted.close()
            return batcher

    def discard(self, checkpoint_ids: list[str]) -> None:
        """Closes the batchers of these checkpoints (their job was deleted); unknown ids are
        ignored."""
        with self._lock:
            closing = [self._batchers.pop(i) for i in checkpoint_ids if i in self._batchers]
        for batcher in closing:
            batcher.close()
