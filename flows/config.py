"""The one schema for a flow and for its training run.

The API takes these models verbatim, the worker reads them from the job row, and the library
builds from them; invalid combinations are rejected here with a message naming the field.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any, Literal, NamedTuple, TypeVar, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from flows.data.dataset import IMAGES, POINTS, DataKind
from flows.errors import InputError

logger = logging.getLogger(__name__)

FINITE_GROUP_PATTERN = re.compile(r"^(C|D)([1-9][0-9]*)$")
BlockKind = Literal["residual", "coupling", "iaf", "linear", "nsf", "spline"]
Family = Literal["residual", "coupling", "iaf", "linear", "nsf", "mixed", "polar"]
FAMILIES: tuple[str, ...] = get_args(Family)
# Block kinds that transform pixels elementwise with splines: images only.
IMAGE_ONLY_BLOCKS = ("nsf", "spline")
# The logit alpha of the nsf family when a config leaves it out (see FlowConfig.logit_alpha).
NSF_LOGIT_ALPHA = 1e-6
CONTINUOUS_GROUPS = ("SO2", "O2")
MAX_DISCRETE_ORDER = 16
LEGACY_TRAIN_KEYS = frozenset({"lipschitz_refresh_iters"})


class PlannedBlock(NamedTuple):
    """One block of a flow's stack: its kind (a :data:`BlockKind`, or ``polar``) and its index
    among the blocks of that kind."""

    kind: str
    index: int


def parse_group(name: str) -> tuple[str, int]:
    """Splits a group name into (kind, order): ``"C4"`` -> ("C", 4), ``"SO2"`` -> ("SO2", -1).

    Raises:
        ValueError: the name is not ``trivial``, ``C<N>``, ``D<N>``, ``SO2`` or ``O2``.
    """
    if name == "trivial":
        return "trivial", 1
    if name in CONTINUOUS_GROUPS:
        return name, -1
    match = FINITE_GROUP_PATTERN.match(name)
    if match is None:
        raise ValueError(
            f"group {name!r} is not supported; use 'trivial', 'C<N>' or 'D<N>' "
            f"(N from 1 to {MAX_DISCRETE_ORDER}), 'SO2' or 'O2'"
        )
    kind, order = match.group(1), int(match.group(2))
    if order > MAX_DISCRETE_ORDER:
        raise ValueError(
            f"group {name!r} has order {order}; at most {MAX_DISCRETE_ORDER} is supported"
        )
    if kind == "C" and order == 1:
        return "trivial", 1
    return kind, order


def polar_symmetry(group_kind: str, order: int) -> tuple[str, int]:
    """(angular map kind, N): ``"circular"`` (C_N, trivial = C_1), ``"reflected"`` (D_N) or
    ``"none"`` (SO2, O2: no angular map and no angular condition)."""
    if group_kind == "trivial":
        return "circular", 1
    if group_kind == "C":
        return "circular", order
    if group_kind == "D":
        return "reflected", order
    return "none", 0


class LogDetEstimatorConfig(BaseModel):
    """The unbiased Russian-roulette power-series estimator of log det(I + J_g).

    ``n_terms = n_exact_terms + N`` with ``N ~ Geometric(geometric_p)`` on {0, 1, ...}; term k is
    weighted by 1 / P(n_terms >= k), which makes the truncated series unbiased.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    n_exact_terms: int = Field(2, ge=1, le=50, description="Terms always evaluated (training).")
    eval_exact_terms: int = Field(
        10, ge=1, le=100, description="Terms always evaluated when estimating at evaluation time."
    )
    geometric_p: float = Field(0.5, gt=0.0, lt=1.0, description="Roulette stopping probability.")
    eval_probes: int = Field(
        16,
        ge=2,
        le=1024,
        description="Hutchinson probes per item when estimating with a std error.",
    )


