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

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from flows.groups import enn

__all__ = ["LipschitzConv2d", "LipschitzLayer", "LipschitzLinear"]


class LipschitzLayer(enn.EquivariantModule):
    """Base class: an equivariant linear map with a Lipschitz bound on its expanded weights."""

    def __init__(self, coeff: float) -> None:
        super().__init__()
        if not coeff > 0.0:
            raise ValueError(f"lipschitz coefficient {coeff} must be positive")
        self.coeff = coeff
        self._cache: tuple[Tensor, Tensor | None] | None = None

    # -- subclasses implement the map and its adjoint for a given dense weight -------------------
    def raw_parameters(self) -> tuple[Tensor, Tensor | None]:
        """The expanded (unscaled) weight and bias of the steerable layer."""
        raise NotImplementedError

    def apply_weight(self, weight: Tensor, vector: Tensor) -> Tensor:
        """The linear part of the layer, W v, on a single input-shaped vector."""
        raise NotImplementedError

    def apply_adjoint(self, weight: Tensor, vector: Tensor) -> Tensor:
        """The adjoint map, W^T v, on a single output-shaped vector."""
        raise NotImplementedError

    def apply_layer(self, weight: Tensor, bias: Tensor | None, x: Tensor) -> Tensor:
        """The affine layer on a batch of plain tensors."""
        raise NotImplementedError

    # ---------------------------------------------------------------------------------------------
    def sigma(self, weight: Tensor) -> Tensor:
        """Power-iteration estimate of sigma(W) from the stored vector (differentiable in W)."""
        return self.apply_weight(weight, self.u).norm()

    def effective_parameters(self) -> tuple[Tensor, Tensor | None]:
        """The rescaled weight W * min(1, c / sigma) and the bias, as used by forward."""
        if not self.training and self._cache is not None:
            return self._cache
        weight, bias = self.raw_parameters()
        sigma = self.sigma(weight)
        weight = weight / torch.clamp(sigma / self.coeff, min=1.0)
        if not self.training:
            self._cache = (weight.detach(), None if bias is None else bias.detach())
        return weight, bias

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

    def clear_cache(self) -> None:
        self._cache = None

    def train(self, mode: bool = True) -> LipschitzLayer:
        # The inner escnn layer is kept in train mode on purpose (see the module docstring).
        self.training = mode
        self._cache = None
        return self

    def _apply(self, fn, recurse: bool = True):  # type: ignore[no-untyped-def]
        self._cache = None
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self._cache = None
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, x: enn.GeometricTensor) -> enn.GeometricTensor:
        if x.type != self.in_type:
            raise TypeError(f"input of type {x.type} where {self.in_type} was expected")
        weight, bias = self.effective_parameters()
        return enn.GeometricTensor(self.apply_layer(weight, bias, x.tensor), self.out_type)


def _own_basis(layer: enn.EquivariantModule) -> None:
    """Gives ``layer`` private copies of its sampled bases.

    escnn caches each sampled basis module process-wide and shares it between every layer with
    the same types, so ``.double()`` or ``.to("cuda")`` on one model would silently convert the
    basis buffers of every other model in the process (the service caches several).
    """
    expansion = layer.basisexpansion
    for name, child in list(expansion.named_children()):
        if name.startswith("block_expansion_"):
            setattr(expansion, name, copy.deepcopy(child))


def _init_weights(layer: enn.EquivariantModule) -> None:
    # He initialisation is slow for wide layers; the cached variant computes the variances once
    # per basis and reuses them for every layer of the same types.
    enn.init.generalized_he_init(layer.weights.data, layer.basisexpansion, cache=True)


class LipschitzConv2d(LipschitzLayer):
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
        super().__init__(coeff)
        self.in_type, self.out_type = in_type, out_type
        self.padding = kernel_size // 2
        self.conv = enn.R2Conv(
            in_type, out_type, kernel_size, padding=self.padding, bias=bias, initialize=False
        )
        _own_basis(self.conv)
        _init_weights(self.conv)
        u = torch.randn(1, in_type.size, *grid_shape)
        self.register_buffer("u", u / u.norm())

    def raw_parameters(self) -> tuple[Tensor, Tensor | None]:
        return self.conv.expand_parameters()

    def apply_weight(self, weight: Tensor, vector: Tensor) -> Tensor:
        return F.conv2d(vector, weight, padding=self.padding)

    def apply_adjoint(self, weight: Tensor, vector: Tensor) -> Tensor:
        return F.conv_transpose2d(vector, weight, padding=self.padding)

    def apply_layer(self, weight: Tensor, bias: Tensor | None, x: Tensor) -> Tensor:
        return F.conv2d(x, weight, bias, padding=self.padding)

    def evaluate_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (input_shape[0], self.out_type.size, *input_shape[2:])

    def export(self) -> torch.nn.Conv2d:
        """A plain ``torch.nn.Conv2d`` computing exactly this layer's current forward."""
        weight, bias = self.effective_parameters()
        conv = torch.nn.Conv2d(
            self.in_type.size,
            self.out_type.size,
            weight.shape[-1],
            padding=self.padding,
            bias=bias is not None,
        )
        conv.weight.data = weight.detach().clone()
        if bias is not None:
            conv.bias.data = bias.detach().clone()
        return conv.to(weight.device)


class LipschitzLinear(LipschitzLayer):
    """An equivariant linear map between fields on a point (escnn ``Linear``) with sigma <= c."""

    def __init__(
        self, in_type: enn.FieldType, out_type: enn.FieldType, coeff: float, bias: bool = True
    ) -> None:
        super().__init__(coeff)
        self.in_type, self.out_type = in_type, out_type
        self.linear = enn.Linear(in_type, out_type, bias=bias, initialize=False)
        _own_basis(self.linear)
        _init_weights(self.linear)
        u = torch.randn(in_type.size)
        self.register_buffer("u", u / u.norm())

    def raw_parameters(self) -> tuple[Tensor, Tensor | None]:
        return self.linear.expand_parameters()

    def apply_weight(self, weight: Tensor, vector: Tensor) -> Tensor:
        return weight @ vector

    def apply_adjoint(self, weight: Tensor, vector: Tensor) -> Tensor:
        return weight.t() @ vector

    def apply_layer(self, weight: Tensor, bias: Tensor | None, x: Tensor) -> Tensor:
        return F.linear(x, weight, bias)

    def evaluate_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (input_shape[0], self.out_type.size)

    def export(self) -> torch.nn.Linear:
        """A plain ``torch.nn.Linear`` computing exactly this layer's current forward."""
        weight, bias = self.effective_parameters()
        linear = torch.nn.Linear(self.in_type.size, self.out_type.size, bias=bias is not None)
        linear.weight.data = weight.detach().clone()
        if bias is not None:
            linear.bias.data = bias.detach().clone()
        return linear.to(weight.device)


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
