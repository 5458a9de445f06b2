"""Tests of flows.data: validation, generators, grid symmetries, (de)quantization, readers."""

from __future__ import annotations

import ast
import io
import math
import re
import struct
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image

from flows.data import (
    BUILTIN_DATASETS,
    DataError,
    Dataset,
    ReadLimits,
    dequantize,
    dequantize_midpoint,
    digits,
    eight_gaussians,
    eight_gaussians_log_prob,
    grid_png,
    image_patches,
    load_builtin,
    quantize,
    read_dataset_file,
    rings,
    rings_log_prob,
    rotated_digits,
    validate_dataset,
)
from flows.data.images import GRID_GROUPS, apply_grid_element
from flows.errors import FileError

DATA_PACKAGE = Path(__file__).resolve().parents[1] / "flows" / "data"


# --- helpers -----------------------------------------------------------------------------------


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npz_bytes(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def png_bytes(pixels: np.ndarray, mode: str | None = None, compress_level: int = 6) -> bytes:
    image = Image.fromarray(pixels) if mode is None else Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def zip_bytes(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return points.astype(np.float64) @ np.array([[c, -s], [s, c]]).T


def group_orbit(image: np.ndarray, group: str) -> list[np.ndarray]:
    return [apply_grid_element(image, k, flip) for k, flip in GRID_GROUPS[group]]


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# --- Dataset and validate_dataset -------------------------------------------------------------


def test_dataset_properties_and_checksum() -> None:
    points = validate_dataset(np.arange(12, dtype=np.int64).reshape(6, 2), "points")
    assert (points.kind, points.dtype, points.shape, points.count) == (
        "points",
        "float32",
        (2,),
        6,
    )
    same = validate_dataset(np.arange(12, dtype=np.float32).reshape(6, 2), "points")
    assert same.checksum() == points.checksum()
    assert len(points.checksum()) == 64
    # Same bytes, different shape or kind: different checksums.
    reshaped = validate_dataset(np.arange(12, dtype=np.float32).reshape(3, 4), "points")
    assert reshaped.checksum() != points.checksum()
    changed = validate_dataset(np.arange(1, 13, dtype=np.float32).reshape(6, 2), "points")
    assert changed.checksum() != points.checksum()
    # A Fortran-ordered array hashes like its C-ordered equal.
    fortran = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(6, 2))
    assert Dataset(fortran, "points").checksum() == points.checksum()


def test_dataset_rejects_uncanonical_arrays() -> None:
    with pytest.raises(DataError, match="validate_dataset"):
        Dataset(np.zeros((2, 2)), "points")
    with pytest.raises(DataError, match="uint8 rank-4"):
        Dataset(np.zeros((2, 8, 8), np.uint8), "images")
    with pytest.raises(DataError, match="kind 'audio'"):
        validate_dataset(np.zeros((2, 2)), "audio")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((3,)), "rank 2"),
        (np.zeros((2, 2, 2)), "rank 2"),
        (np.zeros((0, 2)), "no rows"),
        (np.zeros((4, 65)), "D=65"),
        (np.zeros((4, 0)), "D=0"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), "non-finite"),
        (np.array([[0.0, 1.0], [np.inf, 2.0]]), "row 1, column 0"),
        (np.array([[0.0, 2e6]]), "magnitude 2e+06"),
        (np.array([[1e300, 0.0]]), "magnitude 1e+300"),
        (np.array([[1 + 2j, 0]]), "complex128"),
        (np.array([["a", "b"]]), "<U1"),
        (np.array([[object(), 1]], dtype=object), "object"),
    ],
)
def test_validate_points_rejects(array: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=re.escape(message)):
        validate_dataset(array, "points")


def test_validate_points_casts_to_float32() -> None:
    dataset = validate_dataset(np.array([[1, 2], [3, -4]], dtype=np.int16), "points")
    assert dataset.array.dtype == np.float32
    assert dataset.array.flags.c_contiguous
    np.testing.assert_array_equal(dataset.array, [[1, 2], [3, -4]])


def test_validate_images_layouts() -> None:
    levels = np.random.default_rng(0).integers(0, 256, size=(5, 3, 6, 7), dtype=np.uint8)
    assert validate_dataset(levels, "images").shape == (3, 6, 7)
    # Rank 3 is one channel.
    gray = validate_dataset(levels[:, 0], "images")
    assert gray.shape == (1, 6, 7)
    np.testing.assert_array_equal(gray.array[:, 0], levels[:, 0])
    # Channels-last is recognised and transposed.
    channels_last = validate_dataset(levels.transpose(0, 2, 3, 1), "images")
    np.testing.assert_array_equal(channels_last.array, levels)
    assert channels_last.array.flags.c_contiguous


