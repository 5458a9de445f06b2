r"""Monotone rational-quadratic splines: on an interval with identity tails, and on the circle.

A rational-quadratic (RQ) spline with :math:`K` bins maps the knots
:math:`(x_0 < \dots < x_K) \mapsto (y_0 < \dots < y_K)` with positive knot derivatives
:math:`\delta_0, \dots, \delta_K`. Inside bin :math:`k`, with :math:`w = x_{k+1} - x_k`,
:math:`h = y_{k+1} - y_k`, :math:`s = h / w` and :math:`\xi = (x - x_k) / w \in [0, 1]`,

.. math::
    f(x) = y_k + h \frac{s \xi^2 + \delta_k \xi (1 - \xi)}
                        {s + (\delta_{k+1} + \delta_k - 2 s) \xi (1 - \xi)},
    \qquad
    f'(x) = \frac{s^2 [\delta_{k+1} \xi^2 + 2 s \xi (1 - \xi) + \delta_k (1 - \xi)^2]}
                 {[s + (\delta_{k+1} + \delta_k - 2 s) \xi (1 - \xi)]^2} > 0,

so :math:`f` is strictly increasing, :math:`C^1`, and its inverse solves a quadratic in
:math:`\xi`: with :math:`\Delta = y - y_k` and :math:`c_2 = \delta_{k+1} + \delta_k - 2 s`,
:math:`a \xi^2 + b \xi + c = 0` where :math:`a = h (s - \delta_k) + \Delta c_2`,
:math:`b = h \delta_k - \Delta c_2`, :math:`c = -s \Delta`, and the root in :math:`[0, 1]` is
:math:`\xi = 2c / (-b - \sqrt{b^2 - 4ac})` (the form without cancellation).

Three uses:

- :func:`rq_spline`: :math:`[-B, B] \to [-B, B]` with :math:`\delta_0 = \delta_K = 1`, extended by
  the identity outside (Durkan et al.), so the map is :math:`C^1` on all of :math:`\mathbb R`.
- :func:`circular_rq_spline`: a diffeomorphism of the circle :math:`\mathbb R / P \mathbb Z`
  (Rezende et al.): :math:`[0, P] \to [0, P]` with :math:`\delta_0 = \delta_K`, extended by
  :math:`f(\theta + P) = f(\theta) + P`, which is then :math:`C^1` across the knots at multiples
  of :math:`P`.
- :func:`reflected_circular_rq_spline`: the circle maps that also commute with the reflection
  :math:`\theta \mapsto -\theta`: a spline on :math:`[0, P/2] \to [0, P/2]` extended oddly,
  :math:`f(-\theta) = -f(\theta)`, and periodically. Such a map fixes 0 and :math:`P/2` and has
  even derivative, so any boundary derivatives give a :math:`C^1` map.

Parameters are unnormalised: widths and heights pass through a softmax (each bin at least
``MIN_BIN_SIZE`` of the interval), derivatives through a shifted softplus (at least
``MIN_DERIVATIVE``) whose value at 0 is 1, so all-zero parameters give the identity map.

References: Durkan et al., Neural Spline Flows (2019); Rezende et al., Normalizing Flows on Tori
and Spheres (2020).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "MIN_BIN_SIZE",
    "MIN_DERIVATIVE",
    "circular_rq_spline",
    "circular_rq_spline_inverse",
    "reflected_circular_rq_spline",
    "reflected_circular_rq_spline_inverse",
    "rq_spline",
    "rq_spline_inverse",
]

MIN_BIN_SIZE = 1e-3
MIN_DERIVATIVE = 1e-3
# softplus(_DERIVATIVE_SHIFT) + MIN_DERIVATIVE == 1: a zero parameter is a unit derivative.
_DERIVATIVE_SHIFT = math.log(math.expm1(1.0 - MIN_DERIVATIVE))


def _knots(unnormalised: Tensor, left: float, right: float) -> Tensor:
    """K+1 increasing knot positions from left to right, each bin at least MIN_BIN_SIZE wide."""
    bins = unnormalised.shape[-1]
    # Computed with the bins as the leading dimension: torch's CPU softmax and cumsum over a
    # short last dimension (K ~ 8) run ~3-6x slower than over a leading one, where every other
    # element is a contiguous vector lane; this is ~10 % of a G-NSF training step.
    leading = unnormalised.movedim(-1, 0)
    fractions = MIN_BIN_SIZE + (1 - MIN_BIN_SIZE * bins) * torch.softmax(leading, dim=0)
    interior = left + (right - left) * torch.cumsum(fractions, dim=0)[:-1]
    # Exact end knots: the rounding of the cumulative sum must not move the interval.
    ends = torch.full_like(interior[:1], left), torch.full_like(interior[:1], right)
    return torch.cat([ends[0], interior, ends[1]], dim=0).movedim(0, -1)


def _derivatives(unnormalised: Tensor) -> Tensor:
    return MIN_DERIVATIVE + F.softplus(unnormalised + _DERIVATIVE_SHIFT)


def _bin_index(knots: Tensor, values: Tensor) -> Tensor:
    """The bin of each value: knots[i] <= value < knots[i + 1], clamped to 0..K-1."""
    bins = knots.shape[-1] - 1
    return (values[..., None] >= knots[..., 1:-1]).sum(-1).clamp(0, bins - 1)


def _bin_parameters(
    x_knots: Tensor, y_knots: Tensor, slopes: Tensor, index: Tensor
) -> tuple[Tensor, ...]:
    """(x_k, width, y_k, height, delta_k, delta_k+1) of each value's bin, in one gather."""
    table = torch.stack([x_knots, y_knots, slopes], dim=-1)
    pair = torch.stack([index, index + 1], dim=-1)[..., None].expand(*index.shape, 2, 3)
    lower, upper = table.gather(-2, pair).unbind(-2)
    x_k, y_k, d_k = lower.unbind(-1)
    x_k1, y_k1, d_k1 = upper.unbind(-1)
    return x_k, x_k1 - x_k, y_k, y_k1 - y_k, d_k, d_k1


