"""The built-in datasets, by name: toy 2-D densities and small image sets that need no upload."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from flows.data.dataset import IMAGES, POINTS, DataError, DataKind, Dataset, validate_dataset
from flows.data.images import digits, image_patches, rotated_digits
from flows.data.toy2d import eight_gaussians, rings

__all__ = ["BUILTIN_DATASETS", "MAX_BUILTIN_COUNT", "BuiltinSpec", "load_builtin"]

MAX_BUILTIN_COUNT = 200_000


class Generator(Protocol):
    """A dataset generator: ``n`` items, deterministic given ``seed``."""

    def __call__(self, n: int, *, seed: int) -> np.ndarray: ...


@dataclass(frozen=True)
class BuiltinSpec:
    """One built-in dataset.

    Attributes:
        kind: ``"points"`` or ``"images"``.
        description: one line for people choosing a dataset.
        default_n: the number of items when none is asked for.
        generate: ``generate(n, seed=seed) -> array``, deterministic given the seed.
    """

    kind: DataKind
    description: str
    default_n: int
    generate: Generator


BUILTIN_DATASETS: dict[str, BuiltinSpec] = {
    "eight_gaussians": BuiltinSpec(
        POINTS,
        "8 Gaussians (std 0.5) on the circle of radius 4; invariant under D8",
        10_000,
        eight_gaussians,
    ),
    "rings": BuiltinSpec(
        POINTS,
        "3 concentric noisy rings of radii 1, 2, 3; invariant under O(2)",
        10_000,
        rings,
    ),
    "digits": BuiltinSpec(
        IMAGES,
        "scikit-learn's 8x8 grayscale handwritten digits",
        1797,
        digits,
    ),
    "rotated_digits": BuiltinSpec(
        IMAGES,
        "8x8 digits, each rotated and/or flipped by a random element of D4",
        1797,
        rotated_digits,
    ),
    "image_patches": BuiltinSpec(
        IMAGES,
        "8x8 RGB patches cropped from scikit-learn's two sample photographs",
        2000,
        image_patches,
    ),
}


def load_builtin(name: str, n: int | None = None, seed: int = 0) -> Dataset:
    """Generates a built-in dataset.

    Args:
        name: a key of :data:`BUILTIN_DATASETS`.
        n: the number of items, 1..200,000; ``None`` for the dataset's ``default_n``.
        seed: the seed of the generator; the same (name, n, seed) gives the same data.

    Returns:
        The validated dataset.

    Raises:
        DataError: the name is unknown or ``n`` is out of range.

    Example:
        >>> load_builtin("rings", n=5).shape
        (2,)
    """
    spec = BUILTIN_DATASETS.get(name)
    if spec is None:
        raise DataError(
            f"built-in dataset {name!r} does not exist; choose one of {sorted(BUILTIN_DATASETS)}"
        )
    n = spec.default_n if n is None else n
    valid_type = isinstance(n, int | np.integer) and not isinstance(n, bool)
    if not valid_type or not 1 <= n <= MAX_BUILTIN_COUNT:
        raise DataError(
            f"n={n!r} is out of range for {name!r}; n must be an integer from 1 to "
            f"{MAX_BUILTIN_COUNT}"
        )
    return validate_dataset(spec.generate(int(n), seed=seed), spec.kind)
