"""Datasets for the flows: validation, uploads, built-in generators and image utilities.

This package depends only on numpy, torch, Pillow and scikit-learn, and imports nothing from the
rest of ``flows``, so the service can read and check uploads without loading the models.
"""

from flows.data.builtin import BUILTIN_DATASETS, BuiltinSpec, load_builtin
from flows.data.dataset import (
    DATA_KINDS,
    IMAGES,
    POINTS,
    DataError,
    DataKind,
    Dataset,
    validate_dataset,
)
from flows.data.images import (
    dequantize,
    dequantize_midpoint,
    digits,
    grid_png,
    image_patches,
    quantize,
    rotated_digits,
)
from flows.data.readers import ReadLimits, read_dataset_file
from flows.data.toy2d import eight_gaussians, eight_gaussians_log_prob, rings, rings_log_prob

__all__ = [
    "BUILTIN_DATASETS",
    "DATA_KINDS",
    "IMAGES",
    "POINTS",
    "BuiltinSpec",
    "DataError",
    "DataKind",
    "Dataset",
    "ReadLimits",
    "dequantize",
    "dequantize_midpoint",
    "digits",
    "eight_gaussians",
    "eight_gaussians_log_prob",
    "grid_png",
    "image_patches",
    "load_builtin",
    "quantize",
    "read_dataset_file",
    "rings",
    "rings_log_prob",
    "rotated_digits",
    "validate_dataset",
]
