"""The interface every flow layer implements."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flows.groups import enn
from flows.logdet import LogDetContext

__all__ = ["FlowLayer", "InverseInfo", "bounded_log_scale", "run_net"]


@dataclass(frozen=True)
class InverseInfo:
    """How an iterative inverse ended.

    Attributes:
        iterations: fixed-point iterations used.
        step: max over items of the last step's size ||x_n - x_{n-1}||_2.
        error_bound: max over items of the certified bound on ||x_n - f^-1(y)||_2,
            ``step * lipschitz / (1 - lipschitz)`` (see :class:`~flows.layers.ResidualBlock`).
        lipschitz: the certified Lipschitz constant of the residual branch used in the bound.
        item_error_bounds: each item's certified bound, shape (batch,), where the layer
            reports it (items stop iterating once their own bound meets their tolerance).
        item_iterations: each item's iterations, shape (batch,), where reported.
    """

    iterations: int
    step: float
    error_bound: float
    lipschitz: float
    item_error_bounds: Tensor | None = None
    item_iterations: Tensor | None = None


class FlowLayer(torch.nn.Module):
    """An invertible map of tensors shaped like the data, with its log|det J| per item."""

    def forward(self, x: Tensor, ctx: LogDetContext) -> tuple[Tensor, Tensor]:
        """Returns (y, log|det dy/dx|) with the log-det of shape (batch,)."""
        raise NotImplementedError

    def inverse(self, y: Tensor) -> Tensor:
        """The exact inverse (or iterative to a tolerance; see :meth:`inverse_with_info`)."""
        return self.inverse_with_info(y)[0]

    def inverse_with_info(self, y: Tensor) -> tuple[Tensor, InverseInfo | None]:
        """The inverse and, for iterative inverses, how it converged (None if analytic)."""
        raise NotImplementedError

    def export(self) -> FlowLayer:
        """The same layer with escnn sub-networks turned into plain torch modules (for serving).

        Layers without escnn sub-networks return themselves.
        """
        return self


def run_net(net: torch.nn.Module, in_type: enn.FieldType | None, x: Tensor) -> Tensor:
    """Applies an escnn network (``in_type`` given) or its export (``in_type`` None) to x."""
    if in_type is None:
        return net(x)
    return net(enn.GeometricTensor(x, in_type)).tensor


def bounded_log_scale(raw: Tensor, bound: float) -> Tensor:
    """bound * tanh(raw / bound): a log-scale in (-bound, bound), the identity near 0."""
    return bound * torch.tanh(raw / bound)
