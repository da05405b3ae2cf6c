"""Slow end-to-end check on the real CIFAR-10 subset in ../shared/data (skipped in CI).

A real `cifar10_lt` (IF 100, ResNet-32) search through local Ray: the dataset travels through the
object store and a `ce` trial of 3 epochs learns clearly above chance (measured with `train`: val
0.16, 0.21, 0.23 balanced accuracy after epochs 1-3 during warm-up; chance 0.10). ~4 min on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.slow
def test_cifar10_lt_smoke_search_on_real_images(ray_local, cli, tmp_path):
    if not (SHARED / "cifar-10-batches-py").is_dir():
        pytest.skip(f"{SHARED} has no CIFAR-10")
    code, _, err = cli("search", "--dataset", "cifar10_lt", "--method", "ce", "--smoke",
                       "--trials", 1, "--max-epochs", 3, "--no-confirm", "--data-dir", SHARED,
                       "--cpus-per-trial", 2, "--storage", tmp_path, "--name", "real", "--quiet")
    assert code == 0, err
    summary = pq.read_table(tmp_path / "real" / "summary.parquet").to_pylist()
    assert len(summary) == 1 and summary[0]["status"] == "finished"
    assert summary[0]["best_val_acc"] > 0.18 and summary[0]["test_acc_at_best"] > 0.18
