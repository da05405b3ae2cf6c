"""`train --resume` from a checkpoint.pt that is not one: cut short, empty, a text file, random
bytes, another torch file. Each is one line naming the file and what to do, exit 2, and the run
folder stays as it was."""

from __future__ import annotations

import random
import shutil

import pytest
import torch

from dnet_tune.train import CHECKPOINT_KEYS, load_checkpoint


@pytest.fixture(scope="module")
def run(tmp_path_factory, run_cli):
    out = tmp_path_factory.mktemp("runs") / "ce"
    res = run_cli("train", "--dataset", "digits_lt", "--method", "ce", "--smoke", "--epochs", 1,
                  "--output", out, "--quiet")
    assert res["code"] == 0, res["err"]
    return out


def cut(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def empty(path):
    path.write_bytes(b"")


def text(path):
    path.write_text("epoch: 3\n")


def random_bytes(path):
    # seeded: which exception torch.load raises depends on the bytes (unseeded, it varied)
    path.write_bytes(random.Random(0).randbytes(4096))


def a_tensor(path):
    torch.save(torch.zeros(3), path)


def without_the_optimizer(path):
    state = torch.load(path, weights_only=True)
    del state["optimizer"], state["rng"]
    torch.save(state, path)


@pytest.mark.parametrize(("damage", "needle"), [
    (cut, "torch.load cannot read it: RuntimeError"),
    (empty, "torch.load cannot read it: EOFError"),
    (text, "torch.load cannot read it"),
    (random_bytes, "torch.load cannot read it: UnpicklingError"),
    (a_tensor, "it holds a Tensor, not a dnet-tune checkpoint"),
    (without_the_optimizer, "not a dnet-tune checkpoint: no optimizer, rng"),
])
def test_resume_from_a_damaged_checkpoint_is_one_line_and_writes_nothing(
        run, cli, one_line_error, state_of, tmp_path, damage, needle):
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    ckpt = folder / "checkpoint.pt"
    damage(ckpt)
    before = state_of(folder)
    code, _, err = cli("train", "--resume", "--output", folder)
    one_line_error(code, err, f"'{ckpt}' is damaged (", needle,
                   f"dnet-tune train --config {folder / 'config.yaml'} --output")
    assert state_of(folder) == before


def test_a_whole_checkpoint_has_every_key_the_reader_asks_for(run):
    assert set(CHECKPOINT_KEYS) <= set(load_checkpoint(str(run / "checkpoint.pt")))