class FlowConfig(BaseModel):
    """Architecture of an equivariant finite normalizing flow.

    ``data_shape`` is ``[D]`` for points (``[2]`` for every group other than ``trivial``, where
    the group acts by 2x2 rotation/reflection matrices) or ``[C, H, W]`` for images (each channel
    a scalar field; the group moves pixels).

    Families (``depth`` blocks each, an ActNorm before every block and after the last):

    - ``residual``: G-residual blocks y = x + g(x), Lip(g) <= ``lipschitz_coeff``.
    - ``coupling``: G-affine coupling, y_b = x_b * exp(s(x_a)) + t(x_a), alternating halves.
      With ``coupling_split="fields"`` the halves are sets of fields (exactly equivariant; needs
      two or more permutation fields: channels of an image, or coordinates of trivial points);
      ``"checkerboard"`` is the paper's "soft" variant (G-convolutions inside an ordinary
      checkerboard coupling), which is not exactly invariant under 90-degree rotations.
    - ``iaf``: G-inverse autoregressive flow over ``iaf_blocks`` equal blocks of fields.
    - ``linear``: convolution exponential of a steerable convolution, then an invertible mixing
      of the fields of the same type where there are two or more.
    - ``nsf`` (G-NSF, images): rational-quadratic spline coupling with ``spline_bins`` bins on
      ``[-spline_bound, spline_bound]``; the pixels are split by a mask that is a union of orbits
      of the grid's symmetry group, alternating between blocks, and an equivariant steerable CNN
      gives every transformed pixel its spline as scalar fields (exactly equivariant, any number
      of channels). The default family for images.
    - ``mixed``: ``blocks`` (e.g. ``["linear", "coupling"]``) repeated ``depth`` times; besides
      the families' blocks, ``"spline"`` is an elementwise spline per channel shared by all
      pixels (images).
    - ``polar`` (2-D points only): an invariant scale, then spline couplings of the angle and
      the log-radius (:mod:`flows.layers.polar`): a circular spline of period 2 pi / N on the
      angle conditioned on the radius, and an interval spline on the log-radius conditioned on
      invariant harmonics of the angle. Not limited to residual blocks' Lipschitz bound; the
      default family for data_shape [2].

    Left out, ``family`` is ``polar`` for data_shape [2] without padding channels, ``nsf`` for
    images with a side of at least 3 pixels, and ``residual`` otherwise; a config that names its
    family means it whatever the default.

    ``padding_channels`` > 0 makes it an *augmented* flow (Theorem 3): the data is padded with
    that many channels on which the group acts trivially (scalar fields of an image, invariant
    coordinates of a point), drawn from a learnt G-equivariant Gaussian q(pad | x); the
    likelihood it reports is then a lower bound (importance weighted at evaluation).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    family: Family = Field(
        None,  # type: ignore[assignment]  # filled in by _default_family before validation
        description="Flow family (see the schema's description). Default: 'polar' for 2-D "
        "points without padding channels, 'nsf' for images with a side of at least 3 pixels, "
        "'residual' otherwise.",
        # The default depends on the data, so the schema states none (null is not a family).
        json_schema_extra=lambda schema: schema.pop("default", None),
    )
    blocks: list[BlockKind] | None = Field(
        None,
        min_length=1,
        max_length=8,
        description="family 'mixed' only: the block pattern repeated depth times.",
    )
    group: str = Field("C4", description="trivial, C<N>, D<N>, SO2 or O2.")
    data_shape: list[int] = Field(..., min_length=1, max_length=3)
    depth: int = Field(4, ge=1, le=64, description="Number of flow blocks (pattern repeats).")
    width: int = Field(
        8,
        ge=1,
        le=512,
        description="Hidden fields per layer: regular fields for finite groups, copies of the "
        "band-limited irreps 0..max_frequency for SO2/O2, channels for trivial.",
    )
    hidden_layers: int = Field(2, ge=1, le=8, description="Hidden layers of each sub-network.")
    kernel_size: int = Field(3, ge=1, le=9, description="Convolution kernel size (images).")
    lipschitz_coeff: float = Field(
        0.97,
        gt=0.0,
        lt=1.0,
        description="Certified bound c < 1 on each layer's operator norm (residual branches, "
        "and the convolution that linear flows exponentiate): exact norms for point layers, 1x1 "
        "and small convolutions, a circulant upper bound for large convolutions.",
    )
    activation: Literal["lipswish", "elu"] = Field(
        "lipswish", description="Pointwise 1-Lipschitz nonlinearity (finite groups, trivial)."
    )
    max_frequency: int = Field(
        2,
        ge=1,
        le=8,
        description="Irrep band limit for SO2/O2; polar: the radial conditioner sees the angle's "
        "invariant harmonics k N theta for k = 1..max_frequency.",
    )
    spline_bins: int = Field(
        8, ge=2, le=64, description="polar, nsf and spline blocks: bins of every spline."
    )
    actnorm: bool = Field(True, description="Equivariant ActNorm before every block.")
    logit_alpha: float | None = Field(
        0.05,
        ge=0.0,
        lt=0.5,
        description="Logit transform for images (None: identity). Left out: 1e-6 for family "
        "'nsf' (its splines use the full range of logit values; 0.05 costs ~0.3 bpd on digits), "
        "0.05 otherwise.",
    )
    coupling_split: Literal["fields", "checkerboard"] = Field(
        "fields",
        description="coupling: split along fields (exact) or a checkerboard (soft, images).",
    )
    scale_bound: float = Field(
        2.0,
        gt=0.0,
        le=10.0,
        description="coupling/iaf log-scales are bound * tanh(raw / bound), for stability.",
    )
    spline_head_kernel: int = Field(
        1,
        ge=1,
        le=9,
        description="nsf: kernel size of the conditioner's last layer, which reads the splines "
        "off the hidden fields (1: per pixel, the cheapest; 3 is ~0.15 bpd better on digits "
        "at ~2x the time).",
    )
    spline_bound: float = Field(
        4.0,
        gt=0.0,
        le=100.0,
        description="nsf/spline: splines act on [-bound, bound], identity tails outside.",
    )
    iaf_blocks: int | None = Field(
        None, ge=2, le=64, description="iaf: number of equal blocks of fields (default: one each)."
    )
    iaf_fast: Literal["sampling", "density"] = Field(
        "sampling",
        description="iaf: the direction that takes one network pass per layer. 'sampling' (IAF):"
        " sampling is parallel and log-density needs iaf_blocks sequential passes; 'density' "
        "(MAF): the other way round.",
    )
    padding_channels: int = Field(
        0, ge=0, le=64, description="Augmented flow: trivially acted padding channels (0: none)."
    )
    padding_eval_samples: int = Field(
        8,
        ge=1,
        le=256,
        description="Augmented flow: importance samples of the padding when scoring (with 1 "
        "the standard error of a score cannot be estimated and is not reported).",
    )
    exact_max_dim: int = Field(
        256,
        ge=1,
        le=16384,
        description="Largest (padded) dimension for the exact (Jacobian) log-det of residual "
        "blocks; other families' log-dets are always exact.",
    )
    estimator: LogDetEstimatorConfig = Field(default_factory=LogDetEstimatorConfig)
    inverse_atol: float = Field(
        1e-5,
        gt=0.0,
        le=1e-1,
        description="Residual-block inverse: absolute part of the tolerance on the certified "
        "bound of each item's error ||x - f^-1(y)||_2.",
    )
    inverse_rtol: float = Field(
        1e-6,
        ge=0.0,
        le=1e-1,
        description="Residual-block inverse: relative part of that tolerance, times ||y||_2 "
        "(raised to the float resolution of the model's dtype where that is larger).",
    )
    inverse_max_iter: int = Field(500, ge=1, le=100000)

    @model_validator(mode="before")
    @classmethod
    def _default_family(cls, values: object) -> object:
        if isinstance(values, dict) and values.get("family") is None:
            points_2d = list(values.get("data_shape") or []) == [2]
            unpadded = not values.get("padding_channels")
            shape = list(values.get("data_shape") or [])
            image = len(shape) == 3 and max(shape[1:]) >= 3
            family = "polar" if points_2d and unpadded else "nsf" if image else "residual"
            values = {**values, "family": family}
        if isinstance(values, dict) and values["family"] == "nsf" and "logit_alpha" not in values:
            values = {**values, "logit_alpha": NSF_LOGIT_ALPHA}
        return values

    @field_validator("group")
    @classmethod
    def _known_group(cls, value: str) -> str:
        parse_group(value)
        return value

    @field_validator("data_shape")
    @classmethod
    def _positive_shape(cls, value: list[int]) -> list[int]:
        if any(size < 1 for size in value):
            raise ValueError(f"data_shape {value} has a non-positive size")
        if len(value) == 2:
            raise ValueError(
                f"data_shape {value} has rank 2; use [D] for points or [C, H, W] for images"
            )
        return value

    @model_validator(mode="after")
    def _group_acts_on_data(self) -> FlowConfig:
        kind, _ = parse_group(self.group)
        if self.is_points:
            if kind != "trivial" and self.data_shape != [2]:
                raise ValueError(
                    f"data_shape {self.data_shape}: group {self.group} acts on 2-D points only; "
                    "use data_shape [2] or group 'trivial'"
                )
        else:
            _, height, width = self.data_shape
            rotates_by_quarter = kind in ("SO2", "O2") or (
                kind in ("C", "D") and self.group_order % 4 == 0
            )
            if rotates_by_quarter and height != width:
                raise ValueError(
                    f"data_shape {self.data_shape}: group {self.group} contains 90-degree "
                    "rotations, which need square images (H == W)"
                )
            if self.spline_head_kernel % 2 == 0:
                raise ValueError(
                    f"spline_head_kernel {self.spline_head_kernel} is even; an odd size keeps "
                    "the grid centred"
                )
            if self.kernel_size % 2 == 0:
                raise ValueError(
                    f"kernel_size {self.kernel_size} is even; an odd size keeps the grid centred"
                )
        self._check_family()
        return self

    def _check_family(self) -> None:
        if self.family == "polar" and (self.data_shape != [2] or self.is_augmented):
            raise ValueError(
                f"family 'polar' models 2-D points: data_shape {self.data_shape} with "
                f"padding_channels {self.padding_channels}; use data_shape [2] and no padding"
            )
        if (self.family == "mixed") != (self.blocks is not None):
            raise ValueError(
                "blocks: give a block pattern exactly when family is 'mixed' "
                f"(family {self.family!r}, blocks {self.blocks})"
            )
        kinds = set(self.block_pattern)
        image_only = sorted(kinds & set(IMAGE_ONLY_BLOCKS))
        if image_only and self.is_points:
            raise ValueError(
                f"blocks {image_only} transform pixels of images; data_shape {self.data_shape} "
                "describes points: use family 'residual', 'linear' or (group 'trivial') 'coupling'"
            )
        if "nsf" in kinds and not self.is_points and max(self.data_shape[1:]) < 3:
            raise ValueError(
                f"data_shape {self.data_shape}: family 'nsf' splits the pixels into two unions "
                "of symmetry orbits, which needs a side of at least 3 pixels"
            )
        if kinds & {"coupling", "iaf"}:
            self._check_split_family(sorted(kinds & {"coupling", "iaf"}))
        if "iaf" in kinds:
            blocks = self.iaf_block_count
            if self.n_fields % blocks:
                raise ValueError(
                    f"iaf_blocks {blocks} does not divide the {self.n_fields} fields "
                    f"({self._fields_description()})"
                )

    def _fields_description(self) -> str:
        if self.is_points:
            data = "1 point" if self.group_kind != "trivial" else f"{self.dim} coordinates"
        else:
            data = f"{self.data_shape[0]} channels"
        return f"{data} + padding_channels {self.padding_channels}"

    def _check_split_family(self, kinds: list[str]) -> None:
        names = " and ".join(repr(kind) for kind in kinds)
        if self.is_points and self.group_kind != "trivial":
            raise ValueError(
                f"family {names} transforms fields of a permutation representation "
                "elementwise; 2-D points under group "
                f"{self.group} form one field of the rotation (standard) representation, which "
                "is not one: use group 'trivial', or family 'residual' or 'linear'"
            )
        checkerboard = "coupling" in kinds and self.coupling_split == "checkerboard"
        if checkerboard and self.is_points:
            raise ValueError(
                "coupling_split 'checkerboard' needs images; points use coupling_split 'fields'"
            )
        needs_fields = "iaf" in kinds or ("coupling" in kinds and self.coupling_split == "fields")
        if needs_fields and self.n_fields < 2:
            raise ValueError(
                f"data_shape {self.data_shape} has 1 field; family {names} splits the fields "
                "into parts, so it needs at least 2: set padding_channels >= 1 (an augmented "
                "flow, scored by a lower bound), or for coupling use coupling_split "
                "'checkerboard' (not exactly invariant)"
            )

    @property
    def block_pattern(self) -> list[str]:
        """The kinds of block one step of depth adds, in order."""
        return list(self.blocks) if self.blocks is not None else [self.family]

    @property
    def n_fields(self) -> int:
        """Fields of the (padded) data: channels of an image, or point fields plus padding."""
        if self.is_points:
            data_fields = 1 if self.group_kind != "trivial" else self.data_shape[0]
        else:
            data_fields = self.data_shape[0]
        return data_fields + self.padding_channels

    @property
    def iaf_block_count(self) -> int:
        return self.iaf_blocks if self.iaf_blocks is not None else self.n_fields

    @property
    def block_plan(self) -> list[PlannedBlock]:
        """Every block of the stack, data side first, with its index among the blocks of its
        kind (odd indices swap coupling halves, reverse autoregressive orders and flip mask
        parities). :func:`flows.build.build_flow` builds this plan; :mod:`flows.cost` prices it.

        >>> config = FlowConfig(family="mixed", blocks=["linear", "coupling"], group="C4",
        ...                     data_shape=[2, 4, 4], depth=2)
        >>> [(block.kind, block.index) for block in config.block_plan]
        [('linear', 0), ('coupling', 0), ('linear', 1), ('coupling', 1)]
        """
        counts: dict[str, int] = {}
        plan = []
        for _ in range(self.depth):
            for kind in self.block_pattern:
                plan.append(PlannedBlock(kind, counts.get(kind, 0)))
                counts[kind] = counts.get(kind, 0) + 1
        return plan

    def coupling_fields(self, index: int) -> tuple[list[int], list[int]]:
        """(kept, transformed) fields of the ``index``-th field-split coupling block: every
        other field, the two halves swapped from one coupling block to the next."""
        fields = range(self.n_fields)
        kept = [f for f in fields if f % 2 != index % 2]
        transformed = [f for f in fields if f % 2 == index % 2]
        return kept, transformed

    @property
    def latent_shape(self) -> list[int]:
        """The shape the bijection acts on: the data's, with the padding channels appended."""
        return [self.data_shape[0] + self.padding_channels, *self.data_shape[1:]]

    @property
    def latent_dim(self) -> int:
        return math.prod(self.latent_shape)

    @property
    def is_augmented(self) -> bool:
        return self.padding_channels > 0

    @property
    def has_residual_blocks(self) -> bool:
        """Only residual blocks have a log-det that may be estimated; others are analytic."""
        return "residual" in self.block_pattern

    def resolve_logdet_method(self, method: str) -> str:
        """The log-det method a flow of this config uses when asked for ``method``.

        ``auto`` is exact up to ``exact_max_dim`` (padded) dimensions and estimated above; a
        flow without residual blocks has analytic log-dets only, so every method is exact.

        Raises:
            ValueError: an unknown method, or ``exact`` above ``exact_max_dim``.
        """
        if method not in ("auto", "exact", "estimate"):
            raise ValueError(f"method {method!r} is not one of 'auto', 'exact', 'estimate'")
        dim = self.latent_dim
        if not self.has_residual_blocks:
            return "exact"
        if method == "auto":
            return "exact" if dim <= self.exact_max_dim else "estimate"
        if method == "exact" and dim > self.exact_max_dim:
            raise ValueError(
                f"method 'exact' needs a {dim}x{dim} Jacobian per item, above this model's "
                f"exact_max_dim {self.exact_max_dim}; use 'estimate' or 'auto'"
            )
        return method

    def training_logdet_method(self, logdet: str) -> str:
        """The log-det method training uses for ``TrainConfig.logdet``: ``auto`` trains points
        exactly and images with the unbiased estimator (where there are residual blocks)."""
        if logdet == "auto" and self.has_residual_blocks:
            return self.resolve_logdet_method("exact" if self.is_points else "estimate")
        return self.resolve_logdet_method(logdet)

    @property
    def is_points(self) -> bool:
        return len(self.data_shape) == 1

    @property
    def data_kind(self) -> DataKind:
        """The kind of data this flow models: ``points`` for a ``(D,)`` shape, else ``images``."""
        return POINTS if self.is_points else IMAGES

    @property
    def dim(self) -> int:
        size = 1
        for extent in self.data_shape:
            size *= extent
        return size

    @property
    def group_kind(self) -> str:
        return parse_group(self.group)[0]

    @property
    def group_order(self) -> int:
        return parse_group(self.group)[1]


