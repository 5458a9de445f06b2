"""``GET /metrics`` on each stack: public, Prometheus text, and every family moves after real
requests (route templates and statuses, latency, model cache, scoring and sampling items, jobs
by state as in the database, a running job's speed from its heartbeat)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from app.core.db.migrate import upgrade_to_head
from app.core.db.models import JOB_STATES, Job
from app.core.db.session import session_scope
from app.core.settings import Settings
from app.main import create_app
from tests.service.payloads import POINTS_FLOW, TINY_TRAINING, Trained, submit_job
from tests.service.stack import Stack

pytestmark = [pytest.mark.service, pytest.mark.timeout(300)]

Samples = dict[tuple[str, frozenset], float]


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_are_public_and_move_after_real_requests(
    stack: Stack, trained: Trained, anonymous_client: TestClient
) -> None:
    model_id = trained.points_job["id"]
    job_route = {"method": "GET", "route": "/v1/jobs/{job_id}"}
    before = scrape(anonymous_client)

    for _ in range(3):
        assert stack.client.get(f"/v1/jobs/{model_id}").status_code == 200
    assert stack.client.get("/v1/jobs/job_missing").status_code == 404
    assert anonymous_client.get(f"/v1/jobs/{model_id}").status_code == 401
    scored = stack.client.post(
        f"/v1/models/{model_id}/log-prob", json={"inputs": [[0.1, 0.2]] * 5, "method": "exact"}
    )
    assert scored.status_code == 200, scored.text
    sampled = stack.client.post(f"/v1/models/{model_id}/samples", json={"n": 7, "seed": 1})
    assert sampled.status_code == 200, sampled.text
    after = scrape(anonymous_client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("efnf_http_requests_total", **job_route, status="200") == 3
    assert moved("efnf_http_requests_total", **job_route, status="404") == 1
    assert moved("efnf_http_requests_total", **job_route, status="401") == 1
    assert moved("efnf_http_request_duration_seconds_count", **job_route, status="200") == 3
    assert moved("efnf_http_request_duration_seconds_sum", **job_route, status="200") > 0
    assert moved("efnf_scored_items_total") == 5 and moved("efnf_sampled_items_total") == 7
    assert moved("efnf_scoring_seconds_total") > 0 and moved("efnf_sampling_seconds_total") > 0
    # The first of the two model requests may load the checkpoint; the second is a hit.
    lookups = moved("efnf_model_cache_hits_total") + moved("efnf_model_cache_misses_total")
    assert lookups == 2 and moved("efnf_model_cache_hits_total") >= 1
    assert value(after, "efnf_model_cache_loads_total") >= 1
    assert value(after, "efnf_model_cache_models") >= 1
    assert value(after, "efnf_metrics_database_up") == 1
    assert ("efnf_queue_messages", frozenset()) in after
    # No label value is a concrete id: routes are templates.
    routes = {dict(labels).get("route") for name, labels in after if "http" in name}
    assert "/v1/jobs/{job_id}" in routes
    assert not any(model_id in route or "job_missing" in route for route in routes if route)

    with session_scope(stack.settings.database_url) as session:
        counts = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
    for state in JOB_STATES:
        assert value(after, "efnf_jobs", state=state) == counts.get(state, 0), state


def test_a_running_jobs_speed_is_exported(stack: Stack, trained: Trained) -> None:
    training = {**TINY_TRAINING, "steps": 100_000, "metric_interval": 100_000}
    job = submit_job(stack.client, trained.points_dataset["id"], POINTS_FLOW, training)
    running = stack.wait_until(job["id"], lambda j: j["steps_per_second"] is not None)
    samples = scrape(stack.client)
    stack.client.post(f"/v1/jobs/{job['id']}/cancel")
    speed = value(samples, "efnf_job_steps_per_second", job_id=job["id"])
    assert speed > 0 and value(samples, "efnf_job_step", job_id=job["id"]) >= running["step"]
    examples = value(samples, "efnf_job_examples_per_second", job_id=job["id"])
    assert examples == pytest.approx(speed * training["batch_size"])
    assert value(samples, "efnf_jobs", state="running") >= 1
    stack.wait_for_job(job["id"], states=("cancelled",))
    later = scrape(stack.client)
    assert ("efnf_job_steps_per_second", frozenset({("job_id", job["id"])})) not in later


@pytest.fixture(scope="module")
def settings_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Settings]:
    def make(**values: object) -> Settings:
        tmp = tmp_path_factory.mktemp("metrics-setting")
        settings = Settings(
            database_url=f"sqlite:///{tmp}/db.sqlite3",
            broker_url=f"sqla+sqlite:///{tmp}/b.sqlite3",
            **values,
        )
        upgrade_to_head(settings.database_url)
        return settings

    return make


def test_the_setting_turns_metrics_off(settings_factory: Callable[..., Settings]) -> None:
    off = TestClient(create_app(settings_factory(metrics_enabled=False)))
    refused = off.get("/metrics")
    assert refused.status_code == 401 and refused.json()["field"] == "Authorization"
    assert "/metrics" not in off.get("/openapi.json").json()["paths"]
    on = TestClient(create_app(settings_factory()))
    assert on.get("/metrics").status_code == 200
