"""Where results live: a local path or a URI (s3://, gs://, file://), read and written alike.

pyarrow's filesystems handle both kinds; local writes are atomic (temp file + rename). Every
storage location the search, the results writer and Ray see goes through `normalise` first, so a
relative path means the same folder to all of them.

This module is the one reader of the experiment's JSON and Parquet files and the one writer of
everything the driver stores: a file that does not parse is a `DamagedFile` naming it, and a
write the storage refuses (full, read-only, gone) is a `StorageWriteError` naming the location,
which the search turns into "free space, then --resume".
"""

from __future__ import annotations

import fnmatch
import io
import json
import pickletools
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dnet_tune.errors import DamagedFile, UserError, first_sentence
from dnet_tune.fileio import atomic_write, rows_to_table, table_to_rows

RESTORE = "restore it from a backup copy"


class StorageWriteError(Exception):
    """The storage refused a write: not the data's fault, and what was written before stays
    (writes are atomic), so the search can be resumed once the storage takes writes again."""

    def __init__(self, location: str, exc: OSError) -> None:
        self.location = location
        self.reason = exc.strerror or first_sentence(exc) or type(exc).__name__
        super().__init__(f"cannot write '{location}' ({self.reason})")


def is_uri(path: str) -> bool:
    return "://" in path


def normalise(location: str) -> str:
    """A URI as given; a local path made absolute (Ray and remote workers need absolute paths)."""
    return location if is_uri(location) else str(Path(location).expanduser().resolve())


def _resolve(location: str) -> tuple[pafs.FileSystem, str]:
    if is_uri(location):
        try:
            fs, path = pafs.FileSystem.from_uri(location)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise UserError(f"cannot open storage '{location}': {exc}") from None
        return fs, path
    return pafs.LocalFileSystem(), normalise(location)


def join(location: str, *parts: str) -> str:
    return "/".join([location.rstrip("/"), *parts]) if is_uri(location) else str(
        Path(location, *parts))


def write_bytes(location: str, data: bytes) -> None:
    try:
        if not is_uri(location) or location.startswith("file://"):
            local = location[len("file://"):] if location.startswith("file://") else location
            atomic_write(local, lambda p: p.write_bytes(data))
            return
        fs, path = _resolve(location)
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as f:
            f.write(data)
    except OSError as exc:
        raise StorageWriteError(location, exc) from exc


def _cannot_read(location: str, exc: OSError) -> UserError:
    if isinstance(exc, FileNotFoundError):
        return UserError(f"'{location}' does not exist")
    return UserError(f"cannot read '{location}' ({exc.strerror or first_sentence(exc) or exc})")


def read_bytes(location: str) -> bytes:
    fs, path = _resolve(location)
    try:
        with fs.open_input_stream(path) as f:
            return bytes(f.read())
    except OSError as exc:
        raise _cannot_read(location, exc) from None


def read_json(location: str, remedy: str = RESTORE) -> Any:
    """The JSON document at `location`; text that does not parse (cut short by a copy or a
    full disk, overwritten) is a `DamagedFile` naming it, with `remedy` as what to do."""
    data = read_bytes(location)
    try:
        return json.loads(data)
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8 text
        where = (f" at line {exc.lineno}, column {exc.colno}"
                 if isinstance(exc, json.JSONDecodeError) else "")
        raise DamagedFile(location, f"not valid JSON{where}", remedy) from None


def check_pickle(location: str, remedy: str = RESTORE) -> None:
    """A `DamagedFile` unless `location` holds one whole pickle stream. The opcodes are walked,
    not run: no object is built and no code from the file is executed, and a stream cut
    short (no STOP) or overwritten (an unknown opcode) is found either way."""
    data = read_bytes(location)
    try:
        for _ in pickletools.genops(data):
            pass
    except Exception as exc:  # genops raises ValueError mostly, but also struct/Unicode errors
        raise DamagedFile(location, f"not a whole pickle: {first_sentence(exc)}",
                          remedy) from None


def exists(location: str) -> bool:
    fs, path = _resolve(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def _entries(location: str) -> list[pafs.FileInfo]:
    """What a folder holds, directly; nothing if it is not a folder."""
    fs, path = _resolve(location)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return []
    return list(fs.get_file_info(pafs.FileSelector(path)))


def list_dirs(location: str) -> list[str]:
    return sorted(join(location, i.base_name) for i in _entries(location)
                  if i.type == pafs.FileType.Directory)


def list_files(location: str, pattern: str = "*") -> list[str]:
    """Names (not paths) of the files directly in `location` that match `pattern`, sorted."""
    return sorted(i.base_name for i in _entries(location)
                  if i.type == pafs.FileType.File and fnmatch.fnmatchcase(i.base_name, pattern))


def write_table(location: str, rows: list[dict[str, Any]]) -> None:
    sink = io.BytesIO()
    pq.write_table(rows_to_table(rows), sink)
    write_bytes(location, sink.getvalue())


def read_table(location: str, remedy: str = RESTORE) -> list[dict[str, Any]]:
    """Rows of a Parquet file, read through Arrow's own file object; one that does not parse is
    a `DamagedFile` naming it, with `remedy` as what to do.

    Not from Python bytes: Arrow's Parquet reader finishes in its thread pool, and the last
    reference to a Python-backed buffer may then be dropped by a pool thread after the
    interpreter began shutting down; that thread must take the GIL, Python makes it exit
    instead, and std::terminate aborts the process ("terminate called without an active
    exception", exit 134, seen from `dnet-tune report` about once in 30 runs). Arrow-owned
    buffers need no GIL to be freed.
    """
    fs, path = _resolve(location)
    try:
        f = fs.open_input_file(path)
    except OSError as exc:
        raise _cannot_read(location, exc) from None
    with f:
        try:
            return table_to_rows(pq.read_table(f))
        except (pa.ArrowException, OSError, ValueError) as exc:  # cut short, bytes overwritten
            raise DamagedFile(location, f"not a readable Parquet file: {_parquet_reason(exc)}",
                              remedy) from None


def _parquet_reason(exc: Exception) -> str:
    """Arrow's message without the name it gives the source ('<Buffer>'), first sentence."""
    return re.sub(r"^Could not open Parquet input source '[^']*': ", "", first_sentence(exc))
