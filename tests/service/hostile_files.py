"""Builders of broken and hostile upload files for tests/service/test_hostile_input.py."""

from __future__ import annotations

import io
import stat
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

MiB = 1024 * 1024


def npy(array: np.ndarray) -> bytes:
    """``array`` as .npy; object arrays are pickled, as numpy does when allowed."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npz(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def png(pixels: np.ndarray, **options: int) -> bytes:
    """(H, W) gray or (H, W, 3) RGB uint8 pixels as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def other_format(pixels: np.ndarray, format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=format)
    return buffer.getvalue()


def gray(height: int = 8, width: int = 8, value: int = 0) -> np.ndarray:
    return np.full((height, width), value, np.uint8)


def zip_of(entries: list[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of (name, content) entries, in order; a name may repeat."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns on duplicate names
        with zipfile.ZipFile(buffer, "w", compression) as archive:
            for name, content in entries:
                archive.writestr(name, content)
    return buffer.getvalue()


def zip_with_symlink() -> bytes:
    """A regular PNG and a Unix symbolic link, named like a PNG, pointing outside."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.png", png(gray()))
        link = zipfile.ZipInfo("b.png")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "../../etc/passwd")
    return buffer.getvalue()


def zip_with_directory_only() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("images.png/"), b"")
    return buffer.getvalue()


def encrypted_zip() -> bytes:
    """A PNG entry whose headers say it is encrypted (flag bit 0)."""
    content = bytearray(zip_of([("a.png", png(gray()))]))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = content.find(signature) + offset
        flags = struct.unpack_from("<H", content, at)[0]
        struct.pack_into("<H", content, at, flags | 0x1)
    return bytes(content)


def lying_size_zip(name: str, inflated_bytes: int, declared_bytes: int) -> bytes:
    """An entry of ``inflated_bytes`` zeros whose headers declare ``declared_bytes``."""
    content = bytearray(zip_of([(name, bytes(inflated_bytes))]))
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        struct.pack_into("<L", content, content.find(signature) + offset, declared_bytes)
    return bytes(content)


def png_declaring(width: int, height: int, pixel_data: bool = True) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` gray pixels; the data is one zero row
    compressed (a decompression bomb when the size is large), or absent."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunks = [chunk(b"IHDR", header)]
    if pixel_data:
        chunks.append(chunk(b"IDAT", zlib.compress(bytes(1 + width), 9)))
    chunks.append(chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def truncated(content: bytes, keep: float = 0.5) -> bytes:
    return content[: int(len(content) * keep)]


def npy_declaring(shape: tuple[int, ...]) -> bytes:
    """A .npy header declaring ``shape`` float32, followed by 16 bytes of data."""
    buffer = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + bytes(16)


@dataclass(frozen=True)
class Chunks:
    """A body of ``count`` chunks of ``size`` bytes, which the client sends chunked (no
    Content-Length). Each iteration starts afresh, so one case can run on every stack."""

    count: int
    size: int
    byte: bytes = b"\0"

    def __iter__(self) -> Iterator[bytes]:
        return (self.byte * self.size for _ in range(self.count))
