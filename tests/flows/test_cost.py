"""The cost estimates that the service's limits rely on, checked against built flows."""

from __future__ import annotations

import pytest

from flows import FlowConfig, TrainConfig, build_flow
from flows.cost import (
    expanded_weights,
    forward_activations,
    logdet_passes,
    training_method,
    training_work,
)
from flows.lipschitz import LipschitzLayer

CONFIGS = [
    {"group": "C4", "data_shape": [2], "width": 2, "depth": 2},
    {"group": "trivial", "data_shape": [3], "width": 5, "depth": 1, "hidden_layers": 3},
    {"group": "SO2", "data_shape": [2], "width": 2, "depth": 1, "max_frequency": 2},
    {"group": "C4", "data_shape": [1, 8, 8], "width": 2, "depth": 1},
    {"group": "D2", "data_shape": [3, 6, 4], "width": 1, "depth": 2, "kernel_size": 5},
]


@pytest.mark.parametrize("values", CONFIGS, ids=lambda values: values["group"])
def test_expanded_weights_count_every_dense_filter(values: dict) -> None:
    config = FlowConfig(**values)
    flow = build_flow(config)
    dense = sum(
        module.raw_parameters()[0].numel()
        for module in flow.modules()
        if isinstance(module, LipschitzLayer)
    )
    assert expanded_weights(config) == dense


def test_costs_grow_with_their_factors() -> None:
    config = FlowConfig(group="C4", data_shape=[1, 8, 8], width=2, depth=1)
    wider = config.model_copy(update={"width": 4})
    assert forward_activations(config, 10) == 10 * forward_activations(config, 1)
    assert forward_activations(wider, 1) > forward_activations(config, 1)
    assert logdet_passes(config, "exact", training=False) == 64
    estimate = logdet_passes(config, "estimate", training=False)
    assert estimate == config.estimator.eval_probes * (1 + config.estimator.eval_exact_terms + 1)
    short, long = TrainConfig(steps=10), TrainConfig(steps=1000)
    assert training_work(config, long) == 100 * training_work(config, short)


def test_auto_training_method_follows_the_trainer() -> None:
    points = FlowConfig(group="C4", data_shape=[2], exact_max_dim=1)
    images = FlowConfig(group="C4", data_shape=[1, 4, 4])
    assert training_method(points, TrainConfig()) == "exact"
    assert training_method(images, TrainConfig()) == "estimate"
    assert training_method(images, TrainConfig(logdet="exact")) == "exact"
