"""Bad requests are refused with JSON errors whose message names the field."""

from __future__ import annotations

import pytest

from tests.service.payloads import POINTS_FLOW, Trained
from tests.service.stack import Stack

pytestmark = pytest.mark.service


def assert_error(response, status: int, field: str, fragment: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["field"] == field, body
    assert field.split(".")[-1] in body["message"] or field in body["message"], body
    assert fragment in body["message"], body


def test_a_job_over_several_limits_is_told_all_of_them(stack: Stack, trained: Trained) -> None:
    body = {
        "dataset_id": trained.points_dataset["id"],
        "flow": {**POINTS_FLOW, "width": stack.settings.max_width + 1},
        "training": {"steps": stack.settings.max_steps + 1},
    }
    response = stack.client.post("/v1/jobs", json=body)
    assert_error(response, 422, "training.steps", "EFNF_MAX_STEPS")
    errors = response.json()["errors"]
    assert [error["field"] for error in errors] == ["training.steps", "flow.width"], errors
    assert errors[0]["message"] == response.json()["message"]
    assert "EFNF_MAX_WIDTH" in errors[1]["message"]


def test_job_configs_are_checked_against_the_data_set(stack: Stack, trained: Trained) -> None:
    points = trained.points_dataset["id"]
    post = stack.client.post
    assert_error(
        post(
            "/v1/jobs",
            json={"dataset_id": points, "flow": {**POINTS_FLOW, "data_shape": [1, 8, 8]}},
        ),
        422,
        "flow.data_shape",
        "does not match",
    )
    assert_error(
        post("/v1/jobs", json={"dataset_id": points, "flow": {**POINTS_FLOW, "width": 0}}),
        422,
        "flow.width",
    )
    assert_error(
        post("/v1/jobs", json={"dataset_id": points, "flow": {**POINTS_FLOW, "group": "C5x"}}),
        422,
        "flow.group",
        "not supported",
    )
    assert_error(
        post(
            "/v1/jobs",
            json={"dataset_id": points, "flow": POINTS_FLOW, "training": {"steps": 10_000_000}},
        ),
        422,
        "training.steps",
        "EFNF_MAX_STEPS",
    )
    assert_error(
        post(
            "/v1/jobs",
            json={"dataset_id": points, "flow": POINTS_FLOW, "training": {"nonsense": 1}},
        ),
        422,
        "training.nonsense",
    )
    assert_error(
        post("/v1/jobs", json={"dataset_id": "ds_missing", "flow": POINTS_FLOW}),
        422,
        "dataset_id",
        "no such data set",
    )


def test_data_set_requests(stack: Stack) -> None:
    post = stack.client.post
    assert_error(
        post("/v1/datasets/builtin", json={"name": "nope"}), 422, "name", "eight_gaussians"
    )
    assert_error(post("/v1/datasets/builtin", json={"name": "rings", "n": 0}), 422, "n")
    assert_error(
        post("/v1/datasets", files={"file": ("x.txt", b"1,2\n")}), 422, "file", "extension"
    )
    assert_error(
        post("/v1/datasets", files={"file": ("x.npy", b"not numpy")}), 422, "file", "x.npy"
    )
    assert_error(stack.client.get("/v1/datasets/ds_missing"), 404, "dataset_id", "no such")


def test_model_requests(stack: Stack, trained: Trained) -> None:
    model = trained.points_job["id"]
    post = stack.client.post
    assert_error(
        post(f"/v1/models/{model}/log-prob", json={"inputs": [[1, 2, 3]]}), 422, "inputs", "[n, 2]"
    )
    assert_error(
        post(f"/v1/models/{model}/log-prob", json={"inputs": [[1, 2], [3]]}),
        422,
        "inputs",
        "ragged",
    )
    assert_error(
        post(f"/v1/models/{model}/log-prob", json={"inputs": [[1, 2]], "method": "fast"}),
        422,
        "method",
    )
    assert_error(
        post(f"/v1/models/{model}/samples", json={"n": 10**6}), 422, "n", "EFNF_MAX_SAMPLES"
    )
    assert_error(
        post(f"/v1/models/{model}/samples", json={"n": 2, "format": "gif"}), 422, "format"
    )
    image_model = trained.image_job["id"]
    assert_error(
        post(f"/v1/models/{image_model}/log-prob", files=[("files", ("a.png", b"xx"))]),
        422,
        "files",
        "a.png",
    )
    assert_error(stack.client.get("/v1/models/job_missing"), 404, "model_id", "no such")
