"""Metrics: bits per dimension, average group bpd and the equivariance error."""

from __future__ import annotations

import math
from typing import TypeVar

import torch
from torch import Tensor

from flows.flow import Flow, LogDetMethod
from flows.symmetry import exact_grid_subgroup, symmetries_for

__all__ = ["average_group_bpd", "bits_per_dim", "equivariance_error"]

LEVELS = 256
# Per-item tensors (scoring, validation) and plain floats (the training loss's running mean).
LogProb = TypeVar("LogProb", Tensor, float)


def bits_per_dim(log_prob: LogProb, dim: int, levels: int = LEVELS) -> LogProb:
    """bpd = -(log p(x) - D log 256) / (D ln 2), for a density of x in [0, 1]^D.

    log p(x) - D log 256 is the log-probability of the 8-bit image (under uniform dequantization,
    a lower bound in expectation); counting every transform's log-det is the caller's job.

    >>> round(bits_per_dim(0.0, 4), 6)  # the uniform density on [0, 1]^D: 8 bits per level
    8.0
    """
    return -(log_prob - dim * math.log(levels)) / (dim * math.log(2.0))


def _acting_elements(flow: Flow, group: str | None) -> tuple[str, list]:
    name = group or flow.config.group
    elements = symmetries_for(flow.config, name)
    if len(elements) < 2:
        subgroup = name if flow.config.is_points else exact_grid_subgroup(name)
        raise ValueError(
            f"group {name!r} has no element besides the identity that acts exactly on data "
            f"shaped {list(flow.data_shape)} (exact subgroup: {subgroup}); pass a group with "
            "such elements, e.g. group='D4' for images or 'D8' for points"
        )
    return name, elements


@torch.no_grad()
def average_group_bpd(flow: Flow, x: Tensor, group: str, method: LogDetMethod = "auto") -> float:
    """Mean bpd over g.x for every exact grid symmetry g of ``group`` and every item of x.

    On images only the subgroup that permutes pixels exactly is used
    (:func:`~flows.symmetry.exact_grid_subgroup`: C8 and C16 -> C4, D8 -> D4, SO2 -> C4,
    O2 -> D4). Points use the group's 2x2 matrices (12 sampled angles for SO2 / O2).

    Raises:
        ValueError: ``group`` has no exact element besides the identity on this data.
    """
    _, elements = _acting_elements(flow, group)
    values = [
        bits_per_dim(flow.log_prob(element(x), method=method), flow.dim).mean()
        for element in elements
    ]
    return float(torch.stack(values).mean())


@torch.no_grad()
def equivariance_error(
    flow: Flow, x: Tensor, group: str | None = None, method: LogDetMethod = "exact"
) -> float:
    """max over g and items of |log p(g.x) - log p(x)|, g: exact actions of ``group``.

    ``group`` defaults to the flow's own. On images only the subgroup that permutes pixels
    exactly is applied (:func:`~flows.symmetry.exact_grid_subgroup`: a C8, C16 or SO2 model is
    checked on C4, a D8 or O2 one on D4); points use the group's 2x2 matrices (12 sampled
    angles for SO2 / O2).

    Raises:
        ValueError: the group has no exact element besides the identity on this data (e.g. the
            trivial group, or C3 on a pixel grid), where the error would be a meaningless 0;
            measure a trivial baseline against the data's group instead.
    """
    _, elements = _acting_elements(flow, group)
    reference = flow.log_prob(x, method=method)
    errors = [
        (flow.log_prob(element(x), method=method) - reference).abs().max() for element in elements
    ]
    return float(torch.stack(errors).max())
