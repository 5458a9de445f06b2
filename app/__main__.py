"""``python -m app``: the whole service on one machine with one command.

``serve`` (the default) upgrades the database to the newest migration, starts a training worker
subprocess (``python -m worker``, restarted if it dies) and serves the API with uvicorn until
interrupted; on a database without API keys it first creates one and prints it. ``migrate``
only upgrades the database. ``keys create --tenant T [--name N]``, ``keys list`` and
``keys revoke ID`` administer API keys. Configuration comes from ``EFNF_*`` environment
variables; with none set this is the embedded deployment (SQLite files in ./var).
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

from app.core.db.api_keys import check_tenant
from app.core.db.migrate import upgrade_to_head
from app.core.settings import PARENT_PIPE_ENV, Settings, get_settings
from app.key_admin import create_key, ensure_local_key, list_keys, revoke_key
from app.transport import protocol_with_head_timeout

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
        # The worker watches the read end; only this process holds the write end, which the
        # kernel closes however this process dies (worker/parent_watch.py).
        read_end, _launcher_end = os.pipe()
        while not self._stopping.is_set():
            self._process = subprocess.Popen(
                [sys.executable, "-m", "worker"],
                start_new_session=True,
                env={**_worker_env(), PARENT_PIPE_ENV: str(read_end)},
                pass_fds=(read_end,),
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
    ensure_local_key(settings)
    supervisor = WorkerSupervisor() if with_worker else None
    if supervisor is not None:
        supervisor.start()
    # uvicorn re-raises the SIGTERM it handled once it has shut down; exit through `finally`.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=host,
            port=port,
            http=protocol_with_head_timeout(settings.header_timeout_s),
        )
    finally:
        if supervisor is not None:
            supervisor.stop()


def _tenant(value: str) -> str:
    try:
        return check_tenant(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", metavar="{serve,migrate,keys}")
    serve_parser = commands.add_parser("serve", help="migrate, start a worker, serve the API")
    serve_parser.add_argument("--host", default=settings.host, help="bind address (EFNF_HOST)")
    serve_parser.add_argument("--port", type=int, default=settings.port, help="port (EFNF_PORT)")
    serve_parser.add_argument(
        "--no-worker", action="store_true", help="serve the API only (workers run elsewhere)"
    )
    commands.add_parser("migrate", help="upgrade the database to the newest migration")
    keys = commands.add_parser("keys", help="create, list or revoke API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key and print it (only once)")
    create.add_argument("--tenant", required=True, type=_tenant, help="the key's tenant")
    create.add_argument("--name", default=None, help="a label, e.g. who uses the key")
    key_commands.add_parser("list", help="list keys (ids, tenants, states; never secrets)")
    revoke = key_commands.add_parser("revoke", help="revoke a key; it stops working at once")
    revoke.add_argument("key_id", metavar="ID", help="the key's id, e.g. key_0123456789abcdef")
    return parser


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    argv = sys.argv[1:] if argv is None else argv
    # `python -m app [--port ...]` stays the one command that serves.
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["serve", *argv]
    args = build_parser(settings).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if args.command == "serve":
        serve(args.host, args.port, with_worker=not args.no_worker)
        return
    upgrade_to_head(settings.database_url)
    if args.command == "keys":
        if args.keys_command == "create":
            create_key(settings, args.tenant, args.name)
        elif args.keys_command == "list":
            list_keys(settings)
        elif not revoke_key(settings, args.key_id):
            sys.exit(1)


if __name__ == "__main__":
    main()
