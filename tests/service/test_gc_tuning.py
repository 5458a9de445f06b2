"""The service collects young objects every 10 000 allocations (app/gc_tuning.py), the fix
for the full-heap collections that stalled every request in flight under concurrency."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from app.core.settings import Settings
from app.gc_tuning import YOUNG_THRESHOLD, collect_young_objects_less_often
from app.main import create_app


@pytest.fixture
def default_thresholds() -> Iterator[tuple[int, int, int]]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*saved)


def test_the_app_raises_the_young_threshold_only(
    default_thresholds: tuple[int, int, int], tmp_path
) -> None:
    create_app(Settings(database_url=f"sqlite:///{tmp_path}/efnf.sqlite3"))
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)


def test_a_higher_threshold_is_kept(default_thresholds: tuple[int, int, int]) -> None:
    gc.set_threshold(50_000, 10, 10)
    collect_young_objects_less_often()
    assert gc.get_threshold() == (50_000, 10, 10)
