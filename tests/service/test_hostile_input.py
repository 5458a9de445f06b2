"""Hostile and broken input, case by case, on each real stack: every case is refused with a 4xx
JSON error whose message names the problem, and leaves nothing behind (no data set or job row,
no spooled temporary file, open or on disk).

The lists below are the inventory of bad inputs tried: uploads (default limits, then strict
limits), request bodies over the size limits, job configs, scoring and sampling requests.
"""

from __future__ import annotations

import http.client
import io
import os
import select
import socket
import stat
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlalchemy import select as sql_select

from app.core.db.models import Dataset, Job
from app.core.db.session import session_scope
from app.main import create_app
from tests.service.hostile_files import (
    Chunks,
    MiB,
    encrypted_zip,
    gray,
    lying_size_zip,
    npy,
    npy_declaring,
    npz,
    other_format,
    png,
    png_declaring,
    truncated,
    zip_of,
    zip_with_directory_only,
    zip_with_symlink,
)
from tests.service.payloads import IMAGE_FLOW, POINTS_FLOW, Trained, submit_job
from tests.service.stack import Stack, create_key, served_over_http

pytestmark = [pytest.mark.service, pytest.mark.timeout(120)]

# A second app on the same stack (same database and broker) with small limits, so that limits
# can be crossed with small requests.
STRICT_LIMITS: dict[str, Any] = {
    "max_upload_bytes": 256 * 1024,
    "max_json_bytes": 16 * 1024,
    "max_archive_entries": 50,
    "max_dataset_items": 50,
    "max_image_side": 16,
    # One 8x8 image scored exactly by the C4 model is estimated at 64 passes x 1,088 = 69,632.
    "max_score_work": 100_000.0,
    "max_sample_values": 100,
    "max_sample_work": 100_000.0,
}
STRICT_BODY_LIMIT = STRICT_LIMITS["max_upload_bytes"] + 256 * 1024

RNG = np.random.default_rng(0)
POINTS = RNG.normal(size=(64, 2)).astype(np.float32)
DIGIT = (RNG.integers(0, 256, size=(8, 8))).astype(np.uint8)


def _with(array: np.ndarray, index: tuple[int, ...], value: float) -> np.ndarray:
    changed = array.astype(np.float64)
    changed[index] = value
    return changed


class UploadCase(NamedTuple):
    """An uploaded file that is refused: its ``filename`` and ``content``, and the answer
    (``status``, message ``fragment``); the field is always ``file``."""

    id: str
    filename: str
    content: bytes
    status: int
    fragment: str


