"""Errors the library raises on purpose, each with a message a user can act on."""

from __future__ import annotations

__all__ = ["FlowError", "InverseNotConverged", "TrainingDiverged"]


class FlowError(Exception):
    """Base class of the library's own errors."""


class InverseNotConverged(FlowError):
    """A fixed-point inverse did not reach its tolerance within its iteration budget."""

    def __init__(self, iterations: int, residual: float, atol: float) -> None:
        super().__init__(
            f"inverse did not converge: residual {residual:.3g} > tolerance {atol:.3g} after "
            f"{iterations} iterations (raise inverse_max_iter or refresh the Lipschitz bounds)"
        )
        self.iterations = iterations
        self.residual = residual
        self.atol = atol


class TrainingDiverged(FlowError):
    """The training loss became NaN or infinite."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"training diverged at step {step}: loss is {loss}")
        self.step = step
        self.loss = loss
