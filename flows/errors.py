"""Errors the library raises on purpose, each with a message a user can act on."""

from __future__ import annotations

__all__ = ["FlowError", "InverseNotConverged", "TrainingDiverged"]


class FlowError(Exception):
    """Base class of the library's own errors."""


class InverseNotConverged(FlowError):
    """A fixed-point inverse did not reach its tolerance within its iteration budget.

    ``error_bound`` is the certified bound on the error of the last iterate (the worst item);
    ``tolerance`` the tolerance it had to reach for that item.
    """

    def __init__(self, iterations: int, error_bound: float, tolerance: float) -> None:
        super().__init__(
            f"inverse did not converge: error bound {error_bound:.3g} > tolerance "
            f"{tolerance:.3g} after {iterations} iterations (raise inverse_max_iter, or "
            "inverse_atol / inverse_rtol)"
        )
        self.iterations = iterations
        self.error_bound = error_bound
        self.tolerance = tolerance


class TrainingDiverged(FlowError):
    """The training loss became NaN or infinite."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"training diverged at step {step}: loss is {loss}")
        self.step = step
        self.loss = loss
