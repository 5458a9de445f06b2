"""Dynamic batching (app/batching.py): requests run together, results equal unbatched ones,
errors stay with their request, cancelled requests are dropped, estimates keep their seeds.

The batcher runs a real flow (float32, as served) with a long ``max_wait_s`` so that requests
submitted together deterministically form one batch (it fires as soon as ``max_items`` is
reached); forwards are counted by the batcher itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from app.batching import ModelBatcher, SampleWork, ScoreWork
from flows import Flow, FlowConfig, build_flow
from flows.data import DataError
from flows.scoring import sample_array, score
from tests.flows.conftest import perturb

pytestmark = pytest.mark.timeout(120)

WAIT_S = 5.0  # long: a batch fires when full, so these tests never wait for it


@pytest.fixture(scope="module")
def points_flow() -> Flow:
    flow = build_flow(
        FlowConfig(family="residual", group="C4", data_shape=[2], width=2, depth=2), seed=1
    )
    return perturb(flow, 0.3, seed=2).eval()


@pytest.fixture(scope="module")
def image_flow() -> Flow:
    flow = build_flow(
        FlowConfig(family="residual", group="C4", data_shape=[1, 8, 8], width=2, depth=1), seed=1
    )
    return perturb(flow, 0.1, seed=2).eval()


def points(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 2)).astype(np.float32)


def test_concurrent_scoring_requests_run_as_one_forward_with_unbatched_results(
    points_flow: Flow,
) -> None:
    arrays = [points(n, seed) for seed, n in enumerate([1, 3, 5, 7])]
    batcher = ModelBatcher(points_flow, max_items=16, max_wait_s=WAIT_S)
    futures = [batcher.submit(ScoreWork(array, "exact", seed=0)) for array in arrays]
    results = [future.result(timeout=60) for future in futures]
    assert batcher.forwards == 1 and list(batcher.batch_sizes) == [16]
    for array, result in zip(arrays, results, strict=True):
        alone = score(points_flow, array, method="exact")
        assert result.method == "exact" and result.stderr is None
        np.testing.assert_allclose(result.log_prob, alone.log_prob, rtol=1e-5, atol=1e-5)
    batcher.close()


def test_images_batched_score_as_alone_whatever_their_seeds(image_flow: Flow) -> None:
    """Integer levels are scored at their bin centres: batched or alone, any seed."""
    rng = np.random.default_rng(0)
    levels = [rng.integers(0, 256, size=(2, 1, 8, 8)) for _ in range(3)]
    batcher = ModelBatcher(image_flow, max_items=6, max_wait_s=WAIT_S)
    futures = [batcher.submit(ScoreWork(x, "exact", seed=s)) for s, x in enumerate(levels)]
    results = [future.result(timeout=60) for future in futures]
    assert batcher.forwards == 1
    for seed, (x, result) in enumerate(zip(levels, results, strict=True)):
        alone = score(image_flow, x, method="exact", seed=seed + 7)
        np.testing.assert_allclose(result.log_prob, alone.log_prob, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(result.bits_per_dim, alone.bits_per_dim, rtol=1e-5)
    batcher.close()


def test_a_bad_request_fails_alone(points_flow: Flow) -> None:
    good = [points(2, 0), points(3, 1)]
    bad = np.zeros((2, 3), dtype=np.float32)  # a 3-D point for a 2-D model
    batcher = ModelBatcher(points_flow, max_items=7, max_wait_s=WAIT_S)
    first = batcher.submit(ScoreWork(good[0], "exact", 0))
    broken = batcher.submit(ScoreWork(bad, "exact", 0))
    last = batcher.submit(ScoreWork(good[1], "exact", 0))
    with pytest.raises(DataError, match="shape"):
        broken.result(timeout=60)
    assert len(first.result(timeout=60).log_prob) == 2
    assert len(last.result(timeout=60).log_prob) == 3
    assert batcher.forwards == 1
    batcher.close()


def test_a_cancelled_request_is_dropped_before_its_batch_runs(points_flow: Flow) -> None:
    batcher = ModelBatcher(points_flow, max_items=4, max_wait_s=WAIT_S)
    kept = batcher.submit(ScoreWork(points(2, 0), "exact", 0))
    gone = batcher.submit(ScoreWork(points(1, 1), "exact", 0))
    assert gone.cancel()  # its client went away while it waited
    other = batcher.submit(ScoreWork(points(1, 2), "exact", 0))  # 2 + 1 + 1 fills the batch
    kept.result(timeout=60)
    other.result(timeout=60)
    assert gone.cancelled() and list(batcher.batch_sizes) == [3]
    batcher.close()


def test_estimates_run_alone_and_reproduce_their_seed_exactly(points_flow: Flow) -> None:
    arrays = [points(3, 0), points(3, 1)]
    batcher = ModelBatcher(points_flow, max_items=64, max_wait_s=0.0)
    futures = [batcher.submit(ScoreWork(x, "estimate", seed=7 + i)) for i, x in enumerate(arrays)]
    for i, (x, future) in enumerate(zip(arrays, futures, strict=True)):
        result, alone = future.result(timeout=60), score(points_flow, x, "estimate", seed=7 + i)
        assert result.method == "estimate"
        np.testing.assert_array_equal(result.log_prob, alone.log_prob)
        np.testing.assert_array_equal(result.stderr, alone.stderr)
    assert batcher.forwards == 2
    batcher.close()


def test_sampling_requests_batch_and_keep_their_own_seeds(points_flow: Flow) -> None:
    batcher = ModelBatcher(points_flow, max_items=12, max_wait_s=WAIT_S)
    asks = [(4, 0, 1.0), (5, 1, 0.7), (3, 0, 0.5)]
    futures = [batcher.submit(SampleWork(n, seed, t)) for n, seed, t in asks]
    results = [future.result(timeout=60) for future in futures]
    assert batcher.forwards == 1
    for (n, seed, temperature), (result, bounds) in zip(asks, results, strict=True):
        alone = sample_array(points_flow, n, seed=seed, temperature=temperature)
        assert bounds is not None and bounds.shape == (n,)
        assert result.shape == alone.shape and result.dtype == alone.dtype
        # Equal to within the inverse's tolerance, not bit for bit (see app/batching.py).
        tolerance = 10 * (points_flow.config.inverse_atol + points_flow.config.inverse_rtol)
        np.testing.assert_allclose(result, alone, atol=tolerance, rtol=0)
    batcher.close()


def test_a_batch_fires_at_max_items_and_holds_the_rest(points_flow: Flow) -> None:
    batcher = ModelBatcher(points_flow, max_items=4, max_wait_s=WAIT_S)
    futures = [batcher.submit(ScoreWork(points(2, i), "exact", 0)) for i in range(4)]
    for future in futures:
        future.result(timeout=60)
    assert list(batcher.batch_sizes) == [4, 4]
    batcher.close()