class TrainConfig(BaseModel):
    """A training run: optimisation, logging and checkpointing."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    steps: int = Field(1000, ge=1, le=10_000_000)
    batch_size: int = Field(64, ge=1, le=65536)
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    warmup_steps: int = Field(0, ge=0, description="Linear learning-rate warm-up.")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="After the warm-up: constant, or cosine decay to zero at the last step.",
    )
    grad_clip: float = Field(10.0, gt=0.0, description="Max global gradient norm.")
    seed: int = Field(0, ge=0, le=2**63 - 1)
    logdet: Literal["auto", "exact", "estimate"] = Field(
        "auto", description="auto: exact for points, the unbiased estimator for images."
    )
    augment: bool = Field(
        False, description="Augment each batch by random exact group elements (for baselines)."
    )
    augment_group: str | None = Field(
        None,
        description="Group to augment with (default: D4 for images, D8 for points). On images "
        "only its subgroup that permutes pixels exactly is used: C8, C16 and SO2 -> C4, D8, "
        "D16 and O2 -> D4.",
    )
    validation_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    metric_interval: int = Field(50, ge=1)
    checkpoint_interval: int = Field(500, ge=1)
    device: Literal["auto", "cpu", "cuda"] = Field("auto")

    @model_validator(mode="before")
    @classmethod
    def _drop_legacy_keys(cls, data: object) -> object:
        # Configs stored before the Lipschitz bounds became exact carry a power-iteration count
        # (lipschitz_refresh_iters); it no longer means anything and is accepted and dropped.
        if isinstance(data, dict) and LEGACY_TRAIN_KEYS & data.keys():
            data = {k: v for k, v in data.items() if k not in LEGACY_TRAIN_KEYS}
        return data

    @field_validator("augment_group")
    @classmethod
    def _known_augment_group(cls, value: str | None) -> str | None:
        if value is not None:
            parse_group(value)
        return value


StoredModel = TypeVar("StoredModel", bound=BaseModel)


def read_stored(model: type[StoredModel], stored: dict[str, Any]) -> StoredModel:
    """A config read back from storage (a job row): validated when it still is, else as stored.

    Validators only tighten over time, but stored configs outlive them: a config accepted when
    its job was submitted must still read, or listing old jobs would fail. Keys that a newer
    schema renamed or dropped are upgraded by the model's own ``mode="before"`` validators (see
    ``TrainConfig._drop_legacy_keys``); a config that still fails validation is built as stored
    (``model_construct``, nested configs alike), with the defaults of fields added since, and the
    failure logged. New input is always validated in full.
    """
    try:
        return model.model_validate(stored)
    except ValidationError as error:
        logger.warning(
            "a stored %s no longer validates (%d errors); read as stored: %s",
            model.__name__,
            error.error_count(),
            error.errors(include_url=False, include_input=False),
        )
    values = dict(stored)
    for name, field in model.model_fields.items():
        nested = field.annotation
        is_config = isinstance(nested, type) and issubclass(nested, BaseModel)
        if is_config and isinstance(values.get(name), dict):
            values[name] = read_stored(nested, values[name])
    return model.model_construct(**values)


def check_data_compatible(
    config: FlowConfig, kind: DataKind, shape: tuple[int, ...] | list[int]
) -> None:
    """Checks that a flow configured by ``config`` can model a data set of ``kind`` and ``shape``.

    Raises:
        InputError: with ``field`` ``flow.data_shape``, e.g. ``flow.data_shape [1, 8, 8] does
            not match ...``.
    """
    shape = list(shape)
    if config.data_shape != shape:
        raise InputError(
            f"flow.data_shape {config.data_shape} does not match the data set's item shape "
            f"{shape}",
            "flow.data_shape",
        )
    if kind != config.data_kind:
        raise InputError(
            f"flow.data_shape {config.data_shape} describes {config.data_kind}, but the data set "
            f"holds {kind}",
            "flow.data_shape",
        )
