"""Group elements that act *exactly* on our data, for augmentation, metrics and tests.

On a square pixel grid only the subgroup of D4 (90-degree rotations, flips) permutes pixels
exactly; a model built for C_N / D_N / SO2 / O2 is tested and averaged over the part of its group
that does: C_N -> C_gcd(N, 4), D_N -> D_gcd(N, 4), SO2 -> C4, O2 -> D4. Flips are across the
vertical axis (the last tensor axis reversed), matching escnn's default reflection axis pi/2.
Points are acted on by the 2x2 matrices of the group's standard representation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from flows.config import FlowConfig, parse_group
from flows.data.images import GRID_GROUPS

__all__ = [
    "GridSymmetry",
    "apply_random_symmetries",
    "exact_grid_subgroup",
    "grid_symmetries",
    "point_symmetries",
    "symmetries_for",
]

GridSymmetry = Callable[[Tensor], Tensor]


def _grid_element(quarter_turns: int, flip: bool) -> GridSymmetry:
    if flip:
        return lambda x: torch.flip(torch.rot90(x, quarter_turns, dims=(-2, -1)), dims=(-1,))
    return lambda x: torch.rot90(x, quarter_turns, dims=(-2, -1))


def exact_grid_subgroup(group: str) -> str:
    """The subgroup of ``group`` that permutes pixels exactly: a key of ``GRID_GROUPS``."""
    kind, order = parse_group(group)
    if kind == "trivial":
        return "trivial"
    rotations = 4 if kind in ("SO2", "O2") else math.gcd(order, 4)
    if kind in ("D", "O2"):
        return f"D{rotations}"
    return "trivial" if rotations == 1 else f"C{rotations}"


def grid_symmetries(group: str) -> list[GridSymmetry]:
    """The elements of ``group`` that permute the pixels of a (square) grid, identity first.

    The element table is the data package's ``GRID_GROUPS`` (also used to build rotated data
    sets), so augmentation, metrics and data generation agree on every element.
    """
    subgroup = exact_grid_subgroup(group)
    elements = ((0, False),) if subgroup == "trivial" else GRID_GROUPS[subgroup]
    return [_grid_element(k, flip) for k, flip in elements]


def point_symmetries(group: str, n_continuous: int = 12) -> list[Tensor]:
    """2x2 matrices of ``group`` on points (sampled angles for SO2/O2), identity first."""
    from flows.groups import point_group_matrices

    config = FlowConfig(group=group, data_shape=[2])
    return [torch.as_tensor(m) for m in point_group_matrices(config, n_continuous)]


def symmetries_for(config: FlowConfig, group: str | None = None) -> list[GridSymmetry]:
    """Exact actions of ``group`` (default: the flow's own) on data shaped like ``config``'s."""
    name = group or config.group
    if not config.is_points:
        return grid_symmetries(name)
    if parse_group(name)[0] == "trivial":
        return [lambda x: x]
    return [_matrix_action(m) for m in point_symmetries(name)]


def _matrix_action(matrix: Tensor) -> GridSymmetry:
    return lambda x: x @ matrix.to(dtype=x.dtype, device=x.device).T


def apply_random_symmetries(
    x: Tensor, elements: list[GridSymmetry], generator: torch.Generator | None
) -> Tensor:
    """Applies an independent, uniformly drawn element to each item of the batch."""
    device = generator.device if generator is not None else x.device
    choice = torch.randint(len(elements), (x.shape[0],), generator=generator, device=device)
    choice = choice.to(x.device)
    out = torch.empty_like(x)
    for index, element in enumerate(elements):
        mask = choice == index
        if bool(mask.any()):
            out[mask] = element(x[mask])
    return out
