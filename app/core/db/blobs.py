"""Arrays as ``.npy`` bytes (never pickled) and metric values safe for JSON columns."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping

import numpy as np


def array_to_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def npy_to_array(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


def clean_metrics(metrics: Mapping[str, object]) -> dict[str, float | None]:
    """Metrics as JSON-safe floats: NaN and infinities become null, non-numbers are dropped."""
    cleaned: dict[str, float | None] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            continue
        number = float(value)
        cleaned[str(key)] = number if math.isfinite(number) else None
    return cleaned
