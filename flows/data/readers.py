"""Reading uploaded dataset files (.npy, .npz, .csv, .zip of PNGs) into validated Datasets.

Uploads are untrusted: nothing is unpickled, sizes are checked against limits from the declared
headers *before* anything is allocated or decompressed, archives are opened through
:mod:`flows.data.archives` (entry count, names, links, duplicates, and decompressed sizes counted
while reading), PNG headers are checked against the pixel cap before decoding, and every failure
is a :class:`DataError`, most of them a :class:`FileError` that names the file and entry as
data beside the problem.
"""

from __future__ import annotations

import array
import csv
import io
import math
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from flows.data.archives import DEFAULT_MAX_RATIO, ArchiveLimits, ArchiveReader
from flows.data.dataset import (
    DATA_KINDS,
    IMAGES,
    MAX_IMAGE_SIDE,
    MAX_POINT_DIM,
    POINTS,
    DataError,
    DataKind,
    Dataset,
    validate_dataset,
)
from flows.data.errors import FileError

__all__ = [
    "ACCEPTED_EXTENSIONS",
    "MAX_BYTES",
    "MAX_ZIP_ENTRIES",
    "ReadLimits",
    "read_csv",
    "read_dataset_file",
    "read_npy",
    "read_npz",
    "read_png_zip",
]

MAX_BYTES = 512 * 2**20
MAX_ZIP_ENTRIES = 100_000
# A PNG entry holds at most one 16-bit RGBA image of the allowed size, stored uncompressed, and
# its metadata chunks (Pillow reads at most 1 MiB of text per chunk).
PNG_METADATA_BYTES = 2 * 1024 * 1024
NPZ_PREFERRED_NAMES = ("x", "data")
# The longest CSV line read: 64 numbers of up to 1 KiB each. Longer lines are refused before
# the csv module splits them into fields (a 59 MB line of 10 M fields took 28 s and gigabytes).
MAX_CSV_LINE_CHARS = 64 * 1024
ACCEPTED_EXTENSIONS = (".csv", ".npy", ".npz", ".zip")

# Pillow reports malformed input through all of these (SyntaxError for broken chunks, ValueError
# for oversized text chunks, OSError for truncated data); for an upload, each means a bad file.
_PIL_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    zlib.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


@dataclass(frozen=True)
class ReadLimits:
    """What reading one uploaded file may cost; the service builds one from its settings.

    Attributes:
        max_bytes: the limit on the content's size and on the declared uncompressed (and, for
            PNG archives, decoded) size of archive members.
        max_entries: the limit on the number of entries in a .zip or .npz archive.
        max_image_side: the largest image height or width (checked before a PNG is decoded).
        max_ratio: the largest decompressed-to-compressed ratio of an archive entry.
    """

    max_bytes: int = MAX_BYTES
    max_entries: int = MAX_ZIP_ENTRIES
    max_image_side: int = MAX_IMAGE_SIDE
    max_ratio: float = DEFAULT_MAX_RATIO

    def archive(self, max_entry_bytes: int) -> ArchiveLimits:
        """The limits of an archive read under these limits, whose entries hold at most
        ``max_entry_bytes`` each."""
        return ArchiveLimits(self.max_entries, self.max_bytes, max_entry_bytes, self.max_ratio)


DEFAULT_LIMITS = ReadLimits()


def read_dataset_file(
    content: bytes,
    filename: str,
    kind: DataKind | None = None,
    *,
    limits: ReadLimits = DEFAULT_LIMITS,
) -> Dataset:
    """Reads an uploaded file into a validated Dataset, choosing the reader by extension.

    ``.npy`` and ``.npz`` hold either kind (inferred from the rank when ``kind`` is None: rank 2 is
    points, rank 3 or 4 images); ``.csv`` holds points; ``.zip`` holds PNG images. The extension is
    matched case-insensitively.

    Args:
        content: the file's bytes.
        filename: the file's name, used for the extension and in error messages.
        kind: the expected kind, or None to accept what the file holds.
        limits: sizes, archive entries, image side and compression ratio.

    Returns:
        The validated dataset.

    Raises:
        DataError: the extension is not accepted, the file is malformed or over a limit, or its
            kind differs from ``kind``.
    """
    if kind is not None and kind not in DATA_KINDS:
        raise DataError(f"kind {kind!r} is unknown; use 'images', 'points' or None")
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    if suffix not in ACCEPTED_EXTENSIONS:
        raise FileError(
            filename,
            f"has extension {suffix or '(none)'!r}; accepted extensions are "
            f"{', '.join(ACCEPTED_EXTENSIONS)}",
        )
    if len(content) > limits.max_bytes:
        raise FileError(
            filename, f"is {len(content)} bytes; at most {limits.max_bytes} bytes are accepted"
        )
    if suffix == ".csv":
        _check_fixed_kind(filename, POINTS, kind)
        return read_csv(content, filename)
    if suffix == ".zip":
        _check_fixed_kind(filename, IMAGES, kind)
        return read_png_zip(content, filename, limits=limits)
    if suffix == ".npy":
        values = read_npy(content, filename)
    else:
        values = read_npz(content, filename, limits=limits)
    dataset = validate_dataset(values, kind or _infer_kind(values, filename))
    side = limits.max_image_side
    if dataset.kind == IMAGES and max(dataset.shape[1:]) > side:
        _, height, width = dataset.shape
        raise FileError(
            filename, f"holds {height}x{width} images; images may be at most {side}x{side}"
        )
    return dataset


