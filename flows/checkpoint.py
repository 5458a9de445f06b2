"""Checkpoints: one safetensors file, configuration and metadata as JSON in its header.

Nothing is ever unpickled. A checkpoint holds the model's state dict (``model.*``) and, when it
is meant for resuming, the optimizer's tensors (``optimizer.*``) and the random generator's state
(``rng.generator``); the flow and training configurations, the step, the metrics and the
optimizer's hyper-parameters are JSON strings in the safetensors metadata.

The state dict has the same keys in train and eval mode (our Lipschitz layers cache their filter
outside it), so a checkpoint loads into a freshly built flow in either mode and gives the same
log-densities; it holds no power-iteration state, since every layer is a pure function of its
weights (see :mod:`flows.lipschitz`).
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from flows.build import build_flow
from flows.config import FlowConfig, TrainConfig
from flows.errors import FlowError
from flows.flow import Flow

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "LoadedCheckpoint",
    "TrainingState",
    "load_flow",
    "load_flow_with_info",
    "load_model_state",
    "read_checkpoint",
    "read_checkpoint_info",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)
FORMAT = "efnf-checkpoint/1"
MAX_HEADER_BYTES = 100 * 1024 * 1024


class CheckpointError(FlowError):
    """The bytes are not a valid efnf checkpoint."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about itself, without its tensors."""

    flow_config: FlowConfig
    train_config: TrainConfig | None
    step: int
    metrics: dict[str, float]
    resumable: bool


@dataclass
class TrainingState:
    """Everything besides the model that an exact resume needs."""

    optimizer: dict[str, Any]
    generator_state: torch.Tensor
    extra: dict[str, Any] = field(default_factory=dict)


def _optimizer_tensors(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_checkpoint(
    flow: Flow,
    *,
    step: int = 0,
    metrics: dict[str, float] | None = None,
    train_config: TrainConfig | None = None,
    training_state: TrainingState | None = None,
) -> bytes:
    """Serialises ``flow`` (and optionally a resumable training state) to safetensors bytes."""
    tensors = {
        f"model.{k}": v.detach().cpu().clone().contiguous() for k, v in flow.state_dict().items()
    }
    metadata = {
        "format": FORMAT,
        "flow_config": flow.config.model_dump_json(),
        "train_config": train_config.model_dump_json() if train_config else "",
        "step": str(step),
        "metrics": json.dumps(metrics or {}),
        "training": "",
    }
    if training_state is not None:
        optimizer_tensors, optimizer_meta = _optimizer_tensors(training_state.optimizer)
        tensors.update(
            {k: v.detach().cpu().clone().contiguous() for k, v in optimizer_tensors.items()}
        )
        tensors["rng.generator"] = training_state.generator_state.cpu().clone()
        metadata["training"] = json.dumps(
            {"optimizer": optimizer_meta, "extra": training_state.extra}
        )
    return save_tensors(tensors, metadata=metadata)


def _header(blob: bytes) -> dict[str, str]:
    if len(blob) < 8:
        raise CheckpointError("checkpoint is truncated: fewer than 8 bytes")
    (size,) = struct.unpack("<Q", blob[:8])
    if size > MAX_HEADER_BYTES or 8 + size > len(blob):
        raise CheckpointError("checkpoint header is truncated or implausibly large")
    try:
        header = json.loads(blob[8 : 8 + size])
    except ValueError as error:
        raise CheckpointError(f"checkpoint header is not JSON: {error}") from None
    metadata = header.get("__metadata__") or {}
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"not an efnf checkpoint (format {metadata.get('format')!r}, expected {FORMAT!r})"
        )
    return metadata


def read_checkpoint_info(blob: bytes) -> CheckpointInfo:
    """Reads the configuration, step and metrics of a checkpoint without loading tensors."""
    return _info(_header(blob))