UPLOADS: list[UploadCase] = [
    # Pickles and non-numeric arrays.
    UploadCase(
        "pickled-npy", "p.npy", npy(np.array([{"a": 1}, None], dtype=object)), 422, "pickle"
    ),
    UploadCase("pickled-npz", "p.npz", npz(x=np.array([[1, "a"]], dtype=object)), 422, "pickle"),
    UploadCase("string-npy", "s.npy", npy(np.array([["1", "2"]])), 422, "dtype <U1"),
    UploadCase("complex-npy", "c.npy", npy(np.ones((4, 2), np.complex64)), 422, "dtype complex64"),
    UploadCase("structured-npy", "r.npy", npy(np.zeros((3, 2), "i4,f4")), 422, "real numeric"),
    # Truncated or corrupt containers.
    UploadCase("truncated-npy", "t.npy", truncated(npy(POINTS)), 422, "truncated or corrupt"),
    UploadCase(
        "lying-header-npy", "l.npy", npy_declaring((10**9, 2)), 422, "only 16 bytes of data"
    ),
    UploadCase("garbage-npy", "g.npy", b"\x93NUMPY\x01\x00garbage", 422, "not a valid .npy"),
    UploadCase("not-npy", "n.npy", b"1,2\n3,4\n", 422, "not a valid .npy"),
    UploadCase("empty-npy", "e.npy", b"", 422, "not a valid .npy"),
    UploadCase("truncated-npz", "t.npz", truncated(npz(x=POINTS)), 422, "not a valid zip archive"),
    UploadCase("empty-zip", "e.zip", b"", 422, "not a valid zip archive"),
    UploadCase("garbage-zip", "g.zip", RNG.bytes(2000), 422, "not a valid zip archive"),
    UploadCase(
        "truncated-zip", "t.zip", truncated(zip_of([("a.png", png(DIGIT))]), 0.9), 422, "zip"
    ),
    UploadCase(
        "truncated-png", "t.zip", zip_of([("a.png", truncated(png(DIGIT)))]), 422, "corrupt"
    ),
    UploadCase(
        "png-without-pixels",
        "e.zip",
        zip_of([("a.png", png_declaring(8, 8, False))]),
        422,
        "a.png",
    ),
    # Values and shapes.
    UploadCase("nan-npy", "n.npy", npy(_with(POINTS, (3, 1), np.nan)), 422, "non-finite value(s)"),
    UploadCase("inf-npy", "i.npy", npy(_with(POINTS, (0, 0), np.inf)), 422, "non-finite value(s)"),
    UploadCase("nan-npz", "n.npz", npz(x=_with(POINTS, (1, 1), np.nan)), 422, "NaN or Inf"),
    UploadCase(
        "huge-values-npy", "h.npy", npy(_with(POINTS, (2, 0), 1e30)), 422, "magnitude 1e+30"
    ),
    UploadCase("float-image-out-of-range", "f.npy", npy(np.full((2, 8, 8), 1.5)), 422, "[0, 1]"),
    UploadCase("int-image-out-of-range", "i.npy", npy(np.full((2, 8, 8), 300)), 422, "0..255"),
    UploadCase(
        "nan-image", "n.npy", npy(_with(np.zeros((2, 8, 8)), (0, 1, 1), np.nan)), 422, "NaN"
    ),
    UploadCase("rank-1-npy", "r.npy", npy(np.zeros(10, np.float32)), 422, "rank 1"),
    UploadCase("rank-5-npy", "r.npy", npy(np.zeros((2, 1, 1, 4, 4), np.uint8)), 422, "rank 5"),
    UploadCase("scalar-npy", "s.npy", npy(np.float32(1.0)), 422, "rank 0"),
    UploadCase("no-rows-npy", "z.npy", npy(np.zeros((0, 2), np.float32)), 422, "no rows"),
    UploadCase("wide-points-npy", "w.npy", npy(np.zeros((4, 65), np.float32)), 422, "D=65"),
    UploadCase(
        "tiny-images-npy", "t.npy", npy(np.zeros((4, 1, 1), np.uint8)), 422, "between 2 and 256"
    ),
    UploadCase(
        "five-channel-images", "c.npy", npy(np.zeros((4, 5, 8, 8), np.uint8)), 422, "channel"
    ),
    UploadCase(
        "ambiguous-npz", "a.npz", npz(a=POINTS, b=POINTS), 422, "name the dataset array 'x'"
    ),
    UploadCase("empty-npz", "e.npz", npz(), 422, "holds arrays []"),
    # PNG archives: sizes, modes and content behind a .png name.
    UploadCase(
        "mixed-sizes-zip",
        "m.zip",
        zip_of([("a.png", png(gray(8, 8))), ("b.png", png(gray(8, 6)))]),
        422,
        "all images must have the same size",
    ),
    UploadCase(
        "mixed-modes-zip",
        "m.zip",
        zip_of([("a.png", png(gray())), ("b.png", png(np.zeros((8, 8, 3), np.uint8)))]),
        422,
        "'b.png' is 8x8 with 3 channels but 'a.png' is 8x8 with 1 channel",
    ),
    UploadCase(
        "jpeg-as-png", "j.zip", zip_of([("a.png", other_format(DIGIT, "JPEG"))]), 422, "not a PNG"
    ),
    UploadCase(
        "gif-as-png", "g.zip", zip_of([("a.png", other_format(DIGIT, "GIF"))]), 422, "not a PNG"
    ),
    UploadCase(
        "bmp-as-png", "b.zip", zip_of([("a.png", other_format(DIGIT, "BMP"))]), 422, "not a PNG"
    ),
    UploadCase("text-as-png", "t.zip", zip_of([("a.png", b"<svg></svg>")]), 422, "not a PNG"),
    UploadCase("npy-as-png", "n.zip", zip_of([("a.png", npy(POINTS))]), 422, "not a PNG"),
    UploadCase(
        "png-over-256", "b.zip", zip_of([("a.png", png(gray(300, 8)))]), 422, "8x300 pixels"
    ),
    UploadCase(
        "png-bomb-1e8", "b.zip", zip_of([("a.png", png_declaring(10_000, 10_000))]), 422, "bomb"
    ),
    UploadCase(
        "png-bomb-4e8", "b.zip", zip_of([("a.png", png_declaring(20_000, 20_000))]), 422, "bomb"
    ),
    UploadCase(
        "png-header-1000x1000",
        "b.zip",
        zip_of([("a.png", png_declaring(1000, 1000))]),
        422,
        "1000x1000 pixels; images may be at most 256x256",
    ),
    # Zip bombs: sizes counted while decompressing.
    UploadCase(
        "npz-bomb-ratio",
        "bomb.npz",
        npz(compressed=True, x=np.zeros((1_500_000, 2), np.float32)),
        422,
        "expands more than 200 times its compressed size",
    ),
    UploadCase(
        "png-ratio-bomb",
        "bomb.zip",
        zip_of([("a.png", bytes(8 * MiB))]),
        422,
        "file 'bomb.zip': entry 'a.png' expands more than 200 times its compressed size",
    ),
    UploadCase(
        "png-entry-over-entry-limit",
        "big.zip",
        zip_of([("a.png", RNG.bytes(3 * MiB))]),
        422,
        "decompresses to more than 2621440 bytes, the limit for one entry",
    ),
    UploadCase(
        "lying-size-bomb",
        "bomb.zip",
        lying_size_zip("a.png", 4 * MiB, 100),
        422,
        "could not be extracted",
    ),
    UploadCase(
        "declared-size-bomb",
        "bomb.npz",
        lying_size_zip("x.npy", 1000, 200 * MiB),
        422,
        "declares 209715200 bytes uncompressed",
    ),
    # Path tricks and odd entries.
    UploadCase("dotdot-entry", "e.zip", zip_of([("../a.png", png(DIGIT))]), 422, "'..' component"),
    UploadCase(
        "nested-dotdot", "e.zip", zip_of([("x/../../a.png", png(DIGIT))]), 422, "'..' component"
    ),
    UploadCase(
        "absolute-entry", "e.zip", zip_of([("/tmp/a.png", png(DIGIT))]), 422, "absolute path"
    ),
    UploadCase("drive-entry", "e.zip", zip_of([("C:/a.png", png(DIGIT))]), 422, "absolute path"),
    UploadCase(
        "backslash-dotdot", "e.zip", zip_of([("..\\a.png", png(DIGIT))]), 422, "'..' component"
    ),
    UploadCase("control-char-name", "e.zip", zip_of([("a\x01.png", png(DIGIT))]), 422, "control"),
    UploadCase(
        "symlink-entry",
        "s.zip",
        zip_with_symlink(),
        422,
        "file 's.zip': entry 'b.png' is a symbolic link",
    ),
    UploadCase(
        "duplicate-entry",
        "d.zip",
        zip_of([("a.png", png(DIGIT)), ("a.png", png(DIGIT))]),
        422,
        "duplicates entry 'a.png'",
    ),
    UploadCase(
        "duplicate-after-normalising",
        "d.zip",
        zip_of([("a.png", png(DIGIT)), ("./A.PNG", png(DIGIT))]),
        422,
        "duplicates entry 'a.png'",
    ),
    UploadCase(
        "directory-only", "d.zip", zip_with_directory_only(), 422, "contains no .png images"
    ),
    UploadCase(
        "non-png-entry", "n.zip", zip_of([("a.png", png(DIGIT)), ("b.txt", b"x")]), 422, ".png"
    ),
    UploadCase("encrypted-entry", "c.zip", encrypted_zip(), 422, "is encrypted"),
    UploadCase(
        "npz-dotdot-member", "p.npz", zip_of([("../x.npy", npy(POINTS))]), 422, "'..' component"
    ),
    UploadCase(
        "npz-symlink-member",
        "p.npz",
        zip_with_symlink().replace(b"b.png", b"x.npy"),
        422,
        "symbolic link",
    ),
    # CSV.
    UploadCase(
        "csv-text", "t.csv", b"x,y\n1,2\n3,abc\n", 422, "line 3, column 2: 'abc' is not a number"
    ),
    UploadCase(
        "csv-ragged", "r.csv", b"1,2\n3,4\n5\n", 422, "line 3 has 1 fields but earlier rows have 2"
    ),
    UploadCase("csv-empty", "e.csv", b"", 422, "no data rows"),
    UploadCase("csv-blank-lines", "e.csv", b"\n\n  \n", 422, "no data rows"),
    UploadCase("csv-header-only", "h.csv", b"x,y\n", 422, "no data rows"),
    UploadCase(
        "csv-two-headers",
        "h.csv",
        b"x,y\na,b\n1,2\n",
        422,
        "line 2, column 1: 'a' is not a number",
    ),
    UploadCase("csv-header-later", "h.csv", b"1,2\nx,y\n", 422, "'x' is not a number"),
    UploadCase("csv-nan", "n.csv", b"1,2\nnan,3\n", 422, "'nan' is not a finite number"),
    UploadCase("csv-inf", "i.csv", b"1,2\n-inf,3\n", 422, "'-inf' is not a finite number"),
    UploadCase("csv-overflow", "o.csv", b"1,2\n1e400,3\n", 422, "'1e400' is not a finite number"),
    UploadCase("csv-hex", "h.csv", b"1,2\n0x10,3\n", 422, "'0x10' is not a number"),
    UploadCase("csv-not-utf8", "l.csv", "1,é\n".encode("latin-1"), 422, "not UTF-8"),
    UploadCase("csv-binary", "b.csv", b"\x00\x01\x02\xff\xfe", 422, "not UTF-8"),
    UploadCase("csv-unclosed-quote", "q.csv", b'1,"2\n3,4\n', 422, "'2\\n3,4\\n' is not a number"),
    UploadCase(
        "csv-65-columns", "w.csv", (",".join(["1"] * 65) + "\n").encode(), 422, "65 columns"
    ),
    UploadCase("csv-ten-million-fields", "f.csv", b"1," * 10**7 + b"1\n", 422, "10000001 columns"),
    UploadCase(
        "csv-line-over-64-kib", "l.csv", b"1" * 100_000 + b"\n", 422, "100001 characters long"
    ),
    # Names.
    UploadCase("unknown-extension", "points.txt", b"1,2\n", 422, "accepted extensions are"),
    UploadCase("no-extension", "points", b"1,2\n", 422, "'(none)'"),
    UploadCase("double-extension", "points.csv.exe", b"1,2\n", 422, "'.exe'"),
]

