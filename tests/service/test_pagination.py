"""Every list route takes one page (limit, offset), its limit capped at EFNF_PAGE_SIZE_MAX."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.db.migrate import upgrade_to_head
from app.core.settings import Settings
from app.main import create_app
from tests.service.stack import auth_headers, create_key


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    database_url = f"sqlite:///{tmp_path}/efnf.sqlite3"
    upgrade_to_head(database_url)
    key = create_key(database_url, "tenant")
    settings = Settings(
        database_url=database_url,
        broker_url=f"sqla+sqlite:///{tmp_path}/broker.sqlite3",
        data_dir=tmp_path,
        page_size_max=2,
    )
    with TestClient(create_app(settings), headers=auth_headers(key)) as test_client:
        yield test_client


@pytest.mark.parametrize("path", ["/v1/datasets", "/v1/jobs", "/v1/models"])
def test_a_list_caps_its_page_and_keeps_its_offset(client: TestClient, path: str) -> None:
    response = client.get(path, params={"limit": 1000, "offset": 7})
    assert response.status_code == 200, response.text
    page = response.json()
    assert (page["limit"], page["offset"], page["items"]) == (2, 7, [])
    assert client.get(path, params={"limit": 1}).json()["limit"] == 1
    refused = client.get(path, params={"limit": 0})
    assert refused.status_code == 422 and "limit" in refused.text
