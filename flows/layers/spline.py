"""Monotone rational-quadratic spline layers that are exactly G-equivariant on images.

Both layers transform scalar fields (channels on which the group only moves pixels) elementwise
with a monotone rational-quadratic spline (:mod:`flows.splines`), so a pixel permutation P
satisfies f(Px) = P f(x) whenever the spline parameters move along with the pixels.

- :class:`ElementwiseSpline`: one spline per channel, shared by all the channel's pixels.
  log|det J| = sum over pixels of log f_c'(x_{c,ij}).
- :class:`SplineCoupling` (the G-NSF block): the pixels are split by a *G-invariant* mask (a
  union of orbits of the grid's symmetry group, see :func:`orbit_mask`); the kept pixels pass
  unchanged, and an equivariant steerable CNN maps them to K-bin spline parameters for every
  transformed pixel as trivial (scalar) fields. Because the mask is invariant, masking commutes
  with every grid symmetry g; because the conditioner is equivariant and its outputs are scalar
  fields, the parameters at g.p are those at p. Hence f(g.x) = g.f(x) exactly, and
  log|det J| = sum over transformed pixels of log f_{ij}'(x_{ij}) (the Jacobian is block
  triangular).

References: Durkan et al., Neural Spline Flows (2019); Bose & Kobyzev, Equivariant Finite
Normalizing Flows (2021).
"""

from __future__ import annotations

import torch
from torch import Tensor

from flows.layers.base import FlowLayer, InverseInfo, exported
from flows.logdet import LogDetContext
from flows.splines import rq_spline, rq_spline_inverse

__all__ = ["ElementwiseSpline", "SplineCoupling", "orbit_mask", "spline_parameter_count"]


def spline_parameter_count(bins: int) -> int:
    """Unnormalised widths (K), heights (K) and inner knot derivatives (K - 1) of one spline."""
    return 3 * bins - 1


def _split_parameters(raw: Tensor, bins: int) -> tuple[Tensor, Tensor, Tensor]:
    return raw[..., :bins], raw[..., bins : 2 * bins], raw[..., 2 * bins :]


def orbit_mask(height: int, width: int, parity: int) -> Tensor:
    r"""A (1, 1, H, W) 0/1 mask, invariant under every symmetry of the grid, that is 1 where
    (d_i + d_j) % 2 == parity, with d_i = \lfloor |2i - (H - 1)| / 2 \rfloor.

    d_i is the ring index of row i counted from the centre, so it is unchanged by the vertical
    flip i -> H-1-i; a transpose swaps d_i and d_j, which leaves their sum unchanged. The mask is
    therefore a union of orbits of the grid's symmetry group (D4 on a square grid): a
    checkerboard in each quadrant, mirrored across the central axes. (An ordinary checkerboard
    is not invariant: a 90-degree rotation of an even grid swaps its colours.)
    """
    rows = (torch.arange(height) * 2 - (height - 1)).abs() // 2
    columns = (torch.arange(width) * 2 - (width - 1)).abs() // 2
    mask = (rows.unsqueeze(1) + columns.unsqueeze(0)) % 2 == parity
    return mask.to(torch.get_default_dtype())[None, None]


class ElementwiseSpline(FlowLayer):
    """y_{c,ij} = f_c(x_{c,ij}): one monotone spline per channel (a scalar field), shared by the
    channel's pixels, with identity tails outside [-bound, bound].

    Arguments:
        channels: number of channels (scalar fields) of the data.
        bins: number of spline bins K.
        bound: the spline acts on [-bound, bound].
    """

    def __init__(self, channels: int, bins: int, bound: float) -> None:
        super().__init__()
        self.bins, self.bound = bins, bound
        # Zeros give equal bins and unit knot derivatives: the identity at initialisation.
        self.raw = torch.nn.Parameter(torch.zeros(channels, spline_parameter_count(bins)))

    def _parameters_like(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        raw = self.raw.reshape(1, self.raw.shape[0], *([1] * (x.dim() - 2)), -1)
        raw = raw.expand(*x.shape, -1)
        return _split_parameters(raw, self.bins)

    def forward(self, x: Tensor, ctx: LogDetContext) -> tuple[Tensor, Tensor]:
        y, log_derivative = rq_spline(x, *self._parameters_like(x), self.bound)
        return y, log_derivative.reshape(x.shape[0], -1).sum(1)

    def inverse_with_info(self, y: Tensor) -> tuple[Tensor, InverseInfo | None]:
        x, _ = rq_spline_inverse(y, *self._parameters_like(y), self.bound)
        return x, None


class SplineCoupling(FlowLayer):
    """Spline coupling of the pixels where ``mask`` is 0, conditioned on those where it is 1.

    Arguments:
        net: an :class:`~flows.layers.base.EquivariantNet` from the data's fields and one
            trivial field holding the mask to ``channels * (3K - 1)`` trivial fields; or its
            export.
        mask: (1, 1, H, W) G-invariant 0/1 mask of the kept pixels (see :func:`orbit_mask`).
        bins: number of spline bins K.
        bound: each spline acts on [-bound, bound] (identity tails outside).
    """

    def __init__(
        self,
        net: torch.nn.Module,
        mask: Tensor,
        bins: int,
        bound: float,
    ) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mask", mask)
        # The splines are evaluated on the transformed pixels only (half the work).
        moved = torch.nonzero(mask.reshape(-1) == 0).reshape(-1)
        self.register_buffer("moved", moved)
        self.bins, self.bound = bins, bound

    def _spline_parameters(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Each transformed pixel's parameters, shaped (B, C, transformed pixels, 3K - 1)."""
        mask = self.mask.to(x.dtype)
        inputs = torch.cat([x * mask, mask.expand(x.shape[0], 1, *x.shape[2:])], dim=1)
        raw = self.net(inputs)
        batch, channels = x.shape[:2]
        raw = raw.reshape(batch, channels, -1, x.shape[2] * x.shape[3])
        raw = raw.index_select(3, self.moved).transpose(2, 3).contiguous()
        return _split_parameters(raw, self.bins)

    def _moved_pixels(self, x: Tensor) -> Tensor:
        return x.reshape(*x.shape[:2], -1).index_select(2, self.moved)

    def _put_back(self, x: Tensor, moved: Tensor) -> Tensor:
        flat = x.reshape(*x.shape[:2], -1).index_copy(2, self.moved, moved)
        return flat.reshape(x.shape)

    def forward(self, x: Tensor, ctx: LogDetContext) -> tuple[Tensor, Tensor]:
        moved, log_derivative = rq_spline(
            self._moved_pixels(x), *self._spline_parameters(x), self.bound
        )
        return self._put_back(x, moved), log_derivative.reshape(x.shape[0], -1).sum(1)

    def inverse_with_info(self, y: Tensor) -> tuple[Tensor, InverseInfo | None]:
        # The kept pixels are unchanged, so the conditioner sees the same input as in forward.
        restored, _ = rq_spline_inverse(
            self._moved_pixels(y), *self._spline_parameters(y), self.bound
        )
        return self._put_back(y, restored), None

    def export(self) -> SplineCoupling:
        """The same layer around the network's plain-torch export."""
        return SplineCoupling(exported(self.net), self.mask, self.bins, self.bound)
