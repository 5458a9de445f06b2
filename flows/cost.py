"""What a configuration will cost, estimated from the config alone, without building the flow.

A service must refuse a configuration that would exhaust its memory or its time before it queues
the job or runs the request, and building the flow to measure it (escnn bases take seconds) is
itself a cost. These estimates count from :class:`~flows.config.FlowConfig`, block by block of
every family:

- the *weights* of the expanded filters (the dense tensors escnn keeps per layer; for a polar
  block, its small dense networks' weights and biases);
- the *activations* of one forward pass of a batch: the feature values of every sub-network
  layer, which backpropagation keeps in memory;
- the *passes* per item of each block: ``D`` replicated rows for a residual block's exact
  Jacobian, or ``probes x (1 + expected series terms)`` for its estimator; one for coupling and
  linear blocks (analytic log-dets; a linear block's series is counted as its terms); one or
  ``iaf_blocks`` for an autoregressive block, by direction;
- the *work* of a request or a run: passes times activations, in computed feature values;
- the *memory* of a training step in bytes: what backpropagation keeps per activation (for
  residual blocks, the graph the log-det estimator's series runs its vector-Jacobian products
  through and the Neumann-gradient backward builds on; D replicated rows for an exact
  Jacobian), the parameters with their gradients and optimiser state, and a fixed overhead.

They are estimates of scale, not predictions of seconds or bytes: good to bound a request by a
limit, and to compare two configurations.
"""

from __future__ import annotations

import math

from flows.config import FlowConfig, LogDetEstimatorConfig, TrainConfig, polar_symmetry

__all__ = [
    "data_channels",
    "expanded_weights",
    "field_size",
    "forward_activations",
    "inverse_work",
    "scoring_work",
    "training_method",
    "training_step_bytes",
    "training_work",
]

# Terms of a convolution exponential's series for ||M|| <= 0.97 to reach 1e-12 (c^n / n!).
LINEAR_SERIES_TERMS = 16
BYTES_PER_VALUE = 4
# float32 values a training step keeps alive per counted activation: measured at 8 to 9 (peak
# resident memory of one step of C4 residual flows on 8x8 images, width 16-32, depth 2-8,
# batch 16: +35 MB per +0.8 M activations), which also predicted the 12.4 GB of the issue 12
# residual-heavy config; rounded up.
VALUES_KEPT_PER_ACTIVATION = 12
# Parameters, their gradients, Adam's two moments, the expanded filters and their gradients.
VALUES_PER_WEIGHT = 6
# The process before its first step: torch, escnn and its bases, the data set.
STEP_OVERHEAD_BYTES = 512 * 1024**2


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
    """Channels the blocks act on at each pixel (images), or of the whole point; padding
    channels of an augmented flow included."""
    return config.latent_dim if config.is_points else config.latent_shape[0]


def _spatial(config: FlowConfig) -> int:
    return 1 if config.is_points else config.data_shape[1] * config.data_shape[2]


def _kernel_area(config: FlowConfig) -> int:
    return 1 if config.is_points else config.kernel_size**2


def _hidden(config: FlowConfig) -> int:
    return config.width * field_size(config)


def _network_weights(config: FlowConfig, inputs: int, outputs: int, outer_only: bool) -> int:
    """Dense weights of a network inputs -> hidden x hidden_layers -> outputs.

    ``outer_only``: the kernel is used at the first and last layer only (residual branches),
    else at every layer (conditioners).
    """
    hidden, area = _hidden(config), _kernel_area(config)
    inner = (config.hidden_layers - 1) * hidden * hidden * (1 if outer_only else area)
    return (inputs + outputs) * hidden * area + inner


def _network_activations(config: FlowConfig, outputs: int) -> int:
    return _spatial(config) * (config.hidden_layers * _hidden(config) + outputs)


