"""Parameter budgets: count a flow's parameters and pick the width that fits a budget."""

from __future__ import annotations

from flows import Flow, FlowConfig, build_flow

__all__ = ["count_parameters", "parameters_at_width", "widest_within", "width_for_budget"]

MAX_WIDTH = 512


def count_parameters(flow: Flow) -> int:
    """Trainable scalars: escnn's basis coefficients, biases and ActNorm, not expanded filters."""
    return sum(parameter.numel() for parameter in flow.parameters() if parameter.requires_grad)


def parameters_at_width(config: FlowConfig, width: int) -> int:
    """The parameter count of ``config`` with its width replaced by ``width``."""
    return count_parameters(build_flow(config.model_copy(update={"width": width})))


def width_for_budget(config: FlowConfig, budget: int) -> tuple[int, int]:
    """The width whose parameter count is closest to ``budget``, and that count.

    The count grows with the width. Doubling from 1 brackets the budget without ever building a
    model much larger than it (wide escnn layers are slow to build), then bisection finds the
    first width at or above it; ties go to the smaller model.
    """
    high = 1
    while parameters_at_width(config, high) < budget and high < MAX_WIDTH:
        high = min(2 * high, MAX_WIDTH)
    if high == 1:
        return 1, parameters_at_width(config, 1)
    low = high // 2
    while high - low > 1:
        middle = (low + high) // 2
        if parameters_at_width(config, middle) >= budget:
            high = middle
        else:
            low = middle
    below, above = parameters_at_width(config, low), parameters_at_width(config, high)
    return (low, below) if budget - below <= above - budget else (high, above)


def widest_within(config: FlowConfig, cap: int) -> tuple[int, int]:
    """The largest width whose parameter count is at most ``cap``, and that count.

    Raises:
        ValueError: even width 1 has more than ``cap`` parameters.
    """
    low = 1
    if parameters_at_width(config, low) > cap:
        raise ValueError(
            f"group {config.group} at width 1 already has {parameters_at_width(config, 1)} "
            f"parameters, above the cap of {cap}"
        )
    high = 2
    while high <= MAX_WIDTH and parameters_at_width(config, high) <= cap:
        low, high = high, 2 * high
    high = min(high, MAX_WIDTH + 1)
    while high - low > 1:
        middle = (low + high) // 2
        if parameters_at_width(config, middle) <= cap:
            low = middle
        else:
            high = middle
    return low, parameters_at_width(config, low)
