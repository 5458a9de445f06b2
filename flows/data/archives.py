"""Opening untrusted zip archives (.zip of PNGs, .npz) without trusting what their headers say.

Three defences, in the order they run:

1. The central directory is counted by walking its records *before* :mod:`zipfile` parses it,
   so an archive with millions of tiny entries is refused without building millions of objects.
2. Entry names and attributes are checked: no absolute paths, drive letters or ``..``
   components, no symbolic links, no encrypted entries, and no name that appears twice.
3. Entries are decompressed in chunks while counting what comes out: each entry and the archive
   as a whole have a byte limit, and once an entry has produced more than
   ``RATIO_CHECK_AFTER_BYTES`` its output may be at most ``max_ratio`` times its compressed
   size. A bomb is stopped at the first chunk over a limit, whatever sizes its headers declare.
"""

from __future__ import annotations

import io
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field

from flows.data.errors import FileError

__all__ = [
    "DEFAULT_MAX_RATIO",
    "RATIO_CHECK_AFTER_BYTES",
    "ArchiveLimits",
    "ArchiveReader",
    "count_entries",
]

DEFAULT_MAX_RATIO = 200.0
# Small entries compress by large factors legitimately (a blank 8x8 image, a header); the ratio
# only says "bomb" once an entry has produced a meaningful amount of output.
RATIO_CHECK_AFTER_BYTES = 1024 * 1024
READ_CHUNK = 64 * 1024

_EOCD = struct.Struct("<4s4H2LH")
_EOCD_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
# signature, record size, 2 versions, 2 disk numbers, entries on this disk, entries,
# directory size (field 8), directory offset.
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_DIRECTORY_SIZE_FIELD = 8
_ZIP64_EOCD_SIGNATURE = b"PK\x06\x06"
_CENTRAL_ENTRY = struct.Struct("<4s4B4HL2L5H2L")
_CENTRAL_ENTRY_SIGNATURE = b"PK\x01\x02"
_MAX_COMMENT = 0xFFFF
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)


@dataclass(frozen=True)
class ArchiveLimits:
    """Limits on one archive: entries, decompressed bytes per entry and in all, and the ratio."""

    max_entries: int
    max_total_bytes: int
    max_entry_bytes: int
    max_ratio: float = DEFAULT_MAX_RATIO


def _central_directory(content: bytes, filename: str) -> tuple[int, int]:
    """(start, size) of the central directory, found from the end-of-central-directory record."""
    search_from = max(0, len(content) - _EOCD.size - _MAX_COMMENT)
    position = content.rfind(_EOCD_SIGNATURE, search_from)
    if position < 0 or position + _EOCD.size > len(content):
        raise FileError(filename, "is not a valid zip archive: no end-of-archive record")
    _, _, _, _, _, size, _, _ = _EOCD.unpack_from(content, position)
    end = position
    locator_at = position - _ZIP64_LOCATOR.size
    if locator_at >= 0 and content[locator_at : locator_at + 4] == _ZIP64_LOCATOR_SIGNATURE:
        # The record sits right before its locator (its stored offset is wrong in an archive
        # with data prepended, which zipfile accepts too), so it is read from there.
        record_at = locator_at - _ZIP64_EOCD.size
        if record_at < 0 or content[record_at : record_at + 4] != _ZIP64_EOCD_SIGNATURE:
            raise FileError(filename, "is not a valid zip archive: broken zip64 record")
        size = _ZIP64_EOCD.unpack_from(content, record_at)[_ZIP64_DIRECTORY_SIZE_FIELD]
        end = record_at
    start = end - size
    if start < 0:
        raise FileError(
            filename,
            f"is not a valid zip archive: its central directory ({size} bytes) "
            "does not fit in the file",
        )
    return start, size


