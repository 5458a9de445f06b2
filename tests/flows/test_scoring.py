"""Image scoring is deterministic (bin centres) and inherits the model's exact invariance."""

from __future__ import annotations

import numpy as np
import torch

from flows.scoring import score

from .conftest import make_flow

SMALL_NSF = {"family": "nsf", "data_shape": [1, 5, 5], "depth": 2, "width": 2, "spline_bins": 4}


def _levels(n: int = 3) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, 1, 5, 5), dtype=np.uint8)


def test_image_score_is_the_density_at_bin_centres_whatever_the_seed() -> None:
    flow = make_flow(group="C4", **SMALL_NSF)
    levels = _levels()
    scores = [score(flow, levels, method="exact", seed=seed).log_prob for seed in range(4)]
    for other in scores[1:]:
        assert np.array_equal(other, scores[0])
    centres = torch.from_numpy((levels.astype(np.float64) + 0.5) / 256)
    with torch.no_grad():
        expected = flow.log_prob(centres).numpy()
    np.testing.assert_allclose(scores[0], expected, rtol=1e-12)


def test_rotated_image_scores_the_same_under_an_invariant_model() -> None:
    levels = _levels()
    rotated = np.ascontiguousarray(np.rot90(levels, 1, axes=(-2, -1)))
    flipped = np.ascontiguousarray(levels[..., ::-1])
    invariant = make_flow(group="D4", **SMALL_NSF)
    reference = score(invariant, levels).log_prob
    for moved in (rotated, flipped):
        np.testing.assert_allclose(score(invariant, moved).log_prob, reference, rtol=1e-6)
    generic = make_flow(group="trivial", **SMALL_NSF)
    assert np.abs(score(generic, rotated).log_prob - score(generic, levels).log_prob).max() > 1e-3