# Uploads against the strict app.
STRICT_UPLOADS: list[UploadCase] = [
    UploadCase(
        "too-many-entries",
        "many.zip",
        zip_of([(f"{index:03d}.png", png(gray(4, 4))) for index in range(51)]),
        422,
        "has more than 50 entries; at most 50",
    ),
    UploadCase(
        "too-many-npz-members",
        "many.npz",
        npz(**{f"a{index}": np.zeros(1) for index in range(60)}),
        422,
        "has more than 50 entries",
    ),
    UploadCase(
        "png-over-side-cap", "b.zip", zip_of([("a.png", png(gray(17, 17)))]), 422, "at most 16x16"
    ),
    UploadCase("too-many-items", "p.csv", b"1,2\n" * 51, 422, "EFNF_MAX_DATASET_ITEMS"),
    UploadCase(
        "npy-over-side-cap", "b.npy", npy(np.zeros((2, 32, 32), np.uint8)), 422, "at most 16x16"
    ),
    UploadCase(
        "file-over-limit-within-envelope",
        "big.npy",
        npy(np.zeros((40_000, 2), np.float32)),
        413,
        "file is larger than 262144 bytes (EFNF_MAX_UPLOAD_BYTES)",
    ),
]


class BodyCase(NamedTuple):
    """A request body over the strict limits: the POST ``path``, the client's keyword arguments
    (``request``) and the answer (``status``, message ``fragment``); the field is always
    ``body``."""

    id: str
    path: str
    request: dict[str, Any]
    status: int
    fragment: str


BODIES: list[BodyCase] = [
    BodyCase(
        "upload-over-content-length",
        "/v1/datasets",
        {"files": {"file": ("big.npy", bytes(STRICT_BODY_LIMIT + 1))}},
        413,
        "nothing was read",
    ),
    BodyCase(
        "chunked-upload-without-content-length",
        "/v1/datasets",
        {
            "content": Chunks(16, 64 * 1024),
            "headers": {"content-type": "multipart/form-data; boundary=b"},
        },
        413,
        "the upload was stopped after",
    ),
    BodyCase(
        "content-length-smaller-than-body",
        "/v1/datasets/builtin",
        {"content": b'{"name": "rings"}', "headers": {"content-length": "4"}},
        400,
        "more than the 4 bytes its Content-Length declares",
    ),
    BodyCase(
        "content-length-larger-than-limit",
        "/v1/datasets/builtin",
        {"content": b'{"name": "rings"}', "headers": {"content-length": str(10**12)}},
        413,
        "Content-Length 1000000000000 is above the limit",
    ),
    BodyCase(
        "content-length-not-a-number",
        "/v1/datasets/builtin",
        {"content": b'{"name": "rings"}', "headers": {"content-length": "12abc"}},
        400,
        "Content-Length '12abc' is not a byte count",
    ),
    BodyCase(
        "content-length-negative",
        "/v1/datasets/builtin",
        {"content": b'{"name": "rings"}', "headers": {"content-length": "-1"}},
        400,
        "Content-Length '-1' is not a byte count",
    ),
    BodyCase(
        "json-over-limit",
        "/v1/jobs",
        {"content": b'{"dataset_id": "' + b"x" * 20_000 + b'"}'},
        413,
        "(EFNF_MAX_JSON_BYTES)",
    ),
    BodyCase(
        "chunked-json-over-limit",
        "/v1/jobs",
        {
            "content": Chunks(8, 4096, b" "),
            "headers": {"content-type": "application/json"},
        },
        413,
        "the upload was stopped after",
    ),
    BodyCase(
        "scoring-json-over-limit",
        "/v1/models/job_x/log-prob",
        {"json": {"inputs": [[0.5, 0.5]] * 2000}},
        413,
        "EFNF_MAX_JSON_BYTES",
    ),
    BodyCase(
        "scoring-files-over-limit",
        "/v1/models/job_x/log-prob",
        {"files": [("files", (f"{i}.png", bytes(100_000))) for i in range(6)]},
        413,
        "EFNF_MAX_UPLOAD_BYTES",
    ),
]


class BuiltinCase(NamedTuple):
    """A refused request for a built-in data set: the JSON ``body`` and the answer (``status``,
    ``field``, message ``fragment``)."""

    id: str
    body: Any
    status: int
    field: str
    fragment: str


BUILTINS: list[BuiltinCase] = [
    BuiltinCase(
        "unknown-name", {"name": "../etc/passwd"}, 422, "name", "is not a built-in data set"
    ),
    BuiltinCase("n-zero", {"name": "rings", "n": 0}, 422, "n", "greater than or equal to 1"),
    BuiltinCase("n-over-limit", {"name": "rings", "n": 10**6}, 422, "n", "EFNF_MAX_BUILTIN_ITEMS"),
    BuiltinCase("n-huge", {"name": "rings", "n": 10**30}, 422, "n", "EFNF_MAX_BUILTIN_ITEMS"),
    BuiltinCase(
        "seed-negative", {"name": "rings", "seed": -3}, 422, "seed", "greater than or equal"
    ),
    BuiltinCase("extra-field", {"name": "rings", "path": "/tmp"}, 422, "path", "Extra inputs"),
    BuiltinCase("name-missing", {}, 422, "name", "Field required"),
]


class JobCase(NamedTuple):
    """A job body that is refused: the data set ``kind`` it is for, the overrides of that kind's
    flow and the training config, and the answer (``status``, ``field``, message ``fragment``)."""

    id: str
    kind: str
    flow: dict[str, Any]
    training: dict[str, Any]
    status: int
    field: str
    fragment: str


