"""``python -m worker [extra celery args]``: a training worker configured from the settings.

prefork (default) runs each job in a fresh child process (``--max-tasks-per-child 1``) so the
parent never touches CUDA and GPU memory is returned after every job; solo runs jobs in the
worker process itself.
"""

from __future__ import annotations

import os
import sys

from app.core.settings import get_settings
from worker.parent_watch import node_name, watch_parent


def worker_argv(extra: list[str]) -> list[str]:
    settings = get_settings()
    argv = [
        "worker",
        "--queues",
        settings.train_queue,
        "--pool",
        settings.worker_pool,
        "--loglevel",
        settings.worker_loglevel,
        "--hostname",
        f"{node_name(settings, os.getpid())}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if settings.worker_pool == "prefork":
        argv += ["--concurrency", str(settings.worker_concurrency), "--max-tasks-per-child", "1"]
    return argv + extra


def main() -> None:
    from worker.celery_app import celery_app

    watch_parent(get_settings(), os.getpid())
    celery_app.worker_main(argv=worker_argv(sys.argv[1:]))


if __name__ == "__main__":
    main()