def _coupling_halves(config: FlowConfig, index: int) -> tuple[int, int]:
    """(kept, transformed) channel counts of the ``index``-th coupling block."""
    if config.coupling_split == "checkerboard":
        channels = data_channels(config)
        return channels, channels
    kept, transformed = config.coupling_fields(index)
    return len(kept), len(transformed)


def _nsf_outputs(config: FlowConfig) -> int:
    return data_channels(config) * (3 * config.spline_bins - 1)


def _nsf_weights(config: FlowConfig) -> int:
    """The G-NSF conditioner: (channels + mask) -> hidden (k x k) ... -> splines (head)."""
    hidden, area = _hidden(config), _kernel_area(config)
    inner = (config.hidden_layers - 1) * hidden * hidden * area
    head = hidden * _nsf_outputs(config) * config.spline_head_kernel**2
    return (data_channels(config) + 1) * hidden * area + inner + head


def _block_weights(config: FlowConfig, kind: str, index: int) -> int:
    channels = data_channels(config)
    if kind == "polar":
        return _polar_weights(config)
    if kind == "nsf":
        return _nsf_weights(config)
    if kind == "spline":
        return channels * (3 * config.spline_bins - 1)
    if kind == "residual":
        return _network_weights(config, channels, channels, outer_only=True)
    if kind == "coupling":
        kept, transformed = _coupling_halves(config, index)
        return _network_weights(config, kept, 2 * transformed, outer_only=False)
    if kind == "iaf":
        return _network_weights(config, channels, 2 * channels, outer_only=False)
    return channels * channels * _kernel_area(config)


def _block_activations(config: FlowConfig, kind: str, index: int) -> int:
    channels = data_channels(config)
    if kind == "polar":
        return _polar_activations(config)
    if kind == "nsf":
        return _network_activations(config, _nsf_outputs(config))
    if kind == "spline":
        return _spatial(config) * channels
    if kind == "residual":
        return _network_activations(config, channels)
    if kind == "coupling":
        _, transformed = _coupling_halves(config, index)
        return _network_activations(config, 2 * transformed)
    if kind == "iaf":
        return _network_activations(config, 2 * channels)
    return LINEAR_SERIES_TERMS * _spatial(config) * channels


def _polar_networks(config: FlowConfig) -> list[tuple[int, int]]:
    """(inputs, outputs) of a polar block's conditioner networks: the angular spline's (none for
    SO2/O2) and the radial spline's (whose input is the constant 1 for SO2/O2)."""
    angular, _ = polar_symmetry(config.group_kind, config.group_order)
    bins, harmonics = config.spline_bins, config.max_frequency
    radial = 3 * bins - 1
    if angular == "none":
        return [(1, radial)]
    derivatives = bins if angular == "circular" else bins + 1
    angle_features = 2 * harmonics if angular == "circular" else harmonics
    return [(1, 2 * bins + derivatives), (angle_features, radial)]


def _polar_weights(config: FlowConfig) -> int:
    """Weights and biases of a polar block's small dense networks."""
    hidden, layers = config.width, config.hidden_layers
    return sum(
        (inputs + 1) * hidden + (layers - 1) * (hidden + 1) * hidden + (hidden + 1) * outputs
        for inputs, outputs in _polar_networks(config)
    )


def _polar_activations(config: FlowConfig) -> int:
    return sum(
        config.hidden_layers * config.width + outputs for _, outputs in _polar_networks(config)
    )


def _padding_network(config: FlowConfig) -> tuple[int, int]:
    """(weights, activations per item) of an augmented flow's padding distribution."""
    if not config.is_augmented:
        return 0, 0
    observed = config.dim if config.is_points else config.data_shape[0]
    outputs = 2 * config.padding_channels
    weights = _network_weights(config, observed, outputs, outer_only=False)
    return weights, _network_activations(config, outputs)