JOBS: list[JobCase] = [
    JobCase("steps", "points", {}, {"steps": 300_000}, 422, "training.steps", "EFNF_MAX_STEPS"),
    JobCase(
        "batch", "points", {}, {"batch_size": 5000}, 422, "training.batch_size", "EFNF_MAX_BATCH"
    ),
    JobCase("width", "points", {"width": 300}, {}, 422, "flow.width", "EFNF_MAX_WIDTH"),
    JobCase(
        "width-schema", "points", {"width": 10**6}, {}, 422, "flow.width", "less than or equal"
    ),
    JobCase(
        "depth-schema", "points", {"depth": 65}, {}, 422, "flow.depth", "less than or equal to 64"
    ),
    JobCase(
        "hidden-layers", "points", {"hidden_layers": 6}, {}, 422, "flow.hidden_layers", "_LAYERS"
    ),
    JobCase(
        "kernel", "images", {"kernel_size": 9}, {}, 422, "flow.kernel_size", "MAX_KERNEL_SIZE"
    ),
    JobCase(
        "exact-dim", "images", {"exact_max_dim": 4096}, {}, 422, "flow.exact_max_dim", "EXACT_DIM"
    ),
    JobCase(
        "probes",
        "points",
        {"estimator": {"eval_probes": 512}},
        {},
        422,
        "flow.estimator.eval_probes",
        "EFNF_MAX_EVAL_PROBES",
    ),
    JobCase(
        "inverse-iterations",
        "points",
        {"inverse_max_iter": 50_000},
        {},
        422,
        "flow.inverse_max_iter",
        "EFNF_MAX_INVERSE_ITERATIONS",
    ),
    JobCase(
        "metric-every-step",
        "points",
        {},
        {"steps": 200_000, "metric_interval": 1},
        422,
        "training.metric_interval",
        "EFNF_MAX_METRIC_POINTS",
    ),
    JobCase(
        "checkpoint-every-step",
        "points",
        {},
        {"steps": 50_000, "checkpoint_interval": 1},
        422,
        "training.checkpoint_interval",
        "EFNF_MAX_CHECKPOINT_WRITES",
    ),
    JobCase(
        "auto-training-of-points-above-exact-dim",
        "points",
        {"exact_max_dim": 1},
        {},
        422,
        "training.logdet",
        "'auto' trains with the exact log-det here, which needs a 2x2 Jacobian",
    ),
    JobCase(
        "exact-training-above-exact-dim",
        "images",
        {"exact_max_dim": 16},
        {"logdet": "exact"},
        422,
        "training.logdet",
        "64x64 Jacobian",
    ),
    JobCase(
        "weights",
        "images",
        {"group": "D16", "width": 256, "depth": 64, "kernel_size": 7},
        {},
        422,
        "flow",
        "EFNF_MAX_WEIGHTS",
    ),
    JobCase(
        "step-activations",
        "images",
        {"width": 128, "depth": 8},
        {"batch_size": 4096},
        422,
        "training.batch_size",
        "EFNF_MAX_STEP_ACTIVATIONS",
    ),
    JobCase(
        "residual-heavy-step-memory",
        "images",
        {"family": "mixed", "blocks": ["residual"] * 8, "depth": 64, "width": 64},
        {"steps": 3, "batch_size": 16},
        422,
        "training.batch_size",
        "EFNF_MAX_JOB_MEMORY_BYTES",
    ),
    JobCase(
        "training-work",
        "images",
        {"width": 64, "depth": 32},
        {"steps": 200_000, "batch_size": 128},
        422,
        "training.steps",
        "EFNF_MAX_TRAINING_WORK",
    ),
    JobCase("width-text", "points", {"width": "wide"}, {}, 422, "flow.width", "valid integer"),
    JobCase("width-float", "points", {"width": 2.5}, {}, 422, "flow.width", "integer"),
    JobCase(
        "width-negative", "points", {"width": -1}, {}, 422, "flow.width", "greater than or equal"
    ),
    JobCase("steps-null", "points", {}, {"steps": None}, 422, "training.steps", "integer"),
    JobCase(
        "lr-nan",
        "points",
        {},
        {"learning_rate": "NaN"},
        422,
        "training.learning_rate",
        "finite number",
    ),
    JobCase("cuda-without-gpu", "points", {}, {"device": "cuda"}, 422, "training.device", "CUDA"),
    JobCase(
        "rank-2-shape", "points", {"data_shape": [8, 8]}, {}, 422, "flow.data_shape", "rank 2"
    ),
    JobCase("group-17", "points", {"group": "C17"}, {}, 422, "flow.group", "at most 16"),
    JobCase("unknown-field", "points", {"colour": "red"}, {}, 422, "flow.colour", "Extra inputs"),
    JobCase(
        "wrong-shape", "points", {"data_shape": [3]}, {}, 422, "flow", "acts on 2-D points only"
    ),
]


class RawJobCase(NamedTuple):
    """A job body refused before it is a job: the raw ``content`` and the answer (``status``,
    ``field``, message ``fragment``)."""

    id: str
    content: bytes
    status: int
    field: str
    fragment: str


RAW_JOBS: list[RawJobCase] = [
    RawJobCase("not-json", b"{not json", 422, "body", "invalid JSON at character 1"),
    RawJobCase("json-array", b"[1, 2]", 422, "body", "valid dictionary"),
    RawJobCase("json-string", b'"job"', 422, "body", "valid dictionary"),
    RawJobCase(
        "no-dataset", b'{"flow": {"data_shape": [2]}}', 422, "dataset_id", "Field required"
    ),
    RawJobCase(
        "deep-nesting", b'{"flow": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "body", "recursion"
    ),
    RawJobCase(
        "grad-clip-infinity",
        b'{"dataset_id": "ds_x", "flow": {"data_shape": [2]}, '
        b'"training": {"grad_clip": Infinity}}',
        422,
        "training.grad_clip",
        "finite number",
    ),
    RawJobCase(
        "lipschitz-nan",
        b'{"dataset_id": "ds_x", "flow": {"data_shape": [2], "lipschitz_coeff": NaN}}',
        422,
        "flow.lipschitz_coeff",
        "finite number",
    ),
    RawJobCase(
        "geometric-p-minus-infinity",
        b'{"dataset_id": "ds_x", "flow": {"data_shape": [2], "estimator": {"geometric_p": '
        b"-Infinity}}}",
        422,
        "flow.estimator.geometric_p",
        "finite number",
    ),
]


def _nested(depth: int) -> list:
    value: list = [0.0]
    for _ in range(depth - 1):
        value = [value]
    return value


def _png_files(*contents: bytes) -> list[tuple[str, tuple[str, bytes]]]:
    return [("files", (f"{index}.png", content)) for index, content in enumerate(contents)]


class ModelCase(NamedTuple):
    """A scoring or sampling request to a trained ``model`` (``points``, ``images`` or
    ``missing``) that is refused: the ``request`` (the client's keyword arguments for scoring,
    the JSON body or raw bytes for sampling) and the answer (``status``, ``field``, message
    ``fragment``)."""

    id: str
    model: str
    request: Any
    status: int
    field: str
    fragment: str


