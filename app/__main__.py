"""``python -m app``: the whole service on one machine with one command.

``serve`` (the default) upgrades the database to the newest migration, starts a training worker
subprocess (``python -m worker``, restarted if it dies) and serves the API with uvicorn until
interrupted. ``migrate`` only upgrades the database. Configuration comes from ``EFNF_*``
environment variables; with none set this is the embedded deployment (SQLite files in ./var).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading

import uvicorn

from app.db.migrate import upgrade_to_head
from app.settings import get_settings

logger = logging.getLogger("app.serve")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
WORKER_STOP_GRACE_S = 10.0
WORKER_RESTART_DELAY_S = 3.0
EMBEDDED_WORKER_NAME = "efnf-embedded"


def _worker_env() -> dict[str, str]:
    """The worker's environment: a stable name, so a restarted worker resumes its job at once."""
    return {"EFNF_WORKER_NAME": EMBEDDED_WORKER_NAME, **os.environ}


class WorkerSupervisor(threading.Thread):
    """Keeps one ``python -m worker`` subprocess (in its own process group) running."""

    def __init__(self) -> None:
        super().__init__(name="efnf-worker-supervisor", daemon=True)
        self._stopping = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None

    def run(self) -> None:
        while not self._stopping.is_set():
            self._process = subprocess.Popen(
                [sys.executable, "-m", "worker"], start_new_session=True, env=_worker_env()
            )
            logger.info("worker started (pid %d)", self._process.pid)
            code = self._process.wait()
            if self._stopping.is_set():
                return
            logger.error(
                "worker exited with %s; restarting in %.0f s", code, WORKER_RESTART_DELAY_S
            )
            self._stopping.wait(WORKER_RESTART_DELAY_S)

    def stop(self) -> None:
        """Asks the worker for a warm shutdown, then kills its process group after a grace period.

        A job interrupted this way is resumed from its newest checkpoint as soon as the worker
        starts again (it runs under the stable name ``efnf-embedded``).
        """
        self._stopping.set()
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(WORKER_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            logger.warning("worker still busy after %.0f s; killing it", WORKER_STOP_GRACE_S)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def serve(host: str, port: int, with_worker: bool) -> None:
    settings = get_settings()
    logger.info("database %s, broker %s", settings.database_url, settings.broker_url)
    upgrade_to_head(settings.database_url)
    supervisor = WorkerSupervisor() if with_worker else None
    if supervisor is not None:
        supervisor.start()
    # uvicorn re-raises the SIGTERM it handled once it has shut down; exit through `finally`.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        uvicorn.run("app.main:create_app", factory=True, host=host, port=port)
    finally:
        if supervisor is not None:
            supervisor.stop()


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs="?", choices=["serve", "migrate"], default="serve")
    parser.add_argument("--host", default=settings.host, help="bind address (EFNF_HOST)")
    parser.add_argument("--port", type=int, default=settings.port, help="port (EFNF_PORT)")
    parser.add_argument(
        "--no-worker", action="store_true", help="serve the API only (workers run elsewhere)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if args.command == "migrate":
        upgrade_to_head(settings.database_url)
        return
    serve(args.host, args.port, with_worker=not args.no_worker)


if __name__ == "__main__":
    main()
