"""API keys and tenant isolation on each stack, route by route.

Keys: every operation but health, readiness and the docs refuses a request without a valid key
(401, ``WWW-Authenticate``, a message naming the problem); the admin command creates, lists and
revokes keys, and a revoked key stops working within ``EFNF_AUTH_CACHE_TTL_S`` (the time an
accepted key is trusted without a database read). Isolation: a second
tenant gets, for each of the first tenant's objects, exactly the 404 of a missing object.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

from app.__main__ import build_parser
from app.core.db.api_keys import revoke_api_key
from app.core.db.base import new_id
from app.core.db.models import TERMINAL_JOB_STATES, ApiKey, Checkpoint, Dataset, Job
from app.core.db.session import session_scope
from app.core.settings import Settings
from tests.service.payloads import POINTS_FLOW, Trained, submit_job
from tests.service.stack import REPO_ROOT, Stack, auth_headers, create_key, poll_job
from tests.service.test_openapi import EXPECTED

pytestmark = [pytest.mark.service, pytest.mark.timeout(300)]

PUBLIC_PATHS = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/openapi.json",
]
# The dashboard's page and its files hold no data: the page asks for a key in the browser.
PUBLIC_PAGES = ["/", "/static/dashboard/js/main.js", "/static/vendor/uplot/LICENSE"]
PROTECTED = sorted(operation for operation in EXPECTED if operation[1] not in PUBLIC_PATHS)
UNKNOWN_KEY = "efnf_0123456789abcdef_" + "A" * 43

# Operations on one object, with the body each needs: (method, path template, JSON body).
OBJECT_OPERATIONS = [
    ("GET", "/v1/datasets/{dataset_id}", None),
    ("GET", "/v1/datasets/{dataset_id}/preview.png", None),
    ("DELETE", "/v1/datasets/{dataset_id}", None),
    ("GET", "/v1/jobs/{job_id}", None),
    ("GET", "/v1/jobs/{job_id}/metrics", None),
    ("POST", "/v1/jobs/{job_id}/cancel", None),
    ("DELETE", "/v1/jobs/{job_id}", None),
    ("GET", "/v1/models/{model_id}", None),
    ("POST", "/v1/models/{model_id}/log-prob", {"inputs": [[0.5, -0.5]], "method": "exact"}),
    ("POST", "/v1/models/{model_id}/samples", {"n": 2, "seed": 1}),
    ("GET", "/v1/models/{model_id}/checkpoint", None),
]


def _fill(path: str, value: str) -> str:
    for name in ("dataset_id", "job_id", "model_id"):
        path = path.replace("{" + name + "}", value)
    return path


def _assert_unauthorized(response: Response, fragment: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer"), response.headers
    body = response.json()
    assert body["field"] == "Authorization" and fragment in body["message"], body


@pytest.fixture(scope="session")
def revoked_key(stack: Stack) -> str:
    key = create_key(stack.settings.database_url, "revoked-tenant")
    with session_scope(stack.settings.database_url) as session:
        revoke_api_key(session, f"key_{key.split('_')[1]}")
    return key


def test_openapi_declares_the_key_on_every_protected_operation(stack: Stack) -> None:
    document = stack.anonymous_client().get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    for method, path in EXPECTED:
        operation = document["paths"][path][method.lower()]
        secured = {"ApiKey": []} in operation.get("security", [])
        assert secured == (path not in PUBLIC_PATHS), (method, path)
        assert ("401" in operation["responses"]) == secured, (method, path)


@pytest.mark.parametrize("path", PUBLIC_PATHS + PUBLIC_PAGES)
def test_public_paths_need_no_key(stack: Stack, path: str) -> None:
    assert stack.anonymous_client().get(path).status_code == 200


@pytest.mark.parametrize(
    "path", ["/static/../v1/datasets", "/static/%2e%2e/v1/datasets", "/static/../../app/main.py"]
)
def test_the_static_prefix_reaches_no_route_and_no_other_file(
    anonymous_client: TestClient, path: str
) -> None:
    response = anonymous_client.get(path)
    assert response.status_code in (401, 404), (response.status_code, response.text[:200])


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[" ".join(op) for op in PROTECTED])
def test_every_other_operation_refuses_a_missing_or_bad_key(
    stack: Stack, anonymous_client: TestClient, revoked_key: str, method: str, path: str
) -> None:
    url = _fill(path, "x")
    # Nothing is read, parsed or validated before the key: even a broken body gets the 401.
    send = {"content": b"{not json", "headers": {"content-type": "application/json"}}
    _assert_unauthorized(anonymous_client.request(method, url, **send), "missing API key")
    for authorization, fragment in [
        ("Basic dXNlcjpwdw==", "must be 'Bearer <key>'"),
        ("Bearer", "must be 'Bearer <key>'"),
        ("Bearer not-a-key", "malformed"),
        (f"Bearer {UNKNOWN_KEY}", "not valid"),
        (f"Bearer {revoked_key[:-1]}{'B' if revoked_key[-1] != 'B' else 'C'}", "not valid"),
        (f"Bearer {revoked_key}", "revoked"),
    ]:
        response = anonymous_client.request(method, url, headers={"Authorization": authorization})
        _assert_unauthorized(response, fragment)


def test_unknown_paths_need_a_key_too(anonymous_client: TestClient) -> None:
    _assert_unauthorized(anonymous_client.get("/v1/secrets"), "missing API key")


def _run_app(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EFNF_DATABASE_URL": stack.settings.database_url}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_admin_command_creates_lists_and_revokes_keys(stack: Stack) -> None:
    created = _run_app(stack, "keys", "create", "--tenant", "cli-tenant", "--name", "ci robot")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    key_id = f"key_{key.split('_')[1]}"
    assert key_id in created.stdout and "cli-tenant" in created.stdout
    client = TestClient(stack.client.app, headers=auth_headers(key))
    assert client.get("/v1/datasets").status_code == 200

    with session_scope(stack.settings.database_url) as session:
        row = session.get(ApiKey, key_id)
        assert (row.tenant, row.name, row.revoked_at) == ("cli-tenant", "ci robot", None)
        assert row.secret_sha256 == hashlib.sha256(key.encode()).hexdigest()
        stored = [str(value) for value in vars(row).values()]
    assert not any(key.split("_", 2)[2] in value for value in stored), "secret stored in clear"

    listed = _run_app(stack, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith(key_id))
    assert line.split("\t")[1:3] == ["cli-tenant", "active"] and "ci robot" in line
    assert key.split("_", 2)[2] not in listed.stdout

    revoked = _run_app(stack, "keys", "revoke", key_id)
    assert revoked.returncode == 0 and key_id in revoked.stdout, revoked.stderr
    # The key was trusted from a cache for at most auth_cache_ttl_s; then it is read again.
    time.sleep(stack.settings.auth_cache_ttl_s)
    _assert_unauthorized(client.get("/v1/datasets"), "revoked")
    unknown = _run_app(stack, "keys", "revoke", "key_ffffffffffffffff")
    assert unknown.returncode == 1 and "no API key" in unknown.stdout


def test_admin_command_refuses_a_bad_tenant(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser(Settings()).parse_args(["keys", "create", "--tenant", "two words"])
    assert exit_info.value.code == 2 and "tenant 'two words'" in capsys.readouterr().err


def _without_id(response: Response, identifier: str) -> tuple[int, Any]:
    return response.status_code, response.text.replace(identifier, "<id>")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    OBJECT_OPERATIONS,
    ids=[f"{method} {path}" for method, path, _ in OBJECT_OPERATIONS],
)
def test_another_tenants_object_is_a_404_like_a_missing_one(
    stack: Stack,
    trained: Trained,
    other_tenant_client: TestClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    owned = {
        "dataset_id": trained.points_dataset["id"],
        "job_id": trained.points_job["id"],
        "model_id": trained.points_job["id"],
    }
    name = next(name for name in owned if "{" + name + "}" in path)
    theirs, missing = owned[name], new_id(owned[name].split("_")[0])
    foreign = other_tenant_client.request(method, _fill(path, theirs), json=body)
    absent = other_tenant_client.request(method, _fill(path, missing), json=body)
    assert absent.status_code == 404, absent.text
    assert _without_id(foreign, theirs) == _without_id(absent, missing)
    # And nothing happened to the owner's object.
    assert stack.client.get(f"/v1/datasets/{trained.points_dataset['id']}").status_code == 200
    job = stack.client.get(f"/v1/jobs/{trained.points_job['id']}").json()
    assert job["state"] == "succeeded" and job["cancel_requested"] is False


def test_every_object_operation_is_checked_for_isolation() -> None:
    with_object = {(method, path) for method, path in EXPECTED if "{" in path}
    assert {(method, path) for method, path, _ in OBJECT_OPERATIONS} == with_object


def test_lists_and_job_submission_see_only_the_tenants_own_rows(
    stack: Stack, trained: Trained, other_tenant_client: TestClient
) -> None:
    mine_datasets = {trained.points_dataset["id"], trained.image_dataset["id"]}
    mine_jobs = {trained.points_job["id"], trained.image_job["id"]}
    assert mine_datasets <= {d["id"] for d in stack.client.get("/v1/datasets").json()["items"]}
    theirs = other_tenant_client.get("/v1/datasets", params={"limit": 200}).json()["items"]
    assert not mine_datasets & {d["id"] for d in theirs}
    theirs = other_tenant_client.get("/v1/jobs", params={"limit": 200}).json()["items"]
    assert not mine_jobs & {j["id"] for j in theirs}
    by_dataset = other_tenant_client.get(
        "/v1/jobs", params={"dataset_id": trained.points_dataset["id"]}
    )
    assert by_dataset.status_code == 200 and by_dataset.json()["items"] == []

    job = {"flow": POINTS_FLOW, "training": {"steps": 10}}
    dataset_id, missing = trained.points_dataset["id"], new_id("ds")
    foreign = other_tenant_client.post("/v1/jobs", json={**job, "dataset_id": dataset_id})
    absent = other_tenant_client.post("/v1/jobs", json={**job, "dataset_id": missing})
    assert absent.status_code == 422, absent.text
    assert _without_id(foreign, dataset_id) == _without_id(absent, missing)


def test_rows_written_belong_to_the_keys_tenant(
    stack: Stack, other_tenant_client: TestClient
) -> None:
    built = other_tenant_client.post(
        "/v1/datasets/builtin", json={"name": "eight_gaussians", "n": 128, "seed": 4}
    )
    assert built.status_code == 201, built.text
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(1).normal(size=(40, 2)).astype(np.float32))
    uploaded = other_tenant_client.post(
        "/v1/datasets", files={"file": ("p.npy", buffer.getvalue())}
    )
    assert uploaded.status_code == 201, uploaded.text
    training = {"steps": 10, "batch_size": 32, "metric_interval": 10, "checkpoint_interval": 10}
    job = submit_job(other_tenant_client, built.json()["id"], POINTS_FLOW, training)
    assert _wait_for_end(other_tenant_client, job["id"])["state"] == "succeeded"

    with session_scope(stack.settings.database_url) as session:
        owners = {
            session.get(Dataset, built.json()["id"]).owner,
            session.get(Dataset, uploaded.json()["id"]).owner,
            session.get(Job, job["id"]).owner,
            *session.scalars(select(Checkpoint.owner).where(Checkpoint.job_id == job["id"])),
        }
    assert owners == {"other-tenant"}
    for url in (
        f"/v1/datasets/{built.json()['id']}",
        f"/v1/jobs/{job['id']}",
        f"/v1/models/{job['id']}",
    ):
        assert other_tenant_client.get(url).status_code == 200, url
        assert stack.client.get(url).status_code == 404, url
    assert other_tenant_client.delete(f"/v1/datasets/{uploaded.json()['id']}").status_code == 204


def _wait_for_end(client: TestClient, job_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    job, ended = poll_job(
        client, job_id, lambda job: job["state"] in TERMINAL_JOB_STATES, timeout_s, 0.25
    )
    if ended:
        return job
    pytest.fail(f"job {job_id} still {job['state']} after {timeout_s} s")