def _spline_forward(
    x: Tensor, x_knots: Tensor, y_knots: Tensor, slopes: Tensor
) -> tuple[Tensor, Tensor]:
    """The RQ spline through the knots at x (inside [x_0, x_K]); returns (y, log f'(x))."""
    x_k, width, y_k, height, d_k, d_k1 = _bin_parameters(
        x_knots, y_knots, slopes, _bin_index(x_knots, x)
    )
    s = height / width
    xi = ((x - x_k) / width).clamp(0, 1)
    xi_1m = xi * (1 - xi)
    denominator = s + (d_k1 + d_k - 2 * s) * xi_1m
    y = y_k + height * (s * xi**2 + d_k * xi_1m) / denominator
    numerator = d_k1 * xi**2 + 2 * s * xi_1m + d_k * (1 - xi) ** 2
    log_derivative = 2 * torch.log(s) + torch.log(numerator) - 2 * torch.log(denominator)
    return y, log_derivative


def _spline_inverse(
    y: Tensor, x_knots: Tensor, y_knots: Tensor, slopes: Tensor
) -> tuple[Tensor, Tensor]:
    """The inverse of :func:`_spline_forward` at y; returns (x, log (f^{-1})'(y))."""
    x_k, width, y_k, height, d_k, d_k1 = _bin_parameters(
        x_knots, y_knots, slopes, _bin_index(y_knots, y)
    )
    s = height / width
    delta = y - y_k
    curvature = d_k1 + d_k - 2 * s
    a = height * (s - d_k) + delta * curvature
    b = height * d_k - delta * curvature
    c = -s * delta
    discriminant = (b**2 - 4 * a * c).clamp_min(0)
    xi = (2 * c / (-b - torch.sqrt(discriminant))).clamp(0, 1)
    x = x_k + xi * width
    xi_1m = xi * (1 - xi)
    denominator = s + curvature * xi_1m
    numerator = d_k1 * xi**2 + 2 * s * xi_1m + d_k * (1 - xi) ** 2
    log_derivative = 2 * torch.log(s) + torch.log(numerator) - 2 * torch.log(denominator)
    return x, -log_derivative


