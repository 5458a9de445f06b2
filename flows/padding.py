"""The padding distribution of augmented flows: q(pad | x), a G-equivariant Gaussian.

An augmented flow (Bose & Kobyzev, Theorem 3; Huang et al., Augmented Normalizing Flows, 2020)
models the joint density of x and padding channels e on which the group acts trivially. The
marginal p(x) = E_q[p(x, e) / q(e | x)] is intractable, so we report the lower bounds

    ELBO      log p(x) >= E_q[log p(x, e) - log q(e | x)]                  (training, K = 1)
    IWAE-K    log p(x) >= E_q[log (1/K) sum_k p(x, e_k) / q(e_k | x)]     (evaluation)

both of which tighten to log p(x) as q approaches the true posterior. q(e | x) =
N(mu(x), diag sigma(x)^2) with (mu, log sigma) an equivariant network from the data type to the
padding type: for g in G, q(g e | g x) = q(e | x), so the bounds are exactly invariant when the
reparametrisation noise is moved along (e = mu + sigma * u, u -> g u), and invariant in
expectation otherwise.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flows.layers.base import bounded_log_scale, exported

__all__ = ["PaddingDistribution"]

LOG_2PI = math.log(2.0 * math.pi)


class PaddingDistribution(torch.nn.Module):
    """q(pad | x) = N(mu(x), diag sigma(x)^2), with mu and log sigma equivariant in x.

    Arguments:
        net: an :class:`~flows.layers.base.EquivariantNet` from the data type to twice the
            padding type (mu, then log sigma), starting at zero (q = N(0, I)); or its export.
        channels: padding channels.
        log_scale_bound: log sigma is bounded to (-bound, bound).
    """

    def __init__(
        self,
        net: torch.nn.Module,
        channels: int,
        log_scale_bound: float,
    ) -> None:
        super().__init__()
        self.net = net
        self.channels = channels
        self.log_scale_bound = log_scale_bound

    def padding_shape(self, x: Tensor) -> tuple[int, ...]:
        """The shape of the padding of a batch x: (B, channels, *spatial)."""
        return (x.shape[0], self.channels, *x.shape[2:])

    def sample(
        self, x: Tensor, noise: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draws e ~ q(e | x) by reparametrisation; returns (e, log q(e | x) per item).

        Arguments:
            x: the data batch.
            noise: the standard normal u of e = mu + sigma u (drawn from ``generator`` if None).
        """
        mean, raw_log_scale = self.net(x).chunk(2, dim=1)
        log_scale = bounded_log_scale(raw_log_scale, self.log_scale_bound)
        if noise is None:
            device = generator.device if generator is not None else x.device
            noise = torch.randn(
                self.padding_shape(x), generator=generator, dtype=x.dtype, device=device
            ).to(x.device)
        elif tuple(noise.shape) != self.padding_shape(x):
            raise ValueError(
                f"padding noise of shape {list(noise.shape)}, need {list(self.padding_shape(x))}"
            )
        padding = mean + log_scale.exp() * noise
        log_q = -0.5 * (noise.pow(2) + LOG_2PI) - log_scale
        return padding, log_q.reshape(x.shape[0], -1).sum(1)

    def export(self) -> PaddingDistribution:
        """The same distribution with its network exported to plain torch modules."""
        return PaddingDistribution(exported(self.net), self.channels, self.log_scale_bound)
