"""The ``efnf`` command line against a real HTTP server, end to end.

The stack's app is served by uvicorn on a free local port; every command runs as a separate
process (the installed ``efnf`` console script when there is one, else ``python -m
efnf_client``, which calls the same ``main``), so the CLI reaches the server only over HTTP.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.service.stack import REPO_ROOT, Stack, served_over_http

# The CLI speaks HTTP only, so one back end is enough: the embedded default a newcomer runs.
pytestmark = [
    pytest.mark.service,
    pytest.mark.timeout(300),
    pytest.mark.parametrize("stack", ["embedded"], indirect=True),
]

CONSOLE_SCRIPT = Path(sys.executable).with_name("efnf")
COMMAND = (
    [str(CONSOLE_SCRIPT)] if CONSOLE_SCRIPT.exists() else [sys.executable, "-m", "efnf_client"]
)
CLI_TIMEOUT_S = 120


@dataclass(frozen=True)
class LiveServer:
    url: str
    api_key: str


@pytest.fixture(scope="module")
def live_server(stack: Stack) -> Iterator[LiveServer]:
    """The stack's API over real HTTP on 127.0.0.1 (a port the OS picks)."""
    key = stack.client.headers["authorization"].removeprefix("Bearer ")
    with served_over_http(stack.client.app) as port:
        yield LiveServer(f"http://127.0.0.1:{port}", key)


