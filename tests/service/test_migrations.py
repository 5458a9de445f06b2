"""The schema comes from migrations only: up, down and up again on an empty database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, pool

from app.core.db.migrate import downgrade_to, upgrade_to_head
from app.core.db.models import Base
from tests.service.conftest import create_postgres_database, drop_postgres_database

pytestmark = pytest.mark.service

TABLES = {"datasets", "jobs", "checkpoints", "metrics", "api_keys"}


@pytest.fixture(params=["postgres", "sqlite"])
def empty_database(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/migrations.sqlite3"
        return
    name = f"efnf_test_migrations_{uuid.uuid4().hex[:12]}"
    url = create_postgres_database(name)
    try:
        yield url
    finally:
        drop_postgres_database(name)


def _tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _differences_from_models(url: str) -> list:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(empty_database: str) -> None:
    assert _tables(empty_database) == set()
    upgrade_to_head(empty_database)
    assert _tables(empty_database) == TABLES | {"alembic_version"}
    assert _differences_from_models(empty_database) == [], "models and migrations disagree"
    downgrade_to(empty_database, "base")
    assert _tables(empty_database) == {"alembic_version"}
    upgrade_to_head(empty_database)
    assert _tables(empty_database) == TABLES | {"alembic_version"}
