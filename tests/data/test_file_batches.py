"""FileBatches: torchvision.io decoding + batch augmentation, persistent workers, exact resume."""

import logging
import math
import os
import re

import pytest
import torch
from datagen import write_folder, write_oltr
from stopped_runs import stop_and_resume
from torch.utils.data import Dataset

from dnet_tune.config import DataConfig
from dnet_tune.data import build_dataset
from dnet_tune.data.file_batches import EpochLoader, FileBatches
from dnet_tune.data.loader import PILFileBatches, make_batches
from dnet_tune.errors import UserError
from dnet_tune.train import epoch_generator

CPU = torch.device("cpu")


@pytest.fixture
def places(tmp_path):
    write_oltr(tmp_path, "Places_LT", [6, 4, 3], val_per_class=2, test_per_class=2)
    return build_dataset(DataConfig(name="places_lt", data_dir=str(tmp_path), meta_per_class=1,
                                    val_per_class=1))


def run(batches, seed, epoch):
    return list(batches.epoch(epoch_generator(seed, epoch, 0)))


def same(a, b):
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2)
                                    for (x1, y1), (x2, y2) in zip(a, b, strict=True))


def test_deterministic_any_workers_and_a_resumed_epoch_is_the_same(places):
    ds = places
    kept = make_batches(ds.train, ds, 4, shuffle=True, augment="crop_flip", device=CPU,
                        num_workers=2)
    assert isinstance(kept, FileBatches)
    e0, e1 = run(kept, 7, 0), run(kept, 7, 1)
    assert [x.shape for x, _ in e0] == [(4, 3, 224, 224)] * 3 + [(1, 3, 224, 224)]
    assert all(x.dtype == torch.float32 and y.dtype == torch.int64 for x, y in e0)
    assert not same(e0, e1)
    # a resumed run: a fresh object, no workers, epoch 1 straight away
    fresh = make_batches(ds.train, ds, 4, shuffle=True, augment="crop_flip", device=CPU)
    assert same(run(fresh, 7, 1), e1)
    assert same(run(fresh, 7, 0), e0)
    assert not same(run(fresh, 8, 0), e0)


def test_same_seed_same_crops_as_the_pil_path(places):
    """Today's PIL transforms under the same item seeds: the same crop, flip and jitter, pixels
    within rounding (decoders, resize and blend rounding), far from another seed's."""
    ds = places
    args = dict(shuffle=True, augment="crop_flip", device=CPU)
    ours = torch.cat([x for x, _ in run(FileBatches(ds.train, ds, 13, **args), 3, 0)])
    pil = torch.cat([x for x, _ in run(PILFileBatches(ds.train, ds, 13, **args), 3, 0)])
    other = torch.cat([x for x, _ in run(PILFileBatches(ds.train, ds, 13, **args), 4, 0)])
    std = torch.tensor(ds.std).view(1, 3, 1, 1)
    levels = ((ours - pil) * std * 255).abs()  # normalised units → grey levels
    assert levels.mean() < 1.5
    assert ((ours - other) * std * 255).abs().mean() > 10 * levels.mean()


def test_eval_batches_keep_order_and_leave_the_global_rng_alone(places):
    ds = places
    test = make_batches(ds.test, ds, 4, shuffle=False, augment="none", device=CPU)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    got = list(test.epoch(None))
    train = make_batches(ds.train, ds, 4, shuffle=True, augment="crop_flip", device=CPU)
    run(train, 0, 0)
    assert torch.equal(torch.rand(3), expected)
    assert torch.cat([y for _, y in got]).tolist() == ds.test.labels.tolist()
    assert same(got, list(test.epoch(None)))


def test_png_and_jpeg_files_mixed(tmp_path):
    write_folder(tmp_path / "tree", [9, 9])
    ds = build_dataset(DataConfig(name="folder_lt", data_dir=str(tmp_path / "tree"),
                                  meta_per_class=1, val_per_class=1, imbalance=2))
    assert {p[-3:] for p in ds.train.paths} == {"png", "jpg"}
    batches = make_batches(ds.train, ds, 5, shuffle=True, augment="crop_flip", device=CPU)
    xs = [x for x, _ in run(batches, 0, 0)]
    assert xs[0].shape == (5, 3, 112, 112) and all(torch.isfinite(x).all() for x in xs)


