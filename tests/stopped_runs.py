"""A run stopped mid-way and continued from its checkpoint, as `train --resume` does."""

from __future__ import annotations

from pathlib import Path

import torch

from dnet_tune.config import Config
from dnet_tune.train import Trainer, load_checkpoint, save_checkpoint


def stop_and_resume(cfg: Config, epochs: int, path: Path) -> Trainer:
    """Train `epochs` epochs, checkpoint to `path`, and load that into a new Trainer under
    another global seed: whatever happened in between must not matter to the resumed run."""
    first = Trainer(cfg)
    for _ in range(epochs):
        first.run_epoch()
    save_checkpoint(first, str(path))
    torch.manual_seed(12345)
    resumed = Trainer(cfg)
    resumed.load_state_dict(load_checkpoint(str(path)))
    return resumed
