r"""This service's limits on the memory and time one request may claim, checked up front.

A job is checked before its row is written or its message queued, a scoring or sampling request
before the model runs. Two kinds of limits, each an ``EFNF_*`` setting named in the error:

- per field: a table of dotted config paths and the setting that bounds each one, so a new
  config field with a limit costs one line (``JOB_FIELD_LIMITS``);
- per estimate: the cost model of :mod:`flows.cost` (expanded weights, activations of a training
  step, feature values computed by the run, by a scoring batch or by sampling), which bounds
  combinations that each field alone allows (a wide, deep model on a large batch).

The policy knows nothing of HTTP: it returns :class:`Violation`\ s (the field at fault and a
message naming the setting), and the ``check_*`` helpers raise them as :class:`LimitExceeded`,
which ``app.api.errors`` answers (422, or 413 for the storage quota) with every violation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.core.settings import Settings
from flows.config import FlowConfig, TrainConfig
from flows.cost import (
    expanded_weights,
    forward_activations,
    inverse_work,
    scoring_work,
    training_method,
    training_step_bytes,
    training_work,
)


@dataclass(frozen=True)
class Violation:
    """One limit a request breaks: the dotted ``field`` at fault and a message that names the
    value, the limit and its ``EFNF_*`` setting."""

    field: str
    message: str


class LimitExceeded(Exception):
    """A request over this service's limits: every violation, the first one the headline."""

    def __init__(self, violations: Sequence[Violation], status_code: int = 422) -> None:
        if not violations:
            raise ValueError("LimitExceeded needs at least one violation")
        super().__init__(violations[0].message)
        self.violations = list(violations)
        self.status_code = status_code


@dataclass(frozen=True)
class FieldLimit:
    """``path`` (dotted, in the job body) may be at most the value of setting ``setting``."""

    path: str
    setting: str


JOB_FIELD_LIMITS = (
    FieldLimit("training.steps", "max_steps"),
    FieldLimit("training.batch_size", "max_batch_size"),
    FieldLimit("flow.width", "max_width"),
    FieldLimit("flow.depth", "max_depth"),
    FieldLimit("flow.hidden_layers", "max_hidden_layers"),
    FieldLimit("flow.kernel_size", "max_kernel_size"),
    FieldLimit("flow.exact_max_dim", "max_exact_dim"),
    FieldLimit("flow.estimator.eval_probes", "max_eval_probes"),
    FieldLimit("flow.inverse_max_iter", "max_inverse_iterations"),
)


@dataclass(frozen=True)
class SchemaLimit:
    """In the OpenAPI component ``schema``, the property at dotted ``path`` gets ``keyword``
    (``maximum`` or ``maxItems``) at most the value of setting ``setting``, so that the
    published bounds are the ones the server enforces (see ``app.api.openapi``)."""

    schema: str
    path: str
    setting: str
    keyword: str = "maximum"


# Every per-field limit a request is refused above; the routes check the last four themselves.
SCHEMA_LIMITS = (
    *(SchemaLimit("JobIn", limit.path, limit.setting) for limit in JOB_FIELD_LIMITS),
    SchemaLimit("BuiltinDatasetIn", "n", "max_builtin_items"),
    SchemaLimit("SampleIn", "n", "max_samples"),
    SchemaLimit("ScoreIn", "inputs", "max_score_items", "maxItems"),
    SchemaLimit("ScoreFilesIn", "files", "max_score_items", "maxItems"),
)


def variable(setting: str) -> str:
    """The environment variable of a setting: ``max_width`` -> ``EFNF_MAX_WIDTH``."""
    return f"EFNF_{setting.upper()}"


def _at(body: dict[str, Any], path: str) -> Any:
    value: Any = body
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def _above(subject: str, value: float, settings: Settings, setting: str) -> str:
    """``{subject} {value} is above this service's limit {limit} (EFNF_...)``."""
    limit = getattr(settings, setting)
    return (
        f"{subject} {_number(value)} is above this service's limit {_number(limit)} "
        f"({variable(setting)})"
    )


def _over(field: str, what: str, value: float, settings: Settings, setting: str) -> Violation:
    return Violation(field, _above(f"{field}: {what}", value, settings, setting))


