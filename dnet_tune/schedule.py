"""Stage 1's learning-rate schedule: a shape over the run's length, never absolute epochs.

Why fractions: a step schedule written as epochs (the authors' 160 and 180 of 200) silently
stops decaying when the run is shortened (`--epochs 60`, a search's `max_epochs`) and decays far
too early when it is lengthened. As fractions of stage 1's length (`optim.milestone_fractions`,
0.8 and 0.9) every length keeps the shape. The warm-up stays in epochs: it protects the first
steps of a fresh network, whatever the run's length.

Why the extension rule: `train --resume --extend N` lengthens a run that has already followed
part of its schedule. Recomputing the schedule for the new length would jump (a cosine run of 30
epochs at lr 0.00014 would restart near its peak). Instead the rest of the schedule, from the
epoch of the extension, is stretched over the new remaining epochs: the lr is continuous at the
extension and the run still ends where its schedule ends; a run extended after its last epoch
continues at its last epoch's lr. Each extension is recorded in `train.extensions`, so a fresh
run from the recorded config replays the same learning rates.

Positions on the schedule are exact fractions, so a milestone falls on the same epoch in a run,
its resumption and its replay.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from typing import Any, Final

from dnet_tune.errors import UserError

# A leaf below config.py (which validates with it): the config sections arrive duck-typed.
# What `--extend` records about the lr: the one rule so far, named so that a replay knows it.
STRETCH: Final = "stretch"
EXAMPLE = "the authors' 160 and 180 of 200 epochs are [0.8, 0.9]"


def milestone_epochs(fractions: list[float], epochs: int) -> list[int]:
    """The 0-based epochs at which each decay starts: fraction × length, to the nearest epoch."""
    return [math.floor(Fraction(f) * epochs + Fraction(1, 2)) for f in fractions]


def original_epochs(train: Any) -> int:
    """Stage 1's length when the run started, before any `--extend`."""
    return train.extensions[0].from_epochs if train.extensions else train.epochs


def schedule_position(train: Any, warmup: int, epoch: int) -> Fraction:
    """Where 0-based `epoch` lies on the schedule of the original length (module docstring).

    Without extensions that is `epoch` itself. An extension at completed epoch x, from length F
    to T, keeps every epoch before its anchor a = max(min(x, F - 1), warm-up end) where it was
    and maps a … T - 1 linearly onto a's position … the original last epoch; when the run had
    finished (x = F), a = F - 1 already sits on the last epoch, so every new epoch does too.
    """
    return _position(train.extensions, original_epochs(train) - 1, warmup, epoch)


def _position(extensions: list[Any], last: int, warmup: int, epoch: int) -> Fraction:
    if not extensions:
        return Fraction(epoch)
    *earlier, ext = extensions
    anchor = max(min(ext.at_epoch, ext.from_epochs - 1), warmup)
    if epoch < anchor:
        return _position(earlier, last, warmup, epoch)
    start = _position(earlier, last, warmup, anchor)
    return start + (epoch - anchor) * (last - start) / (ext.to_epochs - 1 - anchor)


def lr_at(cfg: Any, epoch: int) -> float:
    """Stage 1's lr at 0-based `epoch`: linear warm-up, then step decay or cosine."""
    o = cfg.optim
    if epoch < o.warmup_epochs:
        return o.lr * (epoch + 1) / o.warmup_epochs
    length = original_epochs(cfg.train)
    position = schedule_position(cfg.train, o.warmup_epochs, epoch)
    if o.schedule == "step":
        steps = sum(position >= m for m in milestone_epochs(o.milestone_fractions, length))
        return o.lr * o.gamma ** steps
    span = length - o.warmup_epochs
    return o.lr * 0.5 * (1.0 + math.cos(math.pi * float((position - o.warmup_epochs) / span)))


# ----------------------------------------------------------------------------- checks


