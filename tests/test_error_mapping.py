"""The one place library errors and limit violations become HTTP answers (app/api/errors.py)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api.errors import install_error_handlers
from app.limits import LimitExceeded, Violation
from flows.errors import DataError, FlowError, InputError


def _client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/input")
    def _input() -> None:
        raise InputError("flow.data_shape [3] does not match", "flow.data_shape")

    @app.get("/data")
    def _data() -> None:
        raise DataError("inputs must be nested lists of numbers", "inputs")

    @app.get("/model")
    def _model() -> None:
        raise FlowError("convolution exponential did not converge in 64 terms")

    @app.get("/quota")
    def _quota() -> None:
        raise LimitExceeded([Violation("file", "file: over the quota")], status_code=413)

    @app.get("/limits")
    def _limits() -> None:
        raise LimitExceeded([Violation("a.b", "a.b: first"), Violation("c", "c: second")])

    return TestClient(app, raise_server_exceptions=False)


def test_library_errors_answer_422_with_their_field() -> None:
    client = _client()
    for path, field, message in (
        ("/input", "flow.data_shape", "flow.data_shape [3] does not match"),
        ("/data", "inputs", "inputs must be nested lists of numbers"),
        ("/model", None, "convolution exponential did not converge in 64 terms"),
    ):
        response = client.get(path)
        assert response.status_code == 422, (path, response.text)
        errors = [{"field": field, "message": message}]
        assert response.json() == {"message": message, "field": field, "errors": errors}


def test_limit_violations_are_all_reported_the_first_as_the_headline() -> None:
    client = _client()
    quota = client.get("/quota")
    assert quota.status_code == 413 and quota.json()["field"] == "file"
    limits = client.get("/limits")
    assert limits.status_code == 422
    assert limits.json() == {
        "message": "a.b: first",
        "field": "a.b",
        "errors": [
            {"field": "a.b", "message": "a.b: first"},
            {"field": "c", "message": "c: second"},
        ],
    }
