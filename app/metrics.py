"""Prometheus metrics of the API process, served at ``GET /metrics`` (text format 0.0.4).

Each app has its own registry (tests build several apps in one process). Three sources:

- counters the API process updates as it serves: HTTP requests by method, route *template*
  (``/v1/jobs/{job_id}``, never the concrete path, so the label set stays small) and status,
  their latency, and the items scored and sampled with the seconds spent on them;
- the model cache's own counts (``app.model_cache.ModelCache``), read at scrape;
- the database, read at scrape: jobs by state, and the speed each running job's worker reports
  with its heartbeat. Workers are other processes (often other machines), so their figures come
  through the job rows rather than a shared registry. The broker's queue length is read too.

Items per second are ``rate(efnf_scored_items_total[1m])`` in PromQL; the throughput while busy
is ``efnf_scored_items_total / efnf_scoring_seconds_total``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.broker import BrokerProbe, BrokerUnavailable
from app.core.db.models import JOB_STATES, RUNNING, Job
from app.core.db.session import session_factory
from app.core.settings import Settings
from app.model_cache import ModelCache

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
UNMATCHED_ROUTE = "unmatched"
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ServiceMetrics:
    """The API process's counters and the scrape-time collectors, on one registry."""

    def __init__(self, settings: Settings, broker_probe: BrokerProbe, cache: ModelCache) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "efnf_http_requests",
            "HTTP requests served, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "efnf_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.scored_items = Counter(
            "efnf_scored_items", "Items scored (log-likelihood).", registry=self.registry
        )
        self.scoring_seconds = Counter(
            "efnf_scoring_seconds", "Seconds spent scoring.", registry=self.registry
        )
        self.sampled_items = Counter(
            "efnf_sampled_items", "Samples drawn.", registry=self.registry
        )
        self.sampling_seconds = Counter(
            "efnf_sampling_seconds", "Seconds spent sampling.", registry=self.registry
        )
        self.registry.register(ModelCacheCollector(cache))
        self.registry.register(DatabaseCollector(settings, broker_probe))


class ModelCacheCollector(Collector):
    def __init__(self, cache: ModelCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        stats = self._cache.stats()
        for name, value, what in (
            ("hits", stats.hits, "Model lookups served from the cache."),
            ("misses", stats.misses, "Model lookups not in the cache."),
            ("loads", stats.loads, "Checkpoints loaded into the cache."),
            ("load_failures", stats.load_failures, "Checkpoint loads that failed."),
        ):
            yield CounterMetricFamily(f"efnf_model_cache_{name}", what, value=value)
        yield GaugeMetricFamily(
            "efnf_model_cache_models", "Models held in the cache.", value=stats.size
        )


class DatabaseCollector(Collector):
    """Figures read at scrape time: jobs by state, running jobs' speed, the queue's length."""

    def __init__(self, settings: Settings, broker_probe: BrokerProbe) -> None:
        self._settings = settings
        # Shared with /readyz: however often /metrics is scraped, the broker sees one probe
        # per period (each probe holds a broker connection).
        self._broker_probe = broker_probe

    def describe(self) -> list[Metric]:
        # Without this, registering would call collect() (and the database) at start-up.
        return []

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        up = GaugeMetricFamily(
            "efnf_metrics_database_up", "1 if the database answered this scrape."
        )
        try:
            yield from self._from_database()
            up.add_metric([], 1)
        except Exception as error:
            logger.warning("metrics: database unavailable (%s)", error)
            up.add_metric([], 0)
        yield up
        yield from self._queue()
        yield GaugeMetricFamily(
            "efnf_metrics_scrape_seconds",
            "Time spent reading the database and broker for this scrape.",
            value=time.perf_counter() - started,
        )

    def _from_database(self) -> list[Metric]:
        jobs = GaugeMetricFamily("efnf_jobs", "Jobs by state (all tenants).", labels=["state"])
        steps = GaugeMetricFamily(
            "efnf_job_steps_per_second",
            "Smoothed training speed of each running job, as its worker reports it.",
            labels=["job_id"],
        )
        examples = GaugeMetricFamily(
            "efnf_job_examples_per_second",
            "Training examples per second of each running job (steps/s times batch size).",
            labels=["job_id"],
        )
        progress = GaugeMetricFamily(
            "efnf_job_step", "Steps done by each running job.", labels=["job_id"]
        )
        with session_factory(self._settings.database_url)() as session:
            by_state = select(Job.state, func.count()).group_by(Job.state)
            counts = {state: count for state, count in session.execute(by_state)}
            running = session.execute(
                select(Job.id, Job.step, Job.steps_per_second, Job.train_config).where(
                    Job.state == RUNNING
                )
            ).all()
        for state in JOB_STATES:
            jobs.add_metric([state], counts.get(state, 0))
        for row in running:
            progress.add_metric([row.id], row.step)
            if row.steps_per_second is None:
                continue
            steps.add_metric([row.id], row.steps_per_second)
            batch_size = (row.train_config or {}).get("batch_size")
            if isinstance(batch_size, int):
                examples.add_metric([row.id], row.steps_per_second * batch_size)
        return [jobs, progress, steps, examples]

    def _queue(self) -> Iterator[Metric]:
        try:
            waiting = self._broker_probe()
        except BrokerUnavailable as error:
            logger.warning("metrics: broker unavailable (%s)", error)
            return
        yield GaugeMetricFamily(
            "efnf_queue_messages",
            "Training messages waiting in the broker's queue (queue depth).",
            value=waiting,
        )


class RouteTemplates:
    """Maps a request to the path template of its route, e.g. ``/v1/jobs/{job_id}``.

    Built once from the app's OpenAPI paths and its plain routes (the docs pages), so it relies
    on no router internals; a path that exists without the method (a 405) keeps its template.
    """

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._routes: list[tuple[re.Pattern[str], str, frozenset[str]]] | None = None

    def _build(self) -> list[tuple[re.Pattern[str], str, frozenset[str]]]:
        routes = []
        for path, operations in self._app.openapi().get("paths", {}).items():
            methods = frozenset(method.upper() for method in operations)
            routes.append((compile_path(path)[0], path, methods))
        for route in self._app.router.routes:
            path, methods = getattr(route, "path", None), getattr(route, "methods", None)
            if isinstance(path, str) and methods:
                routes.append((compile_path(path)[0], path, frozenset(methods)))
        return routes

    def __call__(self, method: str, path: str) -> str:
        if self._routes is None:
            self._routes = self._build()
        partial = None
        for pattern, template, methods in self._routes:
            if pattern.match(path):
                if method in methods or (method == "HEAD" and "GET" in methods):
                    return template
                partial = partial or template
        return partial or UNMATCHED_ROUTE


class RequestMetricsMiddleware:
    """Counts and times every HTTP request, including those refused before routing (401)."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI, metrics: ServiceMetrics) -> None:
        self.app = app
        self.templates = RouteTemplates(fastapi_app)
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            labels = (scope["method"], self.templates(scope["method"], scope["path"]), str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)
