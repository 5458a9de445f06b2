"""Property-based run of schemathesis over the whole OpenAPI document, against the real app.

Every operation gets generated requests (valid and invalid, seeded, no shrinking), sent in
process (ASGI) with a valid key to the PostgreSQL + Redis stack with its worker. Path ids are
often swapped for ids of real objects, so that scoring, sampling, downloads and previews run for
real instead of stopping at a 404. Each response must not be a 5xx and must match what the
document declares: status code, content type, headers and body schema.
"""

from __future__ import annotations

import contextlib
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.service.payloads import Trained
from tests.service.stack import Stack, auth_headers, create_key
from tests.service.test_openapi import EXPECTED

pytestmark = [
    pytest.mark.service,
    pytest.mark.timeout(600),
    pytest.mark.parametrize("stack", ["postgres"], indirect=True),
]

MAX_EXAMPLES = 40  # per operation and per mode (valid, invalid requests)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Seeded and without shrinking: failures are collected, never raised inside Hypothesis.
HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
# Which generated id of a path parameter is replaced by a real one: every other case.
REAL_ID_EVERY = 2


@pytest.fixture(scope="module")
def real_ids(stack: Stack, trained: Trained) -> dict[str, list[str]]:
    """Ids of existing objects per path parameter; only a throwaway data set may be deleted."""
    throwaway = stack.client.post(
        "/v1/datasets/builtin", json={"name": "eight_gaussians", "n": 64, "seed": 9}
    )
    assert throwaway.status_code == 201, throwaway.text
    models = [trained.points_job["id"], trained.image_job["id"]]
    return {
        "dataset_id": [trained.points_dataset["id"], trained.image_dataset["id"]],
        "deletable_dataset_id": [throwaway.json()["id"]],
        "job_id": models,
        "model_id": models,
    }


def _use_real_ids(case: Case, real_ids: dict[str, list[str]], index: int) -> None:
    if not case.path_parameters or index % REAL_ID_EVERY:
        return
    for name in list(case.path_parameters):
        pool = "deletable_dataset_id" if case.method.upper() == "DELETE" else name
        if pool in real_ids:
            choices = real_ids[pool]
            case.path_parameters[name] = choices[(index // REAL_ID_EVERY) % len(choices)]


def _exercise(
    operation: APIOperation,
    mode: GenerationMode,
    real_ids: dict[str, list[str]],
    headers: dict[str, str],
    failures: list[str],
) -> int:
    """Runs one operation's generated cases; returns how many ran, appends each failure."""
    ran = 0

    @HYPOTHESIS
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        nonlocal ran
        _use_real_ids(case, real_ids, ran)
        ran += 1
        try:
            response = case.call(headers=headers)
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            failures.append(f"{operation.label} [{mode}]: {group}")
        except Exception as error:
            failures.append(f"{operation.label} [{mode}]: {type(error).__name__}: {error}")

    # An operation without inputs has no invalid request to generate.
    with contextlib.suppress(Unsatisfiable):
        run()
    return ran


def test_the_api_honours_its_openapi_document(
    stack: Stack, real_ids: dict[str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    headers = auth_headers(create_key(stack.settings.database_url, stack.tenant))
    config = SchemathesisConfig.from_dict({"generation": {"mode": "all"}})
    schema = schemathesis.openapi.from_asgi("/openapi.json", stack.client.app, config=config)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(EXPECTED)
    counts: Counter[str] = Counter()
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            counts[operation.label] += _exercise(operation, mode, real_ids, headers, failures)
    summary = (
        f"schemathesis: {sum(counts.values())} cases over {len(counts)} operations "
        f"(at most {MAX_EXAMPLES} valid + {MAX_EXAMPLES} invalid each)"
    )
    with capsys.disabled():
        print(f"\n{summary}")
        print(*(f"  {label}: {count}" for label, count in sorted(counts.items())), sep="\n")
    assert not failures, f"{len(failures)} failing case(s):\n" + "\n\n".join(failures)


@pytest.mark.parametrize(
    ("path", "parameter"),
    [("/v1/datasets", "offset"), ("/v1/jobs", "offset"), ("/v1/jobs/{job}/metrics", "after_step")],
)
def test_paging_values_beyond_an_sql_integer_are_a_422(
    stack: Stack, trained: Trained, path: str, parameter: str
) -> None:
    """Found by the run above: these overflowed in PostgreSQL and answered 500."""
    url = path.replace("{job}", trained.points_job["id"])
    response = stack.client.get(url, params={parameter: 2**31})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == parameter
    assert stack.client.get(url, params={parameter: 2**31 - 1}).status_code == 200
