"""Data-parallel training: one run trained by several processes that compute what one would.

The pieces live together so the one-process core (train.py, method/, models/) stays readable
without them; the core reaches in only where a rank differs (`Method.dist`, `Trainer.distributed`).
- comm.py: torch.distributed collectives (autograd- and forward-mode-aware all-reduce), `Comm`,
  the cut of a global batch into per-rank shards;
- sync_bn.py: BatchNorm with the global batch's statistics;
- meta_step.py: the real step and the exact JVP meta-gradient over ranks;
- trainer.py: a rank's Trainer, the checks a distributed run makes, `run_distributed` (for a
  process whose group is initialised: the CLI's spawn or a Ray Train worker);
- launch.py: the CLI's `train --workers N` spawn of N local ranks.

Part of the core: nothing here imports Ray or tune/. This file imports nothing, so importing one
module (e.g. `comm` from method/) loads only that module: import from the modules, by name.
"""
