"""The client package on its own: where the CLI finds URL and key, its error type, its
console script, and that it imports neither the service nor the library."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from efnf_client import Client, EfnfError
from efnf_client.config import DEFAULT_URL, ConfigError, Connection, resolve_connection

REPO_ROOT = Path(__file__).resolve().parents[1]


def pair(connection: Connection) -> tuple[str, str | None]:
    return connection.url, connection.api_key


def test_flags_beat_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('url = "http://file:1"\napi_key = "file-key"\n')
    environ = {"EFNF_CONFIG": str(config)}
    assert pair(resolve_connection(None, None, environ)) == ("http://file:1", "file-key")
    environ |= {"EFNF_URL": "http://env:2", "EFNF_API_KEY": "env-key"}
    connection = resolve_connection(None, None, environ)
    assert (connection.url, connection.api_key, connection.url_from) == (
        "http://env:2",
        "env-key",
        "EFNF_URL",
    )
    flagged = resolve_connection("http://flag:3", "flag-key", environ)
    assert pair(flagged) == ("http://flag:3", "flag-key")


def test_the_default_file_is_under_xdg_config_home_and_may_be_absent(tmp_path: Path) -> None:
    environ = {"XDG_CONFIG_HOME": str(tmp_path)}
    connection = resolve_connection(None, None, environ)
    assert (connection.url, connection.api_key) == (DEFAULT_URL, None)
    (tmp_path / "efnf").mkdir()
    (tmp_path / "efnf" / "config.toml").write_text('api_key = "k"\n')
    assert resolve_connection(None, None, environ).api_key == "k"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('url = "x"\ntoken = "y"\n', "unknown key(s) ['token']"),
        ("url = 3\n", "url must be a string"),
        ("url = \n", "config file"),
    ],
)
def test_a_bad_config_file_is_refused_naming_it(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as raised:
        resolve_connection(None, None, {"EFNF_CONFIG": str(config)})
    assert message in str(raised.value) and str(config) in str(raised.value)


def test_errors_read_the_servers_envelope_or_keep_a_foreign_body() -> None:
    request = httpx.Request("POST", "http://server/v1/jobs")
    envelope = {"message": "batch_size too big", "field": "training.batch_size", "errors": []}
    error = EfnfError.from_response(httpx.Response(422, json=envelope, request=request))
    assert (error.status_code, error.message, error.field) == (
        422,
        "batch_size too big",
        "training.batch_size",
    )
    assert str(error) == "HTTP 422: batch_size too big (field: training.batch_size)"
    proxy = EfnfError.from_response(
        httpx.Response(502, text="<html>Bad Gateway</html>", request=request)
    )
    assert (proxy.status_code, proxy.field, proxy.message) == (
        502,
        None,
        "<html>Bad Gateway</html>",
    )


def unused_local_port() -> int:
    """A local port with nothing listening on it (bound by the OS, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_server_is_one_error_after_the_retries() -> None:
    client = Client(f"http://127.0.0.1:{unused_local_port()}", retries=1)
    with client, pytest.raises(EfnfError, match="cannot reach") as raised:
        client.list_datasets()
    assert raised.value.status_code is None
    with pytest.raises(ValueError, match="retries"):
        Client("http://x", retries=-1)


def test_the_console_script_is_the_cli_main() -> None:
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"efnf": "efnf_client.cli:main"}


def test_the_client_imports_neither_the_service_nor_the_library(tmp_path: Path) -> None:
    check = (
        "import sys, efnf_client, efnf_client.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'app', 'flows', 'worker', "
        "'torch', 'sqlalchemy', 'fastapi'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", check],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert result.stdout.strip() == "[]"


def _scripted(*answers: int | type[Exception]) -> tuple[httpx.MockTransport, list[str]]:
    """A transport answering each request with the next status (or raising the exception)."""
    sent: list[str] = []
    script = iter(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        answer = next(script)
        if isinstance(answer, type):
            raise answer("scripted", request=request)
        return httpx.Response(answer, json={"message": f"status {answer}", "field": None})

    return httpx.MockTransport(handle), sent


def test_reads_are_retried_on_gateway_errors_and_timeouts_with_backoff() -> None:
    transport, sent = _scripted(503, httpx.ReadTimeout, 200)
    client = Client("http://efnf", retries=2, backoff_s=0.0, transport=transport)
    assert client.request("GET", "/healthz").status_code == 200
    assert sent == ["GET", "GET", "GET"]


def test_a_read_gives_up_after_its_retries_with_the_last_answer() -> None:
    transport, sent = _scripted(503, 503)
    client = Client("http://efnf", retries=1, backoff_s=0.0, transport=transport)
    with pytest.raises(EfnfError, match="status 503"):
        client.request("GET", "/healthz")
    assert len(sent) == 2


def test_writes_are_sent_once_whatever_the_answer() -> None:
    transport, sent = _scripted(503)
    client = Client("http://efnf", retries=3, backoff_s=0.0, transport=transport)
    with pytest.raises(EfnfError, match="status 503"):
        client.request("POST", "/v1/jobs", json={})
    transport, sent_timeout = _scripted(httpx.ReadTimeout)
    client = Client("http://efnf", retries=3, backoff_s=0.0, transport=transport)
    with pytest.raises(EfnfError, match="timed out"):
        client.request("POST", "/v1/jobs", json={})
    assert sent == ["POST"] and sent_timeout == ["POST"]