def _check_fixed_kind(filename: str, holds: DataKind, kind: DataKind | None) -> None:
    if kind is not None and kind != holds:
        raise FileError(
            filename,
            f"holds {holds} but {kind} were requested; .csv files hold points "
            "and .zip files hold PNG images (use .npy or .npz for either)",
        )


def _infer_kind(values: np.ndarray, filename: str) -> DataKind:
    if values.ndim == 2:
        return POINTS
    if values.ndim in (3, 4):
        return IMAGES
    raise FileError(
        filename,
        f"holds an array of shape {values.shape} (rank {values.ndim}); expected "
        "rank 2 (N, D) points or rank 3 (N, H, W) / rank 4 (N, C, H, W) images",
    )


def read_npy(content: bytes, name: str) -> np.ndarray:
    """Loads a .npy file without unpickling, after checking its header against its length.

    Args:
        content: the file's bytes.
        name: the name used in error messages.

    Returns:
        The (not yet validated) array.

    Raises:
        DataError: not a .npy file, an object (pickled) array, or truncated.
    """
    stream = io.BytesIO(content)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise FileError(
                name,
                f"is a .npy file of format version {version}; versions 1.0 and 2.0 "
                "(what numpy writes for numeric arrays) are accepted",
            )
    except (ValueError, EOFError) as error:
        if isinstance(error, DataError):
            raise
        raise FileError(name, f"is not a valid .npy file: {error}") from None
    if dtype.hasobject:
        raise FileError(name, "contains Python objects (pickle); only numeric arrays are accepted")
    # np.load allocates the declared shape before reading, so a lying header could ask for
    # terabytes; the data must actually be present first.
    declared = math.prod(shape) * dtype.itemsize
    available = len(content) - stream.tell()
    if declared > available:
        raise FileError(
            name,
            f"is truncated or corrupt: its header declares shape {shape} of {dtype} "
            f"({declared} bytes) but only {available} bytes of data follow",
        )
    try:
        return np.load(io.BytesIO(content), allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        raise FileError(name, f"could not be read as a .npy file: {error}") from None


def _check_declared_size(members: list[zipfile.ZipInfo], filename: str, max_bytes: int) -> None:
    declared = sum(member.file_size for member in members)
    if declared > max_bytes:
        raise FileError(
            filename,
            f"declares {declared} bytes uncompressed; at most {max_bytes} bytes are "
            "accepted (possible zip bomb)",
        )


def read_npz(content: bytes, filename: str, *, limits: ReadLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Loads one array from a .npz archive: the one named ``x`` or ``data``, or the only one.

    The members' declared uncompressed sizes are checked against ``limits.max_bytes`` before
    anything is decompressed, the chosen member is decompressed under the same limit (and
    ``limits.max_ratio``) counted while reading, and it is parsed with :func:`read_npy` (no
    unpickling).

    Args:
        content: the file's bytes.
        filename: the name used in error messages.
        limits: ``max_bytes`` limits the total declared, and actual, uncompressed size;
            ``max_entries`` the number of members; ``max_ratio`` a member's decompression ratio.

    Returns:
        The (not yet validated) array.

    Raises:
        DataError: not a zip archive, over a limit, no unambiguous array, or a bad member.
    """
    with ArchiveReader(content, filename, limits.archive(limits.max_bytes)) as archive:
        members = [member for member in archive.members() if not member.is_dir()]
        _check_declared_size(members, filename, limits.max_bytes)
        by_name = {member.filename.removesuffix(".npy"): member for member in members}
        chosen = next((by_name[name] for name in NPZ_PREFERRED_NAMES if name in by_name), None)
        if chosen is None and len(by_name) == 1:
            chosen = next(iter(by_name.values()))
        if chosen is None:
            raise FileError(
                filename,
                f"holds arrays {sorted(by_name)}; name the dataset array 'x' or "
                "'data', or store exactly one array",
            )
        member_bytes = archive.read(chosen)
    return read_npy(member_bytes, f"{filename}:{chosen.filename}")


def _parse_row(row: list[str]) -> list[float | None]:
    parsed: list[float | None] = []
    for field in row:
        text = field.strip()
        try:
            # float() also takes "1_000"; underscores are not a CSV number format.
            parsed.append(None if "_" in text else float(text))
        except ValueError:
            parsed.append(None)
    return parsed


def _bounded_lines(text: str, filename: str) -> Iterator[str]:
    """The physical lines of ``text``, each checked for length and separators before the csv
    module parses it, so that a line's cost is bounded whatever the file holds.

    A line with 64 or more commas has more than 64 fields, or a quoted field with commas in it;
    neither is a row of numbers.
    """
    for line_number, line in enumerate(io.StringIO(text, newline=""), start=1):
        separators = line.count(",")
        if separators >= MAX_POINT_DIM:
            raise FileError(
                filename,
                f"line {line_number} has {separators + 1} columns; at most "
                f"{MAX_POINT_DIM} are accepted",
            )
        if len(line) > MAX_CSV_LINE_CHARS:
            raise FileError(
                filename,
                f"line {line_number} is {len(line)} characters long; a row of at "
                f"most {MAX_POINT_DIM} numbers fits in {MAX_CSV_LINE_CHARS}",
            )
        yield line


def read_csv(content: bytes, filename: str) -> Dataset:
    """Reads points from CSV: one point per row, an optional first row of column names.

    Blank lines are skipped. The first row is a header if none of its fields is a number.

    Args:
        content: the file's bytes, UTF-8 (a byte-order mark is allowed).
        filename: the name used in error messages.

    Returns:
        The validated points dataset.

    Raises:
        DataError: not UTF-8; a row with text, a non-finite number, or a different number of
            fields than the first; more than 64 columns; no data rows.
    """
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FileError(filename, f"is not UTF-8 text: {error}") from None
    values = array.array("d")
    columns: int | None = None
    rows = 0
    try:
        reader = csv.reader(_bounded_lines(text, filename))
        for row in reader:
            if not row or all(not field.strip() for field in row):
                continue
            line = reader.line_num
            parsed = _parse_row(row)
            if columns is None:
                columns = len(row)
                if columns > MAX_POINT_DIM:
                    raise FileError(
                        filename,
                        f"line {line} has {columns} columns; at most {MAX_POINT_DIM} are accepted",
                    )
                if all(value is None for value in parsed):
                    continue
            values.extend(_numeric_row(row, parsed, columns, filename, line))
            rows += 1
    except csv.Error as error:
        raise FileError(filename, f"is not valid CSV: {error}") from None
    if rows == 0:
        raise FileError(filename, "has no data rows; expected one numeric row per point")
    assert columns is not None
    points = np.frombuffer(values, dtype=np.float64).reshape(rows, columns)
    return validate_dataset(points, POINTS)


def _numeric_row(
    row: list[str], parsed: list[float | None], columns: int, filename: str, line: int
) -> list[float]:
    """Returns the row's numbers, or raises naming the line if it is ragged or not all numeric."""
    if len(row) != columns:
        raise FileError(
            filename,
            f"line {line} has {len(row)} fields but earlier rows have {columns}; "
            "every row must have the same number of columns",
        )
    for column, (field, value) in enumerate(zip(row, parsed, strict=True), start=1):
        if value is None:
            shown = field if len(field) <= 40 else field[:37] + "..."
            raise FileError(
                filename,
                f"line {line}, column {column}: {shown!r} is not a number; data rows "
                "must be numeric (only the first row may hold column names)",
            )
        if not math.isfinite(value):
            raise FileError(
                filename,
                f"line {line}, column {column}: {field.strip()!r} is not a finite "
                "number; coordinates must be finite",
            )
    return [value for value in parsed if value is not None]


def _is_skipped_entry(name: str) -> bool:
    parts = name.split("/")
    return parts[0] == "__MACOSX" or parts[-1].startswith(".")


def _decode_png(data: bytes, entry: str, filename: str, max_side: int) -> np.ndarray:
    """Decodes one PNG entry to ``(H, W, C)`` uint8 with C in {1, 3}.

    Only Pillow's PNG decoder may open the data, and the size in the header is checked against
    ``max_side`` (and the pixel count against ``max_side ** 2``) before any pixel is decoded;
    Pillow's own decompression-bomb warning counts as an error too.
    """
    max_pixels = max_side * max_side
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
                width, height = image.size
                if width * height > max_pixels or max(width, height) > max_side:
                    raise FileError(
                        filename,
                        f"is {width}x{height} pixels; images may be at most "
                        f"{max_side}x{max_side} ({max_pixels} pixels)",
                        entry=entry,
                    )
                image.load()
                return _pixels_of(image)
    except UnidentifiedImageError:
        raise FileError(
            filename, "is not a PNG image (its content is not PNG data)", entry=entry
        ) from None
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise FileError(filename, f"is a decompression bomb: {error}", entry=entry) from None
    except _PIL_DECODE_ERRORS as error:
        raise FileError(filename, f"is a corrupt or unsafe PNG: {error}", entry=entry) from None


def _pixels_of(image: Image.Image) -> np.ndarray:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit grayscale: Pillow's convert("L") clips instead of rescaling, so rescale here.
        wide = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        return ((wide * 255 + 32767) // 65535).astype(np.uint8)[..., None]
    if image.mode in ("1", "L", "LA", "La"):
        return np.asarray(image.convert("L"), dtype=np.uint8)[..., None]
    # RGB as is; RGBA/RGBa lose alpha; palette and anything else become RGB, the lossless choice.
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_png_zip(content: bytes, filename: str, *, limits: ReadLimits = DEFAULT_LIMITS) -> Dataset:
    """Reads a zip archive of same-sized PNG images, in entry-name order.

    Directories, ``__MACOSX/`` and dotfiles are ignored; every other entry must be a relative
    ``.png`` path that is a regular file and appears once. Grayscale (``L``, ``1``, ``LA``,
    16-bit) becomes 1 channel; ``RGB``, ``RGBA`` (alpha dropped), palette and other modes become
    3 channels. Images larger than ``limits.max_image_side`` are rejected from their header,
    before decoding.

    Args:
        content: the archive's bytes.
        filename: the name used in error messages.
        limits: ``max_bytes`` limits the total declared uncompressed size of the entries and the
            decoded pixel bytes; ``max_entries`` the number of entries; ``max_image_side`` the
            height and width of an image; ``max_ratio`` an entry's decompression ratio.

    Returns:
        The validated images dataset, uint8 ``(N, C, H, W)``.

    Raises:
        DataError: a bad archive or entry (named), a limit exceeded, or images that differ in size
            or channel count (the first mismatching entry is named).
    """
    max_bytes, max_side = limits.max_bytes, limits.max_image_side
    entry_bytes = min(max_bytes, 8 * max_side * max_side + PNG_METADATA_BYTES)
    with ArchiveReader(content, filename, limits.archive(entry_bytes)) as archive:
        members = []
        for member in archive.members():
            if member.is_dir() or _is_skipped_entry(member.filename):
                continue
            if not member.filename.lower().endswith(".png"):
                raise FileError(
                    filename,
                    "is not a .png file; the archive may hold only PNG images",
                    entry=member.filename,
                )
            members.append(member)
        if not members:
            raise FileError(filename, "contains no .png images")
        _check_declared_size(members, filename, max_bytes)
        members.sort(key=lambda member: member.filename)
        images: list[np.ndarray] = []
        for member in members:
            pixels = _decode_png(archive.read(member), member.filename, filename, max_side)
            if images:
                _check_same_shape(images[0], members[0].filename, pixels, member.filename)
            elif pixels.nbytes * len(members) > max_bytes:
                raise FileError(
                    filename,
                    f"would decode to {pixels.nbytes * len(members)} bytes "
                    f"({len(members)} images of shape {pixels.shape}); at most {max_bytes} bytes "
                    "are accepted",
                )
            images.append(pixels)
    return validate_dataset(np.stack(images).transpose(0, 3, 1, 2), IMAGES)


def _describe(pixels: np.ndarray) -> str:
    height, width, channels = pixels.shape
    return f"{width}x{height} with {channels} channel{'s' if channels > 1 else ''}"


def _check_same_shape(first: np.ndarray, first_name: str, pixels: np.ndarray, name: str) -> None:
    if pixels.shape != first.shape:
        raise DataError(
            f"entry {name!r} is {_describe(pixels)} but {first_name!r} is {_describe(first)}; "
            "all images must have the same size and channel count"
        )
