"""PNG pictures of arrays: a grid of images (from `flows`) or a scatter plot of points."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from flows.data import IMAGES, DataKind, grid_png

PREVIEW_IMAGES = 64
PREVIEW_POINTS = 4096
CANVAS = 320
MARGIN = 16


def scatter_png(points: np.ndarray, size: int = CANVAS) -> bytes:
    """A scatter plot of the first two coordinates (a histogram strip for 1-D points)."""
    points = np.asarray(points, dtype=np.float64)[:PREVIEW_POINTS]
    if points.shape[1] == 1:
        points = np.concatenate([points, np.zeros_like(points)], axis=1)
    xy = points[:, :2]
    xy = xy[np.isfinite(xy).all(axis=1)]
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([MARGIN - 1, MARGIN - 1, size - MARGIN, size - MARGIN], outline=(200, 200, 200))
    if len(xy):
        low, high = np.percentile(xy, [0.5, 99.5], axis=0)
        centre, half = (low + high) / 2, max(float((high - low).max()) / 2 * 1.25, 1e-9)
        scaled = np.clip((xy - centre) / half, -1.0, 1.0)
        inner = size / 2 - MARGIN
        columns = size / 2 + scaled[:, 0] * inner
        rows = size / 2 - scaled[:, 1] * inner
        for column, row in zip(columns, rows, strict=True):
            draw.ellipse([column - 1.5, row - 1.5, column + 1.5, row + 1.5], fill=(31, 90, 180))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def preview_png(array: np.ndarray, kind: DataKind) -> bytes:
    """A picture of a data set or of samples: images as a grid, points as a scatter plot."""
    if kind == IMAGES:
        return grid_png(array[:PREVIEW_IMAGES])
    return scatter_png(array)
