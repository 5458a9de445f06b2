"""Steerable linear layers with a stable state dict: escnn parametrises, plain torch computes.

escnn's ``R2Conv`` and ``Linear`` expand their basis coefficients into a dense filter; in eval
mode they cache that filter as a *buffer*, so their state dict differs between train and eval
mode. These wrappers keep the escnn layer in train mode as a pure parametrisation, expand it
through ``expand_parameters()`` (the one hook every filter passes through), and cache the
filter in eval mode in a plain attribute instead: a checkpoint loads in either mode.

A layer may carry a *field mask*: a 0/1 matrix over (output field, input field) pairs that
zeroes whole blocks of the expanded filter. Each block of a steerable filter is an equivariant
map between one input and one output field on its own, so a masked filter is still equivariant;
block-triangular masks make equivariant autoregressive networks (G-IAF).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from flows.groups import enn

__all__ = ["SteerableConv2d", "SteerableLayer", "SteerableLinear", "field_channel_index"]


def field_channel_index(field_type: enn.FieldType) -> Tensor:
    """For every channel of ``field_type``, the index of the field it belongs to."""
    index: list[int] = []
    for position, representation in enumerate(field_type.representations):
        index += [position] * representation.size
    return torch.tensor(index, dtype=torch.long)


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


class SteerableLayer(enn.EquivariantModule):
    """Base class: an equivariant affine map whose dense weight comes from an escnn layer.

    Subclasses provide the escnn layer (:meth:`escnn_layer`) and the plain-tensor map
    (:meth:`apply_weight`, :meth:`apply_adjoint`, :meth:`apply_layer`); :meth:`transform_weight`
    is the hook through which a subclass rescales the weight (Lipschitz layers).
    """

    in_type: enn.FieldType
    out_type: enn.FieldType

    def __init__(self) -> None:
        super().__init__()
        self._cache: tuple[Tensor, Tensor | None] | None = None
        self.register_buffer("weight_mask", None)

    def _setup(self, layer: enn.EquivariantModule, field_mask: Tensor | None, zero: bool) -> None:
        _own_basis(layer)
        if zero:
            torch.nn.init.zeros_(layer.weights)
        else:
            _init_weights(layer)
        if field_mask is not None:
            expected = (len(self.out_type), len(self.in_type))
            if tuple(field_mask.shape) != expected:
                raise ValueError(f"field mask of shape {list(field_mask.shape)}, need {expected}")
            out_index = field_channel_index(self.out_type)
            in_index = field_channel_index(self.in_type)
            channel_mask = field_mask.to(torch.get_default_dtype())[out_index][:, in_index]
            self.register_buffer("weight_mask", channel_mask)

    def escnn_layer(self) -> enn.EquivariantModule:
        raise NotImplementedError

    # -- the plain map, for a given dense weight -------------------------------------------------
    def apply_weight(self, weight: Tensor, vector: Tensor) -> Tensor:
        """The linear part of the layer, W v, on a batch shaped like the input."""
        raise NotImplementedError

    def apply_adjoint(self, weight: Tensor, vector: Tensor) -> Tensor:
        """The adjoint map, W^T v, on a batch shaped like the output."""
        raise NotImplementedError

    def apply_layer(self, weight: Tensor, bias: Tensor | None, x: Tensor) -> Tensor:
        """The affine layer on a batch of plain tensors."""
        raise NotImplementedError

    # ---------------------------------------------------------------------------------------------
    def raw_parameters(self) -> tuple[Tensor, Tensor | None]:
        """The expanded (masked, unscaled) weight and the bias of the steerable layer."""
        weight, bias = self.escnn_layer().expand_parameters()
        if self.weight_mask is not None:
            mask = self.weight_mask.to(weight.dtype)
            weight = weight * mask.reshape(*mask.shape, *([1] * (weight.dim() - 2)))
        return weight, bias

    def transform_weight(self, weight: Tensor) -> Tensor:
        """Hook for subclasses: the weight forward uses, from the raw one."""
        return weight

    def effective_parameters(self) -> tuple[Tensor, Tensor | None]:
        """The weight and bias forward uses (cached in eval mode)."""
        if not self.training and self._cache is not None:
            return self._cache
        weight, bias = self.raw_parameters()
        weight = self.transform_weight(weight)
        if not self.training:
            self._cache = (weight.detach(), None if bias is None else bias.detach())
        return weight, bias

    def clear_cache(self) -> None:
        self._cache = None

    def train(self, mode: bool = True) -> SteerableLayer:
        # The inner escnn layer is kept in train mode on purpose (see the module docstring).
        self.training = mode
        self._cache = None
        return self

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> SteerableLayer:
        self._cache = None
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._cache = None
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, x: enn.GeometricTensor) -> enn.GeometricTensor:
        if x.type != self.in_type:
            raise TypeError(f"input of type {x.type} where {self.in_type} was expected")
        weight, bias = self.effective_parameters()
        return enn.GeometricTensor(self.apply_layer(weight, bias, x.tensor), self.out_type)


class SteerableConv2d(SteerableLayer):
    """A steerable convolution (escnn ``R2Conv``) with zero 'same' padding.

    Arguments:
        in_type: input field type.
        out_type: output field type.
        kernel_size: odd kernel size.
        bias: whether to learn a bias (only on trivial sub-representations, per escnn).
        field_mask: optional (out fields, in fields) 0/1 mask of the filter's blocks.
        zero_init: start from the zero map (the last layer of a coupling network).
    """

    def __init__(
        self,
        in_type: enn.FieldType,
        out_type: enn.FieldType,
        kernel_size: int,
        bias: bool = True,
        field_mask: Tensor | None = None,
        zero_init: bool = False,
    ) -> None:
        super().__init__()
        self.in_type, self.out_type = in_type, out_type
        self.padding = kernel_size // 2
        self.conv = enn.R2Conv(
            in_type, out_type, kernel_size, padding=self.padding, bias=bias, initialize=False
        )
        self._setup(self.conv, field_mask, zero_init)

    def escnn_layer(self) -> enn.EquivariantModule:
        return self.conv

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


class SteerableLinear(SteerableLayer):
    """An equivariant linear map between fields on a point (escnn ``Linear``).

    Arguments are those of :class:`SteerableConv2d` without the kernel size.
    """

    def __init__(
        self,
        in_type: enn.FieldType,
        out_type: enn.FieldType,
        bias: bool = True,
        field_mask: Tensor | None = None,
        zero_init: bool = False,
    ) -> None:
        super().__init__()
        self.in_type, self.out_type = in_type, out_type
        self.linear = enn.Linear(in_type, out_type, bias=bias, initialize=False)
        self._setup(self.linear, field_mask, zero_init)

    def escnn_layer(self) -> enn.EquivariantModule:
        return self.linear

    def apply_weight(self, weight: Tensor, vector: Tensor) -> Tensor:
        return vector @ weight.t()

    def apply_adjoint(self, weight: Tensor, vector: Tensor) -> Tensor:
        return vector @ weight

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
