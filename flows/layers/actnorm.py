"""Equivariant ActNorm: one scale per field and a bias on invariant (trivial) fields only."""

from __future__ import annotations

import torch
from torch import Tensor

from flows.groups import enn
from flows.layers.base import FlowLayer, InverseInfo
from flows.logdet import LogDetContext

__all__ = ["EquivariantActNorm"]


class EquivariantActNorm(FlowLayer):
    r"""y = (x + b) * exp(log_s), with s shared by the channels of a field.

    A scalar times the identity commutes with any representation, and a bias is invariant only on
    trivial fields, so both keep the layer equivariant. Initialised from the first training batch
    so that each field has zero mean (trivial fields) and unit mean square (Kingma & Dhariwal,
    Glow, 2018) by an explicit :meth:`initialize` (the trainer calls
    :meth:`~flows.flow.Flow.initialize_actnorm` on its first batch); a forward pass never changes
    the layer, in train mode or not. Until initialised the layer is the identity.
    log|det| = sum_fields size_f * log s_f * (number of pixels).
    """

    def __init__(self, field_type: enn.FieldType) -> None:
        super().__init__()
        sizes, trivial = [], []
        for representation in field_type.representations:
            sizes.append(representation.size)
            trivial.append(representation.is_trivial())
        index = [field for field, size in enumerate(sizes) for _ in range(size)]
        self.register_buffer("field_index", torch.tensor(index, dtype=torch.long))
        self.register_buffer("has_bias", torch.tensor([trivial[i] for i in index]))
        self.register_buffer("initialized", torch.tensor(False))
        self.log_scale = torch.nn.Parameter(torch.zeros(len(sizes)))
        self.bias = torch.nn.Parameter(torch.zeros(len(index)))

    def _per_channel(self, values: Tensor, x: Tensor) -> Tensor:
        return values.reshape(1, -1, *([1] * (x.dim() - 2)))

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Sets bias and scale from the batch ``x`` of this layer's inputs, and marks it so."""
        channels = x.transpose(0, 1).reshape(x.shape[1], -1)
        mean = torch.where(self.has_bias, channels.mean(1), torch.zeros_like(channels[:, 0]))
        centred_square = (channels - mean.unsqueeze(1)).pow(2).mean(1)
        n_fields = self.log_scale.shape[0]
        field_square = torch.zeros(n_fields, dtype=x.dtype, device=x.device).index_add_(
            0, self.field_index, centred_square
        ) / torch.bincount(self.field_index, minlength=n_fields).to(x.dtype)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-0.5 * torch.log(field_square + 1e-6))
        self.initialized.fill_(True)

    def _channel_log_scale(self) -> Tensor:
        return self.log_scale.index_select(0, self.field_index)

    def _bias(self) -> Tensor:
        return torch.where(self.has_bias, self.bias, torch.zeros_like(self.bias))

    def forward(self, x: Tensor, ctx: LogDetContext) -> tuple[Tensor, Tensor]:
        log_scale = self._channel_log_scale()
        y = (x + self._per_channel(self._bias(), x)) * self._per_channel(log_scale.exp(), x)
        pixels = x[0, 0].numel()
        logdet = (log_scale.sum() * pixels).expand(x.shape[0])
        return y, logdet

    def inverse_with_info(self, y: Tensor) -> tuple[Tensor, InverseInfo | None]:
        log_scale = self._channel_log_scale()
        x = y * self._per_channel((-log_scale).exp(), y) - self._per_channel(self._bias(), y)
        return x, None
