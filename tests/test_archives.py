"""flows.data.archives: entry counting before zipfile parses, and limits counted while reading."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest

from flows.data import DataError
from flows.data.archives import ArchiveLimits, ArchiveReader, count_entries

CENTRAL_ENTRY = struct.Struct("<4s4B4HL2L5H2L")
END_OF_DIRECTORY = struct.Struct("<4s4H2LH")


def _directory_claiming_one_entry(records: int) -> bytes:
    """A file of ``records`` one-letter central-directory records whose end record claims 1."""
    record = CENTRAL_ENTRY.pack(
        b"PK\x01\x02", 20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0
    )
    directory = (record + b"a") * records
    end = END_OF_DIRECTORY.pack(b"PK\x05\x06", 0, 0, 1, 1, len(directory), 0, 0)
    return directory + end


def test_entries_are_counted_from_the_records_not_the_declared_count() -> None:
    content = _directory_claiming_one_entry(200_000)
    with pytest.raises(DataError, match="has more than 1000 entries"):
        count_entries(content, "lying.zip", max_entries=1000)
    assert count_entries(_directory_claiming_one_entry(7), "seven.zip", max_entries=10) == 7


def test_zip64_directories_are_counted() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index in range(65_536):
            archive.writestr(f"{index}", b"")
    content = buffer.getvalue()
    assert content.find(b"PK\x06\x06") > 0, "zipfile wrote no zip64 end record"
    assert count_entries(content, "big.zip", max_entries=100_000) == 65_536
    with pytest.raises(DataError, match="more than 65535 entries"):
        count_entries(content, "big.zip", max_entries=65_535)


def test_corrupt_directory_is_refused() -> None:
    content = bytearray(_directory_claiming_one_entry(3))
    content[CENTRAL_ENTRY.size + 1 : CENTRAL_ENTRY.size + 5] = b"XXXX"
    with pytest.raises(DataError, match="corrupt central directory at byte 47"):
        count_entries(bytes(content), "bad.zip", max_entries=10)
    with pytest.raises(DataError, match="no end-of-archive record"):
        count_entries(b"PK\x03\x04" + bytes(100), "bad.zip", max_entries=10)


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_reads_are_limited_per_entry_in_total_and_by_ratio() -> None:
    content = _zip({"a": bytes(3 * 2**20), "b": bytes(3 * 2**20)})
    generous = ArchiveLimits(
        max_entries=2, max_total_bytes=2**30, max_entry_bytes=2**30, max_ratio=10_000
    )
    with ArchiveReader(content, "z.zip", generous) as archive:
        assert [len(archive.read(member)) for member in archive.members()] == [3 * 2**20] * 2
    cases = [
        (
            ArchiveLimits(2, 2**30, 2**20, 10_000),
            "'a' of 'z.zip' decompresses to more than 1048576",
        ),
        (ArchiveLimits(2, 4 * 2**20, 2**30, 10_000), "more than 4194304 bytes in all"),
        (ArchiveLimits(2, 2**30, 2**30, 50), "expands more than 50 times"),
    ]
    for limits, message in cases:
        with (
            ArchiveReader(content, "z.zip", limits) as archive,
            pytest.raises(DataError, match=message),
        ):
            for member in archive.members():
                archive.read(member)
