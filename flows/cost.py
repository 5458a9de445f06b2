"""What a configuration will cost, estimated from the config alone, without building the flow.

A service must refuse a configuration that would exhaust its memory or its time before it queues
the job or runs the request, and building the flow to measure it (escnn bases take seconds) is
itself a cost. These estimates count from :class:`~flows.config.FlowConfig`:

- the *weights* of the expanded filters (the dense tensors escnn keeps per layer);
- the *activations* of one forward pass of a batch: the hidden feature values of every
  sub-network layer, which backpropagation keeps in memory;
- the *passes* per item of a log-det: ``D`` replicated rows for the exact Jacobian, or
  ``probes x (1 + expected series terms)`` forward and vector-Jacobian products for the estimator;
- the *work* of a request or a run: passes times activations, in computed feature values.

They are estimates of scale, not predictions of seconds or bytes: good to bound a request by a
limit, and to compare two configurations.
"""

from __future__ import annotations

from flows.config import FlowConfig, LogDetEstimatorConfig, TrainConfig

__all__ = [
    "data_channels",
    "expanded_weights",
    "field_size",
    "forward_activations",
    "inverse_work",
    "logdet_passes",
    "training_method",
    "training_work",
]


def field_size(config: FlowConfig) -> int:
    """Channels of one hidden field: |G| for a regular field, 1 + 2F for band-limited irreps."""
    kind, order = config.group_kind, config.group_order
    if kind == "trivial":
        return 1
    if kind == "C":
        return order
    if kind == "D":
        return 2 * order
    return 1 + 2 * config.max_frequency


def data_channels(config: FlowConfig) -> int:
    """Channels of the data at each pixel (images) or of the whole point."""
    return config.dim if config.is_points else config.data_shape[0]


def _spatial(config: FlowConfig) -> int:
    return 1 if config.is_points else config.data_shape[1] * config.data_shape[2]


def expanded_weights(config: FlowConfig) -> int:
    """Numbers in the expanded filters of every sub-network: data -> hidden -> ... -> data."""
    hidden = config.width * field_size(config)
    outer_kernel = 1 if config.is_points else config.kernel_size**2
    outer = 2 * data_channels(config) * hidden * outer_kernel
    inner = (config.hidden_layers - 1) * hidden * hidden
    return config.depth * (outer + inner)


def forward_activations(config: FlowConfig, batch: int) -> int:
    """Hidden feature values of one forward pass of ``batch`` items."""
    hidden = config.width * field_size(config)
    per_item = config.depth * _spatial(config) * (config.hidden_layers * hidden + config.dim)
    return batch * per_item


def _expected_terms(estimator: LogDetEstimatorConfig, exact_terms: int) -> float:
    # Terms beyond the exact ones follow Geometric(p) on {0, 1, ...}, of mean (1 - p) / p.
    return exact_terms + (1.0 - estimator.geometric_p) / estimator.geometric_p


def logdet_passes(config: FlowConfig, method: str, *, training: bool) -> float:
    """Forward-sized passes per item of the log-det ``method`` ("exact" or "estimate")."""
    if method == "exact":
        return float(config.dim)
    estimator = config.estimator
    if training:
        return 1.0 + _expected_terms(estimator, estimator.n_exact_terms)
    return estimator.eval_probes * (1.0 + _expected_terms(estimator, estimator.eval_exact_terms))


def training_method(config: FlowConfig, training: TrainConfig) -> str:
    """The log-det method a run will use: ``auto`` is exact for points and estimated for images,
    as in :mod:`flows.training`."""
    if training.logdet != "auto":
        return training.logdet
    return "exact" if config.is_points else "estimate"


def training_work(config: FlowConfig, training: TrainConfig) -> float:
    """Feature values computed by the whole run: steps x passes x activations of a batch."""
    passes = logdet_passes(config, training_method(config, training), training=True)
    return training.steps * passes * forward_activations(config, training.batch_size)


def inverse_work(config: FlowConfig, n: int) -> float:
    """Feature values computed by inverting ``n`` items at the iteration cap (sampling)."""
    return float(config.inverse_max_iter * forward_activations(config, n))
