"""1-Lipschitz equivariant nonlinearities.

Pointwise maps commute with permutation representations (regular fields, scalar fields), so
LipSwish and ELU are equivariant there. Irreducible fields of SO(2)/O(2) mix under rotation and
need a map that only rescales each field by a function of its (invariant) norm.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from flows.groups import enn

__all__ = ["LipSwish", "NormSoftThreshold", "PlainLipSwish", "PlainNormSoftThreshold"]

LIPSWISH_SCALE = 1.1  # max |d/dx x*sigmoid(b x)| over x and b > 0 is about 1.0998


def _lipswish(x: Tensor, raw_beta: Tensor) -> Tensor:
    return x * torch.sigmoid(x * F.softplus(raw_beta)) / LIPSWISH_SCALE


class PlainLipSwish(torch.nn.Module):
    """LipSwish on plain tensors: x * sigmoid(beta x) / 1.1 (Chen et al., Residual Flows, 2019)."""

    def __init__(self, raw_beta: Tensor) -> None:
        super().__init__()
        self.raw_beta = torch.nn.Parameter(raw_beta)

    def forward(self, x: Tensor) -> Tensor:
        return _lipswish(x, self.raw_beta)


class LipSwish(enn.EquivariantModule):
    """LipSwish with one learnt beta > 0 shared by all channels (so it is pointwise-equivariant).

    Arguments:
        field_type: a type whose representations are all permutation representations.
        beta: the initial beta (1.0: the Swish of Ramachandran et al.). The map is 1-Lipschitz
            for every beta; a larger one bends sharply over a shorter range of inputs.
    """

    def __init__(self, field_type: enn.FieldType, beta: float = 1.0) -> None:
        super().__init__()
        for representation in field_type.representations:
            if "pointwise" not in representation.supported_nonlinearities:
                raise ValueError(
                    f"LipSwish needs permutation fields; {representation.name} is not one"
                )
        self.in_type = self.out_type = field_type
        if not beta > 0.0:
            raise ValueError(f"LipSwish beta {beta} must be positive")
        # beta = softplus(raw_beta), so raw_beta = log(exp(beta) - 1).
        self.raw_beta = torch.nn.Parameter(torch.tensor(math.log(math.expm1(beta))))

    def forward(self, x: enn.GeometricTensor) -> enn.GeometricTensor:
        return enn.GeometricTensor(_lipswish(x.tensor, self.raw_beta), self.out_type)

    def evaluate_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape

    def export(self) -> PlainLipSwish:
        return PlainLipSwish(self.raw_beta.detach().clone())


def _field_index(field_type: enn.FieldType) -> Tensor:
    index = []
    for position, representation in enumerate(field_type.representations):
        index += [position] * representation.size
    return torch.tensor(index, dtype=torch.long)


def _norm_soft_threshold(x: Tensor, index: Tensor, raw_threshold: Tensor) -> Tensor:
    n_fields = raw_threshold.shape[0]
    squares = x.pow(2)
    norms_squared = torch.zeros(
        x.shape[0], n_fields, *x.shape[2:], dtype=x.dtype, device=x.device
    ).index_add_(1, index, squares)
    norms = norms_squared.clamp_min(1e-24).sqrt()
    threshold = F.softplus(raw_threshold).reshape(1, n_fields, *([1] * (x.dim() - 2)))
    scale = torch.relu(1.0 - threshold / norms)
    return x * scale.index_select(1, index)


class PlainNormSoftThreshold(torch.nn.Module):
    """:class:`NormSoftThreshold` on plain tensors."""

    def __init__(self, index: Tensor, raw_threshold: Tensor) -> None:
        super().__init__()
        self.register_buffer("index", index)
        self.raw_threshold = torch.nn.Parameter(raw_threshold)

    def forward(self, x: Tensor) -> Tensor:
        return _norm_soft_threshold(x, self.index, self.raw_threshold)


class NormSoftThreshold(enn.EquivariantModule):
    """Block soft-thresholding of each field: f(x) = x * relu(1 - b / |x|), with b > 0 learnt.

    It is the proximal map of b|x|, hence firmly non-expansive (1-Lipschitz), and depends on x
    only through the rotation-invariant norm of each field, hence equivariant for any orthogonal
    representation. (escnn's norm-ReLU, relu(|x| + bias), is discontinuous at 0 when bias > 0.)
    """

    def __init__(self, field_type: enn.FieldType) -> None:
        super().__init__()
        self.in_type = self.out_type = field_type
        self.register_buffer("index", _field_index(field_type))
        # softplus(-3) ~ 0.05: a small dead zone at initialisation.
        self.raw_threshold = torch.nn.Parameter(torch.full((len(field_type),), -3.0))

    def forward(self, x: enn.GeometricTensor) -> enn.GeometricTensor:
        return enn.GeometricTensor(
            _norm_soft_threshold(x.tensor, self.index, self.raw_threshold), self.out_type
        )

    def evaluate_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape

    def export(self) -> PlainNormSoftThreshold:
        return PlainNormSoftThreshold(self.index.clone(), self.raw_threshold.detach().clone())
