"""The interface every flow layer implements."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flows.groups import enn
from flows.logdet import LogDetContext

__all__ = ["EquivariantNet", "FlowLayer", "InverseInfo", "bounded_log_scale", "exported"]


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


class EquivariantNet(enn.SequentialModule):
    """An escnn sequential network that flow layers apply to plain tensors.

    It declares its ``in_type`` and ``out_type`` (those of its first and last module), wraps its
    input in ``in_type`` and returns its output's tensor. :meth:`export` (escnn's) returns the
    plain ``torch.nn.Sequential`` computing the same function with the same child names, so a
    layer holds either network and calls it the same way.
    """

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(enn.GeometricTensor(x, self.in_type)).tensor

    def check_equivariance(
        self, atol: float = 1e-6, rtol: float = 1e-5, grid: tuple[int, int] = (8, 8)
    ) -> list[tuple[Any, float]]:
        """escnn's check, on tensors: net(g.x) = g.net(x) for a random batch and every testing
        element g of the group that acts exactly (on images: rotations by multiples of 90
        degrees, which permute the pixels of a square ``grid``).

        Returns:
            (element, largest absolute error) per element checked.

        Raises:
            AssertionError: an error above ``atol + rtol * |g.net(x)|``.
        """
        spatial = grid if self.in_type.gspace.dimensionality == 2 else ()
        dtype = next(self.parameters()).dtype
        inputs = enn.GeometricTensor(
            torch.randn(3, self.in_type.size, *spatial, dtype=dtype), self.in_type
        )
        with torch.no_grad():
            outputs = enn.GeometricTensor(self(inputs.tensor), self.out_type)
            errors = []
            for element in self.in_type.testing_elements:
                if spatial and not _permutes_pixels(element):
                    continue
                expected = outputs.transform(element).tensor
                actual = self(inputs.transform(element).tensor)
                error = float((actual - expected).abs().max())
                assert torch.allclose(actual, expected, atol=atol, rtol=rtol), (element, error)
                errors.append((element, error))
        return errors


def exported(module: torch.nn.Module) -> torch.nn.Module:
    """An escnn module's plain-torch export; a module that is already plain torch as it is.

    (escnn's ``SequentialModule.export`` treats its children the same way, so exporting an
    exported layer or flow again gives the same function.)
    """
    return module.export() if isinstance(module, enn.EquivariantModule) else module


def _permutes_pixels(element: Any) -> bool:
    """True for a group element whose rotation is a multiple of 90 degrees."""
    value = element.to("radians")
    angle = value[1] if isinstance(value, tuple) else value
    return math.isclose(math.remainder(angle, math.pi / 2), 0.0, abs_tol=1e-9)


def bounded_log_scale(raw: Tensor, bound: float) -> Tensor:
    """bound * tanh(raw / bound): a log-scale in (-bound, bound), the identity near 0."""
    return bound * torch.tanh(raw / bound)
