"""Request and response bodies of the REST API; flow and training configs are the library's."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.api.encoding import JSON_MEDIA, NPY_MEDIA
from app.api.text import check_name
from app.core.db.base import utcnow
from app.core.db.models import RUNNING, Checkpoint, Dataset, Job, JobState, Metric
from flows import FlowConfig, TrainConfig
from flows.config import read_stored
from flows.data.builtin import BUILTIN_DATASETS
from flows.data.dataset import DataKind
from flows.flow import LogDetMethod

# The largest value a query may bind to an SQL INTEGER (steps) or use as an OFFSET; larger ones
# overflow in PostgreSQL, so they are refused as a 422 first.
LARGEST_SQL_INTEGER = 2**31 - 1


class ErrorItem(BaseModel):
    field: str | None = Field(None, description="Dotted path of the offending field.")
    message: str


class ErrorOut(BaseModel):
    """Every error response: a message that names the field, and the individual errors."""

    message: str
    field: str | None = None
    errors: list[ErrorItem] = Field(default_factory=list)


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyOut(BaseModel):
    status: Literal["ready", "unavailable"]
    database: str
    broker: str
    schema_revision: str | None = None
    queued_messages: int | None = None


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    kind: DataKind
    shape: list[int] = Field(description="Shape of one item: [D] or [C, H, W].")
    count: int
    dtype: str
    checksum: str
    size_bytes: int
    source: str
    source_params: dict[str, Any]
    created_at: datetime

    @field_validator("source_params", mode="before")
    @classmethod
    def _no_params(cls, value: dict[str, Any] | None) -> dict[str, Any]:
        return value or {}

    @classmethod
    def from_row(cls, row: Dataset) -> DatasetOut:
        return cls.model_validate(row)


class DatasetList(BaseModel):
    items: list[DatasetOut]
    total: int = Field(description="Number of the tenant's data sets (all pages).")
    limit: int
    offset: int


class BuiltinDatasetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="A built-in data set: "
        + "; ".join(f"{name} ({spec.description})" for name, spec in BUILTIN_DATASETS.items()),
        # Published as a list of choices; an unknown name is refused by the route with the list.
        json_schema_extra={"enum": list(BUILTIN_DATASETS)},
    )
    n: int | None = Field(None, ge=1, description="Number of items (default: the set's own).")
    seed: int = Field(0, ge=0, le=2**32 - 1)


BUILTIN_EXAMPLES = {
    "points": {
        "summary": "A 2-D toy density",
        "value": {"name": "eight_gaussians", "n": 4096, "seed": 0},
    },
    "images": {"summary": "8x8 handwritten digits", "value": {"name": "digits"}},
}


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_id: str
    flow: FlowConfig
    training: TrainConfig = Field(default_factory=TrainConfig)

    @field_validator("dataset_id")
    @classmethod
    def _printable_id(cls, value: str) -> str:
        return check_name(value, "dataset_id", max_length=40)


JOB_EXAMPLES = {
    "points": {
        "summary": "A C8-invariant residual flow on 2-D points",
        "description": "For a points data set such as the built-in `eight_gaussians`; put the "
        "data set's id in `dataset_id`.",
        "value": {
            "dataset_id": "ds_0123456789abcdef",
            "flow": {"family": "residual", "group": "C8", "data_shape": [2], "width": 16},
            "training": {"steps": 2000, "batch_size": 256, "learning_rate": 0.003},
        },
    },
    "images": {
        "summary": "A D4-equivariant coupling flow on 8x8 images",
        "description": "For 1-channel 8x8 images such as the built-in `digits` (a checkerboard "
        "split, since one channel cannot be split into fields).",
        "value": {
            "dataset_id": "ds_0123456789abcdef",
            "flow": {
                "family": "coupling",
                "coupling_split": "checkerboard",
                "group": "D4",
                "data_shape": [1, 8, 8],
                "width": 8,
            },
            "training": {"steps": 3000, "batch_size": 64},
        },
    },
}


class JobOut(BaseModel):
    id: str
    dataset_id: str | None
    state: JobState
    step: int
    total_steps: int
    progress: float = Field(description="Percent of steps done, 0 to 100.")
    eta_seconds: float | None = Field(
        None,
        description="Estimated seconds left while running: the steps left over the smoothed "
        "speed (`steps_per_second`), or over this attempt's mean speed until that is known.",
    )
    steps_per_second: float | None = Field(
        None,
        description="Training speed while running: an exponential moving average (time "
        "constant 20 s) of the steps per second the worker reports with each heartbeat.",
    )
    examples_per_second: float | None = Field(
        None, description="`steps_per_second` times the batch size."
    )
    live_loss: float | None = Field(
        None,
        description="While running: the mean training loss of the steps since the worker's "
        "previous heartbeat (`latest_metrics` has the loss of the last metric step).",
    )
    attempts: int
    cancel_requested: bool
    error: str | None
    latest_metrics: dict[str, float | None] | None
    flow: FlowConfig
    training: TrainConfig
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Job) -> JobOut:
        derived: dict[str, Any] = dict(
            progress=round(100.0 * min(row.step, row.total_steps) / row.total_steps, 2),
            eta_seconds=_eta_seconds(row),
            steps_per_second=_running_speed(row),
            examples_per_second=_examples_per_second(row),
            live_loss=row.live_loss if row.state == RUNNING else None,
            flow=read_stored(FlowConfig, row.flow_config),
            training=read_stored(TrainConfig, row.train_config),
        )
        # Every other field is the row's column of the same name.
        values = {name: getattr(row, name) for name in cls.model_fields if name not in derived}
        values.update(derived)
        try:
            return cls(**values)
        except ValidationError:
            # A config stored under an older schema that today's validators refuse (read_stored
            # logged which): the row still reads, as stored.
            return cls.model_construct(**values)


def _running_speed(row: Job) -> float | None:
    """The worker's smoothed steps/s, only while the job runs (None before the first rate)."""
    if row.state != RUNNING or not row.steps_per_second or row.steps_per_second <= 0:
        return None
    return round(row.steps_per_second, 4)


