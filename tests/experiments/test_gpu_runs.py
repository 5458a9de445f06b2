"""Part 4: the full-scale job payloads pass the service's own checks, and the converters read
the public file formats (built here in miniature) into uploadable data sets."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from app.api.schemas import JobIn
from app.core.settings import Settings
from app.limits import job_limit_errors
from experiments.gpu.prepare import (
    CIFAR_TRAIN_MEMBERS,
    augment_by_group,
    read_cifar10_binary,
    read_rotation_mnist_amat,
)
from experiments.gpu.submit import job_body
from flows.config import check_data_compatible
from flows.data import read_dataset_file

# The limits experiments/gpu/README.md tells a GPU deployment to set for these runs.
GPU_SERVICE_SETTINGS = Settings(
    max_training_work=1e15,
    max_upload_bytes=200_000_000,
    max_job_memory_bytes=64 * 1024**3,
    worker_cuda=True,
)
PAYLOADS = sorted((Path(__file__).parents[2] / "experiments" / "gpu" / "payloads").glob("*.json"))
SHAPES = {"rotation_mnist": [1, 28, 28], "cifar10": [3, 32, 32]}


def _shape_for(path: Path) -> list[int]:
    (shape,) = [shape for prefix, shape in SHAPES.items() if path.name.startswith(prefix)]
    return shape


def test_every_experiment_has_payloads() -> None:
    names = {path.name for path in PAYLOADS}
    assert {
        "rotation_mnist_resflow_augmented.json",
        "rotation_mnist_eresflow_c4.json",
        "cifar10_resflow_augmented.json",
        "cifar10_eresflow_d4.json",
        "cifar10_coupling_trivial.json",
        "cifar10_coupling_d4.json",
    } <= names


@pytest.mark.parametrize("path", PAYLOADS, ids=lambda path: path.stem)
def test_payload_is_a_valid_job_for_its_data_set(path: Path) -> None:
    payload = json.loads(path.read_text(encoding="utf-8"))
    body = JobIn.model_validate(job_body(payload, "ds_0123"))
    check_data_compatible(body.flow, "images", _shape_for(path))
    assert job_limit_errors(body.flow, body.training, GPU_SERVICE_SETTINGS) == []
    assert body.training.device == "cuda"
    assert body.training.augment == (body.flow.group == "trivial")


def test_job_body_refuses_a_payload_that_names_its_data_set() -> None:
    with pytest.raises(ValueError, match="dataset_id"):
        job_body({"dataset_id": "ds_1", "flow": {}}, "ds_2")


def test_rotation_mnist_amat_becomes_uploadable_images() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 1, size=(3, 784))
    pixels[0, 1] = 1.0  # row 1, column 0 after the column-major layout is undone
    lines = [" ".join(f"{v:.6f}" for v in row) + " 7" for row in pixels]
    images = read_rotation_mnist_amat("\n".join(lines) + "\n")
    assert images.shape == (3, 1, 28, 28) and images.dtype == np.uint8
    assert images[0, 0, 1, 0] == 255
    np.testing.assert_array_equal(
        images[1, 0], np.rint(pixels[1].reshape(28, 28).T * 255).astype(np.uint8)
    )
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=images)
    dataset = read_dataset_file(buffer.getvalue(), "rotmnist.npz")
    assert dataset.kind == "images" and list(dataset.shape) == [1, 28, 28]


def test_rotation_mnist_reader_names_a_wrong_line_length() -> None:
    with pytest.raises(ValueError, match="785 values"):
        read_rotation_mnist_amat("0.1 0.2 3\n")


def _cifar_archive(records_per_member: int, members=CIFAR_TRAIN_MEMBERS) -> tuple[bytes, list]:
    rng = np.random.default_rng(1)
    buffer, expected = io.BytesIO(), []
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in members:
            images = rng.integers(0, 256, size=(records_per_member, 3, 32, 32), dtype=np.uint8)
            labels = rng.integers(0, 10, size=(records_per_member, 1), dtype=np.uint8)
            raw = np.concatenate([labels, images.reshape(records_per_member, -1)], axis=1)
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = raw.nbytes
            tar.addfile(info, io.BytesIO(raw.tobytes()))
            expected.append(images)
    return buffer.getvalue(), expected


def test_cifar10_binary_archive_becomes_augmented_images() -> None:
    archive, expected = _cifar_archive(2)
    images = read_cifar10_binary(archive)
    np.testing.assert_array_equal(images, np.concatenate(expected))
    augmented = augment_by_group(images, "D4", seed=0)
    assert augmented.shape == images.shape
    # Every augmented image is one of the 8 grid symmetries of its original.
    for original, moved in zip(images, augmented, strict=True):
        candidates = [np.rot90(original, k, axes=(-2, -1)) for k in range(4)]
        candidates += [np.flip(c, axis=-1) for c in candidates]
        assert any(np.array_equal(moved, c) for c in candidates)
    assert not np.array_equal(augmented, images)


def test_cifar10_reader_names_a_missing_member() -> None:
    archive, _ = _cifar_archive(1, members=CIFAR_TRAIN_MEMBERS[:2])
    with pytest.raises(ValueError, match=r"data_batch_3\.bin"):
        read_cifar10_binary(archive)
