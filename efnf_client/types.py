"""The shapes of the server's JSON answers, as ``TypedDict``s (documentation and type checking;
nothing is validated at run time, so a newer server's extra fields pass through)."""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np


class Dataset(TypedDict):
    id: str
    name: str
    kind: str  # "images" or "points"
    shape: list[int]
    count: int
    dtype: str
    checksum: str
    size_bytes: int
    source: str
    source_params: dict[str, Any]
    created_at: str


class Job(TypedDict):
    id: str
    dataset_id: str | None
    state: str  # queued, running, succeeded, failed, cancelled
    step: int
    total_steps: int
    progress: float
    eta_seconds: float | None
    steps_per_second: float | None
    examples_per_second: float | None
    live_loss: float | None
    attempts: int
    cancel_requested: bool
    error: str | None
    latest_metrics: dict[str, float | None] | None
    flow: dict[str, Any]
    training: dict[str, Any]
    worker: str | None
    created_at: str
    started_at: str | None
    heartbeat_at: str | None
    finished_at: str | None


class MetricPoint(TypedDict):
    step: int
    values: dict[str, float | None]
    created_at: str


class MetricsPage(TypedDict):
    job_id: str
    items: list[MetricPoint]


class Model(TypedDict):
    id: str
    job_id: str
    job_state: str
    checkpoint_id: str
    step: int
    final: bool
    kind: str
    data_shape: list[int]
    flow: dict[str, Any]
    training: dict[str, Any] | None
    metrics: dict[str, float | None]
    size_bytes: int
    sha256: str
    created_at: str


class Scores(TypedDict):
    model_id: str
    checkpoint_id: str
    step: int
    method: str
    count: int
    log_prob: list[float]
    stderr: list[float] | None
    bits_per_dim: list[float] | None
    lower_bound: bool


class ScoreArrays(TypedDict):
    """A scoring answer sent as ``.npy`` (``Client.score_array``): the per-item arrays as
    NumPy float64 arrays (None where the JSON answer has null), the rest from its headers."""

    model_id: str
    checkpoint_id: str
    step: int
    method: str
    count: int
    log_prob: np.ndarray
    stderr: np.ndarray | None
    bits_per_dim: np.ndarray | None
    lower_bound: bool


class Samples(TypedDict):
    model_id: str
    checkpoint_id: str
    step: int
    n: int
    seed: int
    temperature: float
    kind: str
    shape: list[int]
    dtype: str
    samples: list[Any]


class DatasetPage(TypedDict):
    items: list[Dataset]
    total: int
    limit: int
    offset: int


class JobPage(TypedDict):
    items: list[Job]
    total: int
    limit: int
    offset: int


class ModelPage(TypedDict):
    items: list[Model]
    total: int
    limit: int
    offset: int