# Scoring.
SCORES: list[ModelCase] = [
    ModelCase(
        "points-to-image-model",
        "images",
        {"json": {"inputs": [[1.0, 2.0]]}},
        422,
        "inputs",
        "[n, 1, 8, 8]",
    ),
    ModelCase(
        "wrong-image-size",
        "images",
        {"json": {"inputs": [[[[0] * 4] * 4]]}},
        422,
        "inputs",
        "[1, 1, 4, 4]",
    ),
    ModelCase(
        "wrong-point-dim", "points", {"json": {"inputs": [[1, 2, 3]]}}, 422, "inputs", "[n, 2]"
    ),
    ModelCase(
        "missing-batch-axis", "points", {"json": {"inputs": [1.0, 2.0]}}, 422, "inputs", "[2]"
    ),
    ModelCase(
        "levels-over-255",
        "images",
        {"json": {"inputs": [[[[256] * 8] * 8]]}},
        422,
        "inputs",
        "0..255",
    ),
    ModelCase(
        "negative-levels",
        "images",
        {"json": {"inputs": [[[[-1] * 8] * 8]]}},
        422,
        "inputs",
        "0..255",
    ),
    ModelCase(
        "floats-over-1",
        "images",
        {"json": {"inputs": [[[[1.5] * 8] * 8]]}},
        422,
        "inputs",
        "[0, 1]",
    ),
    ModelCase(
        "nan-point", "points", {"content": b'{"inputs": [[NaN, 1.0]]}'}, 422, "inputs", "NaN"
    ),
    ModelCase(
        "infinite-point",
        "points",
        {"content": b'{"inputs": [[1e400, 1.0]]}'},
        422,
        "inputs",
        "NaN or infinite",
    ),
    ModelCase(
        "point-1e20", "points", {"json": {"inputs": [[1e20, 0.0]]}}, 422, "inputs", "+-1e+06"
    ),
    ModelCase(
        "point-1e39", "points", {"json": {"inputs": [[0.0, -1e39]]}}, 422, "inputs", "+-1e+06"
    ),
    ModelCase(
        "point-1e308", "points", {"json": {"inputs": [[1e308, 1e308]]}}, 422, "inputs", "+-1e+06"
    ),
    ModelCase(
        "point-int-2e18", "points", {"json": {"inputs": [[2 * 10**18, 0]]}}, 422, "inputs", "1e+06"
    ),
    ModelCase("empty-batch", "points", {"json": {"inputs": []}}, 422, "inputs", "at least 1 item"),
    ModelCase("empty-item", "points", {"json": {"inputs": [[]]}}, 422, "inputs", "[1, 0]"),
    ModelCase(
        "too-many-items",
        "points",
        {"json": {"inputs": [[0.0, 0.0]] * 1025}},
        422,
        "inputs",
        "EFNF_MAX_SCORE_ITEMS",
    ),
    ModelCase("ragged", "points", {"json": {"inputs": [[1, 2], [3]]}}, 422, "inputs", "ragged"),
    ModelCase(
        "text-values", "points", {"json": {"inputs": [["a", "b"]]}}, 422, "inputs", "numbers"
    ),
    ModelCase(
        "bool-values", "points", {"json": {"inputs": [[True, False]]}}, 422, "inputs", "numbers"
    ),
    ModelCase(
        "null-values", "points", {"json": {"inputs": [[None, 1]]}}, 422, "inputs", "numbers"
    ),
    ModelCase(
        "huge-integer", "points", {"json": {"inputs": [[10**30, 1]]}}, 422, "inputs", "numbers"
    ),
    ModelCase(
        "object-items",
        "points",
        {"json": {"inputs": [{"x": 1, "y": 2}]}},
        422,
        "inputs",
        "numbers",
    ),
    ModelCase(
        "inputs-object",
        "points",
        {"json": {"inputs": {"x": [1, 2]}}},
        422,
        "inputs",
        "valid array",
    ),
    ModelCase(
        "inputs-string", "points", {"json": {"inputs": "1,2"}}, 422, "inputs", "valid array"
    ),
    ModelCase(
        "nested-past-recursion-limit",
        "points",
        {"content": b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}"},
        422,
        "body",
        "invalid JSON: recursion limit exceeded",
    ),
    ModelCase(
        "more-dims-than-numpy",
        "points",
        {"json": {"inputs": _nested(40)}},
        422,
        "inputs",
        "dimension",
    ),
    ModelCase(
        "too-deep",
        "points",
        {"json": {"inputs": [[[[[[[[[[[[0]]]]]]]]]]]]}},
        422,
        "inputs",
        "shape",
    ),
    ModelCase(
        "no-inputs", "points", {"json": {"method": "exact"}}, 422, "inputs", "Field required"
    ),
    ModelCase("body-array", "points", {"json": [[1, 2]]}, 422, "body", "an object"),
    ModelCase("not-json", "points", {"content": b"inputs=1,2"}, 422, "body", "JSON"),
    ModelCase(
        "bad-method",
        "points",
        {"json": {"inputs": [[1, 2]], "method": "fast"}},
        422,
        "method",
        "'exact'",
    ),
    ModelCase(
        "negative-seed",
        "points",
        {"json": {"inputs": [[1, 2]], "seed": -1}},
        422,
        "seed",
        "greater",
    ),
    ModelCase(
        "extra-field", "points", {"json": {"inputs": [[1, 2]], "n": 3}}, 422, "n", "Extra inputs"
    ),
    ModelCase(
        "exact-above-exact-dim",
        "narrow",
        {"json": {"inputs": [[1, 2]], "method": "exact"}},
        422,
        "method",
        "exact_max_dim 1",
    ),
    ModelCase(
        "png-to-points-model", "points", {"files": _png_files(png(DIGIT))}, 422, "files", "[n, 2]"
    ),
    ModelCase(
        "png-wrong-size",
        "images",
        {"files": _png_files(png(gray(4, 4)))},
        422,
        "files",
        "[1, 1, 4, 4]",
    ),
    ModelCase(
        "png-rgb-to-gray-model",
        "images",
        {"files": _png_files(png(np.zeros((8, 8, 3), np.uint8)))},
        422,
        "files",
        "[1, 3, 8, 8]",
    ),
    ModelCase(
        "png-mixed-sizes",
        "images",
        {"files": _png_files(png(DIGIT), png(gray(6, 6)))},
        422,
        "files",
        "same size",
    ),
    ModelCase(
        "png-not-png",
        "images",
        {"files": _png_files(other_format(DIGIT, "JPEG"))},
        422,
        "files",
        # The entry is named; the archive the service built around the files is not.
        "files ('0.png'): entry '000000.png' is not a PNG",
    ),
    ModelCase(
        "png-truncated",
        "images",
        {"files": _png_files(truncated(png(DIGIT)))},
        422,
        "files",
        "corrupt",
    ),
    ModelCase(
        "png-bomb",
        "images",
        {"files": _png_files(png_declaring(20_000, 20_000))},
        422,
        "files",
        "bomb",
    ),
    ModelCase("png-empty-file", "images", {"files": _png_files(b"")}, 422, "files", "not a PNG"),
    ModelCase(
        "too-many-files",
        "images",
        {"files": _png_files(*[b"x"] * 1025)},
        400,
        "body",
        "Too many files. Maximum number of files is 1024",
    ),
    ModelCase(
        "form-field-over-part-limit",
        "images",
        {"files": _png_files(png(DIGIT)), "data": {"method": "e" * (2 * MiB)}},
        400,
        "body",
        "Part exceeded maximum size",
    ),
    ModelCase(
        "form-without-files",
        "images",
        {"data": {"method": "exact"}, "files": {"other": ("a", b"x")}},
        422,
        "files",
        "at least one PNG",
    ),
    ModelCase(
        "form-bad-method",
        "images",
        {"files": _png_files(png(DIGIT)), "data": {"method": "fast"}},
        422,
        "method",
        "'exact'",
    ),
    ModelCase(
        "form-text-seed",
        "images",
        {"files": _png_files(png(DIGIT)), "data": {"seed": "x"}},
        422,
        "seed",
        "integer",
    ),
    ModelCase(
        "unknown-model",
        "missing",
        {"json": {"inputs": [[1, 2]]}},
        404,
        "model_id",
        "no such model",
    ),
]

