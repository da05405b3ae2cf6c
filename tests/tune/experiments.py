"""A small experiment written by hand with the results writer (real Parquet, no Ray): two
methods, two search trials each, two epochs, four classes, optionally confirmed over two seeds.
The numbers are chosen so that the confirmation overrules the search's ranking for
Difficulty-Net (dn_2 was second in the search, first on mean val over the seeds)."""

from __future__ import annotations

from pathlib import Path

from dnet_tune.tune.results import TrialRecord, summary_rows, write_json, write_tables

SEEDS = [5, 6]
METHODS = ["difficulty_net", "ce"]
# search trial -> (method, best val in the search, lr)
TRIALS = {"dn_1": ("difficulty_net", 0.85, 0.01), "dn_2": ("difficulty_net", 0.83, 0.02),
          "ce_1": ("ce", 0.70, 0.03), "ce_2": ("ce", 0.80, 0.04)}
# confirmation runs: (trial, seed) -> (val, test); dn_2 wins on mean val (.85 > .81)
CONFIRM = {("dn_1", 5): (0.80, 0.78), ("dn_1", 6): (0.82, 0.80),
           ("dn_2", 5): (0.84, 0.79), ("dn_2", 6): (0.86, 0.81),
           ("ce_1", 5): (0.70, 0.69), ("ce_1", 6): (0.71, 0.70),
           ("ce_2", 5): (0.75, 0.74), ("ce_2", 6): (0.77, 0.76)}
# four classes, from the most to the fewest training images, one shot group each but two few
CLASSES = {"num_classes": 4, "train": [120, 60, 8, 4], "test": [10, 10, 10, 10],
           "many": [0], "medium": [1], "few": [2, 3]}


def record(index: int, trial_id: str) -> TrialRecord:
    method, val, lr = TRIALS[trial_id]
    # inside the packaged digits_lt space, so the report's Optuna figures can rebuild the studies
    flat = {"method.name": method, "optim.lr": lr, "optim.weight_decay": 1e-5 * (index + 1)}
    if method == "difficulty_net":  # a virtual depth and its per-layer samples steer sampling
        flat |= {"dn.depth": 2, "dn.width_0": 64, "dn.width_1": 128 * (index + 1),
                 "dn.hidden": f"[64, {128 * (index + 1)}]"}
    resolved = {"method": {"name": method}, "optim": {"lr": lr},
                "train": {"seed": 0, "epochs": 2}}
    rec = TrialRecord(trial_id, method, flat, resolved, index=index, done=True)
    for epoch in (1, 2):
        row = {"epoch": epoch, "val_acc": val - 0.1 * (2 - epoch), "test_acc": val - 0.05,
               "test_many": 0.9, "test_medium": 0.8, "test_few": 0.6, "epoch_time_s": 30.0,
               "test_class_acc": [0.9, 0.8, 0.7, 0.5]}
        if method == "difficulty_net":
            row |= {"class_weight": [0.5, 0.8, 1.2, 1.5], "difficulty": [0.1, 0.2, 0.6, 0.8]}
        rec.rows.append(row)
    return rec


def confirm_row(trial_id: str, seed: int) -> dict:
    val, test = CONFIRM[trial_id, seed]
    return {"method": TRIALS[trial_id][0], "trial_id": trial_id, "rank": 1, "seed": seed,
            "val_acc": val, "test_acc": test, "test_many": 0.9, "test_medium": 0.8,
            "test_few": test - 0.2, "test_class_acc": [0.9, 0.8, test - 0.1, test - 0.3],
            "run_seconds": 60.0, "error": ""}


def write_experiment(exp: Path, status: str = "finished", confirm: bool = True,
                     trials: bool = True, classes: bool = True) -> str:
    """The experiment folder `exp` (created); returns its path as the commands take it."""
    exp.mkdir(parents=True, exist_ok=True)
    records = [record(i, t) for i, t in enumerate(TRIALS)]
    write_tables(str(exp), records, summary_rows(records, max_epochs=2),
                 [confirm_row(t, s) for t, s in CONFIRM] if confirm else [])
    if not trials:
        (exp / "trials.parquet").unlink()
    write_json(str(exp / "search.json"), {
        "experiment": exp.name, "dataset": "digits_lt", "methods": METHODS, "status": status,
        "confirm": {"top": 2, "seeds": SEEDS} if confirm else {"top": 1},
        "budget": {"trials": 2, "max_epochs": 2, "grace_period": 1, "reduction_factor": 2},
        "resources": {"gpus_per_trial": 0.5}, "virtual_params": ["dn.depth", "dn.width"],
        "versions": {"dnet-tune": "0.1.0"}, "git_sha": "abc123",
        "request": {"sampler": "random", "scheduler": "asha"},
        **({"data": CLASSES} if classes else {})})
    return str(exp)
