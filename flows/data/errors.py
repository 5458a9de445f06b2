"""The root of the library's errors, in its bottom layer; import them from :mod:`flows.errors`.

They live here because ``flows.data`` imports nothing from the rest of ``flows`` (so that the
service reads uploads without loading the models), yet its :class:`DataError` belongs to the one
hierarchy under :class:`FlowError`.
"""

from __future__ import annotations

__all__ = ["DataError", "FlowError", "InputError"]


class FlowError(Exception):
    """Base class of the library's own errors; ``field`` names the input at fault, if known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InputError(FlowError, ValueError):
    """A config or input the library cannot use; the message says why and how to fix it."""


class DataError(InputError):
    """A dataset (file, array or request) is malformed; the message names what and where."""
