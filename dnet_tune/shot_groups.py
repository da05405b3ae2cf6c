"""The shot groups, defined once: their names, their order and the limits between them.

Many-shot classes have more than 100 training images, few-shot classes fewer than 20, and
medium-shot classes the rest (the split of the long-tail literature that Difficulty-Net's results
are reported in). `data.longtail.shot_groups` sorts a dataset's classes into them; the trainer's
metrics (`val_many`, `test_few`, ...), the result files, the printed tables and the report's
figures take the names and limits from here, so they cannot disagree.

A leaf that imports nothing, not a part of `data/longtail.py`: importing anything under `data/`
registers the dataset builders and so loads torch, which `report`, `export` and the tables do not
otherwise need.
"""

from __future__ import annotations

SHOT_GROUPS = ("many", "medium", "few")  # in this order in every table, metric list and figure
MANY_ABOVE = 100  # many-shot: more than this many training images
FEW_BELOW = 20  # few-shot: fewer than this; medium-shot: FEW_BELOW to MANY_ABOVE, both included


def shot_group(train_images: int) -> str:
    """The shot group of a class with `train_images` training images."""
    if train_images > MANY_ABOVE:
        return "many"
    return "medium" if train_images >= FEW_BELOW else "few"


def limits_label() -> str:
    """The groups' limits in the order of `SHOT_GROUPS`, as a figure states them."""
    return f">{MANY_ABOVE}, {FEW_BELOW}–{MANY_ABOVE}, <{FEW_BELOW}"