def test_validate_images_value_conversions() -> None:
    as_int = validate_dataset(np.array([[[0, 255], [17, 3]]], dtype=np.int64), "images")
    np.testing.assert_array_equal(as_int.array[0, 0], [[0, 255], [17, 3]])
    as_bool = validate_dataset(np.array([[[True, False], [False, True]]]), "images")
    np.testing.assert_array_equal(as_bool.array[0, 0], [[255, 0], [0, 255]])
    as_float = validate_dataset(np.array([[[0.0, 1.0], [0.5, 0.2]]]), "images")
    np.testing.assert_array_equal(as_float.array[0, 0], [[0, 255], [128, 51]])
    assert as_float.dtype == "uint8"


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((2, 2, 2, 2, 2)), "rank 5"),
        (np.zeros((2, 5, 8, 6)), "channel axis"),
        (np.zeros((0, 1, 8, 8)), "no images"),
        (np.zeros((2, 1, 1, 8)), "1x8"),
        (np.zeros((2, 1, 8, 257)), "8x257"),
        (np.full((1, 1, 4, 4), 1.5), "from 1.5 to 1.5"),
        (np.full((1, 1, 4, 4), -0.25), "from -0.25"),
        (np.full((1, 1, 4, 4), np.nan), "non-finite"),
        (np.arange(-1, 15).reshape(1, 1, 4, 4), "from -1 to 14"),
        (np.full((1, 1, 4, 4), 300, dtype=np.int32), "from 300 to 300"),
        (np.full((1, 1, 4, 4), 1j), "complex"),
    ],
)
def test_validate_images_rejects(array: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=re.escape(message)):
        validate_dataset(array, "images")


# --- toy 2-D densities ------------------------------------------------------------------------


@pytest.mark.parametrize("generate", [eight_gaussians, rings])
def test_toy_generators_are_deterministic(generate: Callable[..., np.ndarray]) -> None:
    a, b, c = generate(500, seed=3), generate(500, seed=3), generate(500, seed=4)
    assert a.shape == (500, 2)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_toy_generators_reject_bad_counts(n: object) -> None:
    with pytest.raises(DataError, match="positive integer"):
        eight_gaussians(n)  # type: ignore[arg-type]


def test_eight_gaussians_log_prob_is_d8_invariant() -> None:
    x = eight_gaussians(2000, seed=5)
    reference = eight_gaussians_log_prob(x)
    for k in range(1, 8):
        rotated = eight_gaussians_log_prob(rotate(x, k * math.pi / 4))
        np.testing.assert_allclose(rotated, reference, rtol=0, atol=1e-5)
    mirrored = x * np.array([1.0, -1.0])
    np.testing.assert_allclose(eight_gaussians_log_prob(mirrored), reference, rtol=0, atol=1e-5)
    # A rotation outside D8 must change the density, or the check above would prove nothing.
    off = eight_gaussians_log_prob(rotate(x, math.pi / 8))
    assert np.abs(off - reference).max() > 1.0


def test_eight_gaussians_log_prob_normalised() -> None:
    step = 0.05
    axis = np.arange(-9.0, 9.0, step) + step / 2
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1)
    total = np.exp(eight_gaussians_log_prob(grid)).sum() * step**2
    assert total == pytest.approx(1.0, abs=1e-4)


def test_rings_log_prob_is_normalised_and_matches_the_samples() -> None:
    step = 0.01
    axis = np.arange(-3.7, 3.7, step) + step / 2
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1)
    density = np.exp(rings_log_prob(grid))
    assert density.sum() * step**2 == pytest.approx(1.0, abs=1e-3)
    # The mass of the annulus 1.9 < r < 2.1 (the middle ring's +-1 std), two ways.
    radius = np.sqrt((grid**2).sum(-1))
    annulus = density[(radius > 1.9) & (radius < 2.1)].sum() * step**2
    sample_radius = np.sqrt((rings(40_000, seed=2).astype(np.float64) ** 2).sum(-1))
    sampled = np.mean((sample_radius > 1.9) & (sample_radius < 2.1))
    assert annulus == pytest.approx(sampled, abs=0.01)
    assert annulus == pytest.approx(0.6827 / 3, abs=0.005)


def test_eight_gaussians_log_prob_rejects_bad_shape() -> None:
    with pytest.raises(DataError, match=r"\(\.\.\., 2\)"):
        eight_gaussians_log_prob(np.zeros((4, 3)))


def test_eight_gaussians_samples_match_the_mixture() -> None:
    x = eight_gaussians(40_000, seed=0).astype(np.float64)
    angles = np.arange(8) * math.pi / 4
    centers = 4 * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    nearest = ((x[:, None] - centers) ** 2).sum(-1).argmin(1)
    np.testing.assert_allclose(np.bincount(nearest, minlength=8) / len(x), 1 / 8, atol=0.01)
    np.testing.assert_allclose((x - centers[nearest]).std(axis=0), 0.5, atol=0.01)


