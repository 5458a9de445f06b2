"""G-residual blocks: y = x + g(x) with g equivariant and Lip(g) < 1 (an invertible i-ResNet)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flows.errors import FlowError, InverseNotConverged
from flows.layers.base import FlowLayer, InverseInfo, exported
from flows.lipschitz import LipschitzLayer, WeightVersion
from flows.logdet import LogDetContext, estimate_residual_logdet, exact_residual_logdet

__all__ = ["ResidualBlock", "resolution_rtol"]

# Ulps of x that one evaluation of g may be off by (several layers, each rounding once).
ROUNDING_ULPS = 32
# Iterations beyond the Lipschitz-derived count, for steps that float rounding keeps from
# shrinking as fast as exact arithmetic does.
BUDGET_SLACK = 5


def resolution_rtol(dtype: torch.dtype, lipschitz: float) -> float:
    """The smallest relative error bound a fixed-point inverse can certify in ``dtype``.

    Steps stall at a few ulps of x once g's rounding dominates, and the bound multiplies the
    step by L / (1 - L); below ``ROUNDING_ULPS * eps * L / (1 - L)`` no tolerance is reachable.
    """
    return ROUNDING_ULPS * torch.finfo(dtype).eps * lipschitz / (1.0 - lipschitz)


class ResidualBlock(FlowLayer):
    r"""An equivariant invertible residual block (Behrmann et al., 2019; Bose & Kobyzev, 2021).

    y = x + g(x). If g is G-equivariant so is the block; if Lip(g) <= L < 1 the block is
    invertible and its inverse is the fixed point of x = y - g(x). The iterates x_n satisfy the a
    posteriori (Banach) bound, per item and in the Euclidean norm that L refers to,

    .. math:: \|x_n - f^{-1}(y)\|_2 \le \frac{L}{1 - L} \|x_n - x_{n-1}\|_2 ,

    with L the product of the certified norms of g's linear layers (its nonlinearities are
    1-Lipschitz). Each item stops iterating once its bound is at most
    ``atol + max(rtol, resolution_rtol(dtype, L)) * ||y||_2`` (later iterations run only the
    items still above it) and reports it (the bound is exact arithmetic's; float rounding of g
    adds a few ulps of x, which the resolution floor covers), so a large |y| in float32 does not
    make the tolerance unreachable. An item gives up after the iterations its contraction
    needs in theory (:meth:`iteration_budget`, from L and its first step), at most ``max_iter``.

    Arguments:
        net: the sub-network, an :class:`~flows.layers.base.EquivariantNet` from the data type
            to itself (or, after :meth:`export`, its plain-torch export).
        atol: absolute part of the tolerance on the error bound.
        rtol: relative part of the tolerance, times ||y||_2 per item.
        max_iter: iterations after which the inverse gives up with :class:`InverseNotConverged`.
        lipschitz: the certified Lip(g) of a network without Lipschitz layers to compute it
            from (an export, whose plain layers carry no bound); from ``net``'s otherwise.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        atol: float,
        max_iter: int,
        rtol: float = 0.0,
        lipschitz: float | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        # Listed once: walking an escnn network's modules hashes its bases (~0.1 ms a block).
        self._lipschitz_layers = [m for m in net.modules() if isinstance(m, LipschitzLayer)]
        self._bound_cache: tuple[tuple[WeightVersion, ...], float] | None = None
        if lipschitz is None and not self.lipschitz_layers():
            raise ValueError(
                "a residual branch without Lipschitz layers (an exported one) needs its "
                "certified lipschitz constant"
            )
        self.atol = atol
        self.rtol = rtol
        self.max_iter = max_iter
        self._exported_lipschitz = lipschitz

    def g(self, x: Tensor) -> Tensor:
        """The residual branch on plain tensors."""
        return self.net(x)

    def forward(self, x: Tensor, ctx: LogDetContext) -> tuple[Tensor, Tensor]:
        if ctx.method == "exact":
            gx, logdet = exact_residual_logdet(self.g, x, ctx.differentiable)
        else:
            gx, logdet, variance = estimate_residual_logdet(self.g, x, ctx)
            if variance is not None:
                ctx.add_variance(variance)
        return x + gx, logdet

    def lipschitz_bound(self) -> float:
        """Certified Lip(g): the product of its linear layers' certified norms.

        Recomputed only when a layer's weight may have changed since the last call
        (:meth:`~flows.lipschitz.LipschitzLayer.weight_version`), so a sampling request pays no
        norm computation (it was about half of a one-item sample on points).
        """
        if self._exported_lipschitz is not None:
            return self._exported_lipschitz
        key = tuple(layer.weight_version() for layer in self._lipschitz_layers)
        if self._bound_cache is None or self._bound_cache[0] != key:
            bound = math.prod(layer.certified_norm() for layer in self._lipschitz_layers)
            self._bound_cache = (key, bound)
        return self._bound_cache[1]

    def iteration_budget(self, first_step: Tensor, tolerance: Tensor, lipschitz: float) -> Tensor:
        r"""Per item, the iterations the contraction needs, from its Lipschitz bound alone.

        From x_0 = y the steps shrink geometrically, ||x_n - x_{n-1}|| <= L^{n-1} ||g(y)||, so
        the a posteriori bound L/(1-L) ||x_n - x_{n-1}|| meets the tolerance t by (the first
        step ``first_step`` is ||x_1 - x_0|| = ||g(y)||)

        .. math:: n = 1 + \left\lceil \log\frac{t (1 - L)}{L \|g(y)\|} / \log L \right\rceil ,

        plus ``BUDGET_SLACK`` iterations for float rounding, capped by ``max_iter``.
        """
        if lipschitz <= 0.0:
            return torch.ones(len(first_step), dtype=torch.long, device=first_step.device)
        ratio = tolerance.double() * (1.0 - lipschitz) / (lipschitz * first_step.double())
        needed = torch.log(ratio)
        steps = torch.ceil(needed / math.log(lipschitz)).clamp(min=0).nan_to_num(0.0)
        budget = 1 + steps + BUDGET_SLACK
        return budget.clamp(max=self.max_iter).long()

    @torch.no_grad()
    def inverse_with_info(self, y: Tensor) -> tuple[Tensor, InverseInfo | None]:
        """Fixed-point inverse, per item: an item stops iterating once its own certified bound
        meets its tolerance, and fails once it has used its :meth:`iteration_budget`."""
        lipschitz = self.lipschitz_bound()
        if not lipschitz < 1.0:
            raise FlowError(f"residual branch has Lipschitz bound {lipschitz:.6g} >= 1")
        factor = lipschitz / (1.0 - lipschitz)
        rtol = max(self.rtol, resolution_rtol(y.dtype, lipschitz))
        tolerance = self.atol + rtol * y.reshape(len(y), -1).norm(dim=1)
        budget = torch.full_like(tolerance, self.max_iter, dtype=torch.long)
        x = y.clone()
        bound = torch.full_like(tolerance, math.inf)
        last_step = torch.zeros_like(tolerance)
        iterations = torch.zeros(len(y), dtype=torch.long, device=y.device)
        active = torch.arange(len(y), device=y.device)
        iteration = 0
        while len(active):
            iteration += 1
            current = x[active]
            following = y[active] - self.g(current)
            step = (following - current).reshape(len(active), -1).norm(dim=1)
            x[active] = following
            bound[active] = factor * step
            last_step[active] = step
            iterations[active] = iteration
            if iteration == 1:
                budget = self.iteration_budget(step, tolerance, lipschitz)
            converged = bound[active] <= tolerance[active]
            exhausted = ~converged & (iteration >= budget[active])
            if bool(exhausted.any()):
                worst = active[exhausted][int((bound - tolerance)[active[exhausted]].argmax())]
                raise InverseNotConverged(
                    int(budget[worst]), float(bound[worst]), float(tolerance[worst])
                )
            active = active[~converged]
        return x, InverseInfo(
            iterations=iteration,
            step=float(last_step.max()) if len(y) else 0.0,
            error_bound=float(bound.max()) if len(y) else 0.0,
            lipschitz=lipschitz,
            item_error_bounds=bound,
            item_iterations=iterations,
        )

    def lipschitz_layers(self) -> list[LipschitzLayer]:
        return list(self._lipschitz_layers)

    def export(self) -> ResidualBlock:
        """The same block with its sub-network exported to plain torch modules."""
        return ResidualBlock(
            exported(self.net),
            self.atol,
            self.max_iter,
            rtol=self.rtol,
            lipschitz=self.lipschitz_bound(),
        )
