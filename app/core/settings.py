"""Service settings, read from ``EFNF_*`` environment variables by pydantic-settings.

The defaults are the embedded single-machine deployment: SQLite for the database and a
SQLite-backed Celery broker, both under ``./var``. A real deployment sets ``EFNF_DATABASE_URL``
(PostgreSQL) and ``EFNF_BROKER_URL`` (Redis); nothing else changes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EMBEDDED_DATABASE_URL = "sqlite:///./var/efnf.sqlite3"
EMBEDDED_BROKER_URL = "sqla+sqlite:///./var/broker.sqlite3"
# Set by `python -m app serve` for its worker: the read end of a pipe that closes when the
# launcher dies (worker/parent_watch.py).
PARENT_PIPE_ENV = "EFNF_PARENT_PIPE_FD"


class Settings(BaseSettings):
    """Every tunable of the API, the worker and the reaper, with its environment variable."""

    model_config = SettingsConfigDict(env_prefix="EFNF_", extra="ignore")

    environment: Literal["development", "production"] = Field(
        "development", description="production refuses the embedded SQLite defaults."
    )
    database_url: str = Field(EMBEDDED_DATABASE_URL, description="SQLAlchemy URL.")
    broker_url: str = Field(EMBEDDED_BROKER_URL, description="Celery broker URL.")
    result_backend: str | None = Field(
        None, description="Celery result back end; unused (the job table holds results)."
    )
    train_queue: str = Field("train", description="Celery queue consumed by training workers.")
    default_owner: str = Field(
        "default",
        description="Tenant of the local key that `python -m app serve` creates on first start.",
    )
    data_dir: Path = Field(
        Path("./var"), description="Where `python -m app serve` writes the local API key file."
    )

    # Limits on requests.
    max_upload_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1,
        description="Largest uploaded file (and total of a scoring form's files); a multipart "
        "body is cut off while streaming once it passes this plus a 256 KiB envelope.",
    )
    max_json_bytes: int = Field(
        8 * 1024 * 1024, ge=1, description="Largest body of any other request (JSON)."
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="`python -m app serve` closes a connection that has not sent a complete "
        "request line and headers this long after it opened.",
    )
    body_read_timeout_s: float = Field(
        30.0, gt=0, description="A request whose body sends no data this long is stopped (408)."
    )
    max_dataset_items: int = Field(1_000_000, ge=1)
    # Bounded by flows.data.dataset.MAX_IMAGE_SIDE (256), the largest side the library accepts;
    # not imported from there, so that reading settings does not import the library.
    max_image_side: int = Field(
        256,
        ge=2,
        le=256,
        description="Largest image height or width, checked from a PNG's header before decoding.",
    )
    max_archive_entries: int = Field(
        100_000, ge=1, description="Most entries in an uploaded .zip or .npz, counted first."
    )
    max_compression_ratio: float = Field(
        200.0,
        gt=1.0,
        description="Largest decompressed/compressed ratio of an archive entry, checked while "
        "it is decompressed (past its first MiB).",
    )
    # Bounded by flows.data.builtin.MAX_BUILTIN_COUNT (200,000), the most the library generates,
    # so that this setting is the limit the API enforces (and publishes in its schema).
    max_builtin_items: int = Field(100_000, ge=1, le=200_000)
    # Limits on jobs (app/limits.py): per config field, then on estimates from flows/cost.py.
    max_steps: int = Field(1_000_000, ge=1)
    max_width: int = Field(256, ge=1)
    max_depth: int = Field(64, ge=1)
    max_batch_size: int = Field(4096, ge=1)
    max_hidden_layers: int = Field(4, ge=1, description="Most hidden layers per sub-network.")
    max_kernel_size: int = Field(7, ge=1, description="Largest convolution kernel (images).")
    max_exact_dim: int = Field(
        1024, ge=1, description="Largest flow.exact_max_dim: exact log-det costs D passes."
    )
    max_eval_probes: int = Field(64, ge=2, description="Most estimator probes per scored item.")
    max_inverse_iterations: int = Field(
        2000, ge=1, description="Largest flow.inverse_max_iter (sampling inverts each block)."
    )
    # Room for EFNF_MAX_STEPS at the default intervals (50 and 500) many times over; what they
    # stop is an interval of 1 on a long run (a row, a validation pass, a checkpoint per step).
    max_metric_points: int = Field(
        100_000, ge=1, description="Most metric rows (and validation passes) per job."
    )
    max_checkpoint_writes: int = Field(
        20_000, ge=1, description="Most checkpoints written per job."
    )
    max_weights: int = Field(
        200_000_000, ge=1, description="Most estimated expanded filter weights of a flow."
    )
    max_step_activations: int = Field(
        1_000_000_000,
        ge=1,
        description="Most estimated hidden activations of one training step (memory).",
    )
    max_training_work: float = Field(
        1e14, gt=0, description="Most estimated feature values computed by a run (time)."
    )
    # Limits on serving.
    max_samples: int = Field(1024, ge=1, description="Most samples per sampling request.")
    max_sample_values: int = Field(
        4 * 1024 * 1024, ge=1, description="Most numbers in one sampling response (n x D)."
    )
    max_sample_work: float = Field(
        1e12, gt=0, description="Most estimated feature values computed to invert the samples."
    )
    max_score_items: int = Field(1024, ge=1, description="Most items per scoring request.")
    max_score_work: float = Field(
        1e11, gt=0, description="Most estimated feature values computed for one scoring request."
    )
    page_size_max: int = Field(200, ge=1)
    metrics_enabled: bool = Field(
        True,
        description="Serve Prometheus metrics at GET /metrics without an API key (like "
        "/healthz); false: no /metrics at all (it is then an unknown path, behind the key).",
    )
    max_tenant_storage_bytes: int = Field(
        10 * 1024**3,
        ge=1,
        description="Bytes one tenant may store: its data sets' arrays and its checkpoints. A "
        "data set that would pass it is refused (413), and so is a job while the tenant is at it.",
    )

    # Jobs, heartbeats and the reaper.
    max_attempts: int = Field(3, ge=1, description="Claims of a job before it is failed.")
    heartbeat_interval_s: float = Field(
        2.0,
        gt=0,
        description="Worker heartbeat period; each beat also writes the job's step and speed.",
    )
    heartbeat_timeout_s: float = Field(
        120.0, gt=0, description="A running job whose heartbeat is older is re-queued."
    )
    stall_timeout_s: float = Field(
        900.0,
        gt=0,
        description="A running job whose training loop made no progress for this long is "
        "treated as dead: its worker stops the heartbeat, so the reaper re-queues it.",
    )
    cancel_grace_s: float = Field(
        5.0,
        gt=0,
        description="A cancellation (or EFNF_MAX_JOB_SECONDS) the training loop has not acted on "
        "this long after its heartbeat saw it, e.g. inside one long step, ends the attempt from "
        "outside the loop: the job is recorded and the training process exits.",
    )
    max_job_seconds: float = Field(
        7 * 24 * 3600.0,
        gt=0,
        description="Wall-clock cap of one attempt of a job; past it the job fails, keeping its "
        "newest checkpoint.",
    )
    max_job_memory_bytes: int = Field(
        8 * 1024**3,
        ge=1,
        description="Memory one training job may use: submissions whose estimated step memory "
        "(flows.cost.training_step_bytes) is above it are refused, and a training process "
        "whose resident memory passes it fails its job and exits.",
    )
    reaper_interval_s: float = Field(30.0, gt=0)
    requeue_queued_after_s: float = Field(
        600.0, gt=0, description="Re-send a queued job's message after this long (lost messages)."
    )
    checkpoints_kept: int = Field(2, ge=1, description="Newest checkpoints kept per job.")

    # Broker and worker.
    visibility_timeout_s: int = Field(
        43_200, ge=60, description="Redis visibility timeout; longer than a checkpoint interval."
    )
    worker_pool: Literal["prefork", "solo"] = Field(
        "prefork",
        description="prefork: one child per task, recycled (CUDA-safe); solo: one process.",
    )
    worker_concurrency: int = Field(1, ge=1)
    worker_name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Node name of this worker (``NAME@host``), stable across its restarts and "
        "unique among running workers. A worker that starts re-queues at once the jobs still "
        "marked running under its name; without one (a name per process) they wait for "
        "EFNF_HEARTBEAT_TIMEOUT_S.",
    )
    worker_loglevel: str = Field("INFO")
    worker_cuda: bool = Field(
        False,
        description="The workers have a CUDA device; without it, training.device 'cuda' is "
        "refused at submission instead of failing on the worker.",
    )

    # Serving.
    serve_device: str = Field("cpu", description="Device for scoring and sampling in the API.")
    model_cache_size: int = Field(4, ge=1, description="Loaded models kept in memory.")
    auth_cache_ttl_s: float = Field(
        1.0,
        ge=0.0,
        description="An accepted API key is trusted this long without a database read, so a "
        "revoked key is refused at most this long after its revocation (0: read every time).",
    )
    checkpoint_refresh_s: float = Field(
        1.0,
        ge=0.0,
        description="A running job's newest checkpoint is looked up again after this long "
        "(finished jobs get no new checkpoints and are not looked up again; 0: every request).",
    )
    batch_max_items: int = Field(
        256,
        ge=1,
        description="Dynamic batching: most items (scored inputs or samples) in one forward.",
    )
    batch_max_wait_ms: float = Field(
        0.0,
        ge=0.0,
        description="Dynamic batching: how long the first request of a batch waits for others "
        "to join (requests that arrive while a forward runs join the next one anyway).",
    )
    host: str = Field("127.0.0.1", description="Bind address of `python -m app`.")
    port: int = Field(8000, ge=1, le=65535)

    @model_validator(mode="after")
    def _no_embedded_defaults_in_production(self) -> Settings:
        if self.environment == "production":
            if self.database_url.startswith("sqlite"):
                raise ValueError(
                    "EFNF_DATABASE_URL is SQLite; production needs a server database "
                    "(e.g. postgresql+psycopg://user@host/db)"
                )
            if self.broker_url.startswith("sqla+"):
                raise ValueError(
                    "EFNF_BROKER_URL is the embedded SQL broker; production needs Redis "
                    "(e.g. redis://host:6379/0)"
                )
        if self.heartbeat_timeout_s <= 2 * self.heartbeat_interval_s:
            raise ValueError(
                f"EFNF_HEARTBEAT_TIMEOUT_S ({self.heartbeat_timeout_s}) must exceed twice "
                f"EFNF_HEARTBEAT_INTERVAL_S ({self.heartbeat_interval_s})"
            )
        if self.stall_timeout_s <= 2 * self.heartbeat_interval_s:
            raise ValueError(
                f"EFNF_STALL_TIMEOUT_S ({self.stall_timeout_s}) must exceed twice "
                f"EFNF_HEARTBEAT_INTERVAL_S ({self.heartbeat_interval_s})"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
