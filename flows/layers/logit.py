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

    Arguments:
        alpha: the squeeze of [0, 1] away from its ends.
        channels: transform only the first ``channels`` channels (the image's; padding channels
            of an augmented flow are real-valued already); None: all.
    """

    def __init__(self, alpha: float, channels: int | None = None) -> None:
        super().__init__()
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"logit alpha {alpha} must be in [0, 0.5)")
        self.alpha = alpha
        self.channels = channels

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.channels is None or self.channels == x.shape[1]:
            return x, None
        return x[:, : self.channels], x[:, self.channels :]

    def forward(self, x: Tensor, ctx: LogDetContext) -> tuple[Tensor, Tensor]:
        image, rest = self._split(x)
        s = self.alpha + (1.0 - 2.0 * self.alpha) * image
        y = torch.log(s) - torch.log1p(-s)
        # log s + log(1 - s) = -softplus(-y) - softplus(y): stable at the ends of [0, 1].
        per_pixel = math.log1p(-2.0 * self.alpha) + F.softplus(-y) + F.softplus(y)
        logdet = per_pixel.reshape(x.shape[0], -1).sum(1)
        return (y if rest is None else torch.cat([y, rest], 1)), logdet

    def inverse_with_info(self, y: Tensor) -> tuple[Tensor, InverseInfo | None]:
        logits, rest = self._split(y)
        image = (torch.sigmoid(logits) - self.alpha) / (1.0 - 2.0 * self.alpha)
        return (image if rest is None else torch.cat([image, rest], 1)), None