def test_rings_radii_and_weights() -> None:
    x = rings(30_000, seed=0).astype(np.float64)
    radius = np.linalg.norm(x, axis=1)
    ring = np.rint(radius).astype(int)
    assert set(np.unique(ring)) == {1, 2, 3}
    np.testing.assert_allclose(np.bincount(ring)[1:] / len(x), [1 / 6, 2 / 6, 3 / 6], atol=0.01)
    assert (radius - ring).std() == pytest.approx(0.1, abs=0.005)
    # O(2)-invariance: the angle is uniform.
    quadrant_counts = np.bincount((np.arctan2(x[:, 1], x[:, 0]) // (math.pi / 2)).astype(int) + 2)
    np.testing.assert_allclose(quadrant_counts / len(x), 0.25, atol=0.01)


# --- image data -------------------------------------------------------------------------------


def test_digits_levels_and_shape() -> None:
    everything = digits()
    assert everything.shape == (1797, 1, 8, 8)
    assert everything.dtype == np.uint8
    assert (everything.min(), everything.max()) == (0, 255)
    allowed = {round(v * 255 / 16) for v in range(17)}
    assert set(np.unique(everything).tolist()) <= allowed
    assert len(np.unique(everything)) == 17
    # The full subset keeps the original order; the cached array is not handed out for writing.
    np.testing.assert_array_equal(digits(1797, seed=9), everything)
    everything[:] = 0
    assert digits().max() == 255


def test_digits_subsets() -> None:
    a, b = digits(50, seed=1), digits(50, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, digits(50, seed=2))
    assert len({row.tobytes() for row in a}) == 50  # without replacement
    assert digits(2500, seed=0).shape == (2500, 1, 8, 8)
    with pytest.raises(DataError, match="positive integer"):
        digits(0)


@pytest.mark.parametrize("group", sorted(GRID_GROUPS))
def test_grid_groups_are_closed_groups_of_the_right_order(group: str) -> None:
    generic = np.arange(16).reshape(4, 4)
    orbit = {image.tobytes() for image in group_orbit(generic, group)}
    expected_order = {"C2": 2, "C4": 4, "D1": 2, "D2": 4, "D4": 8}[group]
    assert len(orbit) == expected_order
    for first in group_orbit(generic, group):
        for second in group_orbit(first, group):
            assert second.tobytes() in orbit


def test_d2_is_the_two_axis_flips() -> None:
    generic = np.arange(12).reshape(3, 4)
    orbit = {image.tobytes() for image in group_orbit(generic, "D2")}
    expected = [generic, generic[:, ::-1], generic[::-1, :], generic[::-1, ::-1]]
    assert orbit == {np.ascontiguousarray(image).tobytes() for image in expected}


@pytest.mark.parametrize("group", sorted(GRID_GROUPS))
def test_rotated_digits_are_exact_grid_transforms(group: str) -> None:
    moved = rotated_digits(400, seed=7, group=group)
    base = digits(400, seed=7)
    assert moved.shape == base.shape
    assert moved.dtype == np.uint8
    used = set()
    for original, image in zip(base, moved, strict=True):
        matches = [
            index
            for index, candidate in enumerate(group_orbit(original, group))
            if np.array_equal(candidate, image)
        ]
        assert matches, f"an output digit is not a {group} transform of its original"
        used.add(matches[0] if len(matches) == 1 else -1)
    # Every element of the group is drawn (digits have few exact symmetries).
    assert set(range(len(GRID_GROUPS[group]))) <= used
    np.testing.assert_array_equal(moved, rotated_digits(400, seed=7, group=group))


def test_rotated_digits_rejects_unknown_group() -> None:
    with pytest.raises(DataError, match=r"'C8'.*'C2', 'C4', 'D1', 'D2', 'D4'"):
        rotated_digits(10, group="C8")


def test_image_patches_are_crops_of_the_photographs() -> None:
    from sklearn.datasets import load_sample_images

    patches = image_patches(40, size=8, seed=3)
    assert patches.shape == (40, 3, 8, 8)
    assert patches.dtype == np.uint8
    np.testing.assert_array_equal(patches, image_patches(40, size=8, seed=3))
    assert not np.array_equal(patches, image_patches(40, size=8, seed=4))
    windows = [
        np.lib.stride_tricks.sliding_window_view(photo, (8, 8), axis=(0, 1))
        for photo in load_sample_images().images
    ]
    for patch in patches[:3]:
        assert any((window == patch).all(axis=(2, 3, 4)).any() for window in windows)


def test_image_patches_augmented() -> None:
    plain = image_patches(300, size=6, seed=2, augment_group=None)
    augmented = image_patches(300, size=6, seed=2, augment_group="D4")
    assert augmented.shape == (300, 3, 6, 6)
    for original, moved in zip(plain, augmented, strict=True):
        assert any(np.array_equal(moved, image) for image in group_orbit(original, "D4"))
    assert not np.array_equal(plain, augmented)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"size": 1}, "between 2 and 256"), ({"size": 300}, "between 2 and 256"),
     ({"augment_group": "C3"}, "'C3'")],
)  # fmt: skip
def test_image_patches_rejects(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message):
        image_patches(5, **kwargs)  # type: ignore[arg-type]


# --- quantization -----------------------------------------------------------------------------


