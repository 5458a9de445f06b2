r"""Equivariant linear layers whose operator norm is *certified* to be at most c < 1.

Each layer expands its steerable weights (escnn ``R2Conv`` / ``Linear``) into a dense filter W,
computes an upper bound B(W) on sigma(W) -- the operator norm of the whole map on the real input
size, zero padding included -- and uses W * min(1, c / B(W)). Because B(W) >= sigma(W) always,
sigma of the weight in use is at most c: a layer above its coefficient is impossible, not merely
unlikely. Scaling by a scalar commutes with every representation, so equivariance is untouched.

B is a deterministic, differentiable function of W (computed in float64), so a forward pass is a
pure function of the weights: there is no power-iteration state, train and eval mode agree, and a
checkpoint loads to exactly the function the run trained (mid-training checkpoints included).

How B is computed (see :meth:`LipschitzLayer.norm_bound`):

- linear maps of points and 1x1 convolutions: the exact spectral norm, from the largest
  eigenvalue of the smaller Gram matrix W W^T or W^T W (the 1x1 convolution's operator is
  W (x) I, whose norm is sigma(W) on any grid);
- k x k convolutions whose smaller side (channels times pixels) has at most
  :data:`EXACT_NORM_MAX_DIM` dimensions: the exact norm of the dense zero-padded operator, again
  from its smaller Gram matrix;
- larger convolutions: the circulant bound. A zero-padded 'same' convolution on an H x W grid is
  the restriction of the circular convolution on an N1 x N2 torus, N1 >= H + p, N2 >= W + p
  (p = k // 2; no tap wraps around onto the H x W window), so its norm is at most the circular
  one, max over the torus frequencies w of sigma(K^(w)) (Sedghi et al., The Singular Values of
  Convolutional Layers, 2019). The minimum over a few torus sizes is used. This bound exceeds the
  zero-padded norm by a few per cent on small grids (2-5 % measured at 8 x 8, less on larger
  grids), the price of certification without a dense matrix.

A power iteration is not a certificate: its estimate is a *lower* bound, and from a stored vector
it can stay inside one isotypic component of the group action, whose complement an equivariant
W^T W never reaches. :meth:`LipschitzLayer.measured_norm` (Lanczos from a fresh random vector) is
kept for auditing only.

In eval mode the rescaled filter is cached in a plain attribute (not a buffer), so the state
dict has the same keys in both modes -- unlike escnn's own layers, whose eval-mode cache is a
buffer. The inner escnn layer stays in train mode and only serves as the filter parametrisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from flows.groups import enn
from flows.steerable import SteerableConv2d, SteerableLayer, SteerableLinear

__all__ = [
    "EXACT_NORM_MAX_DIM",
    "LipschitzAudit",
    "LipschitzConv2d",
    "LipschitzLayer",
    "LipschitzLinear",
    "circulant_norm_bound",
    "dense_operator_norm",
    "spectral_norm",
]

# Largest Gram matrix (side) whose eigenvalues a k x k convolution's bound is computed from;
# eigvalsh of 256 x 256 takes ~10 ms on one CPU core, and it runs on every training step.
EXACT_NORM_MAX_DIM = 256
# Torus sizes N, N + 1, ... tried by the circulant bound (each one is a valid upper bound).
CIRCULANT_SIZES = 3
LANCZOS_STEPS = 100


def _largest_singular_value(gram: Tensor) -> Tensor:
    # clamp before sqrt: a zero map has a zero (not NaN) gradient.
    return torch.linalg.eigvalsh(gram)[-1].clamp_min(1e-30).sqrt()


def spectral_norm(matrix: Tensor) -> Tensor:
    """sigma_max of a real matrix, in float64, differentiable (from the smaller Gram matrix)."""
    m = matrix.double()
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    return _largest_singular_value(gram)


def circulant_norm_bound(weight: Tensor, grid_shape: tuple[int, int]) -> Tensor:
    """An upper bound on the norm of a zero-padded 'same' convolution on ``grid_shape``.

    max over torus frequencies of sigma(K^(w)), minimised over a few torus sizes N >= H + p (see
    the module docstring); float64, differentiable. ``rfft2`` places the kernel at the torus
    origin rather than centred, a phase factor per frequency that leaves singular values alone.
    """
    kernel = weight.shape[-1]
    padding = kernel // 2
    height, width = grid_shape
    bounds = []
    for extra in range(CIRCULANT_SIZES):
        size = (max(height + padding, kernel) + extra, max(width + padding, kernel) + extra)
        spectrum = torch.fft.rfft2(weight.double(), s=size)
        bounds.append(torch.linalg.matrix_norm(spectrum.permute(2, 3, 0, 1), ord=2).max())
    return torch.stack(bounds).min()


@dataclass(frozen=True)
class LipschitzAudit:
    """The Lipschitz layers of a model, checked from their weights alone.

    Attributes:
        coeff: the configured bound c.
        certified: the largest certified upper bound B over layers (at most c by construction).
        measured: the largest norm measured independently of B (exact where B is exact, else
            Lanczos from a fresh random vector: a lower bound of the true norm).
        layers: number of layers checked.
    """

    coeff: float
    certified: float
    measured: float
    layers: int

    @property
    def holds(self) -> bool:
        """Every layer's certified norm is at most c (up to float64 rounding of the bound)."""
        return self.certified <= self.coeff * (1.0 + 1e-6)


