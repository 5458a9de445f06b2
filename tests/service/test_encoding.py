"""Array bodies (app/api/encoding.py): .npy round trips, hostile .npy files refused with a
message that names the problem, content negotiation, and JSON that writes float32 values as
the doubles they are."""

from __future__ import annotations

import io
import json
import pickle
import struct

import numpy as np
import pytest

from app.api.encoding import json_bytes, npy_bytes, npy_records, prefers_npy, read_npy
from flows.errors import DataError

LIMIT = 1 << 20


def saved(array: np.ndarray, allow_pickle: bool = False, version: tuple[int, int] | None = None):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version, allow_pickle=allow_pickle)
    return buffer.getvalue()


def header(descr: str, shape: tuple[int, ...], fortran: bool = False) -> bytes:
    """A version 1.0 .npy header that declares anything, followed by no data."""
    literal = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}"
    literal += " " * ((64 - (10 + len(literal) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(literal)) + literal.encode("latin1")


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(6, 2) / 7,
        np.arange(64, dtype=np.uint8).reshape(1, 1, 8, 8),
        np.arange(8, dtype=np.int64).reshape(4, 2) - 4,
        np.arange(6, dtype=np.float64).reshape(3, 2),
        np.arange(6, dtype=np.float16).reshape(3, 2),
    ],
    ids=["float32", "uint8-images", "int64", "float64", "float16"],
)
def test_npy_round_trips(array: np.ndarray) -> None:
    back = read_npy(npy_bytes(array), "body", LIMIT)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.c_contiguous and back.flags.writeable


def test_npy_reads_fortran_order_big_endian_and_version_2() -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    fortran = read_npy(saved(np.asfortranarray(array)), "body", LIMIT)
    np.testing.assert_array_equal(fortran, array)
    big = read_npy(saved(array.astype(">f4")), "body", LIMIT)
    assert big.dtype == np.dtype("float32") and big.dtype.isnative
    np.testing.assert_array_equal(big, array)
    np.testing.assert_array_equal(read_npy(saved(array, version=(2, 0)), "body", LIMIT), array)


def test_npy_bytes_is_what_numpy_load_reads() -> None:
    array = np.arange(10, dtype=np.float32).reshape(5, 2)[:, ::-1]  # not contiguous
    np.testing.assert_array_equal(np.load(io.BytesIO(npy_bytes(array))), array)


def test_npy_records_name_their_columns() -> None:
    records = npy_records({"log_prob": np.array([-1.5, 2.0], np.float32), "stderr": np.ones(2)})
    back = np.load(io.BytesIO(npy_bytes(records)), allow_pickle=False)
    assert back.dtype.names == ("log_prob", "stderr")
    np.testing.assert_array_equal(back["log_prob"], [-1.5, 2.0])


class Evil:
    """Unpickling this would run code: the reader must never get that far."""

    def __reduce__(self):
        return (pytest.fail, ("a .npy body was unpickled",))


