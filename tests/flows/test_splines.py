"""Rational-quadratic splines: inverse, log-derivative against autograd, monotonicity, tails and
the circle maps' periodicity and reflection symmetry."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from flows.splines import (
    circular_rq_spline,
    circular_rq_spline_inverse,
    reflected_circular_rq_spline,
    reflected_circular_rq_spline_inverse,
    rq_spline,
    rq_spline_inverse,
)

BINS = 6
BOUND = 3.0
PERIOD = 2 * math.pi / 5


def _parameters(shape: tuple[int, ...], derivative_count: int, seed: int = 0, scale: float = 1.5):
    generator = torch.Generator().manual_seed(seed)

    def draw(*last: int) -> torch.Tensor:
        return scale * torch.randn(*shape, *last, generator=generator, dtype=torch.float64)

    return draw(BINS), draw(BINS), draw(derivative_count)


def _interval(values, widths, heights, derivatives):
    return rq_spline(values, widths, heights, derivatives, BOUND)


def _interval_inverse(values, widths, heights, derivatives):
    return rq_spline_inverse(values, widths, heights, derivatives, BOUND)


def _circle(values, widths, heights, derivatives):
    return circular_rq_spline(values, widths, heights, derivatives, PERIOD)


def _circle_inverse(values, widths, heights, derivatives):
    return circular_rq_spline_inverse(values, widths, heights, derivatives, PERIOD)


def _reflected(values, widths, heights, derivatives):
    return reflected_circular_rq_spline(values, widths, heights, derivatives, PERIOD)


def _reflected_inverse(values, widths, heights, derivatives):
    return reflected_circular_rq_spline_inverse(values, widths, heights, derivatives, PERIOD)


Spline = Callable[..., tuple[torch.Tensor, torch.Tensor]]
# (forward, inverse, derivative count, sample range): the interval spline is probed beyond its
# bound to cover the tails, the circle maps over several periods either side of 0.
SPLINES = {
    "interval": (_interval, _interval_inverse, BINS - 1, 1.5 * BOUND),
    "circular": (_circle, _circle_inverse, BINS, 3 * PERIOD),
    "reflected": (_reflected, _reflected_inverse, BINS + 1, 3 * PERIOD),
}


def _points(span: float, n: int = 400, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (2 * torch.rand(n, generator=generator, dtype=torch.float64) - 1) * span


@pytest.mark.parametrize("name", SPLINES)
def test_inverse_and_log_derivatives(name: str) -> None:
    forward, inverse, derivative_count, span = SPLINES[name]
    x = _points(span).requires_grad_(True)
    parameters = _parameters(x.shape, derivative_count)
    y, log_derivative = forward(x, *parameters)
    (autograd,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(log_derivative, autograd.log(), atol=1e-9, rtol=0)
    recovered, log_inverse_derivative = inverse(y.detach(), *parameters)
    torch.testing.assert_close(recovered, x.detach(), atol=1e-9, rtol=0)
    torch.testing.assert_close(log_inverse_derivative, -log_derivative, atol=1e-9, rtol=0)


@pytest.mark.parametrize("name", SPLINES)
def test_monotone_and_continuously_differentiable(name: str) -> None:
    forward, _, derivative_count, span = SPLINES[name]
    # One parameter set for every point (the same map everywhere), moderate so that no bin is
    # so narrow that the grids below do not resolve it.
    parameters = [p[0] for p in _parameters((1,), derivative_count, scale=0.7)]

    def largest_steps(points: int) -> tuple[float, float]:
        x = torch.linspace(-span, span, points, dtype=torch.float64)
        y, log_derivative = forward(x, *[p.expand(points, -1) for p in parameters])
        assert bool((y.diff() > 0).all())
        return float(y.diff().max()), float(log_derivative.diff().abs().max())

    coarse_value, coarse_slope = largest_steps(20_001)
    fine_value, fine_slope = largest_steps(40_001)
    # A jump in f or in f' (a kink at a knot or at a period boundary) would not shrink with the
    # grid spacing; a C^1 map's largest steps halve with it.
    assert fine_value < 0.6 * coarse_value
    assert fine_slope < 0.6 * coarse_slope


def test_interval_spline_is_the_identity_outside_the_bound() -> None:
    x = torch.tensor([-10.0, -BOUND - 1e-6, BOUND + 1e-6, 7.0], dtype=torch.float64)
    y, log_derivative = rq_spline(x, *_parameters(x.shape, BINS - 1), bound=BOUND)
    torch.testing.assert_close(y, x)
    assert bool((log_derivative == 0).all())


def test_zero_parameters_give_the_identity() -> None:
    x = _points(BOUND)
    zeros = torch.zeros(*x.shape, BINS, dtype=torch.float64)
    y, log_derivative = rq_spline(x, zeros, zeros, zeros[..., 1:], BOUND)
    torch.testing.assert_close(y, x, atol=1e-12, rtol=0)
    torch.testing.assert_close(log_derivative, torch.zeros_like(x), atol=1e-12, rtol=0)


def test_circular_spline_commutes_with_the_period_shift_and_fixes_zero() -> None:
    theta = _points(PERIOD)
    parameters = _parameters(theta.shape, BINS)
    y, log_derivative = circular_rq_spline(theta, *parameters, PERIOD)
    for turns in (-2, 1, 3):
        shifted, shifted_log = circular_rq_spline(theta + turns * PERIOD, *parameters, PERIOD)
        torch.testing.assert_close(shifted, y + turns * PERIOD, atol=1e-9, rtol=0)
        torch.testing.assert_close(shifted_log, log_derivative, atol=1e-9, rtol=0)
    zero = torch.zeros(1, dtype=torch.float64)
    assert float(circular_rq_spline(zero, *[p[:1] for p in parameters], PERIOD)[0]) == 0.0


def test_circular_spline_is_not_reflection_symmetric() -> None:
    """Negative control for the next test: a generic circle map breaks f(-t) = -f(t)."""
    theta = _points(PERIOD)
    parameters = _parameters(theta.shape, BINS)
    y, _ = circular_rq_spline(theta, *parameters, PERIOD)
    reflected, _ = circular_rq_spline(-theta, *parameters, PERIOD)
    assert float((reflected + y).abs().max()) > 1e-2


def test_reflected_spline_is_odd_and_periodic() -> None:
    theta = _points(2 * PERIOD)
    parameters = _parameters(theta.shape, BINS + 1)
    y, log_derivative = reflected_circular_rq_spline(theta, *parameters, PERIOD)
    mirrored, mirrored_log = reflected_circular_rq_spline(-theta, *parameters, PERIOD)
    torch.testing.assert_close(mirrored, -y, atol=1e-9, rtol=0)
    torch.testing.assert_close(mirrored_log, log_derivative, atol=1e-9, rtol=0)
    shifted, _ = reflected_circular_rq_spline(theta + PERIOD, *parameters, PERIOD)
    torch.testing.assert_close(shifted, y + PERIOD, atol=1e-9, rtol=0)


def test_wrong_parameter_shapes_are_named() -> None:
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="derivatives"):
        rq_spline(x, torch.zeros(3, BINS), torch.zeros(3, BINS), torch.zeros(3, BINS), BOUND)
