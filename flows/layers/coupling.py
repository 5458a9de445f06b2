"""G-affine coupling layers (RealNVP-style) with equivariant scale and translation networks.

Field split (exact): y_a = x_a, y_b = x_b * exp(s(x_a)) + t(x_a), log|det J| = sum s(x_a), where
x_b is a set of scalar fields (a permutation representation: the group moves pixels) and s, t
are G-equivariant networks from x_a's type to x_b's. A permutation P satisfies
P(u * v) = Pu * Pv and exp acts elementwise, so the layer is G-equivariant.

Checkerboard split (the paper's "soft" variant for its CIFAR ablation): the same affine map on
the pixels of one checkerboard parity, conditioned on the other, with G-convolutions inside.
A 90-degree rotation of an even grid swaps the parities, so it is not exactly equivariant.

References: Dinh et al., Density estimation using Real NVP (2017); Bose & Kobyzev,
Equivariant Finite Normalizing Flows (2021), section 4.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flows.groups import enn
from flows.layers.base import FlowLayer, InverseInfo, bounded_log_scale, exported
from flows.logdet import LogDetContext

__all__ = ["CheckerboardCoupling", "FieldCoupling", "checkerboard_mask"]


def _scalar_fields_only(field_type: enn.FieldType) -> None:
    for representation in field_type.representations:
        if representation.size != 1:
            raise ValueError(
                f"coupling transforms scalar fields elementwise; {representation.name} has "
                f"size {representation.size}"
            )


def _sum_per_item(values: Tensor) -> Tensor:
    return values.reshape(values.shape[0], -1).sum(1)


class FieldCoupling(FlowLayer):
    """Affine coupling of the ``transformed`` fields, conditioned on the ``kept`` fields.

    Arguments:
        net: an :class:`~flows.layers.base.EquivariantNet` from the kept fields' type (scalar
            fields) to twice the transformed fields' type (first the log-scales, then the
            translations); or its export.
        kept: channel indices of the kept fields.
        transformed: channel indices of the transformed fields.
        scale_bound: log-scales are bounded to (-scale_bound, scale_bound).
    """

    def __init__(
        self,
        net: torch.nn.Module,
        kept: list[int],
        transformed: list[int],
        scale_bound: float,
    ) -> None:
        super().__init__()
        if not kept or not transformed or set(kept) & set(transformed):
            raise ValueError(f"kept {kept} and transformed {transformed} must split the fields")
        if isinstance(net, enn.EquivariantModule):  # an export was checked before it
            _scalar_fields_only(net.in_type)
        self.net = net
        self.register_buffer("kept", torch.tensor(kept, dtype=torch.long))
        self.register_buffer("transformed", torch.tensor(transformed, dtype=torch.long))
        self.scale_bound = scale_bound

    def _log_scale_and_shift(self, kept: Tensor) -> tuple[Tensor, Tensor]:
        raw = self.net(kept)
        raw_scale, shift = raw.chunk(2, dim=1)
        return bounded_log_scale(raw_scale, self.scale_bound), shift

    def forward(self, x: Tensor, ctx: LogDetContext) -> tuple[Tensor, Tensor]:
        log_scale, shift = self._log_scale_and_shift(x.index_select(1, self.kept))
        moved = x.index_select(1, self.transformed) * log_scale.exp() + shift
        y = x.index_copy(1, self.transformed, moved)
        return y, _sum_per_item(log_scale)

    def inverse_with_info(self, y: Tensor) -> tuple[Tensor, InverseInfo | None]:
        log_scale, shift = self._log_scale_and_shift(y.index_select(1, self.kept))
        restored = (y.index_select(1, self.transformed) - shift) * (-log_scale).exp()
        return y.index_copy(1, self.transformed, restored), None

    def export(self) -> FieldCoupling:
        """The same layer around the network's plain-torch export."""
        return FieldCoupling(
            exported(self.net),
            self.kept.tolist(),
            self.transformed.tolist(),
            self.scale_bound,
        ).to(self.kept.device)


def checkerboard_mask(height: int, width: int, parity: int) -> Tensor:
    """A (1, 1, H, W) 0/1 mask that is 1 where (i + j) % 2 == parity."""
    rows = torch.arange(height).unsqueeze(1)
    columns = torch.arange(width).unsqueeze(0)
    return ((rows + columns) % 2 == parity).to(torch.get_default_dtype())[None, None]


class CheckerboardCoupling(FlowLayer):
    """Affine coupling of the pixels where ``mask`` is 0, conditioned on those where it is 1.

    Arguments:
        net: an :class:`~flows.layers.base.EquivariantNet` from the data type to twice the
            data type; or its export.
        mask: (1, 1, H, W) 0/1 mask of the kept pixels (see :func:`checkerboard_mask`).
        scale_bound: log-scales are bounded to (-scale_bound, scale_bound).
    """

    def __init__(
        self,
        net: torch.nn.Module,
        mask: Tensor,
        scale_bound: float,
    ) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mask", mask)
        self.scale_bound = scale_bound

    def _log_scale_and_shift(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mask = self.mask.to(x.dtype)
        raw = self.net(x * mask)
        raw_scale, shift = raw.chunk(2, dim=1)
        moved = 1.0 - mask
        return bounded_log_scale(raw_scale, self.scale_bound) * moved, shift * moved

    def forward(self, x: Tensor, ctx: LogDetContext) -> tuple[Tensor, Tensor]:
        log_scale, shift = self._log_scale_and_shift(x)
        return x * log_scale.exp() + shift, _sum_per_item(log_scale)

    def inverse_with_info(self, y: Tensor) -> tuple[Tensor, InverseInfo | None]:
        # The kept pixels are unchanged, so the conditioner sees the same input as in forward.
        log_scale, shift = self._log_scale_and_shift(y)
        return (y - shift) * (-log_scale).exp(), None

    def export(self) -> CheckerboardCoupling:
        """The same layer around the network's plain-torch export."""
        return CheckerboardCoupling(exported(self.net), self.mask, self.scale_bound)
