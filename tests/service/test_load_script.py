"""``bench/load.py`` drives real scoring and sampling requests and counts what it got back."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from bench.load import percentile, report, run_load
from tests.service.payloads import Trained
from tests.service.stack import Stack, create_key

pytestmark = [pytest.mark.service, pytest.mark.timeout(120)]


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0 and percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_a_short_run_against_the_app(stack: Stack, trained: Trained) -> None:
    key = create_key(stack.settings.database_url, stack.tenant)
    transport = httpx.ASGITransport(app=stack.client.app)
    model_id = trained.points_job["id"]
    results, elapsed = asyncio.run(
        run_load("http://app", key, model_id, 3, 1.5, batch=4, samples=4, transport=transport)
    )
    assert elapsed >= 1.5
    for endpoint in results.values():
        assert len(endpoint.latencies_s) >= 1 and endpoint.errors == 0
    table = report(results, elapsed, 3)
    assert "log-prob" in table and "samples" in table and "total" in table


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_a_missing_model_stops_the_run_before_it_starts(stack: Stack) -> None:
    key = create_key(stack.settings.database_url, stack.tenant)
    transport = httpx.ASGITransport(app=stack.client.app)
    with pytest.raises(SystemExit, match="warm-up request failed: 404"):
        asyncio.run(run_load("http://app", key, "job_missing", 2, 0.5, 4, 4, transport))
