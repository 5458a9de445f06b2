"""The deployment files run anywhere: no GPU needed by default, a GPU override that reserves
one, CPU torch from an *extra* index, a non-root image with escnn's cache on the data volume,
and a health check on every long-running service (issue 12).

``docker compose config`` validates the merged files where the Compose plugin exists; the
structure is checked here in any case (no Docker engine is needed).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("postgres", "redis", "api", "worker")


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / name).read_text())


def _reserves_gpu(service: dict[str, Any]) -> bool:
    devices = (
        service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    )
    return any("gpu" in device.get("capabilities", []) for device in devices)


def test_compose_runs_without_gpus_and_every_service_is_health_checked() -> None:
    compose = _load("docker-compose.yml")
    assert set(compose["services"]) == set(SERVICES)
    for name, service in compose["services"].items():
        assert not _reserves_gpu(service), f"{name} reserves a GPU by default"
        assert "test" in service.get("healthcheck", {}), f"{name} has no health check"
    worker_check = " ".join(compose["services"]["worker"]["healthcheck"]["test"])
    assert "inspect ping" in worker_check


def test_gpu_override_reserves_a_gpu_for_the_worker_only() -> None:
    override = _load("docker-compose.gpu.yml")
    assert _reserves_gpu(override["services"]["worker"])
    assert not _reserves_gpu(override["services"].get("api", {}))
    assert override["services"]["worker"]["build"]["args"]["TORCH_EXTRA_INDEX_URL"] == ""
    for name in ("api", "worker"):
        assert override["services"][name]["environment"]["EFNF_WORKER_CUDA"] == "true"


def test_dockerfile_adds_the_cpu_index_and_runs_as_a_user_with_a_writable_escnn_cache() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(
        r"^ARG TORCH_EXTRA_INDEX_URL=https://download\.pytorch\.org/whl/cpu$",
        dockerfile,
        re.MULTILINE,
    )
    assert "--extra-index-url" in dockerfile
    assert not re.search(r"^\s*RUN[^#\n]*--index-url", dockerfile, re.MULTILINE)
    final_stage = dockerfile.rsplit("FROM ", 1)[1]
    assert re.search(r"^USER efnf$", final_stage, re.MULTILINE)
    assert "__cache_path__" in final_stage and "ln -s /srv/efnf/var/escnn-cache" in final_stage


def test_escnn_caches_where_the_dockerfile_redirects() -> None:
    """The path the image replaces by a link is the one escnn's joblib caches use."""
    escnn_group = pytest.importorskip("escnn.group")
    from escnn.group import _clebsh_gordan

    assert Path(_clebsh_gordan.cache.location) == Path(escnn_group.__cache_path__)


def _compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


@pytest.mark.parametrize(
    "files", [["docker-compose.yml"], ["docker-compose.yml", "docker-compose.gpu.yml"]]
)
def test_compose_config_validates(files: list[str]) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    arguments = [part for name in files for part in ("-f", name)]
    result = subprocess.run(
        [*command, *arguments, "config", "-q"], cwd=REPO_ROOT, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode()
