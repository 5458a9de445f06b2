"""Image data: built-in image sets, exact grid symmetries, (de)quantization and PNG grids.

Images are uint8 pixel levels ``(N, C, H, W)``. A flow models continuous values, so levels ``k``
are dequantized to ``(k + u) / 256`` with ``u ~ U[0, 1)`` (uniform dequantization) and samples are
quantized back with ``floor(256 x)``; the two are exact inverses on levels.
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np
import torch
from PIL import Image

from flows.data.dataset import MAX_IMAGE_SIDE, MIN_IMAGE_SIDE, DataError

__all__ = [
    "GRID_GROUPS",
    "MAX_GRID_SIDE",
    "apply_grid_element",
    "dequantize",
    "dequantize_midpoint",
    "digits",
    "grid_png",
    "image_patches",
    "quantize",
    "rotated_digits",
]

DIGITS_COUNT = 1797
DIGITS_MAX_VALUE = 16
MAX_GRID_SIDE = 8192
GRID_GAP_LEVEL = 128

# Each element is (k, flip): rotate by k quarter turns (np.rot90 on the last two axes), then flip
# the last axis if flip is set. Identity first, so element 0 is always the identity.
GRID_GROUPS: dict[str, tuple[tuple[int, bool], ...]] = {
    "C2": ((0, False), (2, False)),
    "C4": ((0, False), (1, False), (2, False), (3, False)),
    "D1": ((0, False), (0, True)),
    # (2, True) is a flip of the second-last axis: rot180 flips both axes, the flip undoes one.
    "D2": ((0, False), (0, True), (2, True), (2, False)),
    "D4": tuple((k, flip) for flip in (False, True) for k in range(4)),
}


def _check_count(n: int, name: str = "n") -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise DataError(f"{name}={n!r} is not valid; {name} must be a positive integer")


def apply_grid_element(images: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Applies one exact grid symmetry to the last two axes: ``k`` quarter turns, then a flip.

    Args:
        images: an array ``(..., H, W)``; odd ``k`` needs ``H == W`` to keep the shape.
        k: the number of counter-clockwise quarter turns (``np.rot90``).
        flip: whether to then flip the last axis (``np.flip(axis=-1)``).

    Returns:
        The transformed array (a view where numpy allows).
    """
    out = np.rot90(images, k, axes=(-2, -1))
    return np.flip(out, axis=-1) if flip else out


def _group_elements(group: str) -> tuple[tuple[int, bool], ...]:
    if group not in GRID_GROUPS:
        raise DataError(f"group {group!r} is not supported here; use one of {sorted(GRID_GROUPS)}")
    return GRID_GROUPS[group]


def _apply_random_elements(images: np.ndarray, group: str, rng: np.random.Generator) -> np.ndarray:
    elements = _group_elements(group)
    choice = rng.integers(0, len(elements), size=len(images))
    out = np.empty_like(images)
    for index, (k, flip) in enumerate(elements):
        mask = choice == index
        out[mask] = apply_grid_element(images[mask], k, flip)
    return out


@functools.cache
def _all_digits() -> np.ndarray:
    # Imported here: scikit-learn costs about a second to import and only these loaders need it.
    from sklearn.datasets import load_digits

    values = load_digits().images
    levels = np.rint(values * (255.0 / DIGITS_MAX_VALUE)).astype(np.uint8)
    levels.flags.writeable = False
    return levels[:, None]


def _digits_subset(n: int | None, rng: np.random.Generator) -> np.ndarray:
    everything = _all_digits()
    if n is None:
        return everything.copy()
    _check_count(n)
    # Sorted so that n == 1797 gives back the original order, i.e. digits(1797) == digits().
    index = np.sort(rng.choice(DIGITS_COUNT, size=n, replace=n > DIGITS_COUNT))
    return everything[index]


def digits(n: int | None = None, seed: int = 0) -> np.ndarray:
    """The 1,797 8x8 handwritten digits of scikit-learn (UCI optical digits) as uint8 levels.

    The original values 0..16 become levels ``round(v * 255 / 16)`` in 0..255.

    Args:
        n: ``None`` for all digits in their original order; otherwise a seeded random subset of
            ``n`` digits, kept in the original order, drawn with replacement only if ``n > 1797``.
        seed: the seed of ``np.random.default_rng`` for the subset.

    Returns:
        uint8 ``(N, 1, 8, 8)``.

    Example:
        >>> digits(4).shape
        (4, 1, 8, 8)
    """
    return _digits_subset(n, np.random.default_rng(seed))


