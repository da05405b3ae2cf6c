"""What the distributed tests run on each rank (spawned processes import this module by name)."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from dnet_tune.run import resolve_config

SCENARIOS: dict[str, dict[str, Any]] = {
    "dn_full_jvp": {"method": "difficulty_net", "sets": {"method.meta_grad": "full",
                                                         "dn.lr": 0.01}},
    "dn_detached": {"method": "difficulty_net", "sets": {"method.meta_grad": "detached",
                                                         "dn.lr": 0.01}},
    "ce": {"method": "ce", "sets": {}},
    # not an equivalence: the test that shows the tolerance can tell another run
    "ce_shard_bn": {"method": "ce", "sets": {"model.sync_bn": False}},
}
EQUIVALENT = ["dn_full_jvp", "dn_detached", "ce"]
EPOCHS = 2


def config(scenario: str, workers: int, **more: object):
    spec = SCENARIOS[scenario]
    sets = {**spec["sets"], "train.threads": 1, "train.workers": workers, **more}
    return resolve_config(dataset="digits_lt", sets=[f"{k}={v}" for k, v in sets.items()],
                          overrides={"method": {"name": spec["method"]},
                                     "train": {"epochs": EPOCHS}})


def _to_float64(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (args[0].to(torch.float64), *args[1:])


def in_float64(trainer: Any) -> Any:
    """Batches and `a` arrive as float32; float64 θ and φ get float64 inputs."""
    trainer.model.register_forward_pre_hook(_to_float64)
    dn = getattr(trainer.method, "dn", None)
    if dn is not None:
        dn.register_forward_pre_hook(_to_float64)
    return trainer


def result(trainer: Any) -> dict[str, Any]:
    dn = getattr(trainer.method, "dn", None)
    return {"model": {k: v.clone() for k, v in trainer.model.state_dict().items()},
            "dn": {k: v.clone() for k, v in dn.state_dict().items()} if dn is not None else {},
            "history": trainer.history}


def equivalence_worker(out_dir: str, scenarios: list[str]) -> None:
    """Each scenario trained EPOCHS epochs by this rank of a 2-process group, in float64."""
    import torch.distributed as dist

    from dnet_tune.distributed.comm import Comm
    from dnet_tune.distributed.trainer import DistributedTrainer

    torch.set_default_dtype(torch.float64)
    comm = Comm.from_process_group()
    for name in scenarios:
        trainer = in_float64(DistributedTrainer(config(name, comm.world), comm))
        list(trainer.fit())
        torch.save(result(trainer), f"{out_dir}/{name}-rank{dist.get_rank()}.pt")


class _Stop(Exception):
    pass


def _stop_after_first(metrics: dict[str, Any]) -> None:
    if metrics["epoch"] == 1:
        raise _Stop


def resume_worker(straight: str, stopped: str) -> None:
    """The same run twice under 2 workers: straight through, and stopped after epoch 1 (every
    rank, as a kill would) then continued with resume from rank 0's checkpoint."""
    import torch.distributed as dist

    from dnet_tune.distributed.trainer import run_distributed

    run_distributed(config("dn_full_jvp", 2), straight)
    with contextlib.suppress(_Stop):
        run_distributed(config("dn_full_jvp", 2), stopped, on_epoch=_stop_after_first)
    dist.barrier()  # rank 0 has written its checkpoint before any rank reads it
    torch.manual_seed(12345)  # whatever happened in between must not matter
    run_distributed(None, stopped, resume=True)


def finalization_worker(out_dir: str, fail: bool) -> None:
    """Marks that it ran, and registers an exit hook that marks the interpreter's finalization
    (which a rank must skip: dnet_tune.distributed.launch._end_without_finalizing)."""
    import atexit
    import pathlib

    import torch.distributed as dist

    from dnet_tune.errors import UserError

    rank = dist.get_rank()
    out = pathlib.Path(out_dir)
    atexit.register((out / f"finalized-{rank}").touch)
    (out / f"ran-{rank}").touch()
    if fail:
        raise UserError(f"rank {rank} found a mistake")
