"""The in-memory dataset every reader and generator produces, and the one validator behind it.

Two kinds of data exist: ``"points"`` are float32 rows ``(N, D)``; ``"images"`` are uint8 pixel
levels ``(N, C, H, W)`` in 0..255, which the flows dequantize themselves. Whatever the source (an
upload, a built-in generator), the array goes through :func:`validate_dataset`, so downstream code
can rely on these invariants without checking again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from flows.data.errors import DataError

__all__ = [
    "DATA_KINDS",
    "IMAGES",
    "MAX_IMAGE_SIDE",
    "MAX_POINT_DIM",
    "MAX_POINT_MAGNITUDE",
    "MIN_IMAGE_SIDE",
    "POINTS",
    "DataError",
    "DataKind",
    "Dataset",
    "validate_dataset",
]

# The kinds of data, spelled once: images are uint8 (N, C, H, W), points float32 (N, D).
DataKind = Literal["images", "points"]
DATA_KINDS: tuple[DataKind, ...] = get_args(DataKind)
IMAGES, POINTS = DATA_KINDS

MAX_POINT_DIM = 64
MAX_POINT_MAGNITUDE = 1e6
MIN_IMAGE_SIDE = 2
MAX_IMAGE_SIDE = 256
MAX_IMAGE_CHANNELS = 4


@dataclass(frozen=True, eq=False)
class Dataset:
    """A validated dataset: build it with :func:`validate_dataset`, not directly.

    Equality is identity (``eq=False``): comparing arrays element-wise has no single truth value;
    compare :meth:`checksum` instead.

    Attributes:
        array: ``uint8 (N, C, H, W)`` with levels 0..255 for images; ``float32 (N, D)`` for points.
        kind: ``"images"`` or ``"points"``.
    """

    array: np.ndarray
    kind: DataKind

    def __post_init__(self) -> None:
        expected = {IMAGES: (np.uint8, 4), POINTS: (np.float32, 2)}
        if self.kind not in expected:
            raise DataError(f"dataset kind {self.kind!r} is unknown; use 'images' or 'points'")
        dtype, rank = expected[self.kind]
        if self.array.dtype != dtype or self.array.ndim != rank:
            raise DataError(
                f"a {self.kind} Dataset needs a {np.dtype(dtype).name} rank-{rank} array, got "
                f"{self.array.dtype} with shape {self.array.shape}; build it with "
                "validate_dataset(), which converts"
            )

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one item: ``(C, H, W)`` for images, ``(D,)`` for points."""
        return tuple(self.array.shape[1:])

    @property
    def count(self) -> int:
        """The number of items ``N``."""
        return int(self.array.shape[0])

    @property
    def dtype(self) -> str:
        """The array's dtype name: ``"uint8"`` for images, ``"float32"`` for points."""
        return str(self.array.dtype)

    def checksum(self) -> str:
        """The SHA-256 hex digest of the kind, dtype, full shape and the C-ordered array bytes.

        Two datasets with the same checksum hold the same items in the same order.
        """
        digest = hashlib.sha256()
        digest.update(f"{self.kind}|{self.dtype}|{self.array.shape}|".encode())
        digest.update(np.ascontiguousarray(self.array).tobytes())
        return digest.hexdigest()


def validate_dataset(array: np.ndarray, kind: DataKind) -> Dataset:
    """Checks an array against the rules for its kind and returns it normalised as a Dataset.

    Points must be rank 2 ``(N, D)`` with ``N >= 1`` and ``1 <= D <= 64``, of a real numeric (or
    bool) dtype, finite, and at most 1e6 in magnitude; they are cast to float32.

    Images must be ``(N, H, W)`` (read as one channel) or ``(N, C, H, W)`` with ``C`` in 1..4 and
    ``H``, ``W`` in 2..256. A rank-4 array that looks channels-last (last axis in 1..4 while axis 1
    is larger than 4) is transposed to channels-first. Values may be uint8; other integers in
    0..255; bool (False -> 0, True -> 255); or floats in [0, 1], mapped to ``round(x * 255)``.

    Args:
        array: the raw array (anything ``np.asarray`` accepts).
        kind: ``"points"`` or ``"images"``.

    Returns:
        The dataset, with a C-contiguous array of the canonical dtype.

    Raises:
        DataError: the array breaks a rule; the message names the rule and the offending value.
    """
    array = np.asarray(array)
    if kind == POINTS:
        return Dataset(_validate_points(array), POINTS)
    if kind == IMAGES:
        return Dataset(_validate_images(array), IMAGES)
    raise DataError(f"dataset kind {kind!r} is unknown; use 'images' or 'points'")


