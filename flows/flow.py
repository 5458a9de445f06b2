"""The Flow: a stack of invertible equivariant layers over a standard normal base density."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from flows.config import FlowConfig
from flows.layers import EquivariantActNorm, FlowLayer, InverseInfo, IsotropicActNorm
from flows.lipschitz import LipschitzAudit, LipschitzLayer
from flows.logdet import LogDetContext
from flows.padding import PaddingDistribution

# Layers set from the first training batch by Flow.initialize_actnorm, never by a forward.
DATA_INITIALIZED_LAYERS = (EquivariantActNorm, IsotropicActNorm)

__all__ = ["Flow", "InverseReport", "LogDetMethod", "LogProbEstimate"]

LogDetMethod = Literal["auto", "exact", "estimate"]
LOG_2PI = math.log(2.0 * math.pi)


class LogProbEstimate(NamedTuple):
    """log p(x) per item (or its lower bound) and the standard error of that estimate.

    ``stderr`` is zero for exact log-dets and NaN where one padding draw cannot estimate the
    Monte-Carlo error of an augmented flow (see :meth:`Flow.log_prob_with_stderr`).
    """

    log_prob: Tensor
    stderr: Tensor


@dataclass(frozen=True)
class InverseReport:
    """Per iterative layer (in the order they were inverted): how its inverse converged.

    Each layer's ``error_bound`` certifies its own fixed-point error given its input. The
    end-to-end error also carries each layer's error through the inverses of the layers inverted
    after it (a residual block's inverse is 1 / (1 - L)-Lipschitz); that propagation is not
    part of the report.
    """

    layers: tuple[InverseInfo, ...]

    @property
    def max_iterations(self) -> int:
        return max((info.iterations for info in self.layers), default=0)

    @property
    def max_error_bound(self) -> float:
        """The largest certified per-layer error bound ||x - f_k^{-1}(y)||_2 of any item."""
        return max((info.error_bound for info in self.layers), default=0.0)

    @property
    def item_error_bounds(self) -> Tensor | None:
        """Per item, its largest certified per-layer error bound (None without iterative
        layers that report per item)."""
        bounds = [info.item_error_bounds for info in self.layers]
        if not bounds or any(bound is None for bound in bounds):
            return None
        return torch.stack(bounds).amax(dim=0)


class Flow(torch.nn.Module):
    r"""x -> z = f_K(...f_1(x)) with log p(x) = log N(z; 0, I) + sum_k log|det J_{f_k}|.

    The base density is invariant under every orthogonal or permutation representation, so if
    every layer is G-equivariant the model density is exactly G-invariant.
    References: Bose & Kobyzev, Equivariant Finite Normalizing Flows (2021).

    An *augmented* flow (``padding`` given) is a bijection of the data padded with trivially
    acted channels: :meth:`transform` and :meth:`inverse` act on that padded (latent) shape,
    while :meth:`log_prob` and :meth:`sample` speak of the data alone, ``log_prob`` through a
    lower bound (see :mod:`flows.padding`).

    Arguments:
        config: the configuration the flow was built from.
        layers: the layers, data side first.
        padding: the padding distribution q(pad | x) of an augmented flow.
    """

    def __init__(
        self,
        config: FlowConfig,
        layers: list[FlowLayer],
        padding: PaddingDistribution | None = None,
    ) -> None:
        super().__init__()
        if (padding is not None) != config.is_augmented:
            raise ValueError(
                f"padding_channels {config.padding_channels} needs a padding distribution "
                "exactly when it is positive"
            )
        self.config = config
        self.layers = torch.nn.ModuleList(layers)
        self.padding = padding

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.config.data_shape)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """The shape of the bijection's input and output (the data's, plus padding channels)."""
        return tuple(self.config.latent_shape)

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def is_lower_bound(self) -> bool:
        """True if :meth:`log_prob` is a lower bound on log p(x) (augmented flows)."""
        return self.padding is not None

    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        for parameter in self.parameters():
            return parameter.device, parameter.dtype
        return torch.device("cpu"), torch.get_default_dtype()

    def resolve_method(self, method: LogDetMethod) -> str:
        """See :meth:`~flows.config.FlowConfig.resolve_logdet_method`."""
        return self.config.resolve_logdet_method(method)

    def _check_input(self, x: Tensor, shape: tuple[int, ...], name: str) -> None:
        if tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"input shape {list(x.shape)} does not match the flow's {name} "
                f"{list(shape)} (expected [batch, *{name}])"
            )

    def transform_with_context(self, x: Tensor, ctx: LogDetContext) -> tuple[Tensor, Tensor]:
        """(Padded) data -> latent with every layer's log-det computed as ``ctx`` says."""
        self._check_input(x, self.latent_shape, "latent_shape")
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for layer in self.layers:
            x, layer_logdet = layer(x, ctx)
            logdet = logdet + layer_logdet
        return x, logdet

    def _context(
        self, method: LogDetMethod, n_probes: int, generator: torch.Generator | None
    ) -> LogDetContext:
        estimator = self.config.estimator
        return LogDetContext(
            method=self.resolve_method(method),
            differentiable=torch.is_grad_enabled(),
            n_probes=n_probes,
            n_exact_terms=estimator.eval_exact_terms if n_probes > 1 else estimator.n_exact_terms,
            geometric_p=estimator.geometric_p,
            generator=generator,
        )

    def transform(
        self, x: Tensor, method: LogDetMethod = "auto", generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """(Padded) data -> (latent z, log|det dz/dx| per item); differentiable with grad on."""
        return self.transform_with_context(x, self._context(method, 1, generator))

    @staticmethod
    def base_log_prob(z: Tensor) -> Tensor:
        """log N(z; 0, I) per item."""
        flat = z.reshape(z.shape[0], -1)
        return -0.5 * (flat.pow(2).sum(1) + flat.shape[1] * LOG_2PI)

    def log_likelihood(
        self, x: Tensor, ctx: LogDetContext, padding_noise: Tensor | None = None
    ) -> Tensor:
        """log p(x) per item, or for an augmented flow one draw of its ELBO (training's loss).

        Arguments:
            x: a batch shaped (B, *data_shape).
            ctx: how the log-dets are computed (and the random source of the padding).
            padding_noise: augmented flows: the standard normal noise of the padding draw,
                shaped (B, padding_channels, *spatial); drawn from ``ctx.generator`` if None.
        """
        self._check_input(x, self.data_shape, "data_shape")
        if self.padding is None:
            z, logdet = self.transform_with_context(x, ctx)
            return self.base_log_prob(z) + logdet
        padding, log_q = self.padding.sample(x, padding_noise, ctx.generator)
        z, logdet = self.transform_with_context(torch.cat([x, padding], 1), ctx)
        return self.base_log_prob(z) + logdet - log_q

    def log_prob(
        self,
        x: Tensor,
        method: LogDetMethod = "auto",
        generator: torch.Generator | None = None,
        n_probes: int | None = None,
        padding_noise: Tensor | None = None,
    ) -> Tensor:
        """Natural-log density of x (for images: of x in [0, 1]^D, continuous).

        For an augmented flow (:attr:`is_lower_bound`) this is the importance-weighted lower
        bound with ``config.padding_eval_samples`` draws of the padding (see
        :mod:`flows.padding`).

        Arguments:
            x: a batch shaped (B, *data_shape).
            method: ``exact`` (full Jacobian), ``estimate`` (unbiased Russian roulette) or
                ``auto`` (exact up to ``config.exact_max_dim`` dimensions); flows without
                residual blocks are always exact.
            generator: random source of the estimator and of the padding draws.
            n_probes: override the number of Hutchinson probes (default 1).
            padding_noise: augmented flows: the padding draws' standard normal noise, shaped
                (K, B, padding_channels, *spatial) for K importance samples.

        Returns:
            log p(x) (or its lower bound) of shape (B,).
        """
        return self._log_prob_and_variance(x, method, 1, generator, n_probes, padding_noise)[0]

    def log_prob_with_stderr(
        self,
        x: Tensor,
        method: LogDetMethod = "auto",
        generator: torch.Generator | None = None,
        n_probes: int | None = None,
        padding_noise: Tensor | None = None,
    ) -> LogProbEstimate:
        """:meth:`log_prob` and the standard error of its estimate (zeros if exact).

        Estimates use ``config.estimator.eval_probes`` probes per item unless ``n_probes`` says
        otherwise. For an augmented flow the standard error includes the delta-method error of
        the importance-weighted Monte-Carlo average; with a single padding draw
        (``padding_eval_samples`` 1) that error cannot be estimated and is NaN.

        Arguments: as :meth:`log_prob`.
        """
        log_prob, variance = self._log_prob_and_variance(
            x, method, self.config.estimator.eval_probes, generator, n_probes, padding_noise
        )
        return LogProbEstimate(log_prob, variance.clamp_min(0).sqrt())

    def _log_prob_and_variance(
        self,
        x: Tensor,
        method: LogDetMethod,
        default_probes: int,
        generator: torch.Generator | None,
        n_probes: int | None,
        padding_noise: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        resolved = self.resolve_method(method)
        if n_probes is None:
            n_probes = default_probes
        if resolved == "exact":
            n_probes = 1
        ctx = self._context(resolved, n_probes, generator)
        if self.padding is None:
            log_prob = self.log_likelihood(x, ctx)
            variance = ctx.variance if ctx.variance is not None else torch.zeros_like(log_prob)
            return log_prob, variance
        return self._importance_weighted(x, ctx, padding_noise)

    def _importance_weighted(
        self, x: Tensor, ctx: LogDetContext, padding_noise: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """IWAE-K bound log mean_k w_k and its (delta-method) variance."""
        batch = x.shape[0]
        samples = (
            self.config.padding_eval_samples if padding_noise is None else padding_noise.shape[0]
        )
        repeated = x.repeat(samples, *([1] * (x.dim() - 1)))
        noise = None
        if padding_noise is not None:
            noise = padding_noise.reshape(samples * batch, *padding_noise.shape[2:])
        log_weights = self.log_likelihood(repeated, ctx, noise).reshape(samples, batch)
        log_prob = torch.logsumexp(log_weights, 0) - math.log(samples)
        # One draw says nothing about the spread of the weights: its error is unknown (NaN),
        # not zero.
        variance = torch.full_like(log_prob, math.nan)
        if samples > 1:
            # Var[log mean w] ~ Var[w] / (K mean(w)^2), with w scaled by its maximum.
            weights = (log_weights - log_weights.max(0).values).exp()
            variance = weights.var(0) / (samples * weights.mean(0).pow(2))
        if ctx.variance is not None:
            variance = variance + ctx.variance.reshape(samples, batch).mean(0) / samples
        return log_prob, variance

    @torch.no_grad()
    def initialize_actnorm(self, x: Tensor, seed: int = 0) -> bool:
        """Data-dependent initialisation of every uninitialised ActNorm from the batch ``x``.

        Each ActNorm is set from its own input: ``x`` (for an augmented flow with a padding
        draw) pushed through the layers before it. Forward passes never initialise, so a
        ``log_prob`` in train mode leaves the model unchanged. Randomness (padding draws, the
        estimator's probes, whose log-dets are discarded) comes from a private generator seeded
        with ``seed``, so the caller's random stream is untouched.

        Returns:
            True if some layer was initialised.
        """
        pending = [
            layer
            for layer in self.layers
            if isinstance(layer, DATA_INITIALIZED_LAYERS) and not bool(layer.initialized)
        ]
        if not pending:
            return False
        self._check_input(x, self.data_shape, "data_shape")
        generator = torch.Generator(device="cpu").manual_seed(seed)
        if self.padding is not None:
            padding, _ = self.padding.sample(x, None, generator)
            x = torch.cat([x, padding], 1)
        ctx = LogDetContext(method="estimate", generator=generator)
        for layer in self.layers:
            if layer in pending:
                layer.initialize(x)
            x, _ = layer(x, ctx)
        return True

    def inverse_with_info(self, z: Tensor) -> tuple[Tensor, InverseReport]:
        """Latent -> data, with how each iterative layer converged.

        Returns a tensor of :attr:`latent_shape` (for augmented flows, data and padding).

        Raises:
            InverseNotConverged: a layer did not reach its tolerance.
        """
        self._check_input(z, self.latent_shape, "latent_shape")
        infos = []
        with torch.no_grad():
            for layer in reversed(self.layers):
                z, info = layer.inverse_with_info(z)
                if info is not None:
                    infos.append(info)
        return z, InverseReport(tuple(infos))

    def inverse(self, z: Tensor) -> Tensor:
        """Latent -> data (fixed-point iterations to ``config.inverse_atol`` / ``inverse_rtol``
        where needed; see :class:`~flows.layers.ResidualBlock` for the error bound)."""
        return self.inverse_with_info(z)[0]

    def sample(self, n: int, seed: int | None = None, temperature: float = 1.0) -> Tensor:
        """Draws n samples: z ~ N(0, temperature^2 I), x = f^{-1}(z) (padding dropped).

        Image samples are clamped to [0, 1], the data's range: the logit transform with
        ``logit_alpha`` a maps the reals onto (-a / (1 - 2a), 1 + a / (1 - 2a)), so a model
        puts some mass just outside [0, 1] (the density of :meth:`log_prob` is that of the
        unclamped x). :meth:`inverse` returns the unclamped values.
        """
        x = self.inverse(self.draw_latents(n, seed, temperature))[:, : self.data_shape[0]]
        return x if self.config.is_points else x.clamp(0.0, 1.0)

    def draw_latents(self, n: int, seed: int | None = None, temperature: float = 1.0) -> Tensor:
        """z ~ N(0, temperature^2 I) of shape (n, *latent_shape), on the flow's device and dtype,
        from a CPU generator seeded with ``seed`` (fresh entropy if None), so a seed gives the
        same latents on every device: what :meth:`sample` inverts."""
        if n < 0 or temperature < 0:
            raise ValueError(f"n={n} and temperature={temperature} must be non-negative")
        device, dtype = self._device_dtype()
        generator = torch.Generator(device="cpu")
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        z = torch.randn(n, *self.latent_shape, generator=generator, dtype=dtype) * temperature
        return z.to(device)

    # -- Lipschitz bookkeeping -----------------------------------------------------------------
    def lipschitz_layers(self) -> list[LipschitzLayer]:
        return [m for m in self.modules() if isinstance(m, LipschitzLayer)]

    def audit_lipschitz(self) -> LipschitzAudit:
        """Checks every Lipschitz layer from its weights alone, changing nothing.

        The certified bounds are recomputed from the weights in use (they hold by construction:
        see :mod:`flows.lipschitz`); the measured norms are exact where the bound is, else
        Lanczos from fresh random vectors (never stored state).
        """
        layers = self.lipschitz_layers()
        return LipschitzAudit(
            coeff=self.config.lipschitz_coeff,
            certified=max((layer.certified_norm() for layer in layers), default=0.0),
            measured=max((layer.audit_norm() for layer in layers), default=0.0),
            layers=len(layers),
        )

    def export(self) -> Flow:
        """A copy whose sub-networks are plain torch modules (no escnn types), for serving.

        The copy computes the same function as this flow does now, in eval mode.
        """
        exported = copy.deepcopy(self).eval()
        for index, layer in enumerate(exported.layers):
            exported.layers[index] = layer.export()
        if exported.padding is not None:
            exported.padding = exported.padding.export()
        return exported.eval()