# (identity, in-place version, dtype, device) of the tensor a layer's bound is computed from.
WeightVersion = tuple[int, int, torch.dtype, torch.device]


class LipschitzLayer(SteerableLayer):
    """Mixin over a :class:`~flows.steerable.SteerableLayer`: the weight is rescaled to c / B.

    Concrete layers call :meth:`_init_bound` after building their steerable layer and implement
    :meth:`norm_bound`.
    """

    coeff: float
    input_shape: tuple[int, ...]

    def _init_bound(self, coeff: float, input_shape: tuple[int, ...]) -> None:
        if not coeff > 0.0:
            raise ValueError(f"lipschitz coefficient {coeff} must be positive")
        self.coeff = coeff
        self.input_shape = input_shape

    def norm_bound(self, weight: Tensor) -> Tensor:
        """B(W) >= sigma(W): a certified upper bound, float64 and differentiable in W."""
        raise NotImplementedError

    @property
    def bound_is_exact(self) -> bool:
        """Whether :meth:`norm_bound` is the exact norm (else the circulant upper bound)."""
        raise NotImplementedError

    def weight_version(self) -> WeightVersion:
        """A key that changes whenever the weight the bound is computed from may have: the escnn
        layer's coefficient tensor's identity (a replaced parameter), in-place version counter
        (optimiser steps, state loads, edits), dtype and device."""
        weights = self.escnn_layer().weights
        return (id(weights), weights._version, weights.dtype, weights.device)

    def transform_weight(self, weight: Tensor) -> Tensor:
        """W * min(1, c / B(W))."""
        scale = torch.clamp(self.norm_bound(weight) / self.coeff, min=1.0)
        return weight / scale.to(weight.dtype)

    @torch.no_grad()
    def certified_norm(self) -> float:
        """B of the weight forward uses now: an upper bound on its operator norm, <= c."""
        weight, _ = self.effective_parameters()
        return float(self.norm_bound(weight))

    @torch.no_grad()
    def measured_norm(self, seed: int = 0, steps: int = LANCZOS_STEPS) -> float:
        """The operator norm of the weight in use, measured without :meth:`norm_bound`'s formula.

        Lanczos on W^T W (float64, full re-orthogonalisation) from a fresh Gaussian vector drawn
        from ``seed``, never from stored state: a random start has a component in every
        isotypic subspace almost surely. The largest Ritz value is a lower bound of sigma^2 that
        converges fast; with ``steps`` >= the input dimension it is exact up to rounding.
        """
        weight, _ = self.effective_parameters()
        weight = weight.detach().double()
        n = math.prod(self.input_shape)
        steps = min(steps, n)
        generator = torch.Generator().manual_seed(seed)
        v = torch.randn(n, generator=generator, dtype=torch.float64).to(weight.device)
        basis = [v / v.norm()]
        alphas: list[Tensor] = []
        betas: list[Tensor] = []
        for step in range(steps):
            x = basis[-1].reshape(1, *self.input_shape)
            w = self.apply_adjoint(weight, self.apply_weight(weight, x)).reshape(-1)
            alphas.append(w @ basis[-1])
            stacked = torch.stack(basis)
            w = w - stacked.T @ (stacked @ w)
            w = w - stacked.T @ (stacked @ w)
            beta = w.norm()
            if step == steps - 1 or beta <= 1e-12 * alphas[0].abs().clamp_min(1e-300):
                break
            betas.append(beta)
            basis.append(w / beta)
        tridiagonal = torch.diag(torch.stack(alphas))
        if betas:
            off = torch.stack(betas)
            tridiagonal = tridiagonal + torch.diag(off, 1) + torch.diag(off, -1)
        return float(torch.linalg.eigvalsh(tridiagonal)[-1].clamp_min(0.0).sqrt())

    def audit_norm(self) -> float:
        """The exact norm where :meth:`norm_bound` is exact, else :meth:`measured_norm`."""
        return self.certified_norm() if self.bound_is_exact else self.measured_norm()


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
        self.grid_shape = tuple(grid_shape)
        self._init_bound(coeff, (in_type.size, *grid_shape))

    @property
    def _smaller_side(self) -> int:
        return min(self.in_type.size, self.out_type.size) * math.prod(self.grid_shape)

    @property
    def bound_is_exact(self) -> bool:
        return self.padding == 0 or self._smaller_side <= EXACT_NORM_MAX_DIM

    def norm_bound(self, weight: Tensor) -> Tensor:
        """Exact for 1x1 kernels and small operators, else :func:`circulant_norm_bound`."""
        if self.padding == 0:
            return spectral_norm(weight[:, :, 0, 0])
        if self._smaller_side <= EXACT_NORM_MAX_DIM:
            return self._dense_norm(weight.double())
        return circulant_norm_bound(weight, self.grid_shape)

    def _dense_norm(self, weight: Tensor) -> Tensor:
        # Rows (or columns) of the dense operator, from the smaller side's basis vectors.
        out_size, in_size = weight.shape[:2]
        side = in_size if in_size <= out_size else out_size
        n = side * math.prod(self.grid_shape)
        basis = torch.eye(n, dtype=weight.dtype, device=weight.device)
        basis = basis.reshape(n, side, *self.grid_shape)
        if in_size <= out_size:
            columns = self.apply_weight(weight, basis).reshape(n, -1)
        else:
            columns = self.apply_adjoint(weight, basis).reshape(n, -1)
        return _largest_singular_value(columns @ columns.T)