def check_schedule(optim: Any, train: Any) -> None:
    """An impossible schedule is one line naming its key (called by `config.validate`)."""
    _check_extensions(train)
    length = original_epochs(train)
    if optim.warmup_epochs >= length:
        raise UserError(f"config key 'optim.warmup_epochs' ({optim.warmup_epochs}) must be below "
                        f"stage 1's {length} epochs (train.epochs): the run would never leave "
                        f"its warm-up; lower it or train longer")
    fractions = optim.milestone_fractions
    if not all(0 < f < 1 for f in fractions):
        raise UserError(f"config key 'optim.milestone_fractions' must hold fractions of "
                        f"train.epochs in (0, 1), got {fractions} ({EXAMPLE})")
    if any(b <= a for a, b in itertools.pairwise(fractions)):
        raise UserError(f"config key 'optim.milestone_fractions' must be increasing, "
                        f"got {fractions}")
    if optim.schedule != "step":
        return
    for f, m in zip(fractions, milestone_epochs(fractions, length), strict=True):
        if m < optim.warmup_epochs:
            raise UserError(f"config key 'optim.milestone_fractions': {f} of {length} epochs is "
                            f"epoch {m}, inside the {optim.warmup_epochs} warm-up epochs "
                            f"(optim.warmup_epochs); use a later fraction or a shorter warm-up")


def _check_extensions(train: Any) -> None:
    """`train.extensions` is a chain from the original length to `train.epochs`."""
    previous = None
    for i, ext in enumerate(train.extensions):
        key = f"config key 'train.extensions[{i}]"
        if previous is not None and ext.from_epochs != previous.to_epochs:
            raise UserError(f"{key}.from_epochs' must be {previous.to_epochs} (the previous "
                            f"extension's to_epochs), got {ext.from_epochs}")
        if ext.from_epochs < 1 or ext.to_epochs <= ext.from_epochs:
            raise UserError(f"{key}' must lengthen stage 1: from_epochs >= 1 and to_epochs > "
                            f"from_epochs, got {ext.from_epochs} -> {ext.to_epochs}")
        low = previous.at_epoch if previous is not None else 0
        if not low <= ext.at_epoch <= ext.from_epochs:
            raise UserError(f"{key}.at_epoch' must be between {low} and {ext.from_epochs}, "
                            f"got {ext.at_epoch}")
        previous = ext
    if previous is not None and previous.to_epochs != train.epochs:
        raise UserError(f"config key 'train.epochs' ({train.epochs}) must be "
                        f"{previous.to_epochs}, the length the run was extended to "
                        f"(train.extensions): its schedule replays only at that length; drop "
                        f"--epochs, or --set train.extensions=[] for a new schedule")


# ----------------------------------------------------------------------------- older files


def refuse_absolute_milestones(data: dict[str, Any]) -> None:
    """`optim.milestones` (absolute epochs, before fractions) anywhere it cannot be migrated."""
    optim = data.get("optim")
    if not isinstance(optim, dict) or "milestones" not in optim:
        return
    epochs = (data.get("train") or {}).get("epochs")
    worked = ""
    if _is_count(epochs) and _epoch_list(optim["milestones"]):
        worked = (f"; with train.epochs {epochs}, {optim['milestones']} is "
                  f"{[m / epochs for m in optim['milestones']]}")
    raise UserError(f"config key 'optim.milestones' (absolute epochs) was replaced by "
                    f"'optim.milestone_fractions', fractions of train.epochs that follow the "
                    f"run's length ({EXAMPLE}{worked})")


def migrate_milestones(data: dict[str, Any], where: str) -> tuple[dict[str, Any], str | None]:
    """A complete config written before fractions (a run's config.yaml, a checkpoint, an
    export): its `optim.milestones` become the fractions that decay at the very same epochs of
    its own `train.epochs`, and the returned note says so. Milestones at or beyond its last
    epoch never applied in that run and are dropped (named in the note). Anything that is not
    a complete config with its length is left to `refuse_absolute_milestones`."""
    optim = data.get("optim")
    if not isinstance(optim, dict) or "milestones" not in optim:
        return data, None
    epochs = (data.get("train") or {}).get("epochs")
    milestones = optim["milestones"]
    if ("milestone_fractions" in optim or not _is_count(epochs)
            or not _epoch_list(milestones) or any(m <= 0 for m in milestones)):
        refuse_absolute_milestones(data)
    kept = [m for m in milestones if m < epochs]
    fractions = [m / epochs for m in kept]
    rest = {k: v for k, v in optim.items() if k != "milestones"}
    migrated = {**data, "optim": {**rest, "milestone_fractions": fractions}}
    never = [m for m in milestones if m >= epochs]
    dropped = (f"; {never} lie at or beyond its {epochs} epochs and never applied"
               if never else "")
    note = (f"{where} gives optim.milestones {milestones} (absolute epochs of its {epochs}); "
            f"read as optim.milestone_fractions {fractions}, which decay at the same "
            f"epochs{dropped}")
    return migrated, note


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _epoch_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(m, int) and not isinstance(m, bool) for m in value)