def expanded_weights(config: FlowConfig) -> int:
    """Numbers in the expanded filters of every block's sub-network (and the padding's)."""
    blocks = sum(_block_weights(config, kind, index) for kind, index in config.block_plan)
    return blocks + _padding_network(config)[0]


def forward_activations(config: FlowConfig, batch: int) -> int:
    """Feature values of one forward pass of ``batch`` items, one pass through every block."""
    blocks = sum(_block_activations(config, kind, index) for kind, index in config.block_plan)
    return batch * (blocks + _padding_network(config)[1])


def training_step_bytes(config: FlowConfig, training: TrainConfig) -> int:
    """Bytes one training step needs at its peak (see the module's docstring).

    An exact residual log-det replicates each item ``D`` times through the block; the
    estimator's series terms reuse the one graph of the block (their vector-Jacobian products
    are not kept), which the constant per activation covers with the Neumann-gradient backward.
    """
    exact = training_method(config, training) == "exact"
    kept = _padding_network(config)[1]
    for kind, index in config.block_plan:
        rows = config.latent_dim if kind == "residual" and exact else 1
        kept += rows * _block_activations(config, kind, index)
    values = VALUES_KEPT_PER_ACTIVATION * training.batch_size * kept
    values += VALUES_PER_WEIGHT * expanded_weights(config)
    return BYTES_PER_VALUE * values + STEP_OVERHEAD_BYTES


def _expected_terms(estimator: LogDetEstimatorConfig, exact_terms: int) -> float:
    # Terms beyond the exact ones follow Geometric(p) on {0, 1, ...}, of mean (1 - p) / p.
    return exact_terms + (1.0 - estimator.geometric_p) / estimator.geometric_p


def _residual_passes(config: FlowConfig, method: str, training: bool) -> float:
    if method == "exact":
        return float(config.latent_dim)
    estimator = config.estimator
    if training:
        return 1.0 + _expected_terms(estimator, estimator.n_exact_terms)
    return estimator.eval_probes * (1.0 + _expected_terms(estimator, estimator.eval_exact_terms))


def _density_work(config: FlowConfig, batch: int, method: str, training: bool) -> float:
    """Feature values of one log-density pass of ``batch`` items (data -> latent)."""
    total = float(_padding_network(config)[1])
    for kind, index in config.block_plan:
        passes = 1.0
        if kind == "residual":
            passes = _residual_passes(config, method, training)
        elif kind == "iaf" and config.iaf_fast == "sampling":
            passes = float(config.iaf_block_count)
        total += passes * _block_activations(config, kind, index)
    return batch * total


def training_method(config: FlowConfig, training: TrainConfig) -> str:
    """The log-det method a run will use (as :mod:`flows.training` resolves it).

    Raises:
        ValueError: the method cannot serve this config (exact above ``exact_max_dim``).
    """
    return config.training_logdet_method(training.logdet)


def training_work(config: FlowConfig, training: TrainConfig) -> float:
    """Feature values computed by the whole run: steps x the work of a batch's log-density."""
    method = training_method(config, training)
    return training.steps * _density_work(config, training.batch_size, method, training=True)


def scoring_work(config: FlowConfig, count: int, method: str) -> float:
    """Feature values computed by scoring ``count`` items with the (resolved) ``method``,
    importance samples of an augmented flow's padding included."""
    samples = config.padding_eval_samples if config.is_augmented else 1
    return samples * _density_work(config, count, method, training=False)


def inverse_work(config: FlowConfig, n: int) -> float:
    """Feature values computed by inverting ``n`` items (sampling), residual blocks at their
    iteration cap and autoregressive blocks in their sequential direction."""
    total = 0.0
    for kind, index in config.block_plan:
        passes = 1.0
        if kind == "residual":
            passes = float(config.inverse_max_iter)
        elif kind == "iaf" and config.iaf_fast == "density":
            passes = float(config.iaf_block_count)
        total += passes * _block_activations(config, kind, index)
    return float(n * math.ceil(total))
