"""Private PostgreSQL and Redis servers that a fault test may stop, restart or lock at will.

Each runs on a spare port with its data in a temporary directory, so the shared servers of the
other tests (and of other engineers on this machine) are never touched. Redis runs without
persistence, so a restart loses every queued message, as a crash of an unpersisted Redis would.
PostgreSQL's ``initdb`` refuses to run as root; as root the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import redis

START_TIMEOUT_S = 30.0


def spare_port() -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_bin_dir() -> Path:
    """``EFNF_TEST_PG_BIN``, else the newest ``/usr/lib/postgresql/*/bin`` with ``initdb``."""
    if "EFNF_TEST_PG_BIN" in os.environ:
        return Path(os.environ["EFNF_TEST_PG_BIN"])
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(path.split("/")[4])
    )
    if not found and shutil.which("initdb"):
        return Path(shutil.which("initdb")).parent
    if not found:
        raise RuntimeError("no PostgreSQL initdb found; set EFNF_TEST_PG_BIN")
    return Path(found[-1]).parent


class PrivateRedis:
    """A ``redis-server`` subprocess without persistence on a spare port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = spare_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError as error:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    raise RuntimeError(
                        f"private redis-server on port {self.port} did not start"
                    ) from error
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        """Stops the server; what it held is gone (no persistence)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(10)
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()


class PrivatePostgres:
    """A PostgreSQL cluster made by ``initdb`` in a temporary directory, on a spare port."""

    def __init__(self) -> None:
        self._bin = postgres_bin_dir()
        self._run_as_postgres = os.geteuid() == 0
        # Not under pytest's tmp_path: that is private to root, and the server may not be root.
        self.directory = Path(tempfile.mkdtemp(prefix="efnf-private-pg-"))
        if self._run_as_postgres:
            account = pwd.getpwnam("postgres")
            os.chown(self.directory, account.pw_uid, account.pw_gid)
        self.data = self.directory / "data"
        self.port = spare_port()
        self._pg(
            "initdb",
            "--pgdata",
            str(self.data),
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--no-sync",
            "--encoding",
            "UTF8",
        )
        self.start()

    def _pg(self, program: str, *args: str) -> None:
        command = [str(self._bin / program), *args]
        if self._run_as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        self._pg(
            "pg_ctl",
            "--pgdata",
            str(self.data),
            "--log",
            str(self.directory / "postgres.log"),
            "--options",
            options,
            "--wait",
            "start",
        )

    def stop(self) -> None:
        """A fast shutdown: open transactions are rolled back, clients are disconnected."""
        self._pg("pg_ctl", "--pgdata", str(self.data), "--mode", "fast", "--wait", "stop")

    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str) -> str:
        """Creates ``name``; returns its SQLAlchemy URL."""
        with psycopg.connect(self.admin_url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self._pg("pg_ctl", "--pgdata", str(self.data), "--mode", "immediate", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)
