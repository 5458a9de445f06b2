"""Equivariant linear flows: the convolution exponential and invertible mixing of fields.

Convolution exponential (Hoogeboom et al., 2020): for a steerable convolution M (an equivariant
linear map of the data type to itself), exp(M) x = sum_n M^n x / n! is equivariant too, its
inverse is exp(-M), and log|det exp(M)| = tr(M), which for a zero-padded 'same' convolution is
H * W * sum_c K[c, c, centre]. M is rescaled to an operator norm <= c < 1 (the same certified
bound as residual branches), so the series converges fast: term n is below c^n / n!.

Field mixing: fields of one type may be mixed by any invertible matrix W acting on the copy
index, (W (x) I) commutes with (I (x) rho(g)); e.g. the R, G, B scalar fields of an image (a
1x1 convolution, Glow) or the padding channels. W = P L (U + diag(s)) (Kingma & Dhariwal, 2018).
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import Tensor

from flows.errors import FlowError
from flows.groups import enn
from flows.layers.base import FlowLayer, InverseInfo
from flows.lipschitz import LipschitzConv2d, LipschitzLayer, LipschitzLinear
from flows.logdet import LogDetContext
from flows.steerable import field_channel_index

__all__ = [
    "ConvExponential",
    "FieldMixing",
    "FrozenLinearMap",
    "build_conv_exponential",
    "mixable_field_groups",
]

SERIES_MAX_TERMS = 60
SERIES_RTOL = 1e-12


class FrozenLinearMap(torch.nn.Module):
    """A fixed dense convolution (4-D weight, 'same' zero padding) or matrix: an exported M."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())

    def effective_parameters(self) -> tuple[Tensor, None]:
        return self.weight, None

    def apply_weight(self, weight: Tensor, vector: Tensor) -> Tensor:
        if weight.dim() == 4:
            return F.conv2d(vector, weight, padding=weight.shape[-1] // 2)
        return vector @ weight.t()


class ConvExponential(FlowLayer):
    """y = exp(M) x for an equivariant linear map M of the data type to itself.

    Arguments:
        operator: a bias-free :class:`~flows.lipschitz.LipschitzConv2d` (images) or
            :class:`~flows.lipschitz.LipschitzLinear` (points) from the data type to itself;
            or, exported, a :class:`FrozenLinearMap`.
    """

    def __init__(self, operator: LipschitzLayer | FrozenLinearMap) -> None:
        super().__init__()
        if isinstance(operator, LipschitzLayer) and operator.in_type != operator.out_type:
            raise ValueError("the convolution exponential needs a map of a type to itself")
        self.operator = operator

    def _trace(self, weight: Tensor, x: Tensor) -> Tensor:
        if weight.dim() == 4:
            centre = weight.shape[-1] // 2
            diagonal = torch.diagonal(weight[:, :, centre, centre])
            return diagonal.sum() * (x.shape[-2] * x.shape[-1])
        return torch.diagonal(weight).sum()

    def _exponential(self, weight: Tensor, x: Tensor, sign: float) -> Tensor:
        term, total = x, x
        scale = float(x.detach().abs().max()) if x.numel() else 0.0
        for n in range(1, SERIES_MAX_TERMS + 1):
            term = self.operator.apply_weight(weight, term) * (sign / n)
            total = total + term
            if float(term.detach().abs().max()) <= SERIES_RTOL * max(scale, 1.0):
                return total
        raise FlowError(
            f"convolution exponential did not converge in {SERIES_MAX_TERMS} terms; the "
            "operator norm of its convolution is too large"
        )

    def forward(self, x: Tensor, ctx: LogDetContext) -> tuple[Tensor, Tensor]:
        weight, _ = self.operator.effective_parameters()
        y = self._exponential(weight, x, 1.0)
        return y, self._trace(weight, x).expand(x.shape[0])

    def inverse_with_info(self, y: Tensor) -> tuple[Tensor, InverseInfo | None]:
        weight, _ = self.operator.effective_parameters()
        return self._exponential(weight, y, -1.0), None

    def export(self) -> ConvExponential:
        if isinstance(self.operator, FrozenLinearMap):
            return self
        weight, _ = self.operator.effective_parameters()
        return ConvExponential(FrozenLinearMap(weight))


def mixable_field_groups(field_type: enn.FieldType) -> list[list[int]]:
    """Fields of ``field_type`` grouped by representation, for groups of two or more."""
    groups: dict[str, list[int]] = defaultdict(list)
    for position, representation in enumerate(field_type.representations):
        groups[representation.name].append(position)
    return [fields for fields in groups.values() if len(fields) >= 2]


class _LUMatrix(torch.nn.Module):
    """An invertible m x m matrix W = P L (U + diag(sign * exp(log_s))), started orthogonal."""

    def __init__(self, size: int) -> None:
        super().__init__()
        orthogonal, _ = torch.linalg.qr(torch.randn(size, size, dtype=torch.float64))
        permutation, lower, upper = torch.linalg.lu(orthogonal)
        diagonal = torch.diagonal(upper)
        dtype = torch.get_default_dtype()
        self.register_buffer("permutation", permutation.to(dtype))
        self.register_buffer("sign", torch.sign(diagonal).to(dtype))
        self.lower = torch.nn.Parameter(lower.tril(-1).to(dtype))
        self.upper = torch.nn.Parameter(upper.triu(1).to(dtype))
        self.log_diagonal = torch.nn.Parameter(diagonal.abs().log().to(dtype))

    def matrix(self) -> Tensor:
        eye = torch.eye(self.lower.shape[0], dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower.tril(-1) + eye
        upper = self.upper.triu(1) + torch.diag(self.sign * self.log_diagonal.exp())
        return self.permutation @ lower @ upper

    def log_abs_det(self) -> Tensor:
        return self.log_diagonal.sum()


class FieldMixing(FlowLayer):
    """Invertible mixing of the copies of each representation that occurs two or more times.

    Arguments:
        field_type: the data's field type; each group from :func:`mixable_field_groups` gets its
            own matrix.
    """

    def __init__(self, field_type: enn.FieldType) -> None:
        super().__init__()
        groups = mixable_field_groups(field_type)
        if not groups:
            raise ValueError(f"no representation occurs twice in {field_type}; nothing to mix")
        channels = field_channel_index(field_type)
        self.group_sizes = [field_type.representations[fields[0]].size for fields in groups]
        self.matrices = torch.nn.ModuleList(_LUMatrix(len(fields)) for fields in groups)
        for index, fields in enumerate(groups):
            # Channel indices of the group as (copies, channels per copy).
            index_of = [torch.nonzero(channels == f).flatten() for f in fields]
            self.register_buffer(f"channels_{index}", torch.stack(index_of))

    def _channels(self, index: int) -> Tensor:
        return getattr(self, f"channels_{index}")

    def _mix(self, x: Tensor, inverse: bool) -> Tensor:
        y = x
        for index, lu in enumerate(self.matrices):
            channels = self._channels(index)
            copies, per_copy = channels.shape
            matrix = lu.matrix().to(x.dtype)
            if inverse:
                matrix = torch.linalg.inv(matrix)
            block = x.index_select(1, channels.flatten())
            block = block.reshape(x.shape[0], copies, per_copy, *x.shape[2:])
            mixed = torch.einsum("ij,bj...->bi...", matrix, block)
            y = y.index_copy(1, channels.flatten(), mixed.reshape(x.shape[0], -1, *x.shape[2:]))
        return y

    def forward(self, x: Tensor, ctx: LogDetContext) -> tuple[Tensor, Tensor]:
        pixels = math.prod(x.shape[2:])
        logdet = sum(
            lu.log_abs_det() * size * pixels
            for lu, size in zip(self.matrices, self.group_sizes, strict=True)
        )
        return self._mix(x, inverse=False), torch.as_tensor(logdet).to(x.dtype).expand(x.shape[0])

    def inverse_with_info(self, y: Tensor) -> tuple[Tensor, InverseInfo | None]:
        return self._mix(y, inverse=True), None


def build_conv_exponential(
    data_type: enn.FieldType, grid_shape: tuple[int, int] | None, kernel_size: int, coeff: float
) -> ConvExponential:
    """A convolution exponential of the data type (``grid_shape`` None: points)."""
    if grid_shape is None:
        operator: LipschitzLayer = LipschitzLinear(data_type, data_type, coeff, bias=False)
    else:
        operator = LipschitzConv2d(data_type, data_type, kernel_size, grid_shape, coeff, False)
    return ConvExponential(operator)
