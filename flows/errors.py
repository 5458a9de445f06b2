r"""Errors the library raises on purpose, each with a message a user can act on.

One hierarchy: :class:`FlowError` at the root, carrying the offending ``field`` as data where one
is known (a dotted config path such as ``flow.data_shape``, or an input such as ``inputs``), so a
caller (the service maps these to 4xx in ``app/api/errors.py``) never parses it out of the text.
:class:`InputError` (and :class:`DataError`, for data sets and inputs) are also ``ValueError``\ s:
bad input, not a failure of the library.
"""

from __future__ import annotations

# The root classes are defined in flows.data, the library's bottom layer, which imports nothing
# from the rest of flows (tests/test_data.py); this module is their public home.
from flows.data.errors import DataError, FileError, FlowError, InputError

__all__ = [
    "DataError",
    "FileError",
    "FlowError",
    "InputError",
    "InverseNotConverged",
    "TrainingDiverged",
]


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
