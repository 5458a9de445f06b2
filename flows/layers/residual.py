"""G-residual blocks: y = x + g(x) with g equivariant and Lip(g) < 1 (an invertible i-ResNet)."""

from __future__ import annotations

import torch
from torch import Tensor

from flows.errors import InverseNotConverged
from flows.groups import enn
from flows.layers.base import FlowLayer, InverseInfo, run_net
from flows.lipschitz import LipschitzLayer
from flows.logdet import LogDetContext, estimate_residual_logdet, exact_residual_logdet

__all__ = ["ResidualBlock"]


class ResidualBlock(FlowLayer):
    r"""An equivariant invertible residual block (Behrmann et al., 2019; Bose & Kobyzev, 2021).

    y = x + g(x). If g is G-equivariant so is the block; if Lip(g) < 1 the block is invertible and
    its inverse is the fixed point of x = y - g(x), whose error shrinks like Lip(g)^n.

    Arguments:
        net: the sub-network, an escnn module from the data type to itself (or, after
            :meth:`export`, a plain torch module on tensors).
        data_type: the data's field type; None for an exported block.
        atol: inverse tolerance on max |x_{n+1} - x_n|.
        max_iter: iterations after which the inverse gives up with :class:`InverseNotConverged`.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        data_type: enn.FieldType | None,
        atol: float,
        max_iter: int,
    ) -> None:
        super().__init__()
        self.net = net
        self.data_type = data_type
        self.atol = atol
        self.max_iter = max_iter

    def g(self, x: Tensor) -> Tensor:
        """The residual branch on plain tensors."""
        return run_net(self.net, self.data_type, x)

    def forward(self, x: Tensor, ctx: LogDetContext) -> tuple[Tensor, Tensor]:
        if ctx.method == "exact":
            gx, logdet = exact_residual_logdet(self.g, x, ctx.differentiable)
        else:
            gx, logdet, variance = estimate_residual_logdet(self.g, x, ctx)
            if variance is not None:
                ctx.add_variance(variance)
        return x + gx, logdet

    @torch.no_grad()
    def inverse_with_info(self, y: Tensor) -> tuple[Tensor, InverseInfo | None]:
        x = y - self.g(y)
        residual = float("inf")
        for iteration in range(1, self.max_iter + 1):
            following = y - self.g(x)
            residual = float((following - x).abs().max()) if x.numel() else 0.0
            x = following
            if residual <= self.atol:
                return x, InverseInfo(iterations=iteration, residual=residual)
        raise InverseNotConverged(self.max_iter, residual, self.atol)

    def lipschitz_layers(self) -> list[LipschitzLayer]:
        return [m for m in self.net.modules() if isinstance(m, LipschitzLayer)]

    def export(self) -> ResidualBlock:
        """The same block with its sub-network exported to plain torch modules."""
        if self.data_type is None:
            return self
        return ResidualBlock(self.net.export(), None, self.atol, self.max_iter)