# Scoring against the strict app.
STRICT_SCORES: list[ModelCase] = [
    ModelCase(
        "score-work",
        "images",
        {"json": {"inputs": [DIGIT[None].tolist()] * 2}},
        422,
        "inputs",
        "EFNF_MAX_SCORE_WORK",
    ),
    ModelCase(
        "png-over-side-cap",
        "images",
        {"files": _png_files(png(gray(17, 17)))},
        422,
        "files",
        "at most 16x16",
    ),
]

# Sampling.
SAMPLES: list[ModelCase] = [
    ModelCase("n-zero", "points", {"n": 0}, 422, "n", "greater than or equal to 1"),
    ModelCase("n-negative", "points", {"n": -5}, 422, "n", "greater than or equal to 1"),
    ModelCase("n-over-limit", "points", {"n": 1025}, 422, "n", "EFNF_MAX_SAMPLES"),
    ModelCase("n-huge", "points", {"n": 10**20}, 422, "n", "EFNF_MAX_SAMPLES"),
    ModelCase("n-text", "points", {"n": "many"}, 422, "n", "valid integer"),
    ModelCase("n-float", "points", {"n": 2.5}, 422, "n", "integer"),
    ModelCase(
        "temperature-zero", "points", {"temperature": 0}, 422, "temperature", "greater than 0"
    ),
    ModelCase(
        "temperature-high", "points", {"temperature": 11}, 422, "temperature", "less than or equal"
    ),
    ModelCase(
        "temperature-text", "points", {"temperature": "hot"}, 422, "temperature", "valid number"
    ),
    ModelCase(
        "temperature-nan", "points", b'{"temperature": NaN}', 422, "temperature", "temperature"
    ),
    ModelCase(
        "temperature-inf", "points", b'{"temperature": Infinity}', 422, "temperature", "less"
    ),
    ModelCase("seed-negative", "points", {"seed": -1}, 422, "seed", "greater than or equal to 0"),
    ModelCase("seed-too-big", "points", {"seed": 2**40}, 422, "seed", "less than or equal"),
    ModelCase("bad-format", "points", {"format": "gif"}, 422, "format", "'json', 'npy' or 'png'"),
    ModelCase("extra-field", "points", {"inputs": [[1, 2]]}, 422, "inputs", "Extra inputs"),
    ModelCase("body-array", "points", [16], 422, "body", "valid dictionary"),
    ModelCase("unknown-model", "missing", {"n": 2}, 404, "model_id", "no such model"),
]

STRICT_SAMPLES: list[ModelCase] = [
    ModelCase("sample-values", "points", {"n": 51}, 422, "n", "EFNF_MAX_SAMPLE_VALUES"),
    ModelCase("sample-work", "points", {"n": 12}, 422, "n", "EFNF_MAX_SAMPLE_WORK"),
]


def _ids(cases: list[Any]) -> list[str]:
    return [case.id for case in cases]


def assert_refused(response: Any, status: int, field: str, fragment: str) -> None:
    """A ``status`` JSON error on ``field`` whose message contains ``fragment``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"message", "field", "errors"}, body
    assert body["field"] == field, body
    assert fragment in body["message"], body


def _row_counts(stack: Stack) -> tuple[int, int]:
    with session_scope(stack.settings.database_url) as session:
        datasets = session.scalar(sql_select(func.count()).select_from(Dataset))
        jobs = session.scalar(sql_select(func.count()).select_from(Job))
    return datasets, jobs


def _open_files_under(directory: Path) -> list[str]:
    opened = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            opened.append(target)
    return opened


@pytest.fixture
def nothing_left_behind(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Spools uploads into a private directory, then checks that the request left no data set
    or job row and no temporary file, on disk or open."""
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    before = _row_counts(stack)
    yield
    assert _row_counts(stack) == before
    assert list(spool.iterdir()) == []
    assert _open_files_under(spool) == []


@pytest.fixture(scope="module")
def strict(stack: Stack) -> Iterator[TestClient]:
    settings = stack.settings.model_copy(update=STRICT_LIMITS)
    key = {"Authorization": stack.client.headers["Authorization"]}
    with TestClient(create_app(settings), headers=key) as client:
        yield client


@pytest.fixture(scope="module")
def models(stack: Stack, trained: Trained) -> dict[str, str]:
    """Model ids by role; "narrow" is a points model whose exact_max_dim (1) is below its D."""
    narrow = submit_job(
        stack.client,
        trained.points_dataset["id"],
        {**POINTS_FLOW, "exact_max_dim": 1},
        {
            "steps": 4,
            "batch_size": 16,
            "metric_interval": 2,
            "checkpoint_interval": 2,
            "logdet": "estimate",
        },
    )
    return {
        "points": trained.points_job["id"],
        "images": trained.image_job["id"],
        "narrow": stack.wait_for_job(narrow["id"])["id"],
        "missing": "job_missing",
    }


@pytest.mark.usefixtures("nothing_left_behind")
@pytest.mark.parametrize("case", UPLOADS, ids=_ids(UPLOADS))
def test_bad_upload(stack: Stack, case: UploadCase) -> None:
    response = stack.client.post("/v1/datasets", files={"file": (case.filename, case.content)})
    assert_refused(response, case.status, "file", case.fragment)
    assert case.filename in response.json()["message"]


@pytest.mark.usefixtures("nothing_left_behind")
@pytest.mark.parametrize("case", STRICT_UPLOADS, ids=_ids(STRICT_UPLOADS))
def test_bad_upload_under_strict_limits(strict: TestClient, case: UploadCase) -> None:
    response = strict.post("/v1/datasets", files={"file": (case.filename, case.content)})
    assert_refused(response, case.status, "file", case.fragment)


@pytest.mark.usefixtures("nothing_left_behind")
@pytest.mark.parametrize("case", BODIES, ids=_ids(BODIES))
def test_body_over_limit(strict: TestClient, case: BodyCase) -> None:
    assert_refused(strict.post(case.path, **case.request), case.status, "body", case.fragment)