def test_quantize_dequantize_round_trip_on_every_level() -> None:
    # 10 million draws: in float32, k + u rounds up to k + 1 for about 1 in 130,000 draws when
    # k >= 128, so an unguarded dequantize fails this test.
    levels = torch.arange(256, dtype=torch.uint8).repeat(40_000)
    generator = torch.Generator().manual_seed(0)
    x = dequantize(levels, generator)
    assert x.dtype == torch.get_default_dtype()
    assert bool(((x >= levels / 256) & (x < (levels.double() + 1) / 256)).all())
    np.testing.assert_array_equal(quantize(x), levels.numpy())
    again = dequantize(levels[:100], torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, x[:100])


def test_dequantize_follows_the_default_dtype() -> None:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        x = dequantize(torch.tensor([0, 255]), torch.Generator().manual_seed(1))
        assert x.dtype == torch.float64
        assert dequantize_midpoint(torch.tensor([3])).dtype == torch.float64
    finally:
        torch.set_default_dtype(previous)


def test_dequantize_midpoint() -> None:
    levels = torch.arange(256)
    x = dequantize_midpoint(levels)
    torch.testing.assert_close(x, (levels + 0.5) / 256)
    np.testing.assert_array_equal(quantize(x), levels.numpy())


def test_quantize() -> None:
    values = np.array([-0.1, 0.0, 1 / 256 - 1e-9, 1 / 256, 0.5, 0.99999, 1.0, 1.7])
    assert quantize(values).tolist() == [0, 0, 0, 1, 128, 255, 255, 255]
    assert quantize(torch.tensor([[0.25]], requires_grad=True)).tolist() == [[64]]
    with pytest.raises(DataError, match="non-finite"):
        quantize(np.array([0.5, np.nan]))


@pytest.mark.parametrize(
    ("levels", "message"),
    [
        (torch.tensor([0.5]), "integer levels"),
        (torch.tensor([True]), "integer levels"),
        (torch.tensor([-1, 3]), "from -1 to 3"),
        (torch.tensor([256]), "from 256 to 256"),
    ],
)
def test_dequantize_rejects(levels: torch.Tensor, message: str) -> None:
    with pytest.raises(DataError, match=message):
        dequantize(levels)
    with pytest.raises(DataError, match=message):
        dequantize_midpoint(levels)


# --- grid_png ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "mode"), [(1, "L"), (2, "LA"), (3, "RGB"), (4, "RGBA")])
def test_grid_png_layout(channels: int, mode: str) -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(7, channels, 5, 6), dtype=np.uint8)
    picture = Image.open(io.BytesIO(grid_png(images, scale=2)))
    assert picture.format == "PNG"
    assert picture.mode == mode
    # ceil(sqrt(7)) = 3 columns, 3 rows; tiles 10x12 with 1-pixel gaps.
    assert picture.size == (3 * 12 + 2, 3 * 10 + 2)
    pixels = np.asarray(picture).reshape(32, 38, channels)
    expected_last = images[6].repeat(2, axis=1).repeat(2, axis=2).transpose(1, 2, 0)
    np.testing.assert_array_equal(pixels[22:32, 0:12], expected_last)
    np.testing.assert_array_equal(pixels[10, :], 128)  # a gap row


def test_grid_png_columns() -> None:
    images = np.zeros((4, 1, 8, 8), dtype=np.uint8)
    picture = Image.open(io.BytesIO(grid_png(images, columns=4, scale=1)))
    assert picture.size == (4 * 8 + 3, 8)


