"""The logit transform that maps images in [0, 1] to the real line."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from flows.layers.base import FlowLayer, InverseInfo
from flows.logdet import LogDetContext

__all__ = ["LogitTransform"]


class LogitTransform(FlowLayer):
    r"""y = logit(alpha + (1 - 2 alpha) x), applied pixel by pixel (hence equivariant).

    log|det| = sum_i log(1 - 2 alpha) - log(s_i) - log(1 - s_i) with s = alpha + (1 - 2 alpha) x.
    References: Dinh et al., Density estimation using Real NVP (2017).
    """

    def __init__(self, alpha: float) -> None:
        super().__init__()
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"logit alpha {alpha} must be in [0, 0.5)")
        self.alpha = alpha

    def forward(self, x: Tensor, ctx: LogDetContext) -> tuple[Tensor, Tensor]:
        s = self.alpha + (1.0 - 2.0 * self.alpha) * x
        y = torch.log(s) - torch.log1p(-s)
        # log s + log(1 - s) = -softplus(-y) - softplus(y): stable at the ends of [0, 1].
        per_pixel = math.log1p(-2.0 * self.alpha) + F.softplus(-y) + F.softplus(y)
        return y, per_pixel.reshape(x.shape[0], -1).sum(1)

    def inverse_with_info(self, y: Tensor) -> tuple[Tensor, InverseInfo | None]:
        return (torch.sigmoid(y) - self.alpha) / (1.0 - 2.0 * self.alpha), None