@pytest.mark.usefixtures("nothing_left_behind")
@pytest.mark.parametrize("case", BUILTINS, ids=_ids(BUILTINS))
def test_bad_builtin_data_set(stack: Stack, case: BuiltinCase) -> None:
    response = stack.client.post("/v1/datasets/builtin", json=case.body)
    assert_refused(response, case.status, case.field, case.fragment)


@pytest.mark.usefixtures("nothing_left_behind")
@pytest.mark.parametrize("case", JOBS, ids=_ids(JOBS))
def test_bad_job(stack: Stack, trained: Trained, case: JobCase) -> None:
    dataset = trained.points_dataset if case.kind == "points" else trained.image_dataset
    base_flow = POINTS_FLOW if case.kind == "points" else IMAGE_FLOW
    flow = {**base_flow, **case.flow}
    body = {"dataset_id": dataset["id"], "flow": flow, "training": case.training}
    response = stack.client.post("/v1/jobs", json=body)
    assert_refused(response, case.status, case.field, case.fragment)


@pytest.mark.usefixtures("nothing_left_behind")
@pytest.mark.parametrize("case", RAW_JOBS, ids=_ids(RAW_JOBS))
def test_bad_job_body(stack: Stack, case: RawJobCase) -> None:
    response = stack.client.post(
        "/v1/jobs", content=case.content, headers={"content-type": "application/json"}
    )
    assert_refused(response, case.status, case.field, case.fragment)


@pytest.mark.usefixtures("nothing_left_behind")
@pytest.mark.parametrize("case", SCORES, ids=_ids(SCORES))
def test_bad_scoring(stack: Stack, models: dict[str, str], case: ModelCase) -> None:
    response = stack.client.post(f"/v1/models/{models[case.model]}/log-prob", **case.request)
    assert_refused(response, case.status, case.field, case.fragment)


@pytest.mark.usefixtures("nothing_left_behind")
@pytest.mark.parametrize("case", STRICT_SCORES, ids=_ids(STRICT_SCORES))
def test_bad_scoring_under_strict_limits(
    strict: TestClient, models: dict[str, str], case: ModelCase
) -> None:
    response = strict.post(f"/v1/models/{models[case.model]}/log-prob", **case.request)
    assert_refused(response, case.status, case.field, case.fragment)


@pytest.mark.usefixtures("nothing_left_behind")
@pytest.mark.parametrize("case", SAMPLES, ids=_ids(SAMPLES))
def test_bad_sampling(stack: Stack, models: dict[str, str], case: ModelCase) -> None:
    url = f"/v1/models/{models[case.model]}/samples"
    if isinstance(case.request, bytes):
        response = stack.client.post(
            url, content=case.request, headers={"content-type": "application/json"}
        )
    else:
        response = stack.client.post(url, json=case.request)
    assert_refused(response, case.status, case.field, case.fragment)


@pytest.mark.usefixtures("nothing_left_behind")
@pytest.mark.parametrize("case", STRICT_SAMPLES, ids=_ids(STRICT_SAMPLES))
def test_bad_sampling_under_strict_limits(
    strict: TestClient, models: dict[str, str], case: ModelCase
) -> None:
    response = strict.post(f"/v1/models/{models[case.model]}/samples", json=case.request)
    assert_refused(response, case.status, case.field, case.fragment)


class TextCase(NamedTuple):
    """A name, id, path or query that is refused with a 422: the ``method``, ``url`` and client
    keyword arguments (``request``), and the answer (``field``, message ``fragment``)."""

    id: str
    method: str
    url: str
    request: dict[str, Any]
    field: str
    fragment: str


# PostgreSQL answered NUL and names over the column's width with a 500; escapes were stored as-is.
TEXTS: list[TextCase] = [
    TextCase(
        "filename-over-name-width",
        "POST",
        "/v1/datasets",
        {"files": {"file": ("a" * 250 + ".csv", b"1,2\n")}},
        "name",
        "name has 254 characters; at most 200 are allowed; send a shorter name",
    ),
    TextCase(
        "filename-over-255",
        "POST",
        "/v1/datasets",
        {"files": {"file": ("a" * 300 + ".csv", b"1,2\n")}, "data": {"name": "ok"}},
        "file",
        "file name has 304 characters; at most 255",
    ),
    TextCase(
        "nul-in-name",
        "POST",
        "/v1/datasets",
        {"files": {"file": ("p.csv", b"1,2\n")}, "data": {"name": "a\x00b"}},
        "name",
        "U+0000 (a control character) at position 1",
    ),
    TextCase(
        "ansi-escape-in-name",
        "POST",
        "/v1/datasets",
        {"files": {"file": ("p.csv", b"1,2\n")}, "data": {"name": "\x1b[31mred"}},
        "name",
        "U+001B",
    ),
    TextCase(
        "rtl-override-in-name",
        "POST",
        "/v1/datasets",
        {"files": {"file": ("p.csv", b"1,2\n")}, "data": {"name": "invoice\u202etxt.exe"}},
        "name",
        "U+202E (a bidirectional formatting character)",
    ),
    TextCase(
        "nul-in-body-dataset-id",
        "POST",
        "/v1/jobs",
        {"json": {"dataset_id": "ds_\x00x", "flow": {"data_shape": [2]}}},
        "dataset_id",
        "U+0000",
    ),
    TextCase("nul-in-path-id", "GET", "/v1/datasets/ds_%00x", {}, "path", "U+0000"),
    TextCase("nul-in-job-path", "POST", "/v1/jobs/job_%00/cancel", {}, "path", "U+0000"),
    TextCase("nul-in-delete-path", "DELETE", "/v1/datasets/%00", {}, "path", "U+0000"),
    TextCase("nul-in-query", "GET", "/v1/jobs?dataset_id=a%00", {}, "dataset_id", "U+0000"),
    TextCase("escape-in-query", "GET", "/v1/jobs?state=%1b", {}, "state", "U+001B"),
]


@pytest.mark.usefixtures("nothing_left_behind")
@pytest.mark.parametrize("case", TEXTS, ids=_ids(TEXTS))
def test_unprintable_or_overlong_text(stack: Stack, case: TextCase) -> None:
    response = stack.client.request(case.method, case.url, **case.request)
    assert_refused(response, 422, case.field, case.fragment)


def test_limits_leave_room_for_good_requests(strict: TestClient, models: dict[str, str]) -> None:
    """The strict limits refuse only what crosses them: just below each one is served."""
    small_upload = strict.post(
        "/v1/datasets",
        files={"file": ("ok.zip", zip_of([(f"{i}.png", png(gray(16, 16))) for i in range(50)]))},
    )
    assert small_upload.status_code == 201, small_upload.text
    assert strict.delete(f"/v1/datasets/{small_upload.json()['id']}").status_code == 204
    score = strict.post(
        f"/v1/models/{models['images']}/log-prob", json={"inputs": [DIGIT[None].tolist()]}
    )
    assert score.status_code == 200 and score.json()["method"] == "exact", score.text
    png_score = strict.post(
        f"/v1/models/{models['images']}/log-prob", files=[("files", ("a.png", png(DIGIT)))]
    )
    assert png_score.status_code == 200, png_score.text
    sample = strict.post(f"/v1/models/{models['points']}/samples", json={"n": 11})
    assert sample.status_code == 200, sample.text
    exact = strict.post(f"/v1/models/{models['narrow']}/log-prob", json={"inputs": [[1, 2]]})
    assert exact.status_code == 200 and exact.json()["method"] == "estimate", exact.text


