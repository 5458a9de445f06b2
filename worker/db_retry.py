"""Riding out a short database outage (a restart, a fail-over) in the worker's writes.

A write that fails because the database is unreachable is retried with back-off for as long as
the attempt's claim can survive without heartbeats (``EFNF_HEARTBEAT_TIMEOUT_S``); after that
the reaper will have re-queued the job anyway, so the error is raised and ends the attempt,
which then resumes from its newest checkpoint. Metrics are thus neither lost nor written twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

logger = logging.getLogger(__name__)

T = TypeVar("T")
FIRST_DELAY_S = 0.1
LONGEST_DELAY_S = 2.0


def is_database_unavailable(error: BaseException) -> bool:
    """True for errors of an unreachable or restarting database (not for bad statements)."""
    if isinstance(error, OperationalError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def retry_while_database_unavailable(action: Callable[[], T], patience_s: float, what: str) -> T:
    """Runs ``action`` until it succeeds, retrying database outages for up to ``patience_s``."""
    deadline = time.monotonic() + patience_s
    delay = FIRST_DELAY_S
    while True:
        try:
            return action()
        except DBAPIError as error:
            if not is_database_unavailable(error) or time.monotonic() + delay > deadline:
                raise
            logger.warning(
                "%s: database unavailable (%s); retrying in %.1f s",
                what,
                str(error.orig).strip().splitlines()[0] if error.orig else error,
                delay,
            )
        time.sleep(delay)
        delay = min(2 * delay, LONGEST_DELAY_S)