def job_limit_errors(
    flow: FlowConfig, training: TrainConfig, settings: Settings
) -> list[Violation]:
    """Every limit a job's configs break, field limits first, then the cost estimates."""
    body = {"flow": flow.model_dump(), "training": training.model_dump()}
    errors = []
    for limit in JOB_FIELD_LIMITS:
        value = _at(body, limit.path)
        if isinstance(value, int | float) and value > getattr(settings, limit.setting):
            message = _above(limit.path, value, settings, limit.setting)
            errors.append(Violation(limit.path, message))
    if training.device == "cuda" and not settings.worker_cuda:
        errors.append(
            Violation(
                "training.device",
                "training.device 'cuda': this service's workers have no CUDA device "
                "(EFNF_WORKER_CUDA is off); use 'auto' or 'cpu'",
            )
        )
    if errors:
        return errors
    try:
        training_method(flow, training)
    except ValueError:
        dim = flow.latent_dim
        errors.append(
            Violation(
                "training.logdet",
                f"training.logdet {training.logdet!r} trains with the exact log-det "
                f"here, which needs a {dim}x{dim} Jacobian per item, above "
                f"flow.exact_max_dim {flow.exact_max_dim}; use 'estimate' or raise exact_max_dim",
            )
        )
        return errors
    metric_points = math.ceil(training.steps / training.metric_interval)
    if metric_points > settings.max_metric_points:
        errors.append(
            _over(
                "training.metric_interval",
                "steps / metric_interval (metric rows and validation passes)",
                metric_points,
                settings,
                "max_metric_points",
            )
        )
    checkpoints = math.ceil(training.steps / training.checkpoint_interval)
    if checkpoints > settings.max_checkpoint_writes:
        errors.append(
            _over(
                "training.checkpoint_interval",
                "steps / checkpoint_interval (checkpoints written)",
                checkpoints,
                settings,
                "max_checkpoint_writes",
            )
        )
    weights = expanded_weights(flow)
    if weights > settings.max_weights:
        errors.append(
            _over(
                "flow",
                "the estimated expanded weights (from width, depth, hidden_layers, kernel_size "
                "and the group)",
                weights,
                settings,
                "max_weights",
            )
        )
    activations = forward_activations(flow, training.batch_size)
    if activations > settings.max_step_activations:
        errors.append(
            _over(
                "training.batch_size",
                "the estimated activations of one training step (batch_size x model size)",
                activations,
                settings,
                "max_step_activations",
            )
        )
    step_bytes = training_step_bytes(flow, training)
    if step_bytes > settings.max_job_memory_bytes:
        errors.append(
            _over(
                "training.batch_size",
                "the estimated memory in bytes of one training step (batch_size x model size, "
                "with the log-det's graph)",
                step_bytes,
                settings,
                "max_job_memory_bytes",
            )
        )
    work = training_work(flow, training)
    if work > settings.max_training_work:
        errors.append(
            _over(
                "training.steps",
                "the estimated work of the run (steps x log-det passes x activations)",
                work,
                settings,
                "max_training_work",
            )
        )
    return errors


def storage_violation(
    used: int, adding: int, field: str, what: str, settings: Settings
) -> Violation | None:
    """Storing ``adding`` more bytes for a tenant that already stores ``used``, if over quota."""
    quota = settings.max_tenant_storage_bytes
    if used + adding <= quota:
        return None
    return Violation(
        field,
        f"{field}: {what} would bring this tenant's storage to {used + adding} bytes "
        f"({used} stored now), above its quota {quota} (EFNF_MAX_TENANT_STORAGE_BYTES); "
        "delete data sets or models first",
    )


def check_storage_quota(used: int, adding: int, field: str, what: str, settings: Settings) -> None:
    """Refuses (413) storing ``adding`` more bytes for a tenant that already stores ``used``."""
    violation = storage_violation(used, adding, field, what, settings)
    if violation is not None:
        raise LimitExceeded([violation], status_code=413)


def score_request_violations(
    flow: FlowConfig, count: int, method: str, field: str, settings: Settings
) -> list[Violation]:
    """A scoring request the model cannot serve exactly, or over the work limit."""
    try:
        resolved = flow.resolve_logdet_method(method)
    except ValueError as error:
        return [Violation("method", str(error))]
    work = scoring_work(flow, count, resolved)
    if work <= settings.max_score_work:
        return []
    return [
        Violation(
            field,
            f"{field}: scoring {count} items with method {resolved!r} is estimated at "
            f"{work:.4g} feature values, above this service's limit "
            f"{settings.max_score_work:.4g} (EFNF_MAX_SCORE_WORK); send fewer items",
        )
    ]


def check_score_request(
    flow: FlowConfig, count: int, method: str, field: str, settings: Settings
) -> None:
    """Refuses (422) a scoring request the model cannot serve exactly or within the work limit."""
    violations = score_request_violations(flow, count, method, field, settings)
    if violations:
        raise LimitExceeded(violations)


def sample_request_violations(flow: FlowConfig, n: int, settings: Settings) -> list[Violation]:
    """A sampling request whose output or inversion work is over the limits."""
    violations = []
    values = n * flow.dim
    if values > settings.max_sample_values:
        violations.append(
            Violation(
                "n",
                f"n {n}: {n} samples of {flow.dim} values are {values} numbers, above this "
                f"service's limit {settings.max_sample_values} (EFNF_MAX_SAMPLE_VALUES)",
            )
        )
    work = inverse_work(flow, n)
    if work > settings.max_sample_work:
        violations.append(
            Violation(
                "n",
                f"n {n}: inverting {n} samples of this model (up to {flow.inverse_max_iter} "
                f"iterations) is estimated at {work:.4g} feature values, above this service's "
                f"limit {settings.max_sample_work:.4g} (EFNF_MAX_SAMPLE_WORK); ask for fewer "
                "samples",
            )
        )
    return violations


def check_sample_request(flow: FlowConfig, n: int, settings: Settings) -> None:
    """Refuses (422) a sampling request whose output or inversion work is over the limits."""
    violations = sample_request_violations(flow, n, settings)
    if violations:
        raise LimitExceeded(violations)
