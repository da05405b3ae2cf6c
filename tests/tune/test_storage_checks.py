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


def test_a_storage_that_stops_taking_writes_is_told_from_a_bug(tmp_path):
    """After a failure inside Ray (a full disk cuts a trial's error file short and Ray reads it
    back as an EOFError), a probe write tells a storage fault from a bug: the one becomes a
    resumable line, the other keeps its traceback."""
    from dnet_tune.errors import UserError
    from dnet_tune.tune.plan import StorageStopped
    from dnet_tune.tune.preflight import refused_write
    from dnet_tune.tune.search import _storage_stopped

    exp = tmp_path / "results" / "a"
    exp.mkdir(parents=True)
    assert refused_write(str(exp)) is None
    assert _storage_stopped(EOFError("Ran out of input"), str(exp)) is None  # a bug
    assert list(exp.iterdir()) == []  # the probe left nothing
    (tmp_path / "f").write_text("")  # refused even for root: a file where a folder must be
    gone = tmp_path / "f" / "a"
    assert refused_write(str(gone)) == "Not a directory"
    stopped = _storage_stopped(EOFError("Ran out of input"), str(gone))
    assert isinstance(stopped, StorageStopped)
    assert f"cannot write '{gone}' (Not a directory)" in str(stopped)
    assert "the search did not start" in str(stopped)  # no search.json: nothing to resume
    assert _storage_stopped(UserError("a bad flag"), str(gone)) is None  # says it itself
