"""Turns uploaded files and scoring inputs (JSON arrays or PNG files) into arrays for `flows`.

Every upload is read with the limits of this service's settings (sizes, archive entries,
compression ratio, image side). `flows.scoring.score` checks shapes and value ranges; this module
only builds the array. PNG files go through the same reader as uploaded image data sets, so a
model sees pixels exactly as it saw its training data (grayscale, 16-bit and alpha handled alike).
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np

from app.core.settings import Settings
from flows.data import IMAGES, DataError, DataKind, Dataset, ReadLimits, read_dataset_file
from flows.errors import FileError


def read_limits(settings: Settings) -> ReadLimits:
    """The limits an upload is read under, from this service's settings."""
    return ReadLimits(
        max_bytes=settings.max_upload_bytes,
        max_entries=settings.max_archive_entries,
        max_image_side=settings.max_image_side,
        max_ratio=settings.max_compression_ratio,
    )


def read_upload(
    content: bytes, filename: str, settings: Settings, kind: DataKind | None = None
) -> Dataset:
    """An uploaded file as a validated data set, read under the service's limits."""
    return read_dataset_file(content, filename, kind, limits=read_limits(settings))


def json_batch(inputs: list[Any]) -> np.ndarray:
    """A JSON batch as an array: integers stay integers (8-bit image levels), else floats."""
    try:
        array = np.asarray(inputs)
    except ValueError as error:
        raise DataError(
            f"inputs is ragged: every item must have one shape ({error})", "inputs"
        ) from error
    if array.dtype.kind not in "iuf":
        raise DataError("inputs must be nested lists of numbers, one list per item", "inputs")
    return array


def png_batch(files: list[tuple[str, bytes]], settings: Settings) -> np.ndarray:
    """PNG files, in order, as a uint8 batch (B, C, H, W)."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as writer:
        for index, (_, content) in enumerate(files):
            writer.writestr(f"{index:06d}.png", content)
    try:
        dataset = read_upload(archive.getvalue(), "files.zip", settings, kind=IMAGES)
    except DataError as error:
        # The archive is built here, so its name means nothing to the client.
        said = error.without_filename() if isinstance(error, FileError) else str(error)
        names = ", ".join(repr(name) for name, _ in files[:5])
        raise DataError(
            f"files ({names}{', ...' if len(files) > 5 else ''}): {said}", "files"
        ) from None
    return dataset.array
