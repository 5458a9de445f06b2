"""Symmetry groups and the escnn field types they induce on our data.

Images are C scalar fields on the pixel grid (the group moves pixels); 2-D points are one field
of the standard representation of G <= O(2) (rotation and reflection matrices). Hidden layers use
regular fields (a permutation representation) for finite groups, so pointwise nonlinearities stay
equivariant, and band-limited irreps for SO(2)/O(2), which need norm nonlinearities.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

with warnings.catch_warnings():
    # escnn warns at import that py3nj is missing; py3nj only serves SO(3), which we never build.
    warnings.filterwarnings("ignore", message=".*py3nj.*")
    import escnn
    import escnn.group._numerical as escnn_numerical
    from escnn import group as escnn_group
    from escnn import gspaces
    from escnn import nn as enn

# escnn 1.0.11 finds intertwiner bases with scikit-learn's randomized_svd when scikit-learn is
# importable, passing an np.matrix, which scikit-learn >= 1.2 rejects (TypeError). Without it,
# escnn uses scipy's full SVD: exact, deterministic, and fast at our (small) sizes.
escnn_numerical.randomized_svd = None

from flows.config import FlowConfig, parse_group  # noqa: E402 (after the escnn fix above)

__all__ = ["FieldTypes", "build_field_types", "point_group_matrices"]


@dataclass(frozen=True)
class FieldTypes:
    """The escnn types of one flow: the data's type and a hidden layer's type.

    Attributes:
        data: type of the (padded) data, every block's input and output: the observed fields
            followed by the padding fields.
        hidden: type of a hidden layer of a block's sub-network.
        pointwise: True if ``hidden`` is a permutation representation (pointwise nonlinearities
            are equivariant); False for irreps, which need a norm nonlinearity.
        observed: type of the data before padding.
        padding: type of the padding (trivially acted fields); None without padding.
    """

    data: enn.FieldType
    hidden: enn.FieldType
    pointwise: bool
    observed: enn.FieldType
    padding: enn.FieldType | None = None

    def subtype(self, fields: list[int]) -> enn.FieldType:
        """The type of the listed fields of ``data``, in that order."""
        representations = self.data.representations
        return enn.FieldType(self.data.gspace, [representations[i] for i in fields])


def _o2_standard(config: FlowConfig) -> escnn_group.Representation:
    kind, order = parse_group(config.group)
    # Tensor products of the hidden irreps (needed by escnn's basis solver) reach twice the band
    # limit, so those irreps must be instantiated too.
    so2 = escnn_group.so2_group(2 * config.max_frequency)
    o2 = escnn_group.o2_group(2 * config.max_frequency)
    if kind == "SO2":
        return so2.standard_representation()
    if kind == "O2":
        return o2.standard_representation()
    if kind == "C":
        return so2.restrict_representation(order, so2.standard_representation())
    # D_N with reflections across the x-axis and its rotations.
    return o2.restrict_representation((0.0, order), o2.standard_representation())


def _image_gspace(config: FlowConfig) -> gspaces.GSpace2D:
    kind, order = parse_group(config.group)
    if kind == "trivial":
        return gspaces.trivialOnR2()
    if kind == "C":
        return gspaces.rot2dOnR2(order)
    if kind == "D":
        return gspaces.flip2dOnR2() if order == 1 else gspaces.flipRot2dOnR2(order)
    if kind == "SO2":
        return gspaces.rot2dOnR2(-1, maximum_frequency=config.max_frequency)
    return gspaces.flipRot2dOnR2(-1, maximum_frequency=config.max_frequency)


def _band_limited_irreps(gspace: escnn.gspaces.GSpace, config: FlowConfig) -> list:
    fiber = gspace.fibergroup
    if config.group_kind == "SO2":
        return [fiber.irrep(k) for k in range(config.max_frequency + 1)]
    return [fiber.irrep(0, 0)] + [fiber.irrep(1, k) for k in range(1, config.max_frequency + 1)]


def _hidden_type(gspace: escnn.gspaces.GSpace, config: FlowConfig) -> tuple[enn.FieldType, bool]:
    if config.group_kind in ("SO2", "O2"):
        irreps = _band_limited_irreps(gspace, config)
        return enn.FieldType(gspace, config.width * irreps), False
    return enn.FieldType(gspace, config.width * [gspace.regular_repr]), True


def build_field_types(config: FlowConfig) -> FieldTypes:
    """Builds the data and hidden field types of ``config``'s group acting on its data."""
    if config.is_points:
        if config.group_kind == "trivial":
            gspace = gspaces.no_base_space(escnn_group.trivial_group())
            data = enn.FieldType(gspace, config.dim * [gspace.trivial_repr])
        else:
            standard = _o2_standard(config)
            gspace = gspaces.no_base_space(standard.group)
            data = enn.FieldType(gspace, [standard])
    else:
        gspace = _image_gspace(config)
        data = enn.FieldType(gspace, config.data_shape[0] * [gspace.trivial_repr])
    hidden, pointwise = _hidden_type(gspace, config)
    if not config.is_augmented:
        return FieldTypes(data=data, hidden=hidden, pointwise=pointwise, observed=data)
    padding = enn.FieldType(gspace, config.padding_channels * [gspace.trivial_repr])
    return FieldTypes(
        data=data + padding, hidden=hidden, pointwise=pointwise, observed=data, padding=padding
    )


def point_group_matrices(config: FlowConfig, n_continuous: int = 12) -> list:
    """The 2x2 matrices by which the group acts on points (a sample of angles for SO2/O2).

    Returns:
        A list of ``numpy`` float64 arrays of shape (2, 2); for ``trivial``, the identity only.
    """
    import numpy as np

    kind, _ = parse_group(config.group)
    if kind == "trivial":
        return [np.eye(config.dim)]
    standard = _o2_standard(config)
    fiber = standard.group
    if kind in ("SO2", "O2"):
        angles = [2 * math.pi * k / n_continuous + 0.1234 for k in range(n_continuous)]
        elements = (
            [fiber.element(a) for a in angles]
            if kind == "SO2"
            else [fiber.element((flip, a)) for flip in (0, 1) for a in angles]
        )
    else:
        elements = list(fiber.elements)
    return [np.asarray(standard(g), dtype=np.float64) for g in elements]
