"""Engines and sessions for one code path over SQLite and PostgreSQL.

An engine is made per (URL, process): a forked Celery child never reuses its parent's
connections. SQLite gets WAL, a busy timeout and enforced foreign keys, so the API and the
worker can share one file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from threading import Lock
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000

_engines: dict[tuple[str, int], tuple[Engine, sessionmaker[Session]]] = {}
_lock = Lock()


def ensure_sqlite_directory(url: str) -> None:
    """Creates the directory of a file-backed SQLite URL (``sqlite:///./var/x.sqlite3``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def create_db_engine(url: str) -> Engine:
    """A new engine for ``url`` with the per-back-end settings above."""
    if make_url(url).get_backend_name() == "sqlite":
        ensure_sqlite_directory(url)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _engine_and_factory(url: str) -> tuple[Engine, sessionmaker[Session]]:
    key = (url, os.getpid())
    with _lock:
        if key not in _engines:
            engine = create_db_engine(url)
            _engines[key] = (engine, sessionmaker(engine, expire_on_commit=False))
        return _engines[key]


def get_engine(url: str) -> Engine:
    """The engine of this process for ``url``."""
    return _engine_and_factory(url)[0]


def session_factory(url: str) -> sessionmaker[Session]:
    return _engine_and_factory(url)[1]


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = session_factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Closes this process's pools (tests, shutdown)."""
    with _lock:
        for (url, pid), (engine, _) in list(_engines.items()):
            if pid == os.getpid():
                engine.dispose()
                del _engines[(url, pid)]


def forget_inherited_engines() -> None:
    """In a forked child: drops the parent's pools without closing the parent's connections."""
    with _lock:
        for (url, pid), (engine, _) in list(_engines.items()):
            if pid != os.getpid():
                engine.dispose(close=False)
                del _engines[(url, pid)]
