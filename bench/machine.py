"""What every benchmark records about where it ran, and where the benchmarks find their inputs.

Scripts in bench/ run as `python bench/<name>.py`, so this folder is on their import path.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def default_data_dir() -> str | None:
    """$DNET_DATA_DIR if set, else the shared real CIFAR subsets next to the checkout."""
    if os.environ.get("DNET_DATA_DIR"):
        return None  # the project's resolve_data_dir reads it
    shared = REPO.parent / "shared" / "data"
    return str(shared) if shared.is_dir() else None


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except OSError:
        return {}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine_info(device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """Date, platform, CPU, versions and the commit; the GPU's name on CUDA."""
    import torch

    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),  # other work on the machine when this started
        "torch": torch.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "threads_requested": threads,
        "device": device,
        "gpu": (torch.cuda.get_device_name(torch.device(device))
                if device.startswith("cuda") else None),
        "git": git_info(),
    }
    with contextlib.suppress(ImportError):
        import torchvision

        info["torchvision"] = torchvision.__version__
    return info


@contextlib.contextmanager
def search_scratch() -> Iterator[Path]:
    """A scratch folder for searches, with Ray's session files under it (not in /tmp/ray)."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("DNET_RAY_TEMP_DIR", str(Path(tmp) / "ray"))
        Path(os.environ["DNET_RAY_TEMP_DIR"]).mkdir(parents=True, exist_ok=True)
        yield Path(tmp)
