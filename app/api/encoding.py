"""Array bodies over HTTP: JSON (orjson) and NumPy ``.npy`` (``application/x-npy``), both ways.

The one place the service turns arrays into bytes and back for scoring and sampling:

- **JSON**: responses are encoded with orjson straight from NumPy arrays (no Python list of
  floats, no second validation by pydantic). Floating-point arrays are widened to float64 first,
  so a float32 value is written exactly as the double it converts to (what ``float(x)`` and
  pydantic wrote before).
- **npy**: a request body with ``Content-Type: application/x-npy`` is one ``.npy`` file (format
  1.0 or 2.0) of numbers. It is read without ``np.load``: the header is parsed as a literal
  (never unpickled), only boolean-free numeric dtypes (signed and unsigned integers, floats) are
  accepted, and the declared shape must match the bytes that follow exactly, so a hostile header
  can neither run code nor make the server allocate more than it received. A response is
  ``.npy`` when the client's ``Accept`` prefers ``application/x-npy`` to JSON.

Clients need nothing of this package: the conventions are plain HTTP (media types and the
``X-Efnf-*`` headers named here), which ``efnf_client`` follows on its own.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

from flows.errors import DataError

__all__ = [
    "JSON_MEDIA",
    "NPY_MEDIA",
    "json_bytes",
    "json_model",
    "npy_bytes",
    "npy_records",
    "prefers_npy",
    "read_npy",
]

Model = TypeVar("Model", bound=BaseModel)

JSON_MEDIA = "application/json"
LONG_DIGITS = re.compile(rb"\d{19}")
NPY_MEDIA = "application/x-npy"
# What an .npy body may hold: signed and unsigned integers (image levels) and floats.
NPY_KINDS = "iuf"


def _as_json_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        # orjson writes C-contiguous arrays only.
        return np.ascontiguousarray(value, np.float64 if value.dtype.kind == "f" else None)
    return value


def json_bytes(body: Mapping[str, Any]) -> bytes:
    """``body`` as JSON; NumPy arrays are written as nested lists (floats as float64).

    Raises:
        TypeError: a value orjson cannot encode (a bug of the caller, not of the request).
    """
    return orjson.dumps(
        {key: _as_json_value(value) for key, value in body.items()},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def json_model(model: type[Model], content: bytes) -> Model:
    """A JSON body validated as ``model``: parsed by orjson, then validated from Python objects
    (for a batch of 256 points, 100 us instead of pydantic's own JSON mode's 200 us).

    A body orjson refuses (NaN, floats that overflow, broken UTF-8), one that is not an object,
    one that fails validation, and one with a run of 19 or more digits (orjson reads integers
    past 64 bits as floats, pydantic as integers) are validated in pydantic's JSON mode
    instead, so that what is accepted, as what, and the errors a client sees are that mode's.

    Raises:
        ValidationError: from pydantic's JSON mode.
    """
    if LONG_DIGITS.search(content):
        return model.model_validate_json(content)
    try:
        parsed = orjson.loads(content)
        if isinstance(parsed, dict):
            return model.model_validate(parsed)
    except (orjson.JSONDecodeError, ValidationError):
        pass
    return model.model_validate_json(content)


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as a ``.npy`` file (C order, never pickled)."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def npy_records(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Equal-length 1-D columns as one structured array of float64 fields, in order: one
    ``.npy`` file that names its columns (``records["log_prob"]``)."""
    length = len(next(iter(columns.values())))
    records = np.empty(length, dtype=[(name, "<f8") for name in columns])
    for name, values in columns.items():
        records[name] = values
    return records


def read_npy(content: bytes, field: str, max_bytes: int) -> np.ndarray:
    """An ``application/x-npy`` body as an array of numbers, or a ``DataError`` naming ``field``.

    Args:
        content: the request body.
        field: the name of the body in error messages and in the error's ``field``.
        max_bytes: the largest array (bytes of data) accepted; the body limit already bounds
            ``content``, this bounds what its header may declare.

    Raises:
        DataError: not a ``.npy`` file, a version other than 1.0 / 2.0, a header numpy cannot
            parse, a dtype that is not a number (objects, i.e. pickles; strings; structured;
            booleans; complex), a scalar, or data that does not match the declared shape.
    """
    stream = io.BytesIO(content)
    try:
        version = np.lib.format.read_magic(stream)
    except ValueError as error:
        raise DataError(
            f"{field}: not a .npy file ({error}); send an array saved by numpy.save", field
        ) from None
    readers = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    if version not in readers:
        raise DataError(
            f"{field}: .npy format version {version[0]}.{version[1]}; versions 1.0 and 2.0 (what "
            "numpy writes for numeric arrays) are accepted",
            field,
        )
    try:
        # numpy parses the header dictionary with ast.literal_eval: no code, no pickle.
        shape, fortran_order, dtype = readers[version](stream)
    except (ValueError, EOFError, SyntaxError) as error:
        raise DataError(f"{field}: the .npy header is unreadable ({error})", field) from None
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in NPY_KINDS:
        raise DataError(
            f"{field}: .npy dtype {dtype.str!r} is not accepted; send integers (8-bit levels) "
            "or floats (int8-64, uint8-64, float16-64), never Python objects",
            field,
        )
    if not shape:
        raise DataError(f"{field}: a scalar; send a batch, shape (B, D) or (B, C, H, W)", field)
    declared = math.prod(shape) * dtype.itemsize
    offset = stream.tell()
    available = len(content) - offset
    if declared > max_bytes:
        raise DataError(
            f"{field}: the .npy header declares shape {shape} of {dtype.str} ({declared} bytes), "
            f"above this service's {max_bytes} bytes",
            field,
        )
    if declared != available:
        raise DataError(
            f"{field}: the .npy header declares shape {shape} of {dtype.str} ({declared} bytes) "
            f"but {available} bytes of data follow (truncated or corrupt)",
            field,
        )
    array = np.frombuffer(content, dtype=dtype, offset=offset)
    order = "F" if fortran_order else "C"
    # Native byte order, writable, C-contiguous: what the JSON path hands over too.
    return np.ascontiguousarray(array.reshape(shape, order=order).astype(dtype.newbyteorder("=")))


def _media_ranges(accept: str) -> dict[str, float]:
    """``Accept`` as media range -> quality (RFC 9110 12.5.1); malformed qualities count as 0."""
    ranges: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        if not media:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranges[media.lower()] = max(quality, ranges.get(media.lower(), 0.0))
    return ranges


def _quality(ranges: dict[str, float], media: str) -> float:
    kind = media.split("/")[0]
    for candidate in (media, f"{kind}/*", "*/*"):
        if candidate in ranges:
            return ranges[candidate]
    return 0.0


def prefers_npy(accept: str | None) -> bool:
    """Whether ``Accept`` ranks ``application/x-npy`` above JSON (JSON wins ties and is the
    answer to a missing header, or to one that names neither)."""
    if not accept or "npy" not in accept.lower():
        return False
    ranges = _media_ranges(accept)
    return _quality(ranges, NPY_MEDIA) > _quality(ranges, JSON_MEDIA)
