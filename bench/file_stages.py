"""Where one image's time goes in the file-dataset training recipe, per stage, on one thread.

Why: `bench/loader_files.py` times whole passes, which cannot say what is left to gain. This
splits the batch path (`file_batches` + `augment_file`) into its stages and times PIL's path
beside it on the same decoded images, so the share of decoding (the same libjpeg-turbo in both
paths) is plain.

Stages, ms per image, best of `--repeats` passes over `--images` generated JPEGs (the same
generator as `loader_files.py`): decode with torchvision.io and with PIL; parameter draws; crop +
resize (+ flip); colour jitter per image (`jitter_image`, what `train_batch` runs on the CPU)
and as the batch form in chunks of 8 (what it ran before); the whole `train_batch`; and PIL's
RandomResizedCrop + h-flip + ColorJitter + ToTensor + Normalize per decoded PIL image.

Run: `python bench/file_stages.py [--images N] [--repeats N] [--out PATH]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from loader_files import IMAGENET_MEAN, IMAGENET_STD, write_jpegs
from machine import REPO, machine_info  # bench/ is the script's folder

from dnet_tune.data import augment_file as A
from dnet_tune.data import file_batches as FB
from dnet_tune.fileio import atomic_write_json


def best_ms_per_image(fn: Callable[[], object], n_images: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return round(best / n_images * 1e3, 3)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--images", type=int, default=64, help="JPEG files to write (default 64)")
    p.add_argument("--repeats", type=int, default=5, help="passes per stage; best (default 5)")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "file_stages_cpu.json"))
    args = p.parse_args(argv)
    from PIL import Image
    from torchvision import transforms as T

    torch.set_num_threads(1)
    n, reps = args.images, args.repeats
    with tempfile.TemporaryDirectory(prefix="bench_jpegs_") as tmp:
        paths = write_jpegs(Path(tmp), n)
        data = [FB.read(q) for q in paths]
        imgs = [FB.decode(d, q) for d, q in zip(data, paths, strict=True)]
        params = [A.draw_train(A.item_generator(s), *im.shape[-2:]) for s, im in enumerate(imgs)]
        crops = torch.stack([A.resized_crop(im, q.box, 224, q.flip)
                             for im, q in zip(imgs, params, strict=True)])
        order = torch.tensor([q.order for q in params])
        factors = torch.tensor([q.factors for q in params], dtype=torch.float64)
        pils = [Image.open(q).convert("RGB") for q in paths]
        pil_recipe = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(),
                                T.ColorJitter(0.4, 0.4, 0.4), T.ToTensor(),
                                T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        stages: dict[str, Callable[[], object]] = {
            "decode_torchvision_io": lambda: [FB.decode(d, q) for d, q in zip(data, paths,
                                                                             strict=True)],
            "decode_pil": lambda: [Image.open(q).convert("RGB") for q in paths],
            "draw_params": lambda: [A.draw_train(A.item_generator(s), *im.shape[-2:])
                                    for s, im in enumerate(imgs)],
            "crop_resize_flip": lambda: [A.resized_crop(im, q.box, 224, q.flip)
                                         for im, q in zip(imgs, params, strict=True)],
            "jitter_per_image": lambda: [A.jitter_image(c, q.order, q.factors)
                                         for c, q in zip(crops, params, strict=True)],
            "jitter_batch_form_chunks_of_8": lambda: [
                A.color_jitter(crops[i:i + 8], order[i:i + 8], factors[i:i + 8])
                for i in range(0, n, 8)],
            "train_batch": lambda: A.train_batch(imgs, params, 224),
            "pil_transforms": lambda: [pil_recipe(im) for im in pils],
        }
        ms = {name: best_ms_per_image(fn, n, reps) for name, fn in stages.items()}
    for name, value in ms.items():
        print(f"  {name:<24} {value:6.3f} ms/image")
    atomic_write_json(args.out, {
        "benchmark": "file_stages", "machine": machine_info("cpu", 1), "images": n,
        "repeats": reps, "timing": "best pass, ms per image, one thread", "ms_per_image": ms})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
