import json
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from datagen import decode_ids, write_cifar

from dnet_tune.config import DataConfig
from dnet_tune.data import build_dataset
from dnet_tune.data.cifar import load_pickle
from dnet_tune.data.longtail import lt_counts
from dnet_tune.errors import UserError

SHARED = Path("/work/shared/data")
FULL = {"cifar10_lt": 5000, "cifar100_lt": 500}
TOTALS = {  # published training-set sizes: (standard H=V=0, paper H=25)
    ("cifar10_lt", 10): (20431, 20327),
    ("cifar10_lt", 50): (13996, 13926),
    ("cifar10_lt", 100): (12406, 12341),
    ("cifar100_lt", 10): (19573, 18591),
    ("cifar100_lt", 50): (12608, 11975),
    ("cifar100_lt", 100): (10847, 10302),
}


def _cfg(root, name, imbalance, profile="standard", meta=0, val=0):
    return DataConfig(name=name, data_dir=str(root), imbalance=imbalance, profile=profile,
                      meta_per_class=meta, val_per_class=val)


@pytest.mark.parametrize(("name", "imbalance"), sorted(TOTALS))
@pytest.mark.parametrize("profile", ["standard", "paper"])
def test_exact_counts(cifar_root, name, imbalance, profile):
    meta = 0 if profile == "standard" else 25
    ds = build_dataset(_cfg(cifar_root, name, imbalance, profile, meta=meta))
    c = ds.num_classes
    n_max = FULL[name] - meta
    counts = ds.train_counts()
    assert counts == lt_counts(n_max, c, imbalance)
    assert sum(counts) == TOTALS[(name, imbalance)][profile == "paper"]
    if name == "cifar10_lt" and imbalance == 100 and profile == "standard":
        assert counts == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert ds.meta.counts(c) == [meta] * c
    assert len(ds.val) == 0
    assert ds.test.counts(c) == [20] * c  # the whole (synthetic) test file
    # first n_i of every class in file order; H = the last `meta` of every class
    train_ids = decode_ids(ds.train.images)
    assert sorted(train_ids) == sorted((y, r, 0) for y in range(c) for r in range(counts[y]))
    meta_ids = decode_ids(ds.meta.images)
    full = FULL[name]
    assert sorted(meta_ids) == sorted((y, r, 0) for y in range(c) for r in range(full - meta, full))


@pytest.mark.parametrize(("name", "profile", "meta", "val", "total", "tail", "groups"), [
    # the README's three CIFAR-LT constructions at IF 100: ours (the dataset recipe: standard,
    # H = V = 25 carved first), the canonical set (nothing held out), the paper's (H = 25 first)
    ("cifar100_lt", "standard", 25, 25, 9754, 4, (33, 34, 33)),
    ("cifar100_lt", "standard", 0, 0, 10847, 5, (35, 35, 30)),
    ("cifar100_lt", "paper", 25, 0, 10302, 4, (34, 35, 31)),
    ("cifar10_lt", "standard", 25, 25, 12280, 49, (8, 2, 0)),
    ("cifar10_lt", "standard", 0, 0, 12406, 50, (8, 2, 0)),
    ("cifar10_lt", "paper", 25, 0, 12341, 49, (8, 2, 0)),
])
def test_the_readme_s_three_constructions(cifar_root, name, profile, meta, val, total, tail,
                                          groups):
    ds = build_dataset(_cfg(cifar_root, name, 100, profile, meta, val))
    counts = ds.train_counts()
    assert (len(ds.train), counts[-1]) == (total, tail)
    g = ds.groups()
    assert (len(g["many"]), len(g["medium"]), len(g["few"])) == groups


@pytest.mark.parametrize("name", ["cifar10_lt", "cifar100_lt"])
def test_standard_profile_with_meta_and_val_is_disjoint_and_balanced(cifar_root, name):
    ds = build_dataset(_cfg(cifar_root, name, 100, meta=25, val=25))
    c, full = ds.num_classes, FULL[name]
    assert ds.train_counts() == lt_counts(full - 50, c, 100)
    assert ds.meta.counts(c) == [25] * c
    assert ds.val.counts(c) == [25] * c
    ids = {s: decode_ids(getattr(ds, s).images) for s in ("train", "meta", "val", "test")}
    for s, v in ids.items():
        assert len(set(v)) == len(v), s
        assert all(y == label for (y, _, _), label in zip(v, getattr(ds, s).labels, strict=True))
    sets = {s: set(v) for s, v in ids.items()}
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not sets[a] & sets[b], (a, b)
    assert {r for _, r, _ in ids["meta"]} == set(range(full - 25, full))
    assert {r for _, r, _ in ids["val"]} == set(range(full - 50, full - 25))
    assert ds.train.images.dtype == torch.uint8
    assert tuple(ds.train.images.shape[1:]) == (3, 32, 32)
    assert ds.image_size == 32 and ds.in_channels == 3
    assert ds.class_names[:2] == (["c0", "c1"] if name == "cifar10_lt" else ["f0", "f1"])


def test_paper_profile_rejects_a_validation_split(cifar_root):
    with pytest.raises(UserError) as info:
        build_dataset(_cfg(cifar_root, "cifar10_lt", 100, "paper", meta=25, val=25))
    msg = str(info.value)
    assert "class 0" in msg and "4975 train + 25 meta + 25 val" in msg
    assert "val_per_class=0" in msg


def _subset_counts(full, classes, margin):
    return [min(full, math.floor(full * 100 ** (-i / (classes - 1))) + margin)
            for i in range(classes)]