@pytest.mark.parametrize(
    ("images", "kwargs", "message"),
    [
        (np.zeros((2, 5, 4, 4), np.uint8), {}, "C from 1 to 4"),
        (np.zeros((2, 1, 4, 4), np.float32), {}, "float32"),
        (np.zeros((0, 1, 4, 4), np.uint8), {}, "no images"),
        (np.zeros((2, 1, 4, 4), np.uint8), {"scale": 0}, "scale"),
        (np.zeros((2, 1, 4, 4), np.uint8), {"columns": 0}, "columns"),
        (np.zeros((1, 1, 256, 256), np.uint8), {"scale": 40}, "10240x10240"),
    ],
)
def test_grid_png_rejects(images: np.ndarray, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(DataError, match=message):
        grid_png(images, **kwargs)


# --- built-in datasets ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILTIN_DATASETS))
def test_load_builtin(name: str) -> None:
    spec = BUILTIN_DATASETS[name]
    small = load_builtin(name, n=20, seed=1)
    assert small.kind == spec.kind
    assert small.count == 20
    assert small.checksum() == load_builtin(name, n=20, seed=1).checksum()
    assert small.checksum() != load_builtin(name, n=20, seed=2).checksum()
    assert spec.description
    expected_shape = {
        "points": (2,),
        "images": (3, 8, 8) if name == "image_patches" else (1, 8, 8),
    }
    assert small.shape == expected_shape[spec.kind]


def test_load_builtin_defaults() -> None:
    assert {name: spec.default_n for name, spec in BUILTIN_DATASETS.items()} == {
        "eight_gaussians": 10_000,
        "rings": 10_000,
        "digits": 1797,
        "rotated_digits": 1797,
        "image_patches": 2000,
    }
    assert load_builtin("digits").count == 1797
    assert load_builtin("rings").count == 10_000


@pytest.mark.parametrize(
    ("name", "n", "message"),
    [
        ("moons", None, r"'moons'.*'digits', 'eight_gaussians', 'image_patches'"),
        ("rings", 0, "from 1 to 200000"),
        ("rings", 200_001, "from 1 to 200000"),
        ("rings", 2.0, "from 1 to 200000"),
    ],
)
def test_load_builtin_rejects(name: str, n: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_builtin(name, n=n)  # type: ignore[arg-type]


def test_data_package_imports_nothing_else_from_flows() -> None:
    for path in DATA_PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                if name == "flows" or name.startswith("flows."):
                    assert name.startswith("flows.data"), f"{path.name} imports {name}"


# --- readers: valid files ---------------------------------------------------------------------


def test_read_npy_points_and_images(rng: np.random.Generator) -> None:
    points = rng.normal(size=(30, 3)).astype(np.float64)
    dataset = read_dataset_file(npy_bytes(points), "points.NPY")
    assert (dataset.kind, dataset.dtype, dataset.shape) == ("points", "float32", (3,))
    np.testing.assert_array_equal(dataset.array, points.astype(np.float32))
    gray = rng.integers(0, 256, size=(4, 8, 8), dtype=np.uint8)
    images = read_dataset_file(npy_bytes(gray), "x.npy")
    assert (images.kind, images.shape) == ("images", (1, 8, 8))
    np.testing.assert_array_equal(images.array[:, 0], gray)
    colour = rng.integers(0, 256, size=(4, 3, 8, 8), dtype=np.uint8)
    assert read_dataset_file(npy_bytes(colour), "x.npy", kind="images").shape == (3, 8, 8)


@pytest.mark.parametrize("compressed", [False, True])
def test_read_npz_choice_of_array(compressed: bool, rng: np.random.Generator) -> None:
    x = rng.normal(size=(10, 2))
    other = rng.normal(size=(3, 2))
    by_x = read_dataset_file(npz_bytes(compressed, x=x, labels=other), "d.npz")
    np.testing.assert_array_equal(by_x.array, x.astype(np.float32))
    by_data = read_dataset_file(npz_bytes(compressed, data=x, labels=other), "d.npz")
    np.testing.assert_array_equal(by_data.array, x.astype(np.float32))
    single = read_dataset_file(npz_bytes(compressed, whatever=other), "d.Npz")
    np.testing.assert_array_equal(single.array, other.astype(np.float32))


def test_read_csv(rng: np.random.Generator) -> None:
    content = b"\xef\xbb\xbfx,y\n1.5,-2\n\n3e2, 4 \r\n-0.25,0\n"
    dataset = read_dataset_file(content, "pts.csv")
    np.testing.assert_array_equal(dataset.array, [[1.5, -2], [300, 4], [-0.25, 0]])
    points = rng.normal(size=(50, 5)).astype(np.float32)
    text = "\n".join(",".join(repr(float(v)) for v in row) for row in points)
    np.testing.assert_array_equal(read_dataset_file(text.encode(), "p.csv").array, points)
    single_column = read_dataset_file(b"value\n1\n2\n", "p.csv", kind="points")
    assert single_column.shape == (1,)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"1,2\n" + b"1," * 5_000_000 + b"1\n", "line 2 has 5000001 columns; at most 64"),
        (b"1,2\n" + b"1" * 5_000_000 + b"\n", "line 2 is 5000001 characters long"),
        (b'1,2\n"' + b"1" * 5_000_000 + b'"\n', "line 2 is 5000003 characters long"),
    ],
    ids=["five-million-fields", "five-million-digits", "five-million-quoted"],
)
def test_read_csv_refuses_a_huge_line_before_parsing_it(content: bytes, fragment: str) -> None:
    """Issue 12: one line of 10 M fields was split and parsed in full (28 s, gigabytes) before
    its column count was checked; now each line is measured first."""
    started = time.perf_counter()
    with pytest.raises(DataError, match=re.escape(fragment)):
        read_dataset_file(content, "huge.csv")
    assert time.perf_counter() - started < 1.0


def test_read_png_zip_gray_and_rgb(rng: np.random.Generator) -> None:
    gray = rng.integers(0, 256, size=(3, 6, 5), dtype=np.uint8)
    # Written in reverse order, with a directory, macOS debris and a dotfile to ignore.
    entries = {f"imgs/{index}.png": png_bytes(gray[index]) for index in reversed(range(3))}
    entries |= {"imgs/": b"", "__MACOSX/imgs/._0.png": b"junk", "imgs/.DS_Store": b"junk"}
    dataset = read_dataset_file(zip_bytes(entries), "IMAGES.ZIP")
    assert (dataset.kind, dataset.shape, dataset.count) == ("images", (1, 6, 5), 3)
    np.testing.assert_array_equal(dataset.array[:, 0], gray)

    rgb = rng.integers(0, 256, size=(2, 4, 4, 3), dtype=np.uint8)
    archive = zip_bytes({"a.png": png_bytes(rgb[0]), "b.PNG": png_bytes(rgb[1])})
    colour = read_dataset_file(archive, "rgb.zip", kind="images")
    np.testing.assert_array_equal(colour.array, rgb.transpose(0, 3, 1, 2))