def test_a_damaged_file_is_a_user_error(places, tmp_path):
    ds = places
    bad = ds.train.paths[0]
    with open(bad, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a jpeg")
    for workers in (0, 2):
        batches = make_batches(ds.train, ds, 4, shuffle=False, augment="crop_flip", device=CPU,
                               num_workers=workers)
        with pytest.raises(UserError) as info:
            run(batches, 0, 0)
        assert str(info.value).startswith(f"{bad}: cannot decode this image")
        assert "\n" not in str(info.value)  # one line, also from a worker
    os.remove(ds.train.paths[1])  # a file removed after the lists were read
    batches = make_batches(ds.train, ds, 4, shuffle=False, augment="crop_flip", device=CPU)
    with pytest.raises(UserError, match=re.escape(f"{ds.train.paths[1]}: cannot read")):
        run(batches, 0, 0)


def test_autoaugment_keeps_the_pil_path_and_cutout_is_refused(places):
    ds = places
    assert isinstance(make_batches(ds.train, ds, 4, shuffle=True, augment="autoaugment",
                                   device=CPU), PILFileBatches)
    with pytest.raises(UserError, match="in-memory"):
        FileBatches(ds.train, ds, 4, shuffle=True, augment="autoaugment_cutout", device=CPU)


class _Pids(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.tensor([os.getpid()])


def test_workers_persist_across_epochs():
    loader = EpochLoader(_Pids(), num_workers=2, device=CPU)
    batches = [[(i, -1)] for i in range(8)]

    def pids():
        return {int(x) for x in torch.cat(list(loader.run(batches)))}

    first = pids()
    assert len(first) == 2 and os.getpid() not in first
    assert pids() == first  # the same two worker processes serve the next epoch


def test_the_gpu_paths_logic_run_on_the_cpu_gives_the_same_batches(tmp_path, caplog,
                                                                     monkeypatch):
    """The GPU path (workers send bytes, the main process decodes the JPEGs of a batch in one
    call, PNGs arrive decoded) with the device set to the CPU: same batches as the CPU path."""
    monkeypatch.setattr(FileBatches, "told_not_jpeg", False)
    write_folder(tmp_path / "tree", [9, 9])
    ds = build_dataset(DataConfig(name="folder_lt", data_dir=str(tmp_path / "tree"),
                                  meta_per_class=1, val_per_class=1, imbalance=2))
    for augment in ("crop_flip", "none"):
        raw = FileBatches(ds.train, ds, 5, shuffle=True, augment=augment, device=CPU)
        raw.gpu = raw.dataset.raw = True
        with caplog.at_level(logging.WARNING, logger="dnet_tune.data.file_batches"):
            got = run(raw, 0, 0)
        plain = FileBatches(ds.train, ds, 5, shuffle=True, augment=augment, device=CPU)
        assert same(got, run(plain, 0, 0))
    assert sum("not JPEG" in r.message for r in caplog.records) == 1  # said once


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_decode_path_matches_the_cpu_path(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(FileBatches, "told_not_jpeg", False)
    write_folder(tmp_path / "tree", [9, 9])
    ds = build_dataset(DataConfig(name="folder_lt", data_dir=str(tmp_path / "tree"),
                                  meta_per_class=1, val_per_class=1, imbalance=2))
    gpu = torch.device("cuda")
    args = dict(shuffle=True, augment="crop_flip", num_workers=2)
    with caplog.at_level(logging.WARNING, logger="dnet_tune.data.file_batches"):
        on_gpu = FileBatches(ds.train, ds, 5, device=gpu, **args)
        a, b = run(on_gpu, 0, 0), run(on_gpu, 0, 0)
    assert sum("not JPEG" in r.message for r in caplog.records) == 1  # PNGs: said once
    assert all(x.device.type == "cuda" for x, _ in a) and same(a, b)
    cpu = run(FileBatches(ds.train, ds, 5, device=CPU, **args), 0, 0)
    std = torch.tensor(ds.std).view(1, 3, 1, 1)
    for (xg, yg), (xc, yc) in zip(a, cpu, strict=True):
        assert torch.equal(yg.cpu(), yc)
        # nvJPEG vs libjpeg-turbo and float vs uint8 resizing: a few grey levels at most
        assert ((xg.cpu() - xc) * std * 255).abs().mean() < 3


def test_a_resumed_file_dataset_run_repeats_the_uninterrupted_run(tmp_path):
    """Train 2 epochs; stop after 1, checkpoint, resume in a new Trainer under another global
    seed: the same metrics and weights (workers do not change batches: tested above)."""
    from dnet_tune.run import resolve_config
    from dnet_tune.train import Trainer

    write_folder(tmp_path / "tree", [12, 11, 13])
    cfg = resolve_config(dataset="folder_lt", sets=[
        f"data.data_dir={tmp_path / 'tree'}", "data.imbalance=4", "data.meta_per_class=1",
        "data.val_per_class=1", "data.num_workers=0", "data.batch_size=4",
        "data.meta_batch_size=3", "model.name=small_cnn", "train.epochs=2"])
    assert cfg.data.augment == "crop_flip"
    full = Trainer(cfg)
    uninterrupted = list(full.fit())
    resumed = stop_and_resume(cfg, 1, tmp_path / "ckpt.pt")
    rest = list(resumed.fit())
    assert [m["epoch"] for m in rest] == [2]

    def strip(rows):  # NaN (an empty shot group) as None, so that equal rows compare equal
        return [{k: None if isinstance(v, float) and math.isnan(v) else v
                 for k, v in r.items() if k != "epoch_time_s"} for r in rows]

    assert strip(resumed.history) == strip(uninterrupted)
    for a, b in zip(resumed.model.state_dict().values(), full.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("augment", ["crop_flip", "autoaugment"])
def test_shards_of_both_file_paths_concatenate_to_the_batch(places, augment):
    from dnet_tune.distributed.comm import Comm

    ds = places
    batches = make_batches(ds.train, ds, 5, shuffle=True, augment=augment, device=CPU)
    whole = run(batches, 2, 0)
    ranks = [list(batches.epoch(epoch_generator(2, 0, 0), shard=Comm(r, 2).shard))
             for r in range(2)]
    for b, (x, y) in enumerate(whole):
        assert torch.equal(torch.cat([rank[b][0] for rank in ranks]), x)
        assert torch.equal(torch.cat([rank[b][1] for rank in ranks]), y)