def test_subset_files_work_at_if100_and_fail_clearly_below(tmp_path):
    # the layout of shared/data: the first k images of every class, k = IF-100 count + 150
    write_cifar(tmp_path, "cifar10", per_class=_subset_counts(5000, 10, 150), test_per_class=3)
    ds = build_dataset(_cfg(tmp_path, "cifar10_lt", 100, meta=25, val=25))
    assert ds.train_counts() == lt_counts(4950, 10, 100)
    with pytest.raises(UserError) as info:
        build_dataset(_cfg(tmp_path, "cifar10_lt", 10, meta=25, val=25))
    msg = str(info.value)
    folder = tmp_path / "cifar-10-batches-py"
    assert f"class 1 (c1) has 3147 images in {folder}" in msg
    assert "3832 train + 25 meta + 25 val" in msg
    assert "data.imbalance" in msg and "dnet-tune data download cifar10" in msg


@pytest.mark.parametrize(("name", "cmd"), [("cifar10_lt", "cifar10"), ("cifar100_lt", "cifar100")])
def test_missing_files_name_directory_and_download_command(tmp_path, monkeypatch, name, cmd):
    where = tmp_path / "empty"
    with pytest.raises(UserError) as info:
        build_dataset(DataConfig(name=name, data_dir=str(where)))
    msg = str(info.value)
    assert str(where) in msg
    assert f"dnet-tune data download {cmd} --data-dir {where}" in msg
    assert "\n" not in msg
    monkeypatch.setenv("DNET_DATA_DIR", str(tmp_path / "from_env"))
    with pytest.raises(UserError, match="from_env"):
        build_dataset(DataConfig(name=name))


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_unpickler_refuses_code_before_running_it(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    blob = pickle.dumps({"data": _Payload(marker), "labels": [0]}, protocol=2)
    for f in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (folder / f).write_bytes(blob)
    with pytest.raises(UserError, match=r"refusing to load '(posix|os)\.system'"):
        load_pickle(folder / "data_batch_1")
    with pytest.raises(UserError, match="data_batch_1"):
        build_dataset(DataConfig(name="cifar10_lt", data_dir=str(tmp_path)))
    assert not marker.exists()
    # the same bytes through the stock unpickler would have run the command
    assert b"system" in blob


def test_unpickler_refuses_other_globals_and_reads_plain_arrays(tmp_path):
    evil = tmp_path / "evil"
    evil.write_bytes(pickle.dumps(print, protocol=2))
    with pytest.raises(UserError, match=r"refusing to load '(__builtin__|builtins)\.print'"):
        load_pickle(evil)
    ok = tmp_path / "ok"
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    ok.write_bytes(pickle.dumps({b"data": arr, "labels": [np.int64(1)]}, protocol=2))
    obj = load_pickle(ok)
    assert (obj["data"] == arr).all() and obj["labels"] == [1]  # bytes keys become str
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="garbage"):
        load_pickle(garbage)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "folder"), [("cifar10_lt", "cifar-10-batches-py"),
                                              ("cifar100_lt", "cifar-100-python")])
def test_real_shared_subset_at_if100(name, folder):
    if not (SHARED / folder).is_dir():
        pytest.skip(f"{SHARED / folder} not present")
    for profile, meta, val in [("standard", 0, 0), ("standard", 25, 25), ("paper", 25, 0)]:
        ds = build_dataset(_cfg(SHARED, name, 100, profile, meta, val))
        c = ds.num_classes
        n_max = FULL[name] - meta - (val if profile == "standard" else 0)
        assert ds.train_counts() == lt_counts(n_max, c, 100)
        assert ds.meta.counts(c) == [meta] * c and ds.val.counts(c) == [val] * c
        assert ds.test.counts(c) == [10000 // c] * c
        if (profile, meta) == ("standard", 0):
            assert len(ds.train) == (12406 if name == "cifar10_lt" else 10847)
        if profile == "paper":
            assert len(ds.train) == (12341 if name == "cifar10_lt" else 10302)
    with pytest.raises(UserError, match=r"has \d+ images in"):
        build_dataset(_cfg(SHARED, name, 10, meta=25, val=25))


def test_cli_paper_profile_has_no_validation_split(cifar_root, capsys):
    import json

    from dnet_tune.cli import main

    code = main(["data", "describe", "cifar10_lt", "--profile", "paper", "--imbalance", "100",
                 "--data-dir", str(cifar_root), "--json"])
    assert code == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["train"][0] == 4975 and counts["train"][-1] == 49
    assert counts["meta"] == [25] * 10 and counts["val"] == [0] * 10


CIFAR10_IF100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_describe_without_meta_set_is_not_a_method_check(cli, cifar_root):
    """Describing data never validates a method: the default method (Difficulty-Net) needs a
    meta set, but `data describe` with none must still print the standard IF-100 counts."""
    code, out, err = cli("data", "describe", "cifar10_lt", "--imbalance", 100, "--meta-per-class",
                         0, "--val-per-class", 0, "--data-dir", cifar_root, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["train"] == CIFAR10_IF100
    assert sum(info["meta"]) == 0 and sum(info["val"]) == 0


SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "cifar-10-batches-py").is_dir(), reason="no shared CIFAR data")
def test_describe_real_cifar10_without_meta_set(cli):
    code, out, err = cli("data", "describe", "cifar10_lt", "--imbalance", 100, "--meta-per-class",
                         0, "--val-per-class", 0, "--data-dir", SHARED, "--json")
    assert code == 0, err
    assert json.loads(out)["train"] == CIFAR10_IF100
