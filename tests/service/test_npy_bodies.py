"""Scoring and sampling over HTTP with ``application/x-npy`` bodies, against the real stack:
the same answers as JSON, hostile files refused as 4xx naming the body, and concurrent
(batched) requests answered as they are one by one."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from app.api.encoding import NPY_MEDIA
from tests.service.payloads import Trained
from tests.service.stack import Stack
from tests.service.test_encoding import HOSTILE, header, saved

pytestmark = pytest.mark.service

NPY_BODY = {"content-type": NPY_MEDIA}
WANTS_NPY = {"accept": NPY_MEDIA}


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def loaded(content: bytes) -> np.ndarray:
    return np.load(io.BytesIO(content), allow_pickle=False)


def points(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 2)).astype(np.float32)


def levels(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 1, 8, 8), dtype=np.uint8)


def score_json(stack: Stack, model_id: str, inputs: np.ndarray, **fields: Any) -> dict[str, Any]:
    body = {"inputs": inputs.tolist(), **fields}
    response = stack.client.post(f"/v1/models/{model_id}/log-prob", json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("kind", ["points", "images"])
def test_an_npy_batch_scores_as_its_json_twin(stack: Stack, trained: Trained, kind: str) -> None:
    model_id = trained.points_job["id"] if kind == "points" else trained.image_job["id"]
    inputs = points(5, 1) if kind == "points" else levels(2, 1)
    as_json = score_json(stack, model_id, inputs)
    url = f"/v1/models/{model_id}/log-prob"
    response = stack.client.post(url, content=npy(inputs), headers=NPY_BODY)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == as_json
    # The same batch answered as .npy records: the JSON's arrays, its other fields as headers.
    response = stack.client.post(url, content=npy(inputs), headers={**NPY_BODY, **WANTS_NPY})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == NPY_MEDIA
    records = loaded(response.content)
    expected = ["log_prob"] + (["bits_per_dim"] if kind == "images" else [])
    assert list(records.dtype.names) == expected
    for name in expected:
        assert records[name].tolist() == as_json[name]
    assert response.headers["x-efnf-model-id"] == as_json["model_id"]
    assert response.headers["x-efnf-checkpoint-id"] == as_json["checkpoint_id"]
    assert response.headers["x-efnf-step"] == str(as_json["step"])
    assert response.headers["x-efnf-method"] == as_json["method"] == "exact"
    assert response.headers["x-efnf-lower-bound"] == "false"


def test_npy_scoring_takes_method_and_seed_as_query_parameters(
    stack: Stack, trained: Trained
) -> None:
    model_id, inputs = trained.points_job["id"], points(4, 2)
    as_json = score_json(stack, model_id, inputs, method="estimate", seed=7)
    response = stack.client.post(
        f"/v1/models/{model_id}/log-prob?method=estimate&seed=7",
        content=npy(inputs),
        headers={**NPY_BODY, **WANTS_NPY},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-efnf-method"] == "estimate"
    records = loaded(response.content)
    # An estimate runs alone with its own seed: bit for bit the JSON request's.
    assert records["log_prob"].tolist() == as_json["log_prob"]
    assert records["stderr"].tolist() == as_json["stderr"]


def test_query_parameters_are_refused_beside_a_json_body(stack: Stack, trained: Trained) -> None:
    response = stack.client.post(
        f"/v1/models/{trained.points_job['id']}/log-prob?seed=3",
        json={"inputs": [[0.0, 1.0]]},
    )
    assert response.status_code == 422
    assert response.json()["field"] == "seed"
    assert "application/x-npy" in response.json()["message"]


HTTP_HOSTILE = [
    *HOSTILE,
    ("wrong-shape", saved(np.zeros((3, 5), np.float32)), "[n, 2]"),
    ("no-batch-axis", saved(np.zeros(2, np.float32)), "[2]"),
    ("huge-count", header("<f4", (2**40, 2)), "above this service's"),
    ("non-finite", saved(np.array([[np.nan, 0.0]], np.float32)), "NaN"),
]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [case[1:] for case in HTTP_HOSTILE],
    ids=[case[0] for case in HTTP_HOSTILE],
)
def test_hostile_npy_bodies_are_refused_as_4xx(
    stack: Stack, trained: Trained, content: bytes, fragment: str
) -> None:
    response = stack.client.post(
        f"/v1/models/{trained.points_job['id']}/log-prob", content=content, headers=NPY_BODY
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == "body", body
    assert fragment in body["message"], body


def test_an_npy_batch_over_the_item_limit_is_refused(stack: Stack, trained: Trained) -> None:
    over = stack.settings.max_score_items + 1
    response = stack.client.post(
        f"/v1/models/{trained.points_job['id']}/log-prob",
        content=npy(np.zeros((over, 2), np.float32)),
        headers=NPY_BODY,
    )
    assert response.status_code == 422
    assert response.json()["field"] == "body"
    assert "EFNF_MAX_SCORE_ITEMS" in response.json()["message"]


def test_samples_come_as_npy_when_accept_prefers_it(stack: Stack, trained: Trained) -> None:
    url = f"/v1/models/{trained.points_job['id']}/samples"
    as_json = stack.client.post(url, json={"n": 6, "seed": 4}).json()
    response = stack.client.post(url, json={"n": 6, "seed": 4}, headers=WANTS_NPY)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == NPY_MEDIA
    assert response.headers["x-efnf-checkpoint-id"] == as_json["checkpoint_id"]
    array = loaded(response.content)
    assert list(array.shape) == as_json["shape"] and str(array.dtype) == as_json["dtype"]
    assert array.tolist() == as_json["samples"]
    # An explicit format wins over Accept: the download as before.
    explicit = stack.client.post(
        url, json={"n": 6, "seed": 4, "format": "json"}, headers=WANTS_NPY
    )
    assert explicit.json() == as_json
    download = stack.client.post(url, json={"n": 6, "seed": 4, "format": "npy"})
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.content == response.content


def test_concurrent_requests_are_answered_as_one_by_one(stack: Stack, trained: Trained) -> None:
    """Requests sent together (which the batcher may run as one forward) get the answers each
    gets alone: exact scores up to float rounding, samples up to the inverse's tolerance."""
    model_id = trained.points_job["id"]
    batches = [points(n, seed) for seed, n in enumerate([1, 2, 3, 5, 8, 13, 1, 4])]
    alone = [score_json(stack, model_id, batch)["log_prob"] for batch in batches]
    samples_url = f"/v1/models/{model_id}/samples"
    alone_samples = [
        stack.client.post(samples_url, json={"n": 3, "seed": seed}).json()["samples"]
        for seed in range(4)
    ]

    def score_npy(batch: np.ndarray) -> np.ndarray:
        response = stack.client.post(
            f"/v1/models/{model_id}/log-prob",
            content=npy(batch),
            headers={**NPY_BODY, **WANTS_NPY},
        )
        assert response.status_code == 200, response.text
        return loaded(response.content)["log_prob"]

    def sample(seed: int) -> list[Any]:
        response = stack.client.post(samples_url, json={"n": 3, "seed": seed})
        assert response.status_code == 200, response.text
        return response.json()["samples"]

    with ThreadPoolExecutor(len(batches)) as pool:
        together = list(pool.map(score_npy, batches))
        together_samples = list(pool.map(sample, range(4)))
    for got, expected in zip(together, alone, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    for got, expected in zip(together_samples, alone_samples, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("query", "field", "fragment"),
    [("seed=-1", "seed", "greater than or equal to 0"), ("method=guess", "method", "'exact'")],
)
def test_bad_query_parameters_of_an_npy_body_are_refused(
    stack: Stack, trained: Trained, query: str, field: str, fragment: str
) -> None:
    response = stack.client.post(
        f"/v1/models/{trained.points_job['id']}/log-prob?{query}",
        content=npy(points(1, 0)),
        headers=NPY_BODY,
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert fragment in response.json()["message"]


def test_the_client_scores_and_samples_with_npy_bodies(stack: Stack, trained: Trained) -> None:
    """efnf_client speaks the same conventions over real HTTP, knowing only their names."""
    from efnf_client import Client
    from tests.service.stack import served_over_http

    key = stack.client.headers["Authorization"].removeprefix("Bearer ")
    points_id, image_id = trained.points_job["id"], trained.image_job["id"]
    with (
        served_over_http(stack.client.app) as port,
        Client(f"http://127.0.0.1:{port}", api_key=key) as client,
    ):
        for model_id, inputs in ((points_id, points(3, 5)), (image_id, levels(2, 5))):
            as_json = client.score(model_id, inputs.tolist(), method="estimate", seed=2)
            as_npy = client.score_array(model_id, inputs, method="estimate", seed=2)
            for name in ("model_id", "checkpoint_id", "step", "method", "count"):
                assert as_npy[name] == as_json[name]
            assert as_npy["lower_bound"] is as_json["lower_bound"]
            for name in ("log_prob", "stderr", "bits_per_dim"):
                if as_json[name] is None:
                    assert as_npy[name] is None
                else:
                    assert as_npy[name].tolist() == as_json[name]
        samples = client.sample_array(points_id, n=4, seed=1)
        assert samples.tolist() == client.sample(points_id, n=4, seed=1)["samples"]