class LipschitzLinear(LipschitzLayer, SteerableLinear):
    """An equivariant linear map between fields on a point (escnn ``Linear``) with sigma <= c.

    Its bound is the exact spectral norm.
    """

    def __init__(
        self, in_type: enn.FieldType, out_type: enn.FieldType, coeff: float, bias: bool = True
    ) -> None:
        SteerableLinear.__init__(self, in_type, out_type, bias=bias)
        self._init_bound(coeff, (in_type.size,))

    @property
    def bound_is_exact(self) -> bool:
        return True

    def norm_bound(self, weight: Tensor) -> Tensor:
        return spectral_norm(weight)


def dense_operator_norm(layer: LipschitzLayer) -> float:
    """The exact operator norm of ``layer``'s effective linear map, from its dense matrix.

    Builds the full matrix by applying the map to every basis vector of the input (float64) and
    takes ``matrix_norm(ord=2)``: use on small inputs only (tests, diagnostics). Independent of
    the bound it checks.
    """
    with torch.no_grad():
        weight, _ = layer.effective_parameters()
        weight = weight.double()
        n = math.prod(layer.input_shape)
        basis = torch.eye(n, dtype=weight.dtype, device=weight.device)
        columns = layer.apply_weight(weight, basis.reshape(n, *layer.input_shape)).reshape(n, -1)
        return float(torch.linalg.matrix_norm(columns.T, ord=2))