def _check_shapes(values: Tensor, widths: Tensor, heights: Tensor, derivatives: Tensor,
                  derivative_count: int) -> None:  # fmt: skip
    bins = widths.shape[-1]
    expected = (*values.shape, bins)
    if widths.shape != expected or heights.shape != expected:
        raise ValueError(
            f"widths {tuple(widths.shape)} and heights {tuple(heights.shape)} must both have "
            f"shape {expected} (the input's shape plus the bin count)"
        )
    if derivatives.shape != (*values.shape, derivative_count):
        raise ValueError(
            f"derivatives {tuple(derivatives.shape)} must have shape "
            f"{(*values.shape, derivative_count)} for {bins} bins"
        )


def _interval_knots(
    widths: Tensor, heights: Tensor, derivatives: Tensor, bound: float
) -> tuple[Tensor, Tensor, Tensor]:
    ones = torch.ones_like(derivatives[..., :1])
    slopes = torch.cat([ones, _derivatives(derivatives), ones], dim=-1)
    return _knots(widths, -bound, bound), _knots(heights, -bound, bound), slopes


def rq_spline(
    x: Tensor, widths: Tensor, heights: Tensor, derivatives: Tensor, bound: float
) -> tuple[Tensor, Tensor]:
    """The monotone RQ spline on [-bound, bound], identity outside; elementwise.

    Arguments:
        x: any shape.
        widths, heights: unnormalised bin sizes, shape ``x.shape + (K,)``.
        derivatives: unnormalised interior knot derivatives, shape ``x.shape + (K - 1,)``.
        bound: the half-width B of the spline's square [-B, B]^2.

    Returns:
        (f(x), log f'(x)), both shaped like x.
    """
    _check_shapes(x, widths, heights, derivatives, widths.shape[-1] - 1)
    x_knots, y_knots, slopes = _interval_knots(widths, heights, derivatives, bound)
    inside = (x >= -bound) & (x <= bound)
    y, log_derivative = _spline_forward(x.clamp(-bound, bound), x_knots, y_knots, slopes)
    return torch.where(inside, y, x), torch.where(inside, log_derivative, 0.0)


def rq_spline_inverse(
    y: Tensor, widths: Tensor, heights: Tensor, derivatives: Tensor, bound: float
) -> tuple[Tensor, Tensor]:
    """The inverse of :func:`rq_spline`: returns (f^{-1}(y), log (f^{-1})'(y))."""
    _check_shapes(y, widths, heights, derivatives, widths.shape[-1] - 1)
    x_knots, y_knots, slopes = _interval_knots(widths, heights, derivatives, bound)
    inside = (y >= -bound) & (y <= bound)
    x, log_derivative = _spline_inverse(y.clamp(-bound, bound), x_knots, y_knots, slopes)
    return torch.where(inside, x, y), torch.where(inside, log_derivative, 0.0)


def _circular_knots(
    widths: Tensor, heights: Tensor, derivatives: Tensor, period: float
) -> tuple[Tensor, Tensor, Tensor]:
    slopes = _derivatives(torch.cat([derivatives, derivatives[..., :1]], dim=-1))
    return _knots(widths, 0.0, period), _knots(heights, 0.0, period), slopes


def circular_rq_spline(
    theta: Tensor, widths: Tensor, heights: Tensor, derivatives: Tensor, period: float
) -> tuple[Tensor, Tensor]:
    r"""A monotone RQ map of the circle :math:`\mathbb R / P\mathbb Z`, elementwise.

    :math:`f` maps :math:`[0, P]` onto itself with equal derivatives at both ends and is
    extended by :math:`f(\theta + nP) = f(\theta) + nP`, so it is defined on all of
    :math:`\mathbb R`, commutes with the shift by :math:`P`, and fixes the multiples of P.

    Arguments:
        theta: angles (any real values), any shape.
        widths, heights: unnormalised bin sizes, shape ``theta.shape + (K,)``.
        derivatives: unnormalised knot derivatives, shape ``theta.shape + (K,)``: the first is
            the derivative at 0 (and at P), the others at the K - 1 interior knots.
        period: P.

    Returns:
        (f(theta), log f'(theta)), both shaped like theta.
    """
    _check_shapes(theta, widths, heights, derivatives, widths.shape[-1])
    x_knots, y_knots, slopes = _circular_knots(widths, heights, derivatives, period)
    turns = torch.floor(theta / period)
    y, log_derivative = _spline_forward(theta - turns * period, x_knots, y_knots, slopes)
    return y + turns * period, log_derivative