@pytest.fixture
def strict_server(stack: Stack) -> Iterator[tuple[int, str]]:
    """The strict app served by uvicorn on a free port, in a thread; yields the port and the
    Authorization header's value."""
    settings = stack.settings.model_copy(update=STRICT_LIMITS)
    with served_over_http(create_app(settings)) as port:
        yield port, stack.client.headers["Authorization"]


def _stream_chunked_upload(
    port: int, authorization: str, planned_bytes: int
) -> tuple[int, int, bytes]:
    """Sends a chunked multipart upload (no Content-Length) until the server answers.

    Returns (bytes sent, status, response body).
    """
    connection = socket.create_connection(("127.0.0.1", port), timeout=5)
    boundary = "hostile"
    connection.sendall(
        (
            "POST /v1/datasets HTTP/1.1\r\nHost: localhost\r\n"
            f"Authorization: {authorization}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
    )
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.npy"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    sent, chunk = 0, bytes(64 * 1024)
    while sent < planned_bytes:
        readable, _, _ = select.select([connection], [], [], 0)
        if readable:
            break
        data = part + chunk if sent == 0 else chunk
        try:
            connection.sendall(b"%x\r\n%s\r\n" % (len(data), data))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            break
        sent += len(data)
    response = http.client.HTTPResponse(connection)
    response.begin()
    body = response.read()
    connection.close()
    return sent, response.status, body


@pytest.mark.usefixtures("nothing_left_behind")
def test_chunked_upload_is_cut_off_over_real_http(strict_server: tuple[int, str]) -> None:
    """Over a real socket the server answers 413 while the client is still sending: it stopped
    reading once the body passed the limit, long before the planned 64 MiB arrived."""
    port, authorization = strict_server
    sent, status, body = _stream_chunked_upload(port, authorization, planned_bytes=64 * MiB)
    assert status == 413, body
    assert b"the upload was stopped after" in body
    stopped_after = int(body.split(b"stopped after ")[1].split(b" bytes")[0])
    # The server reads the socket in pieces of up to about 256 KiB; it stops at the first
    # piece that crosses the limit.
    assert STRICT_BODY_LIMIT < stopped_after <= STRICT_BODY_LIMIT + MiB
    assert sent < 16 * MiB, f"{sent} bytes went out before the 413"


def test_symlink_builder_makes_a_link_entry() -> None:
    """The symlink case above tests what it says: its entry really is a Unix symbolic link."""
    info = zipfile.ZipFile(io.BytesIO(zip_with_symlink())).getinfo("b.png")
    assert stat.S_ISLNK(info.external_attr >> 16)


def test_deleting_a_data_set_while_a_job_is_submitted_on_it(stack: Stack) -> None:
    """Ten delete/submit pairs at once: never a 5xx, never both accepted; either the delete is
    refused (409, the job runs on) or the submit finds no data set (422, no job row)."""
    pairs = 10
    datasets = []
    for seed in range(pairs):
        response = stack.client.post(
            "/v1/datasets/builtin", json={"name": "eight_gaussians", "n": 64, "seed": seed}
        )
        assert response.status_code == 201, response.text
        datasets.append(response.json()["id"])
    answers: dict[tuple[str, str], Any] = {}
    start = threading.Barrier(2 * pairs)

    def submit(dataset_id: str) -> None:
        start.wait()
        answers["submit", dataset_id] = stack.client.post(
            "/v1/jobs",
            json={"dataset_id": dataset_id, "flow": POINTS_FLOW, "training": {"steps": 2}},
        )

    def delete(dataset_id: str) -> None:
        start.wait()
        answers["delete", dataset_id] = stack.client.delete(f"/v1/datasets/{dataset_id}")

    threads = [
        threading.Thread(target=action, args=(dataset_id,))
        for dataset_id in datasets
        for action in (submit, delete)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for dataset_id in datasets:
        submitted, deleted = answers["submit", dataset_id], answers["delete", dataset_id]
        outcome = (submitted.status_code, deleted.status_code)
        assert outcome in {(202, 409), (422, 204)}, (submitted.text, deleted.text)
        if outcome == (202, 409):
            assert deleted.json()["field"] == "dataset_id", deleted.text
            job_id = submitted.json()["id"]
            job = stack.client.get(f"/v1/jobs/{job_id}").json()
            assert job["dataset_id"] == dataset_id, job
            assert stack.client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
            stack.wait_for_job(job_id, states=("succeeded", "cancelled"))
            assert stack.client.delete(f"/v1/datasets/{dataset_id}").status_code == 204
        else:
            assert submitted.json()["field"] == "dataset_id", submitted.text
            assert stack.client.get(f"/v1/datasets/{dataset_id}").status_code == 404
            assert stack.client.get(f"/v1/jobs?dataset_id={dataset_id}").json()["items"] == []


def test_storage_quota_refuses_data_sets_and_jobs_naming_it(stack: Stack) -> None:
    """A tenant at its quota (data set arrays and checkpoints, in bytes) can store no more data
    sets and submit no more jobs; another tenant is not affected."""
    tenant = f"quota-{time.monotonic_ns()}"
    key = {"Authorization": f"Bearer {create_key(stack.settings.database_url, tenant)}"}
    first = b"1,2\n3,4\n"
    quota = 200  # room for one small data set's .npy (about 144 bytes), not for two
    settings = stack.settings.model_copy(update={"max_tenant_storage_bytes": quota})
    with TestClient(create_app(settings), headers=key) as client:
        stored = client.post("/v1/datasets", files={"file": ("a.csv", first)})
        assert stored.status_code == 201, stored.text
        before = _row_counts(stack)
        refused = client.post("/v1/datasets", files={"file": ("b.csv", first)})
        assert_refused(refused, 413, "file", "EFNF_MAX_TENANT_STORAGE_BYTES")
        assert f"above its quota {quota}" in refused.json()["message"]
        builtin = client.post("/v1/datasets/builtin", json={"name": "rings", "n": 10})
        assert_refused(builtin, 413, "n", "EFNF_MAX_TENANT_STORAGE_BYTES")
        assert _row_counts(stack) == before

        at_quota = settings.model_copy(
            update={"max_tenant_storage_bytes": stored.json()["size_bytes"]}
        )
        with TestClient(create_app(at_quota), headers=key) as full:
            job = full.post(
                "/v1/jobs", json={"dataset_id": stored.json()["id"], "flow": POINTS_FLOW}
            )
            assert_refused(job, 413, "dataset_id", "EFNF_MAX_TENANT_STORAGE_BYTES")
            assert _row_counts(stack) == before
        assert client.delete(f"/v1/datasets/{stored.json()['id']}").status_code == 204
