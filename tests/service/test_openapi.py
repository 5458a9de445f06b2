"""The OpenAPI document: every route, documented, with examples and the enforced limits as its
bounds; and the docs pages, served from this app's own files."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel, ValidationError

import app.api.routes
from app.api.schemas import BuiltinDatasetIn, JobIn, SampleIn, ScoreIn
from app.core.db.migrate import upgrade_to_head
from app.core.settings import Settings
from app.limits import SCHEMA_LIMITS, SchemaLimit, job_limit_errors
from app.main import create_app
from tests.service.payloads import png_bytes
from tests.service.stack import auth_headers, create_key

pytestmark = pytest.mark.service

EXPECTED = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/v1/datasets"),
    ("GET", "/v1/datasets"),
    ("POST", "/v1/datasets/builtin"),
    ("GET", "/v1/datasets/{dataset_id}"),
    ("DELETE", "/v1/datasets/{dataset_id}"),
    ("GET", "/v1/datasets/{dataset_id}/preview.png"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/{job_id}"),
    ("GET", "/v1/jobs/{job_id}/metrics"),
    ("POST", "/v1/jobs/{job_id}/cancel"),
    ("DELETE", "/v1/jobs/{job_id}"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model_id}"),
    ("POST", "/v1/models/{model_id}/log-prob"),
    ("POST", "/v1/models/{model_id}/samples"),
    ("GET", "/v1/models/{model_id}/checkpoint"),
}


def all_routers() -> list[APIRouter]:
    """The routers of every module in ``app/api/routes/`` (one per resource; health has two)."""
    modules = pkgutil.iter_modules(app.api.routes.__path__, "app.api.routes.")
    routers = []
    for module in modules:
        loaded = importlib.import_module(module.name)
        routers += [value for value in vars(loaded).values() if isinstance(value, APIRouter)]
    return routers


def _settings(tmp: Any, **limits: Any) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp}/db.sqlite3",
        broker_url=f"sqla+sqlite:///{tmp}/b.sqlite3",
        **limits,
    )


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    """The app on a migrated SQLite database, with a key (no worker: nothing gets trained)."""
    settings = _settings(tmp_path_factory.mktemp("openapi"))
    upgrade_to_head(settings.database_url)
    key = create_key(settings.database_url, settings.default_owner)
    return TestClient(create_app(settings), headers=auth_headers(key))


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict[str, Any]:
    return client.get("/openapi.json").json()


def operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def component(document: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    return document["components"]["schemas"][reference["$ref"].rsplit("/", 1)[-1]]


def bound(document: dict[str, Any], limit: SchemaLimit) -> float:
    """The bound ``limit.keyword`` the document gives the property, resolving ``$ref``s."""
    node: dict[str, Any] = document["components"]["schemas"][limit.schema]
    for part in limit.path.split("."):
        while "$ref" in node or "allOf" in node:
            node = component(document, node["allOf"][0] if "allOf" in node else node)
        node = node["properties"][part]
    branches = [branch for branch in node.get("anyOf", [node]) if limit.keyword in branch]
    assert len(branches) == 1, f"{limit}: no single bound in {node}"
    return branches[0][limit.keyword]


def test_openapi_lists_every_route(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    listed = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    routes = {
        (method, route.path)
        for router in all_routers()
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    assert routes == EXPECTED
    assert listed == EXPECTED


def test_openapi_publishes_the_library_configs(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"FlowConfig", "TrainConfig", "ErrorOut"} <= set(schemas)
    assert "data_shape" in schemas["FlowConfig"]["properties"]
    log_prob = client.get("/openapi.json").json()["paths"]["/v1/models/{model_id}/log-prob"]
    assert set(log_prob["post"]["requestBody"]["content"]) == {
        "application/json",
        "multipart/form-data",
        "application/x-npy",
    }
    assert set(log_prob["post"]["responses"]["200"]["content"]) == {
        "application/json",
        "application/x-npy",
    }


def test_every_operation_has_a_summary_and_a_description(document: dict[str, Any]) -> None:
    for name, operation in operations(document):
        summary, description = operation.get("summary", ""), operation.get("description", "")
        assert summary.strip() and description.strip(), f"{name} lacks a summary or description"
        # FastAPI's fallback summary is the function name in title case.
        assert summary != operation["operationId"].split("_v1")[0].replace("_", " ").title()


# The model each JSON request body is validated with, by schema name.
REQUEST_MODELS: dict[str, type[BaseModel]] = {
    "JobIn": JobIn,
    "BuiltinDatasetIn": BuiltinDatasetIn,
    "ScoreIn": ScoreIn,
    "SampleIn": SampleIn,
}


def test_every_request_body_has_an_example_the_server_accepts(document: dict[str, Any]) -> None:
    bodies = 0
    for name, operation in operations(document):
        for media, content in operation.get("requestBody", {}).get("content", {}).items():
            bodies += 1
            examples = [item["value"] for item in content.get("examples", {}).values()]
            examples += [content["example"]] if "example" in content else []
            assert examples, f"{name} {media}: no example"
            if media != "application/json":
                continue
            model = REQUEST_MODELS[component(document, content["schema"])["title"]]
            for example in examples:
                parsed = model.model_validate(example)
                if isinstance(parsed, JobIn):
                    assert not job_limit_errors(parsed.flow, parsed.training, Settings())
    assert bodies == 7


POINTS_JOB = {
    "dataset_id": "ds_absent",
    "flow": {"group": "C4", "data_shape": [2], "width": 2, "depth": 1},
    "training": {"steps": 100, "batch_size": 32},
}


def _job_probe(client: TestClient, limit: SchemaLimit, value: int) -> tuple[int, str | None]:
    body: dict[str, Any] = {
        "dataset_id": POINTS_JOB["dataset_id"],
        "flow": dict(POINTS_JOB["flow"]),
        "training": dict(POINTS_JOB["training"]),
    }
    *parents, name = limit.path.split(".")
    node = body
    for parent in parents:
        node = node.setdefault(parent, {})
    node[name] = value
    response = client.post("/v1/jobs", json=body)
    return response.status_code, response.json().get("field")


def _builtin_probe(client: TestClient, _: SchemaLimit, value: int) -> tuple[int, str | None]:
    response = client.post("/v1/datasets/builtin", json={"name": "eight_gaussians", "n": value})
    return response.status_code, response.json().get("field")


def _sample_probe(client: TestClient, _: SchemaLimit, value: int) -> tuple[int, str | None]:
    response = client.post("/v1/models/absent/samples", json={"n": value})
    return response.status_code, response.json().get("field")


def _score_probe(client: TestClient, _: SchemaLimit, value: int) -> tuple[int, str | None]:
    response = client.post("/v1/models/absent/log-prob", json={"inputs": [[0.0, 0.0]] * value})
    return response.status_code, response.json().get("field")


def _files_probe(client: TestClient, _: SchemaLimit, value: int) -> tuple[int, str | None]:
    image = png_bytes(np.zeros((1, 2, 2), dtype=np.uint8))
    files = [("files", (f"{index}.png", image, "image/png")) for index in range(value)]
    response = client.post("/v1/models/absent/log-prob", files=files)
    return response.status_code, response.json().get("field")


Probe = Callable[[TestClient, SchemaLimit, int], tuple[int, str | None]]
# A request with the property at a given value, per schema; it answers (status, field).
PROBES: dict[str, Probe] = {
    "JobIn": _job_probe,
    "BuiltinDatasetIn": _builtin_probe,
    "SampleIn": _sample_probe,
    "ScoreIn": _score_probe,
    "ScoreFilesIn": _files_probe,
}
# What a request at the bound gets once every limit has passed: the next check's answer.
PAST_THE_LIMITS = {
    "JobIn": (422, "dataset_id"),  # no such data set
    "BuiltinDatasetIn": (201, None),
    "SampleIn": (404, "model_id"),
    "ScoreIn": (404, "model_id"),
    "ScoreFilesIn": (404, "model_id"),
}


@pytest.mark.parametrize("limit", SCHEMA_LIMITS, ids=lambda limit: f"{limit.schema}.{limit.path}")
def test_schema_bounds_are_the_limits_the_server_enforces(
    client: TestClient, document: dict[str, Any], limit: SchemaLimit
) -> None:
    """At the published bound a request passes every limit; one above, it is refused."""
    value = int(bound(document, limit))
    assert PROBES[limit.schema](client, limit, value) == PAST_THE_LIMITS[limit.schema]
    status, field = PROBES[limit.schema](client, limit, value + 1)
    # A form with too many files is refused by the form parser itself, as an unreadable body.
    assert (status, field) in {(422, limit.path), (400, "body")}, (status, field)
    assert status == 422 or limit.schema == "ScoreFilesIn"


def test_schema_bounds_follow_the_settings(tmp_path: Any) -> None:
    settings = _settings(tmp_path, max_steps=1234, max_width=10_000, max_samples=7)
    document = TestClient(create_app(settings)).get("/openapi.json").json()
    by_setting = {limit.setting: limit for limit in SCHEMA_LIMITS}
    assert bound(document, by_setting["max_steps"]) == 1234
    # Above the library's own bound (FlowConfig.width <= 512), the library's stays.
    assert bound(document, by_setting["max_width"]) == 512
    assert bound(document, by_setting["max_samples"]) == 7
    # Above what the library generates, a built-in set's size could not be the limit.
    with pytest.raises(ValidationError, match="max_builtin_items"):
        _settings(tmp_path, max_builtin_items=200_001)


def test_only_requests_are_bounded(document: dict[str, Any]) -> None:
    """A job accepted under a higher limit still matches the response schema."""
    schemas = document["components"]["schemas"]
    steps = SchemaLimit("JobIn", "training.steps", "max_steps")
    assert bound(document, steps) == Settings().max_steps
    assert bound(document, SchemaLimit("JobOut", "training.steps", "max_steps")) == 10_000_000
    assert schemas["TrainConfig"]["properties"]["steps"]["maximum"] == 10_000_000
    width = SchemaLimit("ModelOut", "flow.width", "max_width")
    assert bound(document, width) == 512 > Settings().max_width


LOCAL_URL = re.compile(r"""(?:src|href)=["']([^"']+)["']|url: ?'([^']+)'""")


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/"])
def test_pages_load_only_files_of_this_app(client: TestClient, page: str) -> None:
    anonymous = TestClient(client.app)
    response = anonymous.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    found = [first or second for first, second in LOCAL_URL.findall(response.text)]
    urls = [url for url in found if not url.startswith("#")]  # the dashboard's own routes
    assert len(urls) >= 2, urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url}"
        assert anonymous.get(url).status_code == 200, url
    assert "http://" not in response.text and "https://" not in response.text