def rotated_digits(n: int | None = None, seed: int = 0, group: str = "D4") -> np.ndarray:
    """The digits of :func:`digits`, each moved by a uniformly random exact grid symmetry.

    The element is drawn from ``group``: ``"C2"`` (half turns), ``"C4"`` (quarter turns),
    ``"D1"`` (a flip of the last axis), ``"D2"`` (identity, both axis flips, half turn) or
    ``"D4"`` (quarter turns, each optionally followed by a flip of the last axis); see
    :data:`GRID_GROUPS`. The images before transformation are exactly ``digits(n, seed)``.

    Args:
        n: as for :func:`digits`; ``None`` transforms all 1,797 digits.
        seed: the seed of ``np.random.default_rng`` for the subset and the group elements.
        group: the name of the group.

    Returns:
        uint8 ``(N, 1, 8, 8)``.
    """
    _group_elements(group)
    rng = np.random.default_rng(seed)
    return _apply_random_elements(_digits_subset(n, rng), group, rng)


@functools.cache
def _sample_images() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_sample_images

    images = tuple(np.asarray(image, dtype=np.uint8) for image in load_sample_images().images)
    for image in images:
        image.flags.writeable = False
    return images


def image_patches(
    n: int, size: int = 8, seed: int = 0, augment_group: str | None = None
) -> np.ndarray:
    """Random square RGB crops of scikit-learn's two sample photographs (china.jpg, flower.jpg).

    Each patch picks a photograph uniformly and a top-left corner uniformly among the positions
    where the crop fits. With ``augment_group``, each patch is then moved by a uniformly random
    element of that grid group, as in :func:`rotated_digits`.

    Args:
        n: the number of patches, at least 1.
        size: the side of a patch in pixels, 2..256.
        seed: the seed of ``np.random.default_rng``.
        augment_group: ``None`` for no augmentation, or a key of :data:`GRID_GROUPS`.

    Returns:
        uint8 ``(n, 3, size, size)``.

    Example:
        >>> image_patches(2, size=4).shape
        (2, 3, 4, 4)
    """
    _check_count(n)
    _check_count(size, "size")
    if not MIN_IMAGE_SIDE <= size <= MAX_IMAGE_SIDE:
        raise DataError(
            f"patch size {size} is out of range; size must be between {MIN_IMAGE_SIDE} and "
            f"{MAX_IMAGE_SIDE}"
        )
    if augment_group is not None:
        _group_elements(augment_group)
    photos = _sample_images()
    rng = np.random.default_rng(seed)
    source = rng.integers(0, len(photos), size=n)
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    for index, photo in enumerate(photos):
        rows = np.flatnonzero(source == index)
        height, width, _ = photo.shape
        top = rng.integers(0, height - size + 1, size=len(rows))
        left = rng.integers(0, width - size + 1, size=len(rows))
        # (H', W', 3, size, size): every crop as a view, so indexing gathers all crops at once.
        windows = np.lib.stride_tricks.sliding_window_view(photo, (size, size), axis=(0, 1))
        out[rows] = windows[top, left]
    if augment_group is not None:
        out = _apply_random_elements(out, augment_group, rng)
    return out


def quantize(x01: np.ndarray | torch.Tensor) -> np.ndarray:
    """Maps values in [0, 1] to levels ``floor(256 x)``, clipped to 0..255; inverts dequantize.

    Args:
        x01: values, nominally in [0, 1]; out-of-range values are clipped.

    Returns:
        uint8 levels of the same shape.

    Raises:
        DataError: some value is NaN or infinite.

    Example:
        >>> quantize(np.array([0.0, 0.5, 0.999, 1.0])).tolist()
        [0, 128, 255, 255]
    """
    if isinstance(x01, torch.Tensor):
        x01 = x01.detach().cpu().numpy()
    values = np.asarray(x01)
    if values.dtype.kind not in "biuf":
        raise DataError(f"quantize needs real values in [0, 1], got dtype {values.dtype}")
    finite = np.isfinite(values)
    if not finite.all():
        raise DataError(
            f"quantize got {int((~finite).sum())} non-finite value(s) (NaN or Inf); values must "
            "be finite, nominally in [0, 1]"
        )
    return np.clip(np.floor(values * 256.0), 0, 255).astype(np.uint8)


