r"""Equivariant flows of 2-D points in polar coordinates: spline couplings of angle and log-radius.

A point :math:`x = e^\rho (\cos\theta, \sin\theta)` is moved to
:math:`x' = e^{\rho'} (\cos\theta', \sin\theta')` by two monotone spline couplings,

.. math::
    \theta' = f(\theta; \rho), \qquad \rho' = g(\rho; \theta'),

where :math:`f(\cdot; \rho)` is a circle map and :math:`g(\cdot; \theta')` an interval spline
(:mod:`flows.splines`), their parameters produced by small networks of *invariant* features.
Since :math:`dx = e^{2\rho} d\rho\, d\theta`, the Jacobian is triangular in polar coordinates and

.. math::
    \log |\det \partial x' / \partial x| = \log f'(\theta) + \log g'(\rho) + 2(\rho' - \rho).

Equivariance. A rotation by :math:`\alpha` shifts :math:`\theta` by :math:`\alpha` and fixes
:math:`\rho`; the reflection across the x-axis negates :math:`\theta`. The block commutes with the
group if :math:`f` does and :math:`g` depends on :math:`\theta'` only through invariants:

- ``C_N`` (``trivial`` is ``C_1``): :math:`f` is a circular spline of period :math:`2\pi/N`, so
  :math:`f(\theta + 2\pi/N) = f(\theta) + 2\pi/N`; :math:`g` sees
  :math:`\cos kN\theta', \sin kN\theta'`.
- ``D_N``: :math:`f` is also odd, :math:`f(-\theta) = -f(\theta)` (a reflected circular spline);
  :math:`g` sees :math:`\cos kN\theta'` only.
- ``SO2``, ``O2``: :math:`f` is the identity (a rotation by a radius-dependent angle would commute
  with SO2, but cannot change an SO2-invariant density) and :math:`g` has no condition.

With an invariant base :math:`N(0, I)` the model density is then exactly invariant.

The origin is a fixed point: the radial spline is the identity below ``-bound`` in
:math:`\rho`, and the block writes :math:`x' = e^{\rho' - \rho} R_{\theta' - \theta}\, x`, which is
0 at :math:`x = 0` with a finite log-det.

References: Durkan et al., Neural Spline Flows (2019); Rezende et al., Normalizing Flows on Tori
and Spheres (2020).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flows.config import polar_symmetry
from flows.layers.base import FlowLayer, InverseInfo
from flows.logdet import LogDetContext
from flows.splines import (
    circular_rq_spline,
    circular_rq_spline_inverse,
    reflected_circular_rq_spline,
    reflected_circular_rq_spline_inverse,
    rq_spline,
    rq_spline_inverse,
)

__all__ = ["IsotropicActNorm", "PolarSplineBlock"]

# Where the radial spline acts, in log-radius (standardised data has log-radius near 0).
RADIAL_BOUND = 5.0


def _mlp(inputs: int, hidden: int, hidden_layers: int, outputs: int) -> torch.nn.Sequential:
    """A small network whose last layer starts at zero: the block starts as the identity."""
    layers: list[torch.nn.Module] = []
    size = inputs
    for _ in range(hidden_layers):
        layers += [torch.nn.Linear(size, hidden), torch.nn.SiLU()]
        size = hidden
    last = torch.nn.Linear(size, outputs)
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    return torch.nn.Sequential(*layers, last)


class IsotropicActNorm(FlowLayer):
    r"""y = x * exp(s) with one scalar s: the only scaling that commutes with rotations.

    Initialised from the first training batch so that the coordinates have unit mean square
    (standardising the data invariantly). log|det| = D * s.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("initialized", torch.tensor(False))
        self.log_scale = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor, ctx: LogDetContext) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            with torch.no_grad():
                self.log_scale.copy_(-0.5 * torch.log(x.detach().pow(2).mean() + 1e-12))
                self.initialized.fill_(True)
        logdet = (self.log_scale * x.shape[1]).expand(x.shape[0])
        return x * self.log_scale.exp(), logdet

    def inverse_with_info(self, y: Tensor) -> tuple[Tensor, InverseInfo | None]:
        return y * (-self.log_scale).exp(), None


