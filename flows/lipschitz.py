"""Equivariant linear layers whose operator norm is bounded by a coefficient c < 1.

Each layer expands its steerable weights (escnn ``R2Conv`` / ``Linear``) into a dense filter W,
estimates sigma(W) -- the operator norm of the *whole* map on the real input size, zero padding
included -- by power iteration with the map and its adjoint, and uses W * min(1, c / sigma).
Scaling by a scalar commutes with every representation, so equivariance is untouched.

The power-iteration vector is a buffer and is only advanced by :meth:`power_iteration` (called
by the trainer once per step) or :meth:`refresh` (to convergence, before serving): a forward pass
is a pure function of the weights and that buffer, so train and eval mode give the same output
and two forwards never differ. (torch's ``spectral_norm`` reshapes a conv kernel into a matrix,
which does not bound the conv's operator norm.)

In eval mode the rescaled filter is cached in a plain attribute (not a buffer), so the state
dict has the same keys in both modes -- unlike escnn's own layers, whose eval-mode cache is a
buffer. The inner escnn layer stays in train mode and only serves as the filter parametrisation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flows.groups import enn
from flows.steerable import SteerableConv2d, SteerableLayer, SteerableLinear

__all__ = ["LipschitzConv2d", "LipschitzLayer", "LipschitzLinear"]


class LipschitzLayer(SteerableLayer):
    """Mixin over a :class:`~flows.steerable.SteerableLayer`: the weight is rescaled to c / sigma.

    Concrete layers call :meth:`_init_bound` after building their steerable layer.
    """

    coeff: float
    u: Tensor

    def _init_bound(self, coeff: float, vector_shape: tuple[int, ...]) -> None:
        if not coeff > 0.0:
            raise ValueError(f"lipschitz coefficient {coeff} must be positive")
        self.coeff = coeff
        u = torch.randn(*vector_shape)
        self.register_buffer("u", u / u.norm())

    def sigma(self, weight: Tensor) -> Tensor:
        """Power-iteration estimate of sigma(W) from the stored vector (differentiable in W)."""
        return self.apply_weight(weight, self.u).norm()

    def transform_weight(self, weight: Tensor) -> Tensor:
        """W * min(1, c / sigma)."""
        return weight / torch.clamp(self.sigma(weight) / self.coeff, min=1.0)

    @torch.no_grad()
    def power_iteration(self, n_iter: int = 1) -> float:
        """Advances the power-iteration vector ``n_iter`` steps; returns the raw sigma estimate."""
        weight, _ = self.raw_parameters()
        u = self.u
        for _ in range(n_iter):
            u = self.apply_adjoint(weight, self.apply_weight(weight, u))
            u = u / u.norm().clamp_min(1e-30)
        self.u.copy_(u)
        self._cache = None
        return float(self.apply_weight(weight, self.u).norm())

    @torch.no_grad()
    def refresh(self, rtol: float = 1e-7, max_iter: int = 5000) -> float:
        """Runs power iteration until sigma changes by less than ``rtol`` (relative).

        Returns:
            sigma of the *effective* (rescaled) weight, which is at most ``coeff`` up to the
            convergence tolerance.
        """
        previous = self.power_iteration(1)
        for _ in range(max_iter):
            current = self.power_iteration(1)
            if abs(current - previous) <= rtol * max(current, 1e-30):
                break
            previous = current
        return min(current, self.coeff)

    @torch.no_grad()
    def converged_sigma(self, rtol: float = 1e-6, max_iter: int = 5000) -> float:
        """sigma of the weight forward uses now, by power iteration on a copy of the vector.

        Unlike :meth:`refresh` this changes nothing, so it can audit a loaded model.
        """
        weight, _ = self.effective_parameters()
        u, previous = self.u.clone(), 0.0
        for _ in range(max_iter):
            u = self.apply_adjoint(weight, self.apply_weight(weight, u))
            u = u / u.norm().clamp_min(1e-30)
            current = float(self.apply_weight(weight, u).norm())
            if abs(current - previous) <= rtol * max(current, 1e-30):
                break
            previous = current
        return current

    @torch.no_grad()
    def effective_sigma(self) -> float:
        """sigma of the weight used by forward, estimated from the stored vector."""
        weight, _ = self.effective_parameters()
        return float(self.sigma(weight))


class LipschitzConv2d(LipschitzLayer, SteerableConv2d):
    """A steerable convolution (escnn ``R2Conv``, zero 'same' padding) with sigma(W) <= c.

    Arguments:
        in_type: input field type.
        out_type: output field type.
        kernel_size: odd kernel size.
        grid_shape: (H, W) of the input, on which the operator norm is measured.
        coeff: the Lipschitz bound c.
        bias: whether to learn a bias (only on trivial sub-representations, per escnn).
    """

    def __init__(
        self,
        in_type: enn.FieldType,
        out_type: enn.FieldType,
        kernel_size: int,
        grid_shape: tuple[int, int],
        coeff: float,
        bias: bool = True,
    ) -> None:
        SteerableConv2d.__init__(self, in_type, out_type, kernel_size, bias=bias)
        self._init_bound(coeff, (1, in_type.size, *grid_shape))


class LipschitzLinear(LipschitzLayer, SteerableLinear):
    """An equivariant linear map between fields on a point (escnn ``Linear``) with sigma <= c."""

    def __init__(
        self, in_type: enn.FieldType, out_type: enn.FieldType, coeff: float, bias: bool = True
    ) -> None:
        SteerableLinear.__init__(self, in_type, out_type, bias=bias)
        self._init_bound(coeff, (in_type.size,))


def dense_operator_norm(layer: LipschitzLayer) -> float:
    """The exact operator norm of ``layer``'s effective linear map, from its dense matrix.

    Builds the full matrix by applying the map to every basis vector of the input: use on small
    inputs only (tests, diagnostics). Independent of the power iteration it checks.
    """
    with torch.no_grad():
        weight, _ = layer.effective_parameters()
        shape = layer.u.shape
        n = math.prod(shape)
        basis = torch.eye(n, dtype=weight.dtype, device=weight.device)
        columns = [
            layer.apply_weight(weight, basis[i].reshape(shape)).reshape(-1) for i in range(n)
        ]
        matrix = torch.stack(columns, dim=1)
        return float(torch.linalg.matrix_norm(matrix, ord=2))