def circular_rq_spline_inverse(
    phi: Tensor, widths: Tensor, heights: Tensor, derivatives: Tensor, period: float
) -> tuple[Tensor, Tensor]:
    """The inverse of :func:`circular_rq_spline`: returns (f^{-1}(phi), log (f^{-1})'(phi))."""
    _check_shapes(phi, widths, heights, derivatives, widths.shape[-1])
    x_knots, y_knots, slopes = _circular_knots(widths, heights, derivatives, period)
    turns = torch.floor(phi / period)
    x, log_derivative = _spline_inverse(phi - turns * period, x_knots, y_knots, slopes)
    return x + turns * period, log_derivative


def _half_period_knots(
    widths: Tensor, heights: Tensor, derivatives: Tensor, period: float
) -> tuple[Tensor, Tensor, Tensor]:
    half = period / 2
    return _knots(widths, 0.0, half), _knots(heights, 0.0, half), _derivatives(derivatives)


def _fold(theta: Tensor, period: float) -> tuple[Tensor, Tensor, Tensor]:
    """theta = turns * P + sign * u with u in [0, P/2]: the reflection-and-shift fold."""
    turns = torch.floor(theta / period)
    within = theta - turns * period
    upper = within > period / 2
    u = torch.where(upper, period - within, within)
    return turns + upper.to(theta.dtype), torch.where(upper, -1.0, 1.0).to(theta.dtype), u


def reflected_circular_rq_spline(
    theta: Tensor, widths: Tensor, heights: Tensor, derivatives: Tensor, period: float
) -> tuple[Tensor, Tensor]:
    r"""A monotone RQ circle map that also commutes with :math:`\theta \mapsto -\theta`.

    With :math:`g` the RQ spline :math:`[0, P/2] \to [0, P/2]`, writing
    :math:`\theta = nP \pm u` with :math:`u \in [0, P/2]`, :math:`f(\theta) = nP \pm g(u)`. Then
    :math:`f(-\theta) = -f(\theta)` and :math:`f(\theta + P) = f(\theta) + P`: f commutes with
    every element of the dihedral group generated by the reflection and the shift by P, and
    :math:`f'(\theta) = g'(u)`.

    Arguments:
        theta: angles, any shape.
        widths, heights: unnormalised bin sizes, shape ``theta.shape + (K,)``.
        derivatives: unnormalised knot derivatives at all K + 1 knots of [0, P/2], shape
            ``theta.shape + (K + 1,)``.
        period: P.
    """
    _check_shapes(theta, widths, heights, derivatives, widths.shape[-1] + 1)
    x_knots, y_knots, slopes = _half_period_knots(widths, heights, derivatives, period)
    turns, sign, u = _fold(theta, period)
    g, log_derivative = _spline_forward(u, x_knots, y_knots, slopes)
    return turns * period + sign * g, log_derivative


def reflected_circular_rq_spline_inverse(
    phi: Tensor, widths: Tensor, heights: Tensor, derivatives: Tensor, period: float
) -> tuple[Tensor, Tensor]:
    """The inverse of :func:`reflected_circular_rq_spline`."""
    _check_shapes(phi, widths, heights, derivatives, widths.shape[-1] + 1)
    x_knots, y_knots, slopes = _half_period_knots(widths, heights, derivatives, period)
    turns, sign, v = _fold(phi, period)
    u, log_derivative = _spline_inverse(v, x_knots, y_knots, slopes)
    return turns * period + sign * u, log_derivative