class PolarSplineBlock(FlowLayer):
    """One angular and one radial spline coupling of 2-D points (see the module docstring).

    Arguments:
        group_kind, order: the symmetry group (as :func:`flows.config.parse_group` returns).
        hidden: hidden units of the conditioner networks.
        hidden_layers: hidden layers of the conditioner networks.
        bins: spline bins.
        harmonics: the radial conditioner sees harmonics k = 1..harmonics of N theta'.
    """

    def __init__(
        self, group_kind: str, order: int, hidden: int, hidden_layers: int, bins: int,
        harmonics: int,
    ) -> None:  # fmt: skip
        super().__init__()
        self.angular_kind, self.order = polar_symmetry(group_kind, order)
        self.bins = bins
        self.harmonics = harmonics
        self.period = 2 * math.pi / self.order if self.order else 0.0
        self.angular_net: torch.nn.Module | None = None
        if self.angular_kind != "none":
            derivatives = bins if self.angular_kind == "circular" else bins + 1
            self.angular_net = _mlp(1, hidden, hidden_layers, 2 * bins + derivatives)
        radial_parameters = 3 * bins - 1
        features = self._angle_features(torch.zeros(1)).shape[1]
        if features:
            self.radial_net: torch.nn.Module | None = _mlp(
                features, hidden, hidden_layers, radial_parameters
            )
            self.radial_parameters = None
        else:
            self.radial_net = None
            self.radial_parameters = torch.nn.Parameter(torch.zeros(radial_parameters))

    # -- conditioners ---------------------------------------------------------------------------
    def _angle_features(self, theta: Tensor) -> Tensor:
        """Group-invariant features of the angle: harmonics of N theta."""
        if self.angular_kind == "none":
            return theta.new_zeros(theta.shape[0], 0)
        multiples = self.order * torch.arange(
            1, self.harmonics + 1, dtype=theta.dtype, device=theta.device
        )
        phases = theta[:, None] * multiples
        if self.angular_kind == "reflected":
            return torch.cos(phases)
        return torch.cat([torch.cos(phases), torch.sin(phases)], dim=1)

    def _angular_spline_parameters(self, rho: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        features = (rho.clamp(-2 * RADIAL_BOUND, 2 * RADIAL_BOUND) / RADIAL_BOUND)[:, None]
        raw = self.angular_net(features)  # type: ignore[misc]
        return raw[:, : self.bins], raw[:, self.bins : 2 * self.bins], raw[:, 2 * self.bins :]

    def _radial_spline_parameters(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.radial_net is not None:
            raw = self.radial_net(self._angle_features(theta))
        else:
            raw = self.radial_parameters.expand(theta.shape[0], -1)  # type: ignore[union-attr]
        return raw[:, : self.bins], raw[:, self.bins : 2 * self.bins], raw[:, 2 * self.bins :]

    # -- the maps ---------------------------------------------------------------------------------
    @staticmethod
    def _polar(x: Tensor) -> tuple[Tensor, Tensor]:
        squared = (x[:, 0] ** 2 + x[:, 1] ** 2).clamp_min(torch.finfo(x.dtype).tiny)
        return 0.5 * torch.log(squared), torch.atan2(x[:, 1], x[:, 0])

    @staticmethod
    def _move(x: Tensor, rho_change: Tensor, theta_change: Tensor) -> Tensor:
        """e^{rho_change} R_{theta_change} x: exact at the origin."""
        scale = rho_change.exp()
        cos, sin = scale * torch.cos(theta_change), scale * torch.sin(theta_change)
        return torch.stack([cos * x[:, 0] - sin * x[:, 1], sin * x[:, 0] + cos * x[:, 1]], dim=1)

    def _angular(self, theta: Tensor, rho: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        if self.angular_net is None:
            return theta, torch.zeros_like(theta)
        parameters = self._angular_spline_parameters(rho)
        if self.angular_kind == "circular":
            spline = circular_rq_spline_inverse if inverse else circular_rq_spline
        else:
            spline = (
                reflected_circular_rq_spline_inverse if inverse else reflected_circular_rq_spline
            )
        return spline(theta, *parameters, self.period)

    def forward(self, x: Tensor, ctx: LogDetContext) -> tuple[Tensor, Tensor]:
        rho, theta = self._polar(x)
        new_theta, angular_logdet = self._angular(theta, rho, inverse=False)
        new_rho, radial_logdet = rq_spline(
            rho, *self._radial_spline_parameters(new_theta), RADIAL_BOUND
        )
        y = self._move(x, new_rho - rho, new_theta - theta)
        return y, angular_logdet + radial_logdet + 2 * (new_rho - rho)

    def inverse_with_info(self, y: Tensor) -> tuple[Tensor, InverseInfo | None]:
        new_rho, new_theta = self._polar(y)
        rho, _ = rq_spline_inverse(
            new_rho, *self._radial_spline_parameters(new_theta), RADIAL_BOUND
        )
        theta, _ = self._angular(new_theta, rho, inverse=True)
        return self._move(y, rho - new_rho, theta - new_theta), None
