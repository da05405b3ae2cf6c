"""Storage that cannot take the results is refused in one line naming it, before Ray starts."""

from __future__ import annotations

import pytest

SEARCH = ("search", "--smoke", "--method", "ce", "--trials", 1, "--no-confirm")


@pytest.mark.parametrize(("storage", "needle"), [
    ("/sys/dnet-results", "is not writable (Permission denied in '/sys')"),  # even for root
    ("/proc/dnet-results", "is not writable"),
])
def test_unwritable_storage_is_one_line_naming_it(cli, one_line_error, storage, needle):
    code, _, err = cli(*SEARCH, "--storage", storage)
    one_line_error(code, err, f"--storage '{storage}'", needle)


def test_a_file_as_storage_is_refused(cli, one_line_error, tmp_path):
    (tmp_path / "f").write_text("not a folder")
    code, _, err = cli(*SEARCH, "--storage", tmp_path / "f" / "results")
    one_line_error(code, err, "is a file, not a folder")


def test_full_storage_is_refused_before_anything_is_written(cli, one_line_error, tmp_path,
                                                            monkeypatch):
    # the real free space of tmp_path, against a need no disk meets
    monkeypatch.setenv("DNET_TUNE_MIN_FREE_MB", str(10**12))
    code, _, err = cli(*SEARCH, "--storage", tmp_path / "results")
    one_line_error(code, err, "is almost full", "MiB free", str(tmp_path))
    assert not (tmp_path / "results").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # the probe file is gone too