def _info(metadata: dict[str, str]) -> CheckpointInfo:
    train_json = metadata.get("train_config", "")
    return CheckpointInfo(
        flow_config=FlowConfig.model_validate_json(metadata["flow_config"]),
        train_config=TrainConfig.model_validate_json(train_json) if train_json else None,
        step=int(metadata.get("step", "0")),
        metrics=json.loads(metadata.get("metrics", "{}")),
        resumable=bool(metadata.get("training")),
    )


def read_checkpoint(
    blob: bytes,
) -> tuple[CheckpointInfo, dict[str, torch.Tensor], TrainingState | None]:
    """Reads a checkpoint: its info, the model state dict and (if saved) the training state."""
    metadata = _header(blob)
    info = _info(metadata)
    try:
        tensors = load_tensors(blob)
    except Exception as error:  # safetensors raises its own error types for corrupt payloads
        raise CheckpointError(f"checkpoint tensors cannot be read: {error}") from None
    model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    training = metadata.get("training", "")
    if not training:
        return info, model, None
    meta = json.loads(training)
    optimizer_meta = meta["optimizer"]
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, scalars in optimizer_meta["scalars"].items():
        state.setdefault(int(index), {}).update(scalars)
    optimizer = {"state": state, "param_groups": optimizer_meta["param_groups"]}
    return info, model, TrainingState(optimizer, tensors["rng.generator"], meta.get("extra", {}))


def _checkpoint_dtype(model_state: dict[str, torch.Tensor]) -> torch.dtype:
    for tensor in model_state.values():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()


def load_model_state(flow: Flow, model_state: dict[str, torch.Tensor]) -> None:
    """Loads a checkpoint's model state into ``flow`` (strict), accepting legacy keys.

    Checkpoints written before the Lipschitz bounds were certified hold a power-iteration
    vector ``*.u`` per Lipschitz layer; it is dropped (with a warning), and such a model now
    computes the certified function, which differs slightly from the one it was trained as.

    Raises:
        CheckpointError: the weights do not fit the flow.
    """
    expected = flow.state_dict().keys()
    legacy = [k for k in model_state if k.endswith(".u") and k not in expected]
    if legacy:
        logger.warning(
            "checkpoint holds %d legacy power-iteration vectors; they are ignored and the "
            "layers are rescaled by their certified norms",
            len(legacy),
        )
        model_state = {k: v for k, v in model_state.items() if k not in legacy}
    try:
        flow.load_state_dict(model_state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"checkpoint weights do not fit its configuration: {error}"
        ) from None


class LoadedCheckpoint(NamedTuple):
    """A checkpoint's flow, ready to use, and what the checkpoint says about itself."""

    flow: Flow
    info: CheckpointInfo


def load_flow(
    blob: bytes, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> Flow:
    """Builds the checkpoint's flow and loads its weights; eval mode, on ``device``.

    The flow computes exactly the function the run computed when the checkpoint was taken
    (mid-training ones included): every layer is a pure function of the stored weights.

    Arguments:
        blob: the checkpoint's bytes.
        device: where to put the flow.
        dtype: the flow's floating dtype; None keeps the checkpoint's own (float32 or float64).

    Raises:
        CheckpointError: the bytes are not a checkpoint, its weights do not fit its
            configuration, or a Lipschitz layer's certified norm exceeds ``lipschitz_coeff``
            (audited from the weights alone, never from stored state).
    """
    return load_flow_with_info(blob, device, dtype).flow


def load_flow_with_info(
    blob: bytes, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> LoadedCheckpoint:
    """:func:`load_flow` and the checkpoint's :class:`CheckpointInfo`, from one read of its
    header (a loader that needs both need not parse the header again)."""
    info, model_state, _ = read_checkpoint(blob)
    flow = build_flow(info.flow_config).to(_checkpoint_dtype(model_state))
    load_model_state(flow, model_state)
    flow.eval()
    audit = flow.audit_lipschitz()
    if not audit.holds:
        raise CheckpointError(
            f"checkpoint's Lipschitz layers have certified norm {audit.certified:.8g} above "
            f"lipschitz_coeff {audit.coeff}"
        )
    if dtype is not None:
        flow = flow.to(dtype)
    return LoadedCheckpoint(flow.to(device), info)
