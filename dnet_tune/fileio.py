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


JSON_COLUMNS_KEY = b"dnet_tune.json_columns"


def _kind(value: Any) -> str:
    return type(value).__name__


def rows_to_table(rows: list[dict[str, Any]]) -> Any:
    """Rows with differing keys and mixed value types as one table that loses nothing.

    `pa.Table.from_pylist` takes its columns from the first row alone and silently drops keys
    that only later rows have: conditional hyperparameters (a meta interval that exists only
    for full meta-gradients) would vanish from the results. And a column must have one type, but
    a categorical hyperparameter may mix them (CDB's τ: 0.5, 1.0, ..., "dynamic"): such a column
    is stored as JSON text, named in the schema metadata, and `table_to_rows` decodes it, so
    every value comes back with its own type.
    """
    import pyarrow as pa

    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    mixed = [c for c in columns
             if len({_kind(r[c]) for r in rows if r.get(c) is not None}) > 1]
    data = [{k: json.dumps(row[k]) if k in mixed and row.get(k) is not None else row.get(k)
             for k in columns} for row in rows]
    table = pa.Table.from_pylist(data)
    return table.replace_schema_metadata({JSON_COLUMNS_KEY: json.dumps(mixed).encode()})


def table_to_rows(table: Any) -> list[dict[str, Any]]:
    """The rows `rows_to_table` was given, mixed-type columns decoded."""
    meta = table.schema.metadata or {}
    mixed = set(json.loads(meta.get(JSON_COLUMNS_KEY, b"[]")))
    rows: list[dict[str, Any]] = table.to_pylist()
    for row in rows:
        for c in mixed & row.keys():
            if row[c] is not None:
                row[c] = json.loads(row[c])
    return rows


def write_parquet_rows(path: str | Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow.parquet as pq

    table = rows_to_table(rows)
    atomic_write(path, lambda p: pq.write_table(table, p))
