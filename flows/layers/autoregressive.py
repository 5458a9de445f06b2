"""G-inverse autoregressive flows: affine maps of blocks of fields, each conditioned on the
blocks before it by one equivariant masked network.

The fields (all scalar fields, a permutation representation) are split into K equal blocks
u^1 ... u^K. The parallel map is v^k = u^k * exp(s_k(u^{<k})) + t_k(u^{<k}), with all s_k, t_k
computed in *one* pass of a masked G-CNN: its filters are masked field block by field block
(MADE-style degrees), and each block of a steerable filter is equivariant on its own, so the
masked network is still equivariant and the map is G-equivariant. Its Jacobian is block
triangular with log|det| = sum_k sum s_k; inverting it takes K sequential passes.

``fast="sampling"`` is the IAF orientation: latent -> data is the parallel map (one pass per
layer to sample) and data -> latent, needed for the log-density, takes K passes.
``fast="density"`` (MAF) is the other way round.

References: Kingma et al., Improved Variational Inference with Inverse Autoregressive Flow
(2016); Papamakarios et al., Masked Autoregressive Flow (2017); Germain et al., MADE (2015);
Bose & Kobyzev (2021), section 5.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from flows.layers.base import FlowLayer, InverseInfo, bounded_log_scale, exported
from flows.logdet import LogDetContext

__all__ = ["GroupAutoregressive", "autoregressive_field_masks"]


def autoregressive_field_masks(
    input_blocks: list[int], hidden_fields: int, n_hidden_layers: int, n_blocks: int
) -> list[Tensor]:
    """Field masks of a MADE network whose output block k sees only input blocks before k.

    Arguments:
        input_blocks: the block (1..K) of every input field; outputs are (s, t) for each input
            field, in the same order, twice.
        hidden_fields: fields per hidden layer.
        n_hidden_layers: hidden layers.
        n_blocks: K.

    Returns:
        One (out fields, in fields) 0/1 mask per linear layer.
    """
    blocks_in = torch.tensor(input_blocks)
    # Hidden degrees cycle through 1 .. K-1: a unit of degree d may see input blocks <= d.
    degrees = torch.arange(hidden_fields) % max(n_blocks - 1, 1) + 1
    blocks_out = torch.cat([blocks_in, blocks_in])
    masks = [(degrees[:, None] >= blocks_in[None, :]).float()]
    masks += [(degrees[:, None] >= degrees[None, :]).float() for _ in range(n_hidden_layers - 1)]
    masks.append((blocks_out[:, None] > degrees[None, :]).float())
    return masks


class GroupAutoregressive(FlowLayer):
    """A block-autoregressive affine layer over the fields of the data.

    Arguments:
        net: the masked equivariant network data type -> twice the data type (log-scales,
            then translations), an :class:`~flows.layers.base.EquivariantNet` built with
            :func:`autoregressive_field_masks`; or its export.
        blocks: the channel indices of each block, in autoregressive order.
        scale_bound: log-scales are bounded to (-scale_bound, scale_bound).
        fast: which direction takes one network pass (see the module docstring).
    """

    def __init__(
        self,
        net: torch.nn.Module,
        blocks: list[list[int]],
        scale_bound: float,
        fast: Literal["sampling", "density"],
    ) -> None:
        super().__init__()
        if len(blocks) < 2 or len({len(block) for block in blocks}) != 1:
            raise ValueError(f"need at least 2 equal blocks of fields, got {blocks}")
        self.net = net
        self.register_buffer("blocks", torch.tensor(blocks, dtype=torch.long))
        self.scale_bound = scale_bound
        self.fast = fast

    def _log_scale_and_shift(self, u: Tensor) -> tuple[Tensor, Tensor]:
        raw_scale, shift = self.net(u).chunk(2, dim=1)
        return bounded_log_scale(raw_scale, self.scale_bound), shift

    def _parallel(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """v = u * exp(s(u)) + t(u) in one pass, and log|det dv/du|."""
        log_scale, shift = self._log_scale_and_shift(u)
        return u * log_scale.exp() + shift, log_scale.reshape(u.shape[0], -1).sum(1)

    def _sequential(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """The u with v = parallel(u), block by block (K passes), and log|det dv/du| at u."""
        u = torch.zeros_like(v)
        logdet = torch.zeros(v.shape[0], dtype=v.dtype, device=v.device)
        for block in self.blocks:
            # Block k's scale and shift depend only on blocks before k, which are final.
            log_scale, shift = self._log_scale_and_shift(u)
            block_scale = log_scale.index_select(1, block)
            restored = (v.index_select(1, block) - shift.index_select(1, block)) * (
                -block_scale
            ).exp()
            u = u.index_copy(1, block, restored)
            logdet = logdet + block_scale.reshape(v.shape[0], -1).sum(1)
        return u, logdet

    def forward(self, x: Tensor, ctx: LogDetContext) -> tuple[Tensor, Tensor]:
        if self.fast == "density":
            return self._parallel(x)
        z, logdet_of_generator = self._sequential(x)
        return z, -logdet_of_generator

    def inverse_with_info(self, y: Tensor) -> tuple[Tensor, InverseInfo | None]:
        if self.fast == "density":
            return self._sequential(y)[0], None
        return self._parallel(y)[0], None

    def export(self) -> GroupAutoregressive:
        """The same layer around the network's plain-torch export."""
        layer = GroupAutoregressive(
            exported(self.net), self.blocks.tolist(), self.scale_bound, self.fast
        )
        return layer.to(self.blocks.device)
