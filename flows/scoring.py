"""Scoring and sampling in the data's own convention, as the service exposes them.

Images are scored as 8-bit data, deterministically: integer levels k are placed at their bin
centres (k + 1/2) / 256, and the reported log-likelihood is the model's log-density there,
log p((k + 1/2) / 256), with bits/dim ``-(log p - D log 256) / (D ln 2)``. That is the
midpoint-rule approximation of the discrete log-probability log P(k) = log of the integral of p
over the bin (exact up to the density's variation within one 1/256 bin), not a bound. So the same
image always gets the same score (whatever ``seed``), and a grid symmetry g of an invariant model
gets the same score as the image itself up to float error, since g permutes the bin centres
exactly. Float input in [0, 1] is taken as already continuous. Points are scored as they are.
``seed`` drives only Monte-Carlo parts: the residual log-det estimator and the importance samples
of augmented flows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from flows.data import DataError, quantize
from flows.data.dataset import MAX_POINT_MAGNITUDE
from flows.data.images import dequantize_midpoint
from flows.flow import Flow, LogDetMethod
from flows.metrics import bits_per_dim

__all__ = [
    "ScoreResult",
    "sample_array",
    "score",
    "to_data_convention",
    "to_model_input",
]


@dataclass(frozen=True)
class ScoreResult:
    """Per-item natural-log likelihood, its standard error (estimates only), bits/dim (images),
    the log-det method used, and whether ``log_prob`` is a lower bound (augmented flows, whose
    bits/dim are then upper bounds).

    ``stderr`` is None where there is no estimate error (exact log-dets) *or* where it cannot be
    estimated: an augmented flow scored with a single padding draw (``padding_eval_samples``
    1) has a Monte-Carlo error that one draw does not reveal, reported as None, never as 0."""

    log_prob: np.ndarray
    stderr: np.ndarray | None
    bits_per_dim: np.ndarray | None
    method: str
    lower_bound: bool = False


def to_model_input(flow: Flow, array: np.ndarray) -> torch.Tensor:
    """Validates ``array`` against the flow's data and converts it to the flow's input (integer
    image levels to their bin centres).

    Raises:
        DataError: wrong shape, non-finite values, points beyond +-1e6, or image values
            outside 0..255 / [0, 1].
    """
    values = np.asarray(array)
    expected = list(flow.data_shape)
    if values.ndim != len(expected) + 1 or list(values.shape[1:]) != expected:
        raise DataError(
            f"input has shape {list(values.shape)}; this model takes a batch shaped "
            f"[n, {', '.join(map(str, expected))}]"
        )
    if values.dtype.kind not in "biuf":
        raise DataError(f"input has dtype {values.dtype}; numbers are required")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise DataError("input contains NaN or infinite values")
    device, dtype = flow._device_dtype()
    if flow.config.is_points:
        largest = float(np.abs(values.astype(np.float64)).max()) if values.size else 0.0
        if largest > MAX_POINT_MAGNITUDE:
            raise DataError(
                f"input has a coordinate of magnitude {largest:.6g}; coordinates must lie within "
                f"+-{MAX_POINT_MAGNITUDE:.0e}, as in uploaded data sets"
            )
        return torch.as_tensor(values, dtype=dtype).to(device)
    if values.dtype.kind == "f":
        if values.size and (values.min() < 0.0 or values.max() > 1.0):
            raise DataError(
                f"float image values range over [{values.min():.4g}, {values.max():.4g}]; "
                "floats must lie in [0, 1] (or send integer levels 0..255)"
            )
        return torch.as_tensor(values, dtype=dtype).to(device)
    if values.size and (values.min() < 0 or values.max() > 255):
        raise DataError(
            f"integer image values range over [{values.min()}, {values.max()}]; levels must lie "
            "in 0..255"
        )
    levels = torch.as_tensor(values.astype(np.int64))
    return dequantize_midpoint(levels).to(device, dtype)


@torch.no_grad()
def score(
    flow: Flow, array: np.ndarray, method: LogDetMethod = "auto", seed: int = 0
) -> ScoreResult:
    """Log-likelihood of each item of ``array`` (and bits/dim for images).

    Images given as integer levels are scored at their bin centres (see the module docstring):
    deterministic, and invariant under the model's exact grid symmetries. Exact methods report
    no standard error and do not depend on ``seed``; estimates use ``config.estimator.eval_probes``
    Hutchinson probes per item and report the standard error of their mean. Augmented flows
    report their importance-weighted lower bound, with the standard error of its Monte-Carlo
    average.
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    x = to_model_input(flow, array)
    resolved = flow.resolve_method(method)
    if resolved == "exact" and not flow.is_lower_bound:
        log_prob, stderr = flow.log_prob(x, method="exact"), None
    else:
        log_prob, stderr = flow.log_prob_with_stderr(x, method=resolved, generator=generator)
    if stderr is not None and bool(torch.isnan(stderr).any()):
        stderr = None
    bpd = None if flow.config.is_points else bits_per_dim(log_prob, flow.dim).cpu().numpy()
    return ScoreResult(
        log_prob=log_prob.cpu().numpy(),
        stderr=None if stderr is None else stderr.cpu().numpy(),
        bits_per_dim=bpd,
        method=resolved,
        lower_bound=flow.is_lower_bound,
    )


@torch.no_grad()
def sample_array(flow: Flow, n: int, seed: int = 0, temperature: float = 1.0) -> np.ndarray:
    """n samples in the data's convention: uint8 levels (n, C, H, W) or float32 points (n, D).

    Images are :meth:`~flows.flow.Flow.sample`'s samples, already clamped to [0, 1], quantized.
    """
    return to_data_convention(flow, flow.sample(n, seed=seed, temperature=temperature))


def to_data_convention(flow: Flow, samples: torch.Tensor) -> np.ndarray:
    """Samples of ``flow`` as data: float32 points, or images clamped to [0, 1] and quantized
    to uint8 levels."""
    samples = samples.detach().cpu()
    if flow.config.is_points:
        return samples.numpy().astype(np.float32)
    return quantize(samples.clamp(0.0, 1.0))