def _levels_as_float(levels: torch.Tensor) -> torch.Tensor:
    if not isinstance(levels, torch.Tensor):
        raise DataError(f"levels must be a torch.Tensor of integer levels, got {type(levels)}")
    if levels.is_floating_point() or levels.is_complex() or levels.dtype == torch.bool:
        raise DataError(
            f"levels have dtype {levels.dtype}; dequantize takes integer levels 0..255 "
            "(quantize float data first)"
        )
    if levels.numel() and (int(levels.min()) < 0 or int(levels.max()) > 255):
        raise DataError(
            f"levels range from {int(levels.min())} to {int(levels.max())}; levels must lie in "
            "0..255"
        )
    return levels.to(torch.get_default_dtype())


def dequantize(levels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantization: levels ``k`` become ``(k + u) / 256`` with ``u ~ U[0, 1)``.

    Args:
        levels: integer levels in 0..255, any shape and device.
        generator: the source of ``u`` (on the device of ``levels``); ``None`` uses torch's
            global generator.

    Returns:
        Values in [0, 1) of ``torch.get_default_dtype()``, with ``quantize(result) == levels``.

    Raises:
        DataError: ``levels`` are not integers in 0..255.
    """
    k = _levels_as_float(levels)
    u = torch.rand(k.shape, generator=generator, dtype=k.dtype, device=k.device)
    x = (k + u) / 256
    # k + u can round up to k + 1 in float32 when u is within an ulp of 1; capping at the largest
    # float below (k + 1) / 256 keeps quantize an exact inverse (the scaling by 256 is exact).
    ceiling = torch.nextafter((k + 1) / 256, torch.zeros_like(k))
    return torch.minimum(x, ceiling)


def dequantize_midpoint(levels: torch.Tensor) -> torch.Tensor:
    """Deterministic dequantization to bin centres: levels ``k`` become ``(k + 0.5) / 256``.

    Args:
        levels: integer levels in 0..255.

    Returns:
        Values of ``torch.get_default_dtype()``, with ``quantize(result) == levels``.

    Raises:
        DataError: ``levels`` are not integers in 0..255.
    """
    return (_levels_as_float(levels) + 0.5) / 256


def grid_png(images_uint8: np.ndarray, columns: int | None = None, scale: int = 4) -> bytes:
    """Tiles images into one PNG: nearest-neighbour upscaled, with 1-pixel mid-grey gaps.

    Args:
        images_uint8: uint8 ``(N, C, H, W)``; ``C`` = 1 is grayscale, 3 RGB (2 and 4 become
            grayscale and RGB with an alpha channel).
        columns: tiles per row; ``None`` for ``ceil(sqrt(N))``, a near-square grid.
        scale: the integer upscaling factor of each pixel, at least 1.

    Returns:
        The PNG file's bytes, ``columns * W * scale + columns - 1`` pixels wide.

    Raises:
        DataError: the array is not uint8 (N, C, H, W) with C in 1..4, or the grid would be
            larger than 8192 pixels on a side.
    """
    images = np.asarray(images_uint8)
    if images.dtype != np.uint8 or images.ndim != 4 or not 1 <= images.shape[1] <= 4:
        raise DataError(
            f"grid_png needs uint8 (N, C, H, W) images with C from 1 to 4, got {images.dtype} "
            f"with shape {images.shape}"
        )
    n, channels, height, width = images.shape
    if n < 1:
        raise DataError("grid_png got no images; at least 1 is needed")
    columns = math.ceil(math.sqrt(n)) if columns is None else columns
    _check_count(columns, "columns")
    _check_count(scale, "scale")
    rows = math.ceil(n / columns)
    tile_h, tile_w = height * scale, width * scale
    out_h, out_w = rows * (tile_h + 1) - 1, columns * (tile_w + 1) - 1
    if max(out_h, out_w) > MAX_GRID_SIDE:
        raise DataError(
            f"the grid would be {out_w}x{out_h} pixels; at most {MAX_GRID_SIDE} per side is "
            "allowed (pass fewer images, a smaller scale or another column count)"
        )
    tiles = images.repeat(scale, axis=2).repeat(scale, axis=3).transpose(0, 2, 3, 1)
    canvas = np.full((out_h, out_w, channels), GRID_GAP_LEVEL, dtype=np.uint8)
    for index, tile in enumerate(tiles):
        top, left = divmod(index, columns)
        top, left = top * (tile_h + 1), left * (tile_w + 1)
        canvas[top : top + tile_h, left : left + tile_w] = tile
    # Pillow picks the mode from the channel count: L, LA, RGB or RGBA.
    picture = Image.fromarray(canvas[..., 0] if channels == 1 else canvas)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
