"""Metrics: bits per dimension, average group bpd and the equivariance error."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flows.flow import Flow, LogDetMethod
from flows.symmetry import symmetries_for

__all__ = ["average_group_bpd", "bits_per_dim", "equivariance_error"]

LEVELS = 256


def bits_per_dim(log_prob: Tensor, dim: int, levels: int = LEVELS) -> Tensor:
    """bpd = -(log p(x) - D log 256) / (D ln 2), for a density of x in [0, 1]^D.

    log p(x) - D log 256 is the log-probability of the 8-bit image (under uniform dequantization,
    a lower bound in expectation); counting every transform's log-det is the caller's job.
    """
    return -(log_prob - dim * math.log(levels)) / (dim * math.log(2.0))


@torch.no_grad()
def average_group_bpd(flow: Flow, x: Tensor, group: str, method: LogDetMethod = "auto") -> float:
    """Mean bpd over g.x for every exact grid symmetry g of ``group`` and every item of x."""
    values = [
        bits_per_dim(flow.log_prob(element(x), method=method), flow.dim).mean()
        for element in symmetries_for(flow.config, group)
    ]
    return float(torch.stack(values).mean())


@torch.no_grad()
def equivariance_error(
    flow: Flow, x: Tensor, group: str | None = None, method: LogDetMethod = "exact"
) -> float:
    """max over g and items of |log p(g.x) - log p(x)| (g: exact actions of ``group``)."""
    reference = flow.log_prob(x, method=method)
    errors = [
        (flow.log_prob(element(x), method=method) - reference).abs().max()
        for element in symmetries_for(flow.config, group)
    ]
    return float(torch.stack(errors).max())
