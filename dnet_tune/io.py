"""Atomic file writes: a crash or a bad input never leaves a half-written result behind."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` on a temp file next to `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text))


def json_safe(value: Any) -> Any:
    """NaN/inf are not JSON: an empty shot group's accuracy becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(json_safe(data), indent=2) + "\n")


def rows_to_table(rows: list[dict[str, Any]]) -> Any:
    """Rows with differing keys as one table with every column (missing cells null).

    `pa.Table.from_pylist` takes its columns from the first row alone and silently drops keys
    that only later rows have: conditional hyperparameters (a meta interval that exists only
    for full meta-gradients) would vanish from the results.
    """
    import pyarrow as pa

    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return pa.Table.from_pylist([{k: row.get(k) for k in columns} for row in rows])


def write_parquet_rows(path: str | Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow.parquet as pq

    table = rows_to_table(rows)
    atomic_write(path, lambda p: pq.write_table(table, p))
