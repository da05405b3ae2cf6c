"""TensorBoard event files of a search: every epoch's metrics and the per-class vectors.

Ray's own logger already writes event files into each trial directory, but it steps them by
`training_iteration` (which restarts after a restore) and turns a per-class list into a
histogram, which loses which class had which weight: exactly what one looks at Difficulty-Net
for. This callback, on the driver, writes one run per trial under
`<experiment>/tensorboard/<method>/<trial_id>/`, stepped by our own `epoch`, with the per-class
values (Difficulty-Net's class weight w, difficulty d and meta accuracy a, per-class test
accuracy) as one scalar per class. `tensorboard --logdir <experiment>/tensorboard` then shows
runs named `<method>/<trial_id>`, so a method is one regex away.

Files go to Ray's driver staging copy of the experiment, which Ray syncs to the storage (local or
a bucket) with its own files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ray import tune

from dnet_tune.tune.sampling import METHOD_KEY
from dnet_tune.tune.trainable import RAY_KEYS

# Ray's bookkeeping and the step itself; the rest is the trainer's epoch (plus where it ran: text,
# which is never charted)
SKIP = RAY_KEYS | {"epoch"}
MAX_PER_CLASS = 100  # beyond this, one chart per class is unusable: a histogram only
SPLITS = ("val", "test", "train")  # a metric `<split>_x` is charted as `<split>/x`


def scalar_tag(key: str) -> str:
    """val_acc -> val/acc: TensorBoard groups charts by the part before the slash."""
    head, _, rest = key.partition("_")
    if head in SPLITS and rest:
        return f"{head}/{rest}"
    return {"lr": "train/lr", "epoch_time_s": "time/epoch_s"}.get(key, f"other/{key}")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class TensorBoardCallback(tune.Callback):
    def __init__(self) -> None:
        self.writers: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {}  # the Tuner pickles callbacks into its state; open files stay here

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.writers = {}

    def _writer(self, trial: Any) -> Any:
        writer = self.writers.get(trial.trial_id)
        if writer is None:
            from tensorboardX import SummaryWriter

            method = str(trial.config.get(METHOD_KEY, "trial"))
            logdir = Path(trial.local_path).parent / "tensorboard" / method / trial.trial_id
            writer = self.writers[trial.trial_id] = SummaryWriter(logdir=str(logdir))
        return writer

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any,
                        result: dict[str, Any], **info: Any) -> None:
        step = result.get("epoch")
        if not isinstance(step, int):
            return
        writer = self._writer(trial)
        for key, value in result.items():
            if key in SKIP:
                continue
            if _number(value):
                writer.add_scalar(scalar_tag(key), value, step)
            elif isinstance(value, list) and value and all(_number(v) for v in value):
                if len(value) <= MAX_PER_CLASS:
                    for c, v in enumerate(value):
                        writer.add_scalar(f"{key}/class_{c:03d}", v, step)
                writer.add_histogram(f"{key}/all_classes", value, step)
        writer.flush()  # complete on disk before Ray's next sync of the experiment

    def _close(self, trial: Any) -> None:
        writer = self.writers.pop(trial.trial_id, None)
        if writer is not None:
            writer.close()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any,
                          **info: Any) -> None:
        self._close(trial)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._close(trial)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
