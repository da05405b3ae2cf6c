"""Class-balanced ("class-aware") sampling for stage 2 (spec §6).

Stage 2 re-balances the classifier, so every class must be seen equally often whatever its
training count. The scheme is the class-aware sampler of Shen et al. / Kang et al. that the
authors' stage 2 uses: classes are visited in shuffled cycles (each class once per cycle), and
each visit yields `samples_per_visit` images of that class, taken from the class's own shuffled
cycle of its images (so within a class every image is used before any repeats). An epoch holds
`n_max · C` samples, as in the authors' sampler: as many as the dataset would have if every
class were as large as the largest.

Everything is drawn from the generator passed in, a fresh one per epoch: the authors' sampler
keeps its cycles across epochs; restarting them makes an epoch's batches a function of
(seed, epoch) alone, which is what exact resumption needs. Expected counts are unchanged.
"""

from __future__ import annotations

import numpy as np
import torch


def epoch_length(labels: np.ndarray, num_classes: int) -> int:
    """n_max · C: the size of the dataset if every class were as large as the largest."""
    counts = np.bincount(labels, minlength=num_classes)
    return int(counts.max()) * num_classes


def _cycles(n: int, length: int, gen: torch.Generator | None) -> torch.Tensor:
    """`length` items of concatenated random permutations of range(n)."""
    reps = -(-length // n)
    return torch.cat([torch.randperm(n, generator=gen) for _ in range(reps)])[:length]


def class_balanced_order(
    labels: np.ndarray,
    num_classes: int,
    samples_per_visit: int,
    total: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Indices into `labels` for one epoch of class-aware sampling (`total` of them).

    Classes without images cannot be drawn and are left out of the class cycles.
    """
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    present = [c for c in range(num_classes) if bool((labels_t == c).any())]
    if not present or total <= 0:
        return torch.zeros(0, dtype=torch.int64)
    k = samples_per_visit
    visits = -(-total // k)
    cls = torch.tensor(present, dtype=torch.int64)[_cycles(len(present), visits, generator)]
    chunks = torch.empty(visits, k, dtype=torch.int64)
    for c in present:
        mask = cls == c
        members = torch.nonzero(labels_t == c).squeeze(1)
        need = int(mask.sum()) * k
        if need:
            chunks[mask] = members[_cycles(len(members), need, generator)].view(-1, k)
    return chunks.reshape(-1)[:total]
