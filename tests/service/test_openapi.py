"""The OpenAPI document lists every route, and the docs page serves."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

import app.api.routes
from app.main import create_app
from app.settings import Settings

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


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    tmp = tmp_path_factory.mktemp("openapi")
    settings = Settings(
        database_url=f"sqlite:///{tmp}/db.sqlite3", broker_url=f"sqla+sqlite:///{tmp}/b.sqlite3"
    )
    return TestClient(create_app(settings))


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
    }


def test_docs_page(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200 and "swagger-ui" in response.text.lower()
