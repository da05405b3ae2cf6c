"""`model.pretrained`: start a backbone from a state-dict file the user downloaded.

Nothing is fetched at run time (clusters are often offline, and a run's files must replay it):
the file is read from disk with `weights_only=True` (a weights file is data, never code).

What is loaded, deliberately:
- every tensor of the model except the classifier and the `model.reinit` prefixes must be in the
  file, with the model's shape; a tensor the model lacks is an error too. So a file of another
  architecture, another depth or another input width is one error line naming the file and what
  is wrong, never a half-loaded network;
- the classifier (`head`, from the model's registry entry) is never loaded: a pretrained head
  predicts its own classes (ImageNet's 1000), not the run's, so it always starts fresh;
- `model.reinit` prefixes stay at their fresh initialisation too (the authors retrain Places-LT's
  last ResNet-152 block from scratch), whatever the file holds for them;
- BatchNorm's `num_batches_tracked` may be absent (torchvision's older files lack it): the model
  keeps its own, which only matters for BatchNorm with `momentum=None` (not used here).
What was kept fresh is said once in the log, with the class counts involved.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dnet_tune.errors import UserError

log = logging.getLogger(__name__)

OPTIONAL = "num_batches_tracked"
_BLOCK = re.compile(r"^layer(\d+)\.(\d+)\.")


def _under(key: str, prefixes: list[str]) -> bool:
    return any(key == p or key.startswith(f"{p}.") for p in prefixes)


def _examples(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The file's mapping of tensor names to tensors; anything else is one `UserError` line."""
    file = Path(path).expanduser()
    where = f"model.pretrained '{path}'"
    if not file.is_file():
        hint = "" if file.is_absolute() else f" (relative to {Path.cwd()})"
        raise UserError(f"{where} does not exist{hint}; download the weights file and give "
                        f"its path (nothing is fetched at run time)")
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as exc:  # damaged, truncated, not PyTorch's, or refused by weights_only
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UserError(f"{where} is not a PyTorch state-dict file ({reason})") from None
    if not isinstance(obj, Mapping):
        raise UserError(f"{where} holds a {type(obj).__name__}, not a state dict (a mapping "
                        f"of tensor names to tensors)")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        nested = [k for k in bad if isinstance(obj.get(k), Mapping)]
        hint = (f"; it looks like a training checkpoint: save its model's state_dict() (e.g. "
                f"'{nested[0]}') on its own" if nested else "")
        raise UserError(f"{where} is not a state dict: {_examples(bad)} "
                        f"{'is' if len(bad) == 1 else 'are'} not tensors{hint}")
    return dict(obj)


def _blocks(keys: list[str]) -> list[int]:
    """Blocks per stage of a torchvision-layout ResNet (`layerN.M.`), [] for other layouts."""
    most: dict[int, int] = {}
    for k in keys:
        m = _BLOCK.match(k)
        if m:
            stage, block = int(m.group(1)), int(m.group(2))
            most[stage] = max(most.get(stage, -1), block)
    return [most[s] + 1 for s in sorted(most)]


def load_pretrained(model: nn.Module, name: str, path: str, head: str,
                    reinit: list[str]) -> str:
    """Load `path` into `model` (built as `name`) in place; returns the line it logged."""
    where = f"model.pretrained '{path}'"
    own = model.state_dict()
    unknown = [p for p in reinit if not any(_under(k, [p]) for k in own)]
    if unknown:
        raise UserError(f"model.reinit '{unknown[0]}' names no module of model '{name}' (its "
                        f"top-level modules: {', '.join(n for n, _ in model.named_children())})")
    file = read_state_dict(path)
    fresh = [head, *reinit]
    wanted = [k for k in own if not _under(k, fresh)]
    given = [k for k in file if not _under(k, fresh)]
    missing = [k for k in wanted if k not in file and not k.endswith(OPTIONAL)]
    extra = [k for k in given if k not in own]
    if missing or extra:
        theirs, ours = _blocks(list(file)), _blocks(list(own))
        if theirs and ours and theirs != ours:
            raise UserError(f"{where} is a ResNet with {theirs} blocks per stage, model "
                            f"'{name}' has {ours}: use the weights of the same architecture")
        what = []
        if missing:
            what.append(f"lacks {len(missing)} of its tensors ({_examples(missing)})")
        if extra:
            what.append(f"has {len(extra)} it does not ({_examples(extra)})")
        raise UserError(f"{where} does not fit model '{name}': the file "
                        f"{' and '.join(what)}; use the weights of the same architecture in "
                        f"torchvision's layout")
    for k in given:
        if file[k].shape != own[k].shape:
            raise UserError(f"{where} does not fit model '{name}': '{k}' has shape "
                            f"{list(file[k].shape)} in the file, {list(own[k].shape)} in the "
                            f"model")
    model.load_state_dict({k: file[k] for k in given}, strict=False)
    note = _note(name, path, len(given), len(own), head, file, own, reinit)
    log.warning(note)
    return note


def _classes(state: Mapping[str, Any], head: str) -> int | None:
    weight = state.get(f"{head}.weight")
    return int(weight.shape[0]) if torch.is_tensor(weight) and weight.ndim == 2 else None


def _note(name: str, path: str, loaded: int, total: int, head: str,
          file: Mapping[str, Any], own: Mapping[str, Any], reinit: list[str]) -> str:
    ours, theirs = _classes(own, head), _classes(file, head)
    was = (f"the file's {head} has {theirs} classes and is not used" if theirs is not None
           else f"the file has no {head}")
    kept = [f"the classifier '{head}' ({ours} classes; {was})"]
    if reinit:
        kept.append(f"{', '.join(reinit)} (model.reinit)")
    return (f"model.pretrained: loaded {loaded} of {name}'s {total} tensors from '{path}'; "
            f"freshly initialised: {'; '.join(kept)}")