def _examples_per_second(row: Job) -> float | None:
    speed = _running_speed(row)
    batch_size = (row.train_config or {}).get("batch_size")
    if speed is None or not isinstance(batch_size, int):
        return None
    return round(speed * batch_size, 2)


def _eta_seconds(row: Job) -> float | None:
    if row.state != RUNNING or row.attempt_started_at is None:
        return None
    left = max(row.total_steps - row.step, 0)
    speed = _running_speed(row)
    if speed is not None:
        return round(left / speed, 1)
    done = row.step - row.attempt_start_step
    if done <= 0:
        return None
    elapsed = (utcnow() - row.attempt_started_at).total_seconds()
    return round(left * elapsed / done, 1)


class JobList(BaseModel):
    items: list[JobOut]
    total: int = Field(description="Number of the tenant's jobs matching the filters (all pages).")
    limit: int
    offset: int


class MetricPoint(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    step: int
    values: dict[str, float | None]
    created_at: datetime

    @classmethod
    def from_row(cls, row: Metric) -> MetricPoint:
        return cls.model_validate(row)


class MetricsOut(BaseModel):
    job_id: str
    items: list[MetricPoint] = Field(description="Metrics by step, ascending.")


class ModelOut(BaseModel):
    id: str = Field(description="The model's id: the id of the job that trained it.")
    job_id: str
    job_state: JobState
    checkpoint_id: str
    step: int
    final: bool = Field(description="True when training finished; else the newest checkpoint.")
    kind: DataKind
    data_shape: list[int]
    flow: FlowConfig
    training: TrainConfig | None
    metrics: dict[str, float | None]
    size_bytes: int
    sha256: str
    created_at: datetime

    @classmethod
    def from_rows(
        cls,
        job: Job,
        checkpoint: Checkpoint,
        flow: FlowConfig,
        training: TrainConfig | None,
        metrics: dict[str, float | None],
    ) -> ModelOut:
        return cls(
            id=job.id,
            job_id=job.id,
            job_state=job.state,
            checkpoint_id=checkpoint.id,
            step=checkpoint.step,
            final=checkpoint.final,
            kind=flow.data_kind,
            data_shape=list(flow.data_shape),
            flow=flow,
            training=training,
            metrics=metrics,
            size_bytes=checkpoint.size_bytes,
            sha256=checkpoint.sha256,
            created_at=checkpoint.created_at,
        )


class ModelList(BaseModel):
    items: list[ModelOut] = Field(description="Newest first; each as `GET /v1/models/{id}`.")
    total: int = Field(description="Number of the tenant's models (all pages).")
    limit: int
    offset: int


SEED_FIELD = Field(
    0,
    ge=0,
    le=2**32 - 1,
    description="Seed of the Monte-Carlo parts only: the residual log-det estimator's probes "
    "and an augmented flow's importance samples; exact scores do not depend on it.",
)


class ScoreForm(BaseModel):
    """How to score: the fields that come beside the batch (in the JSON body, in the form of
    uploaded PNG images, or as query parameters of an ``application/x-npy`` body)."""

    model_config = ConfigDict(extra="forbid")

    method: LogDetMethod = "auto"
    seed: int = SEED_FIELD


class ScoreIn(ScoreForm):
    """A batch to score, as JSON: points ``[[x, y], ...]`` or images ``[[[[...]]]]`` (B, C, H, W).

    Image values that are all integers are 8-bit levels (0-255); any number written with a
    fraction makes them intensities in [0, 1]. Levels k are scored at their bin centres
    (k + 1/2) / 256: log_prob is the model's log-density there, a deterministic midpoint
    approximation of the discrete log-probability (same image, same score; a rotated image
    scores the same under a rotation-invariant model).
    """

    inputs: list[Any] = Field(min_length=1, description="The batch: (B, D) or (B, C, H, W).")


class ScoreFilesIn(ScoreForm):
    """A batch of PNG images to score, as ``multipart/form-data``."""

    files: list[bytes] = Field(
        min_length=1,
        description="PNG images of the model's size, one item each.",
        json_schema_extra={"items": {"type": "string", "format": "binary"}},
    )


SCORE_EXAMPLES = {
    "points": {
        "summary": "Three 2-D points",
        "value": {"inputs": [[0.0, 4.0], [2.83, 2.83], [0.0, 0.0]]},
    },
    "images": {
        "summary": "One 1x2x2 image of 8-bit levels, estimated log-det",
        "description": "Integers are 8-bit levels; the image must have the model's shape.",
        "value": {"inputs": [[[[0, 255], [255, 0]]]], "method": "estimate", "seed": 1},
    },
}
NPY_SCORE_DESCRIPTION = (
    "The batch as one NumPy `.npy` file (`numpy.save`; format 1.0 or 2.0): integers (8-bit "
    "levels) or floats of shape (B, D) or (B, C, H, W), never Python objects. `method` and "
    "`seed` are the query parameters."
)
# The three ways to send a batch; the scoring route parses the body itself (by Content-Type),
# so FastAPI does not see these schemas: app.main publishes SCORE_BODY_COMPONENTS, where
# app.api.openapi bounds them like the others.
SCORE_BODY_COMPONENTS = {
    model.__name__: model.model_json_schema() for model in (ScoreIn, ScoreFilesIn)
}
# method and seed of an application/x-npy body, read by the route from the query string.
SCORE_QUERY_PARAMETERS = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "description": f"With an application/x-npy body only (JSON and forms carry {name}).",
        "schema": schema,
    }
    for name, schema in ScoreForm.model_json_schema()["properties"].items()
]
SCORE_REQUEST_BODY = {
    "required": True,
    "content": {
        JSON_MEDIA: {
            "schema": {"$ref": "#/components/schemas/ScoreIn"},
            "examples": SCORE_EXAMPLES,
        },
        "multipart/form-data": {
            "schema": {"$ref": "#/components/schemas/ScoreFilesIn"},
            "example": {"files": ["digit0.png", "digit1.png"], "method": "auto", "seed": 0},
        },
        NPY_MEDIA: {
            "schema": {"type": "string", "format": "binary", "description": NPY_SCORE_DESCRIPTION},
            "example": "(the bytes numpy.save writes for an array of shape (3, 2))",
        },
    },
}