HOSTILE = [
    ("pickled-objects", saved(np.array([Evil(), 1], dtype=object), allow_pickle=True), "objects"),
    ("raw-pickle", pickle.dumps(np.zeros((2, 2))), "not a .npy file"),
    ("not-npy", b"[[1.0, 2.0]]", "not a .npy file"),
    ("empty", b"", "not a .npy file"),
    ("magic-only", b"\x93NUMPY\x01\x00", "unreadable"),
    ("truncated-header", saved(np.zeros((4, 2)))[:20], "unreadable"),
    ("version-3", b"\x93NUMPY\x03\x00" + saved(np.zeros((1, 2)))[8:], "version 3.0"),
    ("booleans", saved(np.ones((2, 2), dtype=bool)), "'|b1'"),
    ("complex", saved(np.ones((2, 2), dtype=np.complex64)), "'<c8'"),
    ("strings", saved(np.array([["1", "2"]])), "'<U1'"),
    ("structured", saved(np.zeros(2, dtype=[("x", "<f4"), ("y", "<f4")])), "is not accepted"),
    ("scalar", saved(np.float32(1.0)), "a scalar"),
    ("truncated-data", saved(np.zeros((4, 2), np.float32))[:-4], "28 bytes of data follow"),
    ("trailing-data", saved(np.zeros((4, 2), np.float32)) + b"\0" * 8, "40 bytes of data"),
    ("huge-shape", header("<f8", (10**12, 2)), "above this service's"),
    ("huge-shape-in-budget", header("<f4", (1000, 2)), "but 0 bytes of data follow"),
    ("header-code", header("<f4", (1, 2)).replace(b"(1, 2)", b"__import__('os')"), "unreadable"),
]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [case[1:] for case in HOSTILE],
    ids=[case[0] for case in HOSTILE],
)
def test_hostile_npy_bodies_are_refused_naming_the_problem(content: bytes, fragment: str) -> None:
    with pytest.raises(DataError) as refused:
        read_npy(content, "body", LIMIT)
    assert refused.value.field == "body"
    assert refused.value.message.startswith("body: ")
    assert fragment in refused.value.message, refused.value.message


@pytest.mark.parametrize(
    ("accept", "npy"),
    [
        (None, False),
        ("", False),
        ("application/json", False),
        ("*/*", False),
        ("application/x-npy", True),
        ("application/x-npy, application/json;q=0.5", True),
        ("application/json, application/x-npy", False),  # a tie goes to JSON
        ("application/x-npy;q=0.4, application/json;q=0.9", False),
        ("application/x-npy;q=0.9, */*;q=0.1", True),
        ("text/html, application/x-npy;q=bad", False),
        ("APPLICATION/X-NPY", True),
    ],
)
def test_accept_chooses_npy_only_when_it_is_preferred(accept: str | None, npy: bool) -> None:
    assert prefers_npy(accept) is npy


def test_json_writes_float32_as_the_double_it_is_and_non_finite_as_null() -> None:
    values = np.array([0.1, -2.5e-8, 3.0, np.nan, np.inf], dtype=np.float32)
    body = json.loads(json_bytes({"values": values, "levels": np.arange(3, dtype=np.uint8)}))
    assert body["values"][:3] == [float(value) for value in values[:3]]
    assert body["values"][3:] == [None, None]
    assert body["levels"] == [0, 1, 2]


@pytest.mark.parametrize(
    "content",
    [
        b'{"inputs": [[1.5, 2]], "seed": 3}',
        b'{"inputs": [[NaN, 1]]}',  # orjson refuses NaN; pydantic's JSON mode reads it
        b'{"inputs": [[1, 2]], "seed": 5.0}',
        b'{"inputs": [[1, 2]], "seed": "7"}',
        b'{"inputs": [[1, 2]], "seed": true}',
        b'{"inputs": [[1, 2]], "method": null}',
        b'{"inputs": [[1, 2]], "seed": 123456789012345678901234567890}',
        b'{"inputs": [[1000000000000000000000000000000, 1]]}',  # orjson: a float
        b'{"inputs": [[-9223372036854775809, 1]]}',
        b'{"inputs": [[9223372036854775807, 1e400]]}',
        b'{"inputs": []}',
        b'{"inputs": [[1, 2]], "method": "guess"}',
        b'{"inputs": [[1, 2]], "extra": 1}',
        b"[[1, 2]]",
        b'{"inputs": [[1, 2]',
        b"\xff\xfe",
        b"",
    ],
)
def test_json_model_accepts_and_refuses_as_pydantic_json_mode(content: bytes) -> None:
    from pydantic import ValidationError

    from app.api.encoding import json_model
    from app.api.schemas import ScoreIn

    try:
        expected = ScoreIn.model_validate_json(content)
    except ValidationError as error:
        with pytest.raises(ValidationError) as refused:
            json_model(ScoreIn, content)
        assert refused.value.errors() == error.errors()
    else:
        got = json_model(ScoreIn, content)
        assert repr(got.model_dump()) == repr(expected.model_dump())
