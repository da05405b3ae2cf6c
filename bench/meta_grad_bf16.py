"""Is the JVP meta-gradient usable under bf16 autocast? (decides `train.precision: bf16`'s scope)

For a few backbones and class counts it takes a partly trained classifier (5 plain SGD steps on
random data), computes Difficulty-Net's φ-gradient through the exact JVP meta step once with the
classifier's forwards in fp32 and once under bf16 autocast (the Difficulty-Net MLP stays fp32),
and reports the cosine similarity and the relative error ‖g_bf16 − g_fp32‖ / ‖g_fp32‖.
The bar used for the decision: cosine > 0.99 and relative error < 5e-2 in every case.

Run: `python bench/meta_grad_bf16.py [--device cpu|cuda] [--out PATH]` (CPU: ~1 minute).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

import torch

from dnet_tune.config import ModelConfig
from dnet_tune.device import autocast
from dnet_tune.fileio import atomic_write_json
from dnet_tune.method.difficulty_net import DifficultyNet, class_weights
from dnet_tune.method.losses import cross_entropy
from dnet_tune.method.meta_step import meta_grad_jvp
from dnet_tune.models.registry import create_model

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "bench" / "results" / "meta_grad_bf16.json"
# (model, classes, image size, channels, batch, seeds)
CASES = (
    ("small_cnn", 10, 8, 1, 64, 3),
    ("resnet20", 10, 32, 3, 32, 3),
    ("resnet32", 10, 32, 3, 128, 2),
    ("resnet20", 100, 32, 3, 64, 2),
    ("resnet32", 100, 32, 3, 128, 3),
)
META_BATCH = 100
LR = 0.1


def phi_grad(model, dn, a, batch, device, precision) -> torch.Tensor:
    x, y, xm, ym = batch
    w = class_weights(dn(a))
    amp = functools.partial(autocast, device, precision)
    dce_dw, _ = meta_grad_jvp(model, x, y, w, LR, xm, ym, cross_entropy, amp=amp)
    grads = torch.autograd.grad((dce_dw * w).sum(), list(dn.parameters()))
    return torch.cat([g.reshape(-1) for g in grads])


def run_case(name: str, c: int, size: int, ch: int, b: int, seed: int, device: torch.device
             ) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = create_model(ModelConfig(name=name), c, ch, size).to(device).train()
    x = torch.randn(b, ch, size, size, device=device)
    y = torch.randint(0, c, (b,), device=device)
    xm = torch.randn(META_BATCH, ch, size, size, device=device)
    ym = torch.arange(META_BATCH, device=device) % c
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    dn = DifficultyNet(c, [128, 128]).to(device)
    a = torch.linspace(0.9, 0.1, c, device=device)
    g32 = phi_grad(model, dn, a, (x, y, xm, ym), device, "fp32")
    g16 = phi_grad(model, dn, a, (x, y, xm, ym), device, "bf16")
    cos = float(torch.nn.functional.cosine_similarity(g32, g16, dim=0))
    rel = float((g16 - g32).norm() / g32.norm())
    return {"model": name, "classes": c, "batch": b, "seed": seed, "cosine": round(cos, 5),
            "rel_error": round(rel, 4), "within_bar": cos > 0.99 and rel < 5e-2}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(DEFAULT_OUT))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for name, c, size, ch, b, seeds in CASES:
        for seed in range(seeds):
            row = run_case(name, c, size, ch, b, seed, device)
            rows.append(row)
            print(f"{name:<9} C={c:<3} B={b:<3} seed={seed}  cos={row['cosine']:.5f}  "
                  f"rel={row['rel_error']:.4f}  {'ok' if row['within_bar'] else 'FAILS'}",
                  flush=True)
    verdict = all(r["within_bar"] for r in rows)
    atomic_write_json(Path(args.out), {"benchmark": "meta_grad_bf16", "device": str(device),
                                       "torch": torch.__version__, "cases": rows,
                                       "bf16_meta_step_ok": verdict})
    print(f"bf16 meta step within the bar in every case: {verdict}\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