class ScoreOut(BaseModel):
    model_id: str
    checkpoint_id: str
    step: int
    method: Literal["exact", "estimate"]
    count: int
    log_prob: list[float] = Field(description="Per-item log-likelihood (nats).")
    stderr: list[float] | None = Field(
        None,
        description="Standard error when estimated; null for exact log-densities and where it "
        "cannot be estimated (an augmented model scored with padding_eval_samples 1).",
    )
    bits_per_dim: list[float] | None = Field(None, description="Per-item bits/dim (images).")
    lower_bound: bool = Field(
        False,
        description="True for augmented flows (padding_channels > 0): log_prob is an "
        "importance-weighted lower bound on the log-likelihood (and bits_per_dim an upper "
        "bound), not its exact value.",
    )


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "required": False, "schema": {"type": "string"}}


# The rest of ScoreOut beside a .npy answer, which holds only the per-item arrays.
SCORE_NPY_HEADERS = {
    "X-Efnf-Model-Id": _header("With a .npy answer: the model's id."),
    "X-Efnf-Checkpoint-Id": _header("With a .npy answer: the checkpoint that scored."),
    "X-Efnf-Step": _header("With a .npy answer: the checkpoint's training step."),
    "X-Efnf-Method": _header("With a .npy answer: `exact` or `estimate`."),
    "X-Efnf-Lower-Bound": _header("With a .npy answer: `true` for an augmented flow's bound."),
}
SCORE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The scores as JSON; or, when `Accept` prefers `application/x-npy`, one "
        "`.npy` file of a structured array with a float64 record per item: `log_prob` and, where "
        "the JSON has them, `stderr` and `bits_per_dim` (the other fields in the headers).",
        "content": {NPY_MEDIA: {"schema": {"type": "string", "format": "binary"}}},
        "headers": SCORE_NPY_HEADERS,
    }
}


class SampleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = Field(16, ge=1, description="Number of samples.")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    temperature: float = Field(1.0, gt=0.0, le=10.0, description="Scales the base density.")
    format: Literal["json", "npy", "png"] = Field(
        "json", description="json: arrays; npy: a NumPy file; png: a grid image or a scatter."
    )
    error_bounds: bool = Field(
        False,
        description="json only: also return each sample's certified inverse error bound (the "
        "largest over the flow's iterative layers of ||x - f_k^-1(y)||_2; null without any).",
    )


SAMPLE_EXAMPLES = {
    "json": {"summary": "64 samples as JSON", "value": {"n": 64, "seed": 0}},
    "png": {
        "summary": "A picture of 256 samples at a lower temperature",
        "value": {"n": 256, "seed": 1, "temperature": 0.8, "format": "png"},
    },
}


class SamplesOut(BaseModel):
    model_id: str
    checkpoint_id: str
    step: int
    n: int
    seed: int
    temperature: float
    kind: DataKind
    shape: list[int] = Field(description="Shape of the whole array.")
    dtype: str
    samples: list[Any]
    error_bounds: list[float] | None = Field(
        None, description="Per sample, its certified inverse error bound, if asked for."
    )
