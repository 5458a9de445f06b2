"""Turns a scoring request's inputs (JSON arrays or PNG files) into a batch for `flows`.

`flows.scoring.score` checks shapes and value ranges; this module only builds the array. PNG
files go through the same reader as uploaded image data sets, so a model sees pixels exactly as
it saw its training data (grayscale, 16-bit and alpha handled alike).
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np

from flows.data import DataError, read_dataset_file


def json_batch(inputs: list[Any]) -> np.ndarray:
    """A JSON batch as an array: integers stay integers (8-bit image levels), else floats."""
    try:
        array = np.asarray(inputs)
    except ValueError as error:
        raise DataError(f"inputs is ragged: every item must have one shape ({error})") from error
    if array.dtype.kind not in "iuf":
        raise DataError("inputs must be nested lists of numbers, one list per item")
    return array


def png_batch(files: list[tuple[str, bytes]], max_bytes: int) -> np.ndarray:
    """PNG files, in order, as a uint8 batch (B, C, H, W)."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as writer:
        for index, (_, content) in enumerate(files):
            writer.writestr(f"{index:06d}.png", content)
    try:
        dataset = read_dataset_file(
            archive.getvalue(), "files.zip", kind="images", max_bytes=max_bytes
        )
    except DataError as error:
        names = ", ".join(repr(name) for name, _ in files[:5])
        message = str(error).replace("of 'files.zip'", "")
        raise DataError(f"files ({names}{', ...' if len(files) > 5 else ''}): {message}") from None
    return dataset.array