def test_read_png_zip_converts_modes(rng: np.random.Generator) -> None:
    rgba = rng.integers(0, 256, size=(4, 4, 4), dtype=np.uint8)
    from_rgba = read_dataset_file(zip_bytes({"a.png": png_bytes(rgba)}), "a.zip")
    np.testing.assert_array_equal(from_rgba.array[0], rgba[..., :3].transpose(2, 0, 1))

    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[:2] = (255, 0, 0)
    from_palette = read_dataset_file(zip_bytes({"p.png": png_bytes(rgb, "P")}), "p.zip")
    np.testing.assert_array_equal(from_palette.array[0], rgb.transpose(2, 0, 1))

    bits = np.array([[True, False], [False, True]])
    from_bits = read_dataset_file(zip_bytes({"b.png": png_bytes(bits)}), "b.zip")
    np.testing.assert_array_equal(from_bits.array[0, 0], [[255, 0], [0, 255]])

    deep = np.array([[0, 65535], [257, 32896]], dtype=np.uint16)
    from_16_bit = read_dataset_file(zip_bytes({"d.png": png_bytes(deep)}), "d.zip")
    np.testing.assert_array_equal(from_16_bit.array[0, 0], [[0, 255], [1, 128]])


def test_read_stored_zip_and_case_insensitive_suffix() -> None:
    pixels = np.full((3, 3), 7, dtype=np.uint8)
    archive = zip_bytes({"A.Png": png_bytes(pixels)}, compression=zipfile.ZIP_STORED)
    np.testing.assert_array_equal(read_dataset_file(archive, "x.Zip").array[0, 0], pixels)


# --- readers: bad files -----------------------------------------------------------------------


def _truncated_npy() -> bytes:
    return npy_bytes(np.zeros((10, 2), np.float32))[:-8]


def _lying_npy_header() -> bytes:
    buffer = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**12, 2)}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + b"\0" * 64


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG with only a header: what a decompression bomb shows before its pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def _corrupt_member_zip() -> bytes:
    content = bytearray(zip_bytes({"a.png": png_bytes(np.zeros((8, 8), np.uint8))}))
    # Flip bytes inside the compressed member data (after the 30-byte header and the name).
    for offset in range(40, 50):
        content[offset] ^= 0xFF
    return bytes(content)


def _mixed_sizes_zip() -> bytes:
    return zip_bytes(
        {
            "a.png": png_bytes(np.zeros((8, 8), np.uint8)),
            "b.png": png_bytes(np.zeros((8, 8), np.uint8)),
            "c.png": png_bytes(np.zeros((6, 8), np.uint8)),
        }
    )


def _mixed_channels_zip() -> bytes:
    return zip_bytes(
        {
            "a.png": png_bytes(np.zeros((8, 8), np.uint8)),
            "b.png": png_bytes(np.zeros((8, 8, 3), np.uint8)),
        }
    )


class BadFile(NamedTuple):
    """A file the readers refuse: its ``content`` and ``filename``, and a ``message`` fragment."""

    id: str
    content: bytes
    filename: str
    message: str


