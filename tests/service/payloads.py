"""Request payloads and files shared by the service tests."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from flows.data import load_builtin

POINTS_FLOW = {"family": "residual", "group": "C4", "data_shape": [2], "width": 2, "depth": 1}
IMAGE_FLOW = {
    "family": "residual",
    "group": "C4",
    "data_shape": [1, 8, 8],
    "width": 2,
    "depth": 1,
}
TINY_TRAINING = {
    "steps": 30,
    "batch_size": 32,
    "metric_interval": 10,
    "checkpoint_interval": 10,
    "seed": 3,
}


@dataclass
class Trained:
    """Two data sets (built-in points, uploaded PNGs), each with a tiny job that succeeded."""

    points_dataset: dict[str, Any]
    image_dataset: dict[str, Any]
    points_job: dict[str, Any]
    image_job: dict[str, Any]


def png_bytes(image: np.ndarray) -> bytes:
    """One (C, H, W) uint8 image as PNG."""
    pixels = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def png_zip(images: np.ndarray) -> bytes:
    """A .zip of PNG files, one per image, in order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, image in enumerate(images):
            archive.writestr(f"img_{index:03d}.png", png_bytes(image))
    return buffer.getvalue()


def digits_images(n: int) -> np.ndarray:
    """The first ``n`` 8x8 digits as uint8 (n, 1, 8, 8)."""
    return load_builtin("digits", n=n, seed=0).array


def submit_job(
    client: TestClient, dataset_id: str, flow: dict[str, Any], training: dict[str, Any]
) -> dict[str, Any]:
    """POSTs a job and checks that it was accepted."""
    response = client.post(
        "/v1/jobs", json={"dataset_id": dataset_id, "flow": flow, "training": training}
    )
    assert response.status_code == 202, response.text
    return response.json()