def efnf(
    *args: str, server: LiveServer | None, home: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs ``efnf ARGS`` with the server's URL and key in the environment (if given)."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("EFNF_") and key not in ("XDG_CONFIG_HOME", "TTY_COMPATIBLE")
    }
    environment.update({"HOME": str(home), "PYTHONPATH": str(REPO_ROOT), "NO_COLOR": "1"})
    if server is not None:
        environment.update({"EFNF_URL": server.url, "EFNF_API_KEY": server.api_key})
    environment.update(env or {})
    return subprocess.run(
        [*COMMAND, *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        cwd=home,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_a_session_from_data_to_samples(
    stack: Stack, live_server: LiveServer, tmp_path: Path
) -> None:
    def run(*args: str) -> str:
        return ok(efnf(*args, server=live_server, home=tmp_path))

    built = json.loads(run("datasets", "builtin", "eight_gaussians", "-n", "512", "--json"))
    assert (built["kind"], built["shape"], built["count"]) == ("points", [2], 512)
    points = np.random.default_rng(0).normal(size=(6, 2)).round(3)
    np.savetxt(tmp_path / "points.csv", points, delimiter=",", header="x,y", comments="")
    uploaded = run("datasets", "upload", "points.csv", "--name", "six points")
    assert "six points" in uploaded and "points" in uploaded
    listed = run("datasets", "list")
    assert built["id"] in listed and "data set(s)" in listed
    assert "wrote preview.png" in run("datasets", "preview", built["id"], "-o", "preview.png")
    assert (tmp_path / "preview.png").read_bytes().startswith(b"\x89PNG")

    training = {"metric_interval": 10, "checkpoint_interval": 10, "seed": 3}
    job = json.loads(
        run(
            "jobs", "submit", built["id"], "--group", "C4", "--width", "2", "--depth", "1",
            "--steps", "30", "--batch-size", "32", "--training", json.dumps(training), "--json",
        )
    )  # fmt: skip
    assert job["flow"]["data_shape"] == [2] and job["training"]["metric_interval"] == 10
    watched = run("jobs", "watch", job["id"], "--interval", "0.2")
    assert f"{job['id']} succeeded at step 30 (loss " in watched
    assert "/30" in watched and "ETA" in watched
    assert job["id"] in run("jobs", "list", "--state", "succeeded")
    assert job["id"] in run("models", "list")

    scored = json.loads(
        run("models", "score", job["id"], "points.csv", "--method", "exact", "--json")
    )
    direct = stack.client.post(
        f"/v1/models/{job['id']}/log-prob", json={"inputs": points.tolist(), "method": "exact"}
    ).json()
    assert scored["count"] == 6 and scored["log_prob"] == direct["log_prob"]
    table = run("models", "score", job["id"], "points.csv", "--method", "exact")
    assert "mean log p" in table and f"{direct['log_prob'][0]:.4f}" in table

    run("models", "sample", job["id"], "-n", "5", "--seed", "2", "-o", "samples.npy")
    drawn = np.load(tmp_path / "samples.npy", allow_pickle=False)
    direct = stack.client.post(f"/v1/models/{job['id']}/samples", json={"n": 5, "seed": 2})
    np.testing.assert_array_equal(drawn, np.asarray(direct.json()["samples"], drawn.dtype))
    run("models", "sample", job["id"], "-n", "64", "-o", "samples.png")
    assert (tmp_path / "samples.png").read_bytes().startswith(b"\x89PNG")

    downloaded = run("models", "download", job["id"], "-o", "model.safetensors")
    weights = (tmp_path / "model.safetensors").read_bytes()
    model = stack.client.get(f"/v1/models/{job['id']}").json()
    assert hashlib.sha256(weights).hexdigest() == model["sha256"] and model["sha256"] in downloaded


def test_watch_draws_a_progress_bar_on_a_terminal(
    stack: Stack, live_server: LiveServer, tmp_path: Path
) -> None:
    dataset = stack.client.post("/v1/datasets/builtin", json={"name": "rings", "n": 256}).json()
    submitted = efnf(
        "jobs", "submit", dataset["id"], "--group", "C4", "--width", "2", "--depth", "1",
        "--steps", "40", "--batch-size", "32", "--training", '{"metric_interval": 20}',
        "--watch", server=live_server, home=tmp_path, env={"TTY_COMPATIBLE": "1"},
    )  # fmt: skip
    output = ok(submitted)
    assert "━" in output, output  # the bar
    assert "40/40" in output and "loss " in output and "ETA " in output
    assert "succeeded at step 40" in output


def test_server_errors_show_the_message_and_field_and_exit_1(
    stack: Stack, live_server: LiveServer, tmp_path: Path
) -> None:
    dataset = stack.client.post("/v1/datasets/builtin", json={"name": "rings", "n": 64}).json()
    too_big = efnf(
        "jobs", "submit", dataset["id"], "--group", "C4", "--batch-size", "999999",
        server=live_server, home=tmp_path,
    )  # fmt: skip
    assert too_big.returncode == 1, too_big.stdout
    assert "field: training.batch_size" in too_big.stderr and "status: HTTP 422" in too_big.stderr
    assert "batch_size" in too_big.stderr.splitlines()[0]

    missing = efnf("jobs", "cancel", "job_nosuchjob", server=live_server, home=tmp_path)
    assert missing.returncode == 1
    assert "job_id 'job_nosuchjob': no such job" in missing.stderr
    assert "field: job_id" in missing.stderr and "HTTP 404" in missing.stderr

    bad_key = efnf(
        "--api-key", "efnf_wrong", "datasets", "list", server=live_server, home=tmp_path
    )
    assert bad_key.returncode == 1 and "field: Authorization" in bad_key.stderr

    nobody = efnf(
        "--url", "http://127.0.0.1:9", "--retries", "0", "datasets", "list",
        server=None, home=tmp_path,
    )  # fmt: skip
    assert nobody.returncode == 1 and "cannot reach http://127.0.0.1:9" in nobody.stderr

    unknown = efnf("models", "score", "m", "x.txt", server=live_server, home=tmp_path)
    assert unknown.returncode == 2  # a usage error, caught before any request


def test_url_and_key_from_the_config_file_and_flags_first(
    live_server: LiveServer, tmp_path: Path
) -> None:
    config = tmp_path / ".config" / "efnf" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'url = "{live_server.url}"\napi_key = "{live_server.api_key}"\n')
    assert "data set(s)" in ok(efnf("datasets", "list", server=None, home=tmp_path))

    wrong_env = {"EFNF_URL": live_server.url, "EFNF_API_KEY": "efnf_wrong"}
    refused = efnf("datasets", "list", server=None, home=tmp_path, env=wrong_env)
    assert refused.returncode == 1 and "Authorization" in refused.stderr  # env beats the file
    flagged = efnf(
        "--api-key", live_server.api_key, "datasets", "list",
        server=None, home=tmp_path, env=wrong_env,
    )  # fmt: skip
    assert "data set(s)" in ok(flagged)  # the flag beats the environment

    config.write_text('url = "x"\ntoken = "y"\n')
    broken = efnf("datasets", "list", server=None, home=tmp_path)
    assert broken.returncode == 1 and "unknown key(s) ['token']" in broken.stderr
