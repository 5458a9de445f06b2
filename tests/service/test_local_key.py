"""The embedded default stays one command: ``scripts/serve.sh`` makes the first key itself.

Starts the real launcher (API only, on a spare port, with a temporary data directory), reads
the key it printed and saved, uses it over HTTP, stops the launcher, and checks that a second
start creates no other key.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.core.db.api_keys import list_api_keys
from app.core.db.session import get_engine, session_scope
from app.core.settings import Settings
from app.key_admin import LOCAL_KEY_FILE, ensure_local_key
from tests.service.private_servers import spare_port
from tests.service.stack import REPO_ROOT, embedded_env, wait_for_health

pytestmark = [pytest.mark.service, pytest.mark.timeout(180)]


def test_serve_prints_and_saves_a_local_key_on_first_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    port = spare_port()
    env = embedded_env(
        data_dir, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    env.pop("VIRTUAL_ENV", None)
    database_url = env["EFNF_DATABASE_URL"]
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["bash", "scripts/serve.sh", "--no-worker", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base_url, process, log)
        key_file = data_dir / LOCAL_KEY_FILE
        key = key_file.read_text().strip()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        printed = log.read_text()
        assert key in printed and str(key_file.resolve()) in printed
        authorised = httpx.get(
            f"{base_url}/v1/datasets", headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        assert authorised.status_code == 200, authorised.text
        assert httpx.get(f"{base_url}/v1/datasets", timeout=10).status_code == 401
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)

    settings = Settings(database_url=database_url, data_dir=data_dir)
    try:
        assert ensure_local_key(settings) is None, "a second start must not add a key"
        assert key_file.read_text().strip() == key
        with session_scope(database_url) as session:
            keys = [(row.tenant, row.revoked_at) for row in list_api_keys(session)]
        assert keys == [(settings.default_owner, None)]
    finally:
        get_engine(database_url).dispose()