def count_entries(content: bytes, filename: str, max_entries: int) -> int:
    """Counts the central directory's entries, refusing as soon as there are more than allowed.

    Raises:
        DataError: not a zip archive, a corrupt directory, or more than ``max_entries`` entries.
    """
    start, size = _central_directory(content, filename)
    position, end, count = start, start + size, 0
    while position < end:
        if position + _CENTRAL_ENTRY.size > end or (
            content[position : position + 4] != _CENTRAL_ENTRY_SIGNATURE
        ):
            raise FileError(
                filename,
                f"is not a valid zip archive: corrupt central directory at byte {position}",
            )
        count += 1
        if count > max_entries:
            raise FileError(
                filename,
                f"has more than {max_entries} entries; at most {max_entries} are accepted",
            )
        record = _CENTRAL_ENTRY.unpack_from(content, position)
        position += _CENTRAL_ENTRY.size + record[12] + record[13] + record[14]
    return count


def _is_symlink(member: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(member.external_attr >> 16)


def _normalized(name: str) -> str:
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    return "/".join(parts)


def _check_member(member: zipfile.ZipInfo, filename: str) -> None:
    name = member.filename
    normalized = name.replace("\\", "/")
    has_drive = len(normalized) >= 2 and normalized[1] == ":"
    if normalized.startswith("/") or has_drive or ".." in normalized.split("/"):
        raise FileError(
            filename,
            "has an absolute path or a '..' component; entries "
            "must be relative paths inside the archive",
            entry=name,
        )
    if any(ord(character) < 32 for character in name):
        raise FileError(filename, "has a control character in its name", entry=name)
    if _is_symlink(member):
        raise FileError(
            filename, "is a symbolic link; only regular files are accepted", entry=name
        )
    if member.flag_bits & 0x1:
        raise FileError(filename, "is encrypted; upload an archive without a password", entry=name)


@dataclass
class ArchiveReader:
    """A checked, open archive that reads its entries under the limits (use as a context)."""

    content: bytes
    filename: str
    limits: ArchiveLimits
    total_bytes: int = 0
    _archive: zipfile.ZipFile = field(init=False)

    def __post_init__(self) -> None:
        count_entries(self.content, self.filename, self.limits.max_entries)
        try:
            self._archive = zipfile.ZipFile(io.BytesIO(self.content))
        except (zipfile.BadZipFile, ValueError, EOFError, OSError) as error:
            raise FileError(self.filename, f"is not a valid zip archive: {error}") from None

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *_: object) -> None:
        self._archive.close()

    def members(self) -> list[zipfile.ZipInfo]:
        """Every entry, checked (names, links, encryption, duplicates), in archive order."""
        seen: dict[str, str] = {}
        members = self._archive.infolist()
        for member in members:
            _check_member(member, self.filename)
            key = _normalized(member.filename).lower()
            if key in seen:
                raise FileError(
                    self.filename,
                    f"duplicates entry {seen[key]!r}; every entry name must be unique",
                    entry=member.filename,
                )
            seen[key] = member.filename
        return members

    def read(self, member: zipfile.ZipInfo) -> bytes:
        """The entry's bytes, stopped at the first chunk over a limit."""
        limits = self.limits
        chunks: list[bytes] = []
        size = 0
        try:
            with self._archive.open(member) as stream:
                while chunk := stream.read(READ_CHUNK):
                    size += len(chunk)
                    chunks.append(chunk)
                    if size > limits.max_entry_bytes:
                        raise FileError(
                            self.filename,
                            f"decompresses to more than {limits.max_entry_bytes} bytes, "
                            "the limit for one entry (possible zip bomb)",
                            entry=member.filename,
                        )
                    if self.total_bytes + size > limits.max_total_bytes:
                        raise FileError(
                            self.filename,
                            f"decompresses to more than "
                            f"{limits.max_total_bytes} bytes in all, the limit for an archive "
                            f"(reached in entry {member.filename!r}; possible zip bomb)",
                        )
                    ratio = size / max(member.compress_size, 1)
                    if size > RATIO_CHECK_AFTER_BYTES and ratio > limits.max_ratio:
                        raise FileError(
                            self.filename,
                            f"expands more than {limits.max_ratio:g} times its "
                            f"compressed size ({member.compress_size} bytes); refused as a "
                            "likely zip bomb",
                            entry=member.filename,
                        )
        except _READ_ERRORS as error:
            raise FileError(
                self.filename, f"could not be extracted: {error}", entry=member.filename
            ) from None
        self.total_bytes += size
        return b"".join(chunks)