def _check_numeric(array: np.ndarray, kind: str) -> None:
    # Kinds b/i/u/f only: complex, strings, objects, datetimes and structs have no meaning here.
    if array.dtype.kind not in "biuf":
        raise DataError(
            f"{kind} array has dtype {array.dtype}; only real numeric (int, uint, float or bool) "
            "arrays are accepted"
        )


def _validate_points(array: np.ndarray) -> np.ndarray:
    _check_numeric(array, POINTS)
    if array.ndim != 2:
        raise DataError(
            f"points array has shape {array.shape} (rank {array.ndim}); points must be rank 2, "
            "(N, D)"
        )
    n, d = array.shape
    if n < 1:
        raise DataError("points array has no rows; at least 1 point is needed")
    if not 1 <= d <= MAX_POINT_DIM:
        raise DataError(
            f"points have dimension D={d} (shape {array.shape}); D must be between 1 and "
            f"{MAX_POINT_DIM}"
        )
    # Checked before the float32 cast, which would silently turn large float64 values into inf.
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise DataError(
                f"points contain {int(bad.sum())} non-finite value(s) (NaN or Inf), the first "
                f"at row {row}, column {col} ({array[row, col]}); all coordinates must be finite"
            )
    if array.dtype.kind != "b":
        magnitude = np.abs(array.astype(np.float64, copy=False))
        if magnitude.max() > MAX_POINT_MAGNITUDE:
            row, col = np.unravel_index(int(magnitude.argmax()), magnitude.shape)
            raise DataError(
                f"points have a coordinate of magnitude {magnitude[row, col]:.6g} at row {row}, "
                f"column {col}; coordinates must lie within +-{MAX_POINT_MAGNITUDE:.0e} "
                "(rescale the data)"
            )
    return np.ascontiguousarray(array, dtype=np.float32)


def _to_channels_first(array: np.ndarray) -> np.ndarray:
    if array.ndim == 3:
        return array[:, None]
    if array.ndim != 4:
        raise DataError(
            f"image array has shape {array.shape} (rank {array.ndim}); images must be rank 3 "
            "(N, H, W) or rank 4 (N, C, H, W)"
        )
    if 1 <= array.shape[1] <= MAX_IMAGE_CHANNELS:
        return array
    if 1 <= array.shape[3] <= MAX_IMAGE_CHANNELS:
        return array.transpose(0, 3, 1, 2)
    raise DataError(
        f"image array has shape {array.shape}: neither axis 1 nor axis 3 can be a channel axis; "
        f"images need 1 to {MAX_IMAGE_CHANNELS} channels, (N, C, H, W)"
    )


def _to_levels(array: np.ndarray) -> np.ndarray:
    kind = array.dtype.kind
    if array.dtype == np.uint8:
        return array
    if kind == "b":
        return array.astype(np.uint8) * np.uint8(255)
    if kind in "iu":
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise DataError(
                f"integer image values range from {low} to {high}; integer images must lie in "
                "0..255"
            )
        return array.astype(np.uint8)
    finite = np.isfinite(array)
    if not finite.all():
        raise DataError(
            f"float image contains {int((~finite).sum())} non-finite value(s) (NaN or Inf); "
            "float images must lie in [0, 1]"
        )
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        raise DataError(
            f"float image values range from {low:.6g} to {high:.6g}; float images must lie in "
            "[0, 1] (they are mapped to levels by round(x * 255))"
        )
    return np.rint(array.astype(np.float64) * 255.0).astype(np.uint8)


def _validate_images(array: np.ndarray) -> np.ndarray:
    _check_numeric(array, "image")
    array = _to_channels_first(array)
    n, _, h, w = array.shape
    if n < 1:
        raise DataError("image array has no images; at least 1 image is needed")
    if not (MIN_IMAGE_SIDE <= h <= MAX_IMAGE_SIDE and MIN_IMAGE_SIDE <= w <= MAX_IMAGE_SIDE):
        raise DataError(
            f"images are {h}x{w} (H x W, array shape {array.shape}); height and width must be "
            f"between {MIN_IMAGE_SIDE} and {MAX_IMAGE_SIDE}"
        )
    return np.ascontiguousarray(_to_levels(array))
