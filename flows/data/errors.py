"""The root of the library's errors, in its bottom layer; import them from :mod:`flows.errors`.

They live here because ``flows.data`` imports nothing from the rest of ``flows`` (so that the
service reads uploads without loading the models), yet its :class:`DataError` belongs to the one
hierarchy under :class:`FlowError`.
"""

from __future__ import annotations

__all__ = ["DataError", "FileError", "FlowError", "InputError"]


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


class FileError(DataError):
    """A data file, or one entry of an archive, that cannot be read or breaks a limit.

    ``filename`` and ``entry`` (None: the file as a whole) name what is at fault as data, and
    ``problem`` says what is wrong without naming it; the message joins them. A caller that built
    the file itself (the scoring route zips the client's PNG files) tells its client the problem
    without the name of a file the client never sent.
    """

    def __init__(
        self, filename: str, problem: str, *, entry: str | None = None, field: str | None = None
    ) -> None:
        subject = repr(filename) if entry is None else f"entry {entry!r} of {filename!r}"
        super().__init__(f"{subject} {problem}", field)
        self.filename = filename
        self.entry = entry
        self.problem = problem

    def without_filename(self) -> str:
        """The message without the file's name: the entry, if any, and the problem."""
        return self.problem if self.entry is None else f"entry {self.entry!r} {self.problem}"