BAD_FILES: list[BadFile] = [
    BadFile(
        "pickled-npy",
        npy_bytes(np.array([{"a": 1}, None], dtype=object)),
        "o.npy",
        "contains Python objects (pickle)",
    ),
    BadFile(
        "pickled-npz",
        npz_bytes(x=np.array([{"a": 1}], dtype=object)),
        "o.npz",
        "'o.npz:x.npy' contains Python objects (pickle)",
    ),
    BadFile("truncated-npy", _truncated_npy(), "t.npy", "is truncated or corrupt"),
    BadFile(
        "lying-npy-header", _lying_npy_header(), "big.npy", "declares shape (1000000000000, 2)"
    ),
    BadFile("not-npy", b"hello world", "h.npy", "not a valid .npy file"),
    BadFile("nan-npy", npy_bytes(np.array([[0.0, np.nan]])), "n.npy", "non-finite"),
    BadFile("rank-5-npy", npy_bytes(np.zeros((2, 1, 2, 3, 3))), "r.npy", "rank 5"),
    BadFile("rank-1-npy", npy_bytes(np.zeros(5)), "r.npy", "rank 1"),
    BadFile("string-npy", npy_bytes(np.array([["a", "b"]])), "s.npy", "<U1"),
    BadFile(
        "float-image-npy", npy_bytes(np.full((2, 1, 4, 4), 1.25)), "f.npy", "from 1.25 to 1.25"
    ),
    BadFile(
        "ambiguous-npz",
        npz_bytes(a=np.zeros((2, 2)), b=np.zeros((2, 2))),
        "m.npz",
        "holds arrays ['a', 'b']; name the dataset array 'x' or 'data'",
    ),
    BadFile("not-a-zip-npz", b"PK\x03\x04 not really", "z.npz", "not a valid zip archive"),
    BadFile("inf-csv", b"x,y\n1,2\n3,inf\n", "i.csv", "line 3, column 2: 'inf' is not a finite"),
    BadFile("nan-csv", b"1,2\nnan,2\n", "i.csv", "line 2, column 1: 'nan' is not a finite"),
    BadFile("text-csv", b"x,y\n1,2\n3,abc\n", "t.csv", "line 3, column 2: 'abc' is not a number"),
    BadFile("underscore-csv", b"1,2\n1_000,2\n", "t.csv", "'1_000' is not a number"),
    BadFile(
        "ragged-csv", b"1,2\n3,4\n5,6,7\n", "r.csv", "line 3 has 3 fields but earlier rows have 2"
    ),
    BadFile("mixed-header-csv", b"x,2\n1,2\n", "h.csv", "line 1, column 1: 'x' is not a number"),
    BadFile("wide-csv", (",".join(["1"] * 65) + "\n").encode(), "w.csv", "65 columns; at most 64"),
    BadFile("header-only-csv", b"x,y\n", "e.csv", "no data rows"),
    BadFile("empty-csv", b"", "e.csv", "no data rows"),
    BadFile("latin1-csv", "x,é\n1,2\n".encode("latin-1"), "l.csv", "not UTF-8"),
    BadFile("big-csv", b"1,2\n" + b"1e7,0\n", "b.csv", "magnitude 1e+07"),
    BadFile(
        "corrupt-zip", zip_bytes({"a.png": b"x" * 100})[:-30], "c.zip", "not a valid zip archive"
    ),
    BadFile("corrupt-member-zip", _corrupt_member_zip(), "c.zip", "entry 'a.png' of 'c.zip'"),
    BadFile(
        "traversal-zip",
        zip_bytes({"../evil.png": png_bytes(np.zeros((4, 4), np.uint8))}),
        "e.zip",
        "entry '../evil.png' of 'e.zip' has an absolute path or a '..' component",
    ),
    BadFile(
        "nested-traversal-zip",
        zip_bytes({"a/../../evil.png": png_bytes(np.zeros((4, 4), np.uint8))}),
        "e.zip",
        "'a/../../evil.png'",
    ),
    BadFile(
        "absolute-zip",
        zip_bytes({"/etc/evil.png": png_bytes(np.zeros((4, 4), np.uint8))}),
        "e.zip",
        "has an absolute path",
    ),
    BadFile(
        "text-as-png-zip",
        zip_bytes({"x.png": b"just some text, not an image"}),
        "t.zip",
        "entry 'x.png' of 't.zip' is not a PNG image",
    ),
    BadFile(
        "non-png-entry-zip",
        zip_bytes({"notes.txt": b"hi"}),
        "n.zip",
        "'notes.txt' of 'n.zip' is not a .png",
    ),
    BadFile(
        "no-png-zip", zip_bytes({"__MACOSX/._a.png": b"x"}), "e.zip", "contains no .png images"
    ),
    BadFile(
        "mixed-sizes-zip",
        _mixed_sizes_zip(),
        "m.zip",
        "entry 'c.png' is 8x6 with 1 channel but 'a.png' is 8x8 with 1 channel",
    ),
    BadFile(
        "mixed-channels-zip", _mixed_channels_zip(), "m.zip", "'b.png' is 8x8 with 3 channels"
    ),
    BadFile(
        "oversized-png-zip",
        zip_bytes({"big.png": png_bytes(np.zeros((300, 300), np.uint8))}),
        "b.zip",
        "entry 'big.png' of 'b.zip' is 300x300 pixels; images may be at most 256x256",
    ),
    BadFile(
        "too-wide-png-zip",
        zip_bytes({"w.png": png_bytes(np.zeros((2, 300), np.uint8))}),
        "w.zip",
        "is 300x2 pixels",
    ),
    BadFile(
        "bomb-header-png-zip",
        zip_bytes({"huge.png": _png_declaring(100_000, 100_000)}),
        "h.zip",
        "entry 'huge.png' of 'h.zip' is a decompression bomb",
    ),
    BadFile(
        "big-header-png-zip",
        zip_bytes({"big.png": _png_declaring(1000, 1000)}),
        "h.zip",
        "'big.png' of 'h.zip' is 1000x1000 pixels",
    ),
    BadFile(
        "no-pixel-data-png-zip",
        zip_bytes({"empty.png": _png_declaring(8, 8)}),
        "h.zip",
        "'empty.png' of 'h.zip' is a corrupt or unsafe PNG",
    ),
    BadFile(
        "unknown-extension", b"1,2\n", "points.txt", "'.txt'; accepted extensions are .csv, .npy"
    ),
    BadFile("no-extension", b"1,2\n", "points", "'(none)'"),
]


@pytest.mark.parametrize("case", BAD_FILES, ids=[case.id for case in BAD_FILES])
def test_read_dataset_file_rejects(case: BadFile) -> None:
    with pytest.raises(DataError) as caught:
        read_dataset_file(case.content, case.filename)
    assert case.message in str(caught.value)


