"""The cost estimates that the service's limits rely on, checked against built flows."""

from __future__ import annotations

import pytest

from flows import FlowConfig, TrainConfig, build_flow
from flows.cost import (
    expanded_weights,
    forward_activations,
    inverse_work,
    scoring_work,
    training_method,
    training_step_bytes,
    training_work,
)
from flows.layers import ElementwiseSpline, PolarSplineBlock
from flows.steerable import SteerableLayer

CONFIGS = [
    {"family": "residual", "group": "C4", "data_shape": [2], "width": 2, "depth": 2},
    {"group": "trivial", "data_shape": [3], "width": 5, "depth": 1, "hidden_layers": 3},
    {"family": "residual", "group": "SO2", "data_shape": [2], "width": 2, "max_frequency": 2},
    {"family": "polar", "group": "D8", "data_shape": [2], "width": 3, "hidden_layers": 3},
    {"family": "polar", "group": "C5", "data_shape": [2], "depth": 2, "max_frequency": 3},
    {"family": "polar", "group": "trivial", "data_shape": [2], "spline_bins": 4},
    {"family": "polar", "group": "O2", "data_shape": [2], "depth": 3},
    {"family": "residual", "group": "C4", "data_shape": [1, 8, 8], "width": 2, "depth": 1},
    {
        "family": "residual",
        "group": "D2",
        "data_shape": [3, 6, 4],
        "width": 1,
        "depth": 2,
        "kernel_size": 5,
    },
    {"family": "coupling", "group": "C4", "data_shape": [3, 4, 4], "width": 2, "depth": 3},
    {
        "family": "coupling",
        "group": "C2",
        "data_shape": [1, 4, 4],
        "depth": 2,
        "coupling_split": "checkerboard",
    },
    {"family": "iaf", "group": "D4", "data_shape": [2, 4, 4], "width": 1, "depth": 2},
    {"family": "linear", "group": "C4", "data_shape": [3, 4, 4], "depth": 2},
    {"family": "linear", "group": "D4", "data_shape": [2], "depth": 2},
    {
        "family": "mixed",
        "blocks": ["linear", "coupling", "residual"],
        "group": "trivial",
        "data_shape": [2],
        "depth": 2,
    },
    {"family": "residual", "group": "C4", "data_shape": [1, 4, 4], "padding_channels": 2},
    {"family": "coupling", "group": "trivial", "data_shape": [2], "padding_channels": 1},
    {"family": "nsf", "group": "D4", "data_shape": [3, 5, 5], "width": 2, "hidden_layers": 2},
    {"family": "nsf", "group": "C4", "data_shape": [1, 5, 5], "spline_head_kernel": 3},
    {"family": "mixed", "blocks": ["spline", "nsf"], "group": "C4", "data_shape": [1, 4, 4]},
]


def _config_id(values: dict) -> str:
    return "-".join(
        str(values[key]) for key in ("family", "group", "padding_channels") if key in values
    )


@pytest.mark.parametrize("values", CONFIGS, ids=_config_id)
def test_expanded_weights_count_every_dense_filter(values: dict) -> None:
    config = FlowConfig(**values)
    flow = build_flow(config)
    dense = sum(
        module.raw_parameters()[0].numel()
        for module in flow.modules()
        if isinstance(module, SteerableLayer)
    ) + sum(
        parameter.numel()
        for module in flow.modules()
        if isinstance(module, PolarSplineBlock | ElementwiseSpline)
        for parameter in module.parameters()
    )
    assert expanded_weights(config) == dense


def test_costs_grow_with_their_factors() -> None:
    config = FlowConfig(family="residual", group="C4", data_shape=[1, 8, 8], width=2, depth=1)
    wider = config.model_copy(update={"width": 4})
    assert forward_activations(config, 10) == 10 * forward_activations(config, 1)
    assert forward_activations(wider, 1) > forward_activations(config, 1)
    exact = scoring_work(config, 1, "exact")
    assert exact == 64 * forward_activations(config, 1)
    estimate = scoring_work(config, 1, "estimate")
    passes = config.estimator.eval_probes * (1 + config.estimator.eval_exact_terms + 1)
    assert estimate == passes * forward_activations(config, 1)
    short, long = TrainConfig(steps=10), TrainConfig(steps=1000)
    assert training_work(config, long) == 100 * training_work(config, short)


def test_auto_training_method_follows_the_trainer() -> None:
    points = FlowConfig(family="residual", group="C4", data_shape=[2])
    images = FlowConfig(family="residual", group="C4", data_shape=[1, 4, 4])
    assert training_method(points, TrainConfig()) == "exact"
    assert training_method(images, TrainConfig()) == "estimate"
    assert training_method(images, TrainConfig(logdet="exact")) == "exact"
    coupling = FlowConfig(family="coupling", group="C4", data_shape=[3, 4, 4])
    assert training_method(coupling, TrainConfig(logdet="estimate")) == "exact"
    with pytest.raises(ValueError, match="exact_max_dim 1"):
        training_method(points.model_copy(update={"exact_max_dim": 1}), TrainConfig())


def test_analytic_families_cost_one_pass_and_iaf_costs_k_in_its_slow_direction() -> None:
    coupling = FlowConfig(family="coupling", group="C4", data_shape=[3, 32, 32], depth=2)
    assert scoring_work(coupling, 1, "exact") == forward_activations(coupling, 1)
    iaf = FlowConfig(family="iaf", group="C4", data_shape=[3, 8, 8], depth=1)
    maf = iaf.model_copy(update={"iaf_fast": "density"})
    assert scoring_work(iaf, 1, "exact") == 3 * scoring_work(maf, 1, "exact")
    assert inverse_work(maf, 1) == 3 * inverse_work(iaf, 1)
    padded = FlowConfig(group="C4", data_shape=[2], padding_channels=1, padding_eval_samples=8)
    single = padded.model_copy(update={"padding_eval_samples": 1})
    assert scoring_work(padded, 1, "exact") == 8 * scoring_work(single, 1, "exact")


RESIDUAL_HEAVY = FlowConfig(
    family="mixed",
    blocks=["residual"] * 8,
    depth=64,
    width=64,
    group="C4",
    data_shape=[1, 8, 8],
)


def test_step_memory_covers_the_residual_heavy_config_of_issue_12() -> None:
    """It used 12.4 GB of worker memory on 3 steps of batch 16; the estimate must not be lower,
    and must scale with the batch (activations) and the exact Jacobian's D rows."""
    training = TrainConfig(steps=3, batch_size=16)
    assert training_step_bytes(RESIDUAL_HEAVY, training) >= 12.4e9
    double = training.model_copy(update={"batch_size": 32})
    fixed = training_step_bytes(RESIDUAL_HEAVY, training.model_copy(update={"batch_size": 0}))
    assert training_step_bytes(RESIDUAL_HEAVY, double) - fixed == pytest.approx(
        2 * (training_step_bytes(RESIDUAL_HEAVY, training) - fixed)
    )
    points = FlowConfig(family="residual", group="C4", data_shape=[2], width=4, depth=2)
    exact = training_step_bytes(points, TrainConfig(batch_size=64, logdet="exact"))
    estimated = training_step_bytes(points, TrainConfig(batch_size=64, logdet="estimate"))
    assert exact > estimated
