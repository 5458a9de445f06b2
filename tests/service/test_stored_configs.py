"""Stored configs outlive validators: a job row whose config a newer schema would refuse still
reads (as stored), so tightening a validator never turns old jobs into 500s."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.db import crud
from app.core.db.migrate import upgrade_to_head
from app.core.db.session import session_scope
from app.core.settings import Settings
from app.main import create_app
from flows.config import FlowConfig, TrainConfig
from tests.service.payloads import POINTS_FLOW
from tests.service.stack import auth_headers, create_key

pytestmark = pytest.mark.service


def test_a_stored_config_that_no_longer_validates_still_reads(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/db.sqlite3",
        broker_url=f"sqla+sqlite:///{tmp_path}/b.sqlite3",
    )
    upgrade_to_head(settings.database_url)
    key = create_key(settings.database_url, settings.default_owner)
    client = TestClient(create_app(settings), headers=auth_headers(key))
    dataset = client.post("/v1/datasets/builtin", json={"name": "rings", "n": 16})
    assert dataset.status_code == 201, dataset.text
    flow = FlowConfig.model_validate(POINTS_FLOW).model_dump(mode="json")
    training = TrainConfig().model_dump(mode="json")
    # As if written under an older schema: values today's validators refuse, a nested one too,
    # and a field added since (width) missing.
    old_flow = {**flow, "group": "C99", "estimator": {**flow["estimator"], "eval_probes": 1}}
    del old_flow["width"]
    old_training = {**training, "batch_size": 0, "lipschitz_refresh_iters": 3}
    with session_scope(settings.database_url) as session:
        job = crud.create_job(
            session,
            owner=settings.default_owner,
            dataset_id=dataset.json()["id"],
            flow_config=old_flow,
            train_config=old_training,
            total_steps=training["steps"],
        )
        job_id = job.id
    with pytest.raises(ValueError):
        FlowConfig.model_validate(old_flow)

    response = client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    read = response.json()
    assert read["flow"] == {**old_flow, "width": FlowConfig.model_fields["width"].default}
    expected_training = {k: v for k, v in old_training.items() if k != "lipschitz_refresh_iters"}
    assert read["training"] == expected_training
    listed = client.get("/v1/jobs")
    assert listed.status_code == 200, listed.text
    assert [item["id"] for item in listed.json()["items"]] == [job_id]
