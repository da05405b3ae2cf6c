"""Result files: every column survives rows with differing keys; writes are atomic."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from dnet_tune.fileio import atomic_write, write_parquet_rows


def test_parquet_keeps_columns_that_only_later_rows_have(tmp_path):
    rows = [{"trial_id": "a", "config/method.meta_grad": "detached"},
            {"trial_id": "b", "config/method.meta_grad": "full", "config/method.meta_interval": 2}]
    path = tmp_path / "t.parquet"
    write_parquet_rows(path, rows)
    back = pq.read_table(path).to_pylist()
    assert back == [{**rows[0], "config/method.meta_interval": None}, rows[1]]


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def broken(p):
        p.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


MIXED = [0.5, 1.0, "dynamic", 2, True, None, [64, 128], "1.0"]


def test_mixed_type_columns_survive_parquet(tmp_path):
    """A categorical may mix numbers and strings (CDB's τ); every value keeps its type."""
    import pyarrow.parquet as pq

    from dnet_tune.fileio import table_to_rows

    rows = [{"config/method.cdb_tau": v, "epoch": i} for i, v in enumerate(MIXED)]
    write_parquet_rows(tmp_path / "t.parquet", rows)
    back = table_to_rows(pq.read_table(tmp_path / "t.parquet"))
    assert back == rows
    assert [type(r["config/method.cdb_tau"]) for r in back] == [type(v) for v in MIXED]


def test_mixed_values_survive_yaml():
    from dnet_tune.yamlio import dump_yaml, yaml_load

    data = {"method": {"cdb_tau": MIXED, "lr": 1e-5, "small": 1e-300}}
    assert yaml_load(dump_yaml(data)) == data
