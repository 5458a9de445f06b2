"""log det(I + J_g(x)) for residual maps y = x + g(x): exact and unbiased estimates.

Exact: the full Jacobian of g per item (one backward pass over a batch replicated D times) and
``slogdet``; for small D only. Estimate (Chen et al., Residual Flows, 2019): the power series
log det(I + J) = sum_{k>=1} (-1)^{k+1} tr(J^k) / k, with Hutchinson probes v for the traces and a
Russian-roulette truncation: n = n_exact + N, N ~ Geometric(p) on {0, 1, ...}, and term k weighted
by 1 / P(n >= k), which makes the truncated sum unbiased. Gradients use the Neumann series
d log det(I + J) = sum_{k>=0} (-1)^k tr(J^k dJ), truncated and weighted the same way, so only
one vector-Jacobian product carries a graph (memory independent of the number of terms).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["LogDetContext", "estimate_residual_logdet", "exact_residual_logdet"]

Residual = Callable[[Tensor], Tensor]


@dataclass
class LogDetContext:
    """How the layers of one pass compute their log-determinants.

    Attributes:
        method: ``"exact"`` (Jacobian + slogdet) or ``"estimate"`` (Russian roulette).
        differentiable: build graphs for gradients (training); Neumann gradients for estimates.
        n_probes: Hutchinson probes per item; more than one gives a standard error.
        n_exact_terms: series terms always evaluated.
        geometric_p: roulette stopping probability.
        generator: source of the probes and roulette draws (None: torch's global generator).
        variance: running sum of the estimate variances of the layers (None until one adds).
    """

    method: str = "exact"
    differentiable: bool = False
    n_probes: int = 1
    n_exact_terms: int = 2
    geometric_p: float = 0.5
    generator: torch.Generator | None = None
    variance: Tensor | None = None

    def add_variance(self, variance: Tensor) -> None:
        self.variance = variance if self.variance is None else self.variance + variance


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1)


def _randn(shape: torch.Size, generator: torch.Generator | None, like: Tensor) -> Tensor:
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=device).to(like.device)


def exact_residual_logdet(
    g: Residual, x: Tensor, differentiable: bool, max_rows: int = 8192
) -> tuple[Tensor, Tensor]:
    """Returns (g(x), log|det(I + J_g(x))|) with the Jacobian built row by row.

    Arguments:
        g: the residual branch, applied to batches shaped like ``x``.
        x: inputs (B, *S); D = prod(S).
        differentiable: keep the graph (exact-log-det training on small D).
        max_rows: replicated rows per pass (bounds memory: rows = items * D).
    """
    batch, dim = x.shape[0], math.prod(x.shape[1:])
    items_per_chunk = max(1, max_rows // dim)
    gx_chunks, logdet_chunks = [], []
    eye = torch.eye(dim, dtype=x.dtype, device=x.device)
    with torch.enable_grad():
        for start in range(0, batch, items_per_chunk):
            xc = x[start : start + items_per_chunk]
            if not differentiable:
                xc = xc.detach()
            n = xc.shape[0]
            replicated = (
                xc.unsqueeze(1).expand(n, dim, *xc.shape[1:]).reshape(n * dim, *xc.shape[1:])
            )
            if not replicated.requires_grad:
                replicated = replicated.detach().requires_grad_(True)
            out = g(replicated)
            cotangents = eye.repeat(n, 1).reshape(out.shape)
            (rows,) = torch.autograd.grad(out, replicated, cotangents, create_graph=differentiable)
            jacobian = rows.reshape(n, dim, dim)
            logdet = torch.linalg.slogdet(eye + jacobian).logabsdet
            gx_chunks.append(out.reshape(n, dim, *xc.shape[1:])[:, 0])
            logdet_chunks.append(logdet)
    gx, logdet = torch.cat(gx_chunks), torch.cat(logdet_chunks)
    if not differentiable:
        gx, logdet = gx.detach(), logdet.detach()
    return gx, logdet


def _roulette_weights(
    n_probes: int,
    n_exact_terms: int,
    p: float,
    generator: torch.Generator | None,
    device: torch.device,
) -> tuple[int, Tensor]:
    """Draws n = n_exact + N per probe; returns max n and w[k-1, probe] = 1{n >= k}/P(n >= k)."""
    uniform = torch.rand(
        n_probes, generator=generator, device=generator.device if generator else device
    ).to(device)
    # Inverse-CDF sample of Geometric(p) on {0, 1, ...}: P(N >= m) = (1 - p)^m.
    extra = torch.floor(torch.log1p(-uniform) / math.log1p(-p)).long()
    n_terms = n_exact_terms + extra
    n_max = int(n_terms.max())
    k = torch.arange(1, n_max + 1, device=device).unsqueeze(1)
    survival = torch.where(
        k <= n_exact_terms,
        torch.ones((), device=device),
        (1.0 - p) ** (k - n_exact_terms).double(),
    )
    weights = (k <= n_terms.unsqueeze(0)).double() / survival
    return n_max, weights


def estimate_residual_logdet(
    g: Residual, x: Tensor, ctx: LogDetContext
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Returns (g(x), unbiased log-det estimate per item, variance of that estimate or None).

    With ``ctx.n_probes`` P > 1 every item gets P independent probes and roulette draws; the
    estimate is their mean and the variance is the sample variance over P (of the mean).
    """
    batch, probes = x.shape[0], ctx.n_probes
    n_max, weights = _roulette_weights(
        probes, ctx.n_exact_terms, ctx.geometric_p, ctx.generator, x.device
    )
    weights = weights.to(x.dtype).repeat_interleave(batch, dim=1)  # (n_max, P * B)
    with torch.enable_grad():
        replicated = x.repeat(probes, *([1] * (x.dim() - 1))) if probes > 1 else x
        if not ctx.differentiable or not replicated.requires_grad:
            replicated = replicated.detach().requires_grad_(True)
        gx = g(replicated)
        probe = _randn(gx.shape, ctx.generator, gx)
        flat_probe = _flat(probe)
        vector = probe
        first_weight = weights[0].reshape(-1, *([1] * (x.dim() - 1)))
        neumann = first_weight * probe if ctx.differentiable else None
        series = torch.zeros(gx.shape[0], dtype=x.dtype, device=x.device)
        for k in range(1, n_max + 1):
            (vector,) = torch.autograd.grad(gx, replicated, vector, retain_graph=True)
            trace_k = (_flat(vector) * flat_probe).sum(1)
            series = series + (-1) ** (k + 1) / k * weights[k - 1] * trace_k
            if neumann is not None and k < n_max:
                coefficient = ((-1) ** k * weights[k]).reshape(-1, *([1] * (x.dim() - 1)))
                neumann = neumann + coefficient * vector
        series = series.detach()
        if neumann is not None:
            (vjp,) = torch.autograd.grad(gx, replicated, neumann.detach(), create_graph=True)
            surrogate = (_flat(vjp) * flat_probe).sum(1)
            series = series + surrogate - surrogate.detach()
    per_probe = series.reshape(probes, batch)
    estimate = per_probe.mean(0)
    variance = per_probe.var(0) / probes if probes > 1 else None
    gx_items = gx[:batch]
    if not ctx.differentiable:
        gx_items = gx_items.detach()
        estimate = estimate.detach()
    return gx_items, estimate, variance
