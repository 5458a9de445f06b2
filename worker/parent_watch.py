"""A worker started by ``python -m app serve`` dies with it, and gives its jobs back first.

The launcher runs the worker in a session of its own (so that a Ctrl-C reaches the worker only
through the launcher's orderly stop), which also means nothing stops the worker when the
launcher itself is killed: a SIGKILLed ``serve`` once left a worker training for half an hour
under the name the next worker would use. So the launcher passes the read end of a pipe
(``EFNF_PARENT_PIPE_FD``) whose write end only it holds; the kernel closes that end whatever
kills the launcher, and a thread of the worker that reads the pipe sees end-of-file at once.
The worker then puts the jobs it runs back in the queue, refunding their attempt (the job was
not at fault), and kills its process group: itself and the training children.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading

from app.core.db import lifecycle
from app.core.db.session import session_scope
from app.core.settings import PARENT_PIPE_ENV, Settings

logger = logging.getLogger(__name__)


def node_name(settings: Settings, pid: int) -> str:
    """The worker's Celery node name without the host: stable when EFNF_WORKER_NAME is set."""
    return settings.worker_name or f"efnf-{pid}"


def release_jobs_and_exit(settings: Settings, worker: str) -> None:
    """Re-queues the jobs running under ``worker`` with their attempt refunded, then kills this
    process group (never returns)."""
    try:
        with session_scope(settings.database_url) as session:
            released = lifecycle.release_jobs_of_worker(session, worker)
        logger.warning("launcher gone: released jobs %s; stopping %s", released, worker)
    except Exception:
        logger.exception("launcher gone: could not release the jobs of %s", worker)
    finally:
        os.killpg(os.getpgid(0), signal.SIGKILL)


def watch_parent(settings: Settings, worker_pid: int) -> threading.Thread | None:
    """Starts the thread that waits for the launcher's end of the pipe to close, when the
    launcher passed one; returns it (None when this worker runs on its own)."""
    value = os.environ.get(PARENT_PIPE_ENV)
    if not value:
        return None
    fd = int(value)
    worker = f"{node_name(settings, worker_pid)}@{socket.gethostname()}"

    def wait_for_end_of_file() -> None:
        while os.read(fd, 1):
            continue
        release_jobs_and_exit(settings, worker)

    thread = threading.Thread(target=wait_for_end_of_file, name="efnf-parent-watch", daemon=True)
    thread.start()
    return thread