def test_jpeg_behind_png_name_is_rejected() -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buffer, format="JPEG")
    archive = zip_bytes({"photo.png": buffer.getvalue()})
    with pytest.raises(DataError, match=r"'photo\.png' of 'j\.zip' is not a PNG image"):
        read_dataset_file(archive, "j.zip")


def test_reader_errors_carry_the_file_and_entry_as_data() -> None:
    with pytest.raises(FileError) as caught:
        read_dataset_file(zip_bytes({"x.png": b"nope"}), "t.zip")
    assert (caught.value.filename, caught.value.entry) == ("t.zip", "x.png")
    assert str(caught.value) == (
        "entry 'x.png' of 't.zip' is not a PNG image (its content is not PNG data)"
    )
    assert caught.value.without_filename() == (
        "entry 'x.png' is not a PNG image (its content is not PNG data)"
    )
    with pytest.raises(FileError) as caught:
        read_dataset_file(b"", "p.csv")
    assert (caught.value.filename, caught.value.entry) == ("p.csv", None)
    assert (
        caught.value.without_filename()
        == caught.value.problem
        == ("has no data rows; expected one numeric row per point")
    )


def test_npz_declared_size_limit() -> None:
    # A highly compressible member: 1 MB of zeros that compresses to about a kilobyte.
    content = npz_bytes(compressed=True, x=np.zeros((125_000, 2), np.float32))
    assert len(content) < 10_000
    with pytest.raises(DataError, match=r"declares \d+ bytes uncompressed; at most 100000 bytes"):
        read_dataset_file(content, "bomb.npz", limits=ReadLimits(max_bytes=100_000))
    assert (
        read_dataset_file(content, "bomb.npz", limits=ReadLimits(max_bytes=2_000_000)).count
        == 125_000
    )


def test_zip_limits() -> None:
    entries = {f"{i:03}.png": png_bytes(np.zeros((16, 16), np.uint8)) for i in range(20)}
    archive = zip_bytes(entries)
    with pytest.raises(DataError, match="has more than 10 entries; at most 10"):
        read_dataset_file(archive, "many.zip", limits=ReadLimits(max_entries=10))
    # Uncompressed PNGs, which the zip compresses well: small archive, large declared size.
    raw = png_bytes(np.zeros((256, 256), np.uint8), compress_level=0)
    inflating = zip_bytes({f"{i}.png": raw for i in range(20)})
    assert len(inflating) < 100_000 < 20 * len(raw)
    with pytest.raises(DataError, match=r"declares \d+ bytes uncompressed; at most 100000"):
        read_dataset_file(inflating, "inflating.zip", limits=ReadLimits(max_bytes=100_000))
    # Small PNG files can still decode to many pixels; the decoded size is limited too.
    with pytest.raises(DataError, match="would decode to 5120 bytes"):
        read_dataset_file(archive, "many.zip", limits=ReadLimits(max_bytes=5000))
    assert read_dataset_file(archive, "many.zip").count == 20


def test_content_size_limit() -> None:
    with pytest.raises(DataError, match="is 12 bytes; at most 10 bytes"):
        read_dataset_file(b"1,2\n3,4\n5,6\n", "p.csv", limits=ReadLimits(max_bytes=10))


@pytest.mark.parametrize(
    ("content", "filename", "kind", "message"),
    [
        (b"1,2\n", "p.csv", "images", "'p.csv' holds points but images were requested"),
        (
            zip_bytes({"a.png": png_bytes(np.zeros((4, 4), np.uint8))}),
            "a.zip",
            "points",
            "holds images but points were requested",
        ),
        (npy_bytes(np.zeros((4, 2))), "p.npy", "images", "rank 3 (N, H, W) or rank 4"),
        (npy_bytes(np.zeros((4, 4, 4))), "i.npy", "points", "points must be rank 2"),
        (b"1,2\n", "p.csv", "pixels", "kind 'pixels' is unknown"),
    ],
)
def test_read_dataset_file_kind_mismatch(
    content: bytes, filename: str, kind: str, message: str
) -> None:
    with pytest.raises(DataError) as caught:
        read_dataset_file(content, filename, kind=kind)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_library_errors_are_one_hierarchy_that_carries_the_field() -> None:
    from flows.config import FlowConfig, check_data_compatible
    from flows.errors import FlowError, InputError, InverseNotConverged

    assert issubclass(DataError, InputError) and issubclass(InputError, FlowError)
    assert issubclass(DataError, ValueError) and not issubclass(InverseNotConverged, ValueError)
    config = FlowConfig(family="residual", group="C4", data_shape=[2])
    mismatches = (("points", (3,), "item shape [3]"), ("images", (2,), "holds images"))
    for kind, shape, says in mismatches:
        with pytest.raises(InputError, match=re.escape(says)) as caught:
            check_data_compatible(config, kind, shape)
        assert caught.value.field == "flow.data_shape"
    assert InverseNotConverged(3, 1.0, 0.1).field is None
