"""Typed run configuration: dataclasses, strict YAML in/out and `--set a.b=v` overrides.

Strictness is the point: a misspelt key or a wrong type in a search space or a hand-edited YAML
would otherwise silently train the default, so every key and value is checked and the error names
the dotted key. Precedence (timm style): dataclass defaults < dataset recipe < `--recipe` <
YAML < `--set` < flags (`dnet_tune.run.resolve_dict`).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from dnet_tune.dotted import unflatten
from dnet_tune.errors import UserError
from dnet_tune.method import DIFFICULTY_NET
from dnet_tune.schedule import STRETCH, check_schedule, refuse_absolute_milestones
from dnet_tune.yamlio import read_yaml, yaml_load

# crop_flip: random crop + flip; autoaugment: + AutoAugment; autoaugment_cutout: + Cutout.
# The one list of augment names: both config keys take it, `data.augment.AUGMENTS` is its values.
Augment = Literal["none", "crop_flip", "autoaugment", "autoaugment_cutout"]
# How much of an in-memory epoch one pass of augmentation ops covers; `auto` is resolved by
# device and epoch size (dnet_tune.data.augment_epoch.resolve_augment_span)
AugmentSpan = Literal["auto", "batch", "epoch"]


@dataclass
class DataConfig:
    name: str = "digits_lt"
    data_dir: str | None = None  # None: $DNET_DATA_DIR, else ~/.cache/dnet-tune
    imbalance: float = 20.0
    meta_per_class: int = 10  # H: balanced meta set, input `a` and meta batches
    val_per_class: int = 10  # V: balanced validation set, model selection and search only
    profile: Literal["standard", "paper"] = "standard"
    augment: Augment = "none"
    cutout_size: int = 16  # side of the Cutout square in pixels (autoaugment_cutout)
    # in-memory datasets: draw and apply augmentation per batch, or for the whole epoch in one
    # pass (fewer, larger ops: for GPUs). auto: epoch on CUDA if the epoch's uint8 images fit
    # 512 MiB, else batch; a run records the span it used.
    augment_span: AugmentSpan = "auto"
    batch_size: int = 64
    meta_batch_size: int = 100
    eval_batch_size: int = 512
    num_workers: int = 0  # only used by file-list datasets (lazy JPEG decoding)


@dataclass
class ModelConfig:
    name: str = "small_cnn"
    cosine_scale: float = 30.0  # cosine-classifier scale s (ImageNet models)
    # A state-dict file to start from (e.g. torchvision's ImageNet weights for resnet152), read
    # when the model is built, never downloaded. The classifier always starts fresh.
    pretrained: str | None = None
    # module prefixes (e.g. layer4.2) kept at their fresh initialisation instead of loaded
    # from `pretrained`
    reinit: list[str] = field(default_factory=list)
    # with train.workers > 1: BatchNorm statistics over the global batch (all ranks), so the
    # run computes what one process would; false: each rank normalises with its own shard
    sync_bn: bool = True


@dataclass
class DifficultyNetConfig:
    hidden: list[int] = field(default_factory=lambda: [128, 128])
    bias: bool = False
    input_mode: Literal["relative", "absolute"] = "relative"
    lr: float = 1e-3
    weight_decay: float = 1e-4


@dataclass
class MethodConfig:
    name: str = DIFFICULTY_NET
    base_loss: Literal["ce", "balanced_softmax"] = "ce"
    lam: float = 0.3  # driver-loss weight λ
    driver_target: Literal["relative", "absolute"] = "relative"
    meta_grad: Literal["full", "detached"] = "full"
    meta_interval: int = 1  # update Difficulty-Net every k iterations (spec: 1)
    # full meta-gradient: per-class forward-mode JVP (exact, no create_graph) or the
    # double-backward reference it is tested against
    meta_impl: Literal["jvp", "reference"] = "jvp"
    acc_refresh: Literal["after_epoch", "before_epoch"] = "after_epoch"
    focal_gamma: float = 1.0
    cb_beta: float = 0.9999
    cdb_tau: float | str = 1.0  # number or "dynamic"


@dataclass
class OptimConfig:
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: Literal["step", "cosine"] = "cosine"
    warmup_epochs: int = 0  # linear warm-up, in epochs whatever the run's length
    # step: ×gamma at these fractions of stage 1's length (train.epochs), each at the nearest
    # epoch, so that every length keeps the shape (dnet_tune.schedule); replaces the absolute
    # `milestones` of older files
    milestone_fractions: list[float] = field(default_factory=lambda: [0.8, 0.9])
    gamma: float = 0.01


@dataclass
class Extension:
    """`train --resume --extend N`: at `at_epoch` completed epochs, stage 1 went from
    `from_epochs` to `to_epochs`; `lr` names what the schedule did (dnet_tune.schedule)."""

    at_epoch: int
    from_epochs: int
    to_epochs: int
    lr: Literal["stretch"] = STRETCH


@dataclass
class TrainConfig:
    epochs: int = 30
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # auto: deterministic algorithms on CPU; on CUDA cudnn.benchmark instead (faster, not bitwise
    # reproducible). true/false force either.
    deterministic: bool | Literal["auto"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast for the classifier's forwards
    # on_improvement: evaluate the test split only at epochs where val_acc improved (the only
    # epochs a selected result can come from); others record NaN. Selection never reads test.
    test_eval: Literal["every_epoch", "on_improvement"] = "every_epoch"
    # intra-op CPU threads (torch.set_num_threads), set before any work: results on CPU depend
    # on it. auto: the process's count when the run starts (OMP_NUM_THREADS, else torch's
    # default); a search's trials: --cpus-per-trial. A run records the number it used.
    threads: int | Literal["auto"] = "auto"
    # the stage-1 iteration as CUDA graphs (dnet_tune/graph_step.py). auto: captured on CUDA once
    # a GPU has shown graphed == eager, eager everywhere else (until then on CUDA too, said once);
    # true (YAML's `on`): capture or refuse with the reason; false (`off`): eager. A bool, as
    # YAML reads on/off. A run records what it resolved to (true/false).
    cuda_graph: bool | Literal["auto"] = "auto"
    extensions: list[Extension] = field(default_factory=list)  # `--extend`s, in order
    # processes that train this one run together (torch.distributed; `train --workers N`):
    # data.batch_size and data.meta_batch_size are global batches split across them
    workers: int = 1


@dataclass
class Stage2Config:
    """Spec §6 stage 2: classifier re-balancing on the frozen stage-1 backbone (MiSLAS style).

    Off by default so that every existing config keeps meaning what it meant. Its epochs follow
    stage 1's: a run has train.epochs + stage2.epochs epochs, numbered on.
    """

    enabled: bool = False
    epochs: int = 10
    lr: float = 0.05  # peak of a per-epoch cosine schedule over stage2.epochs
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int | None = None  # None: data.batch_size
    augment: Augment | None = None
    retrain_head: bool = False  # False: only the per-class logit scales (LWS) learn
    # which stage-1 weights stage 2 starts from: the last epoch's, or the epoch selected on V
    # (the authors start from their best stage-1 checkpoint; without V both are the last)
    init: Literal["last", "best_val"] = "last"
    smoothing_head: float | None = None  # None: from data.imbalance by the spec's §6 table
    smoothing_tail: float | None = None
    smoothing_shape: Literal["concave", "linear"] = "concave"
    samples_per_visit: int = 4  # class-aware sampler: images drawn per visit of a class


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    dn: DifficultyNetConfig = field(default_factory=DifficultyNetConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    stage2: Stage2Config = field(default_factory=Stage2Config)


def resolve_threads(cfg: Config, available: int) -> Config:
    """`cfg` with `train.threads: auto` replaced by `available` (at least 1): what runs is the
    number that is recorded."""
    if cfg.train.threads != "auto":
        return cfg
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train,
                                                              threads=max(1, int(available))))


def total_epochs(cfg: Config) -> int:
    """Epochs of the whole run: stage 1, then stage 2 when enabled (numbered 1 … E1 + E2)."""
    return cfg.train.epochs + (cfg.stage2.epochs if cfg.stage2.enabled else 0)


# ----------------------------------------------------------------------------- strict conversion


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if get_origin(tp) is list:
        return f"list of {_type_name(get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"config key '{key}' must be a mapping, got {value!r}")
        return _from_dict(tp, value, key)  # type: ignore[arg-type]
    if origin in (Union, types.UnionType):
        errors = []
        for alt in get_args(tp):
            try:
                return _convert(value, alt, key)
            except UserError as exc:
                errors.append(exc)
        raise UserError(f"config key '{key}' must be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise UserError(f"config key '{key}' must be one of {_type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key '{key}' must be a {_type_name(tp)}, got {value!r}")
        (inner,) = get_args(tp)
        return [_convert(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is type(None):
        if value is None:
            return None
        raise UserError(f"config key '{key}' must be null, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a programming error in the dataclasses above
        raise TypeError(f"unsupported config type {tp!r} at {key}")
    raise UserError(f"config key '{key}' must be {_type_name(tp)}, got {value!r}")


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """Resolved once per dataclass: the search converts a config per trial and per status."""
    return typing.get_type_hints(cls)


def _from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            where = f"{prefix}.{k}" if prefix else str(k)
            valid = ", ".join(sorted(names))
            raise UserError(f"unknown config key '{where}'; valid keys here: {valid}")
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in data:
            where = f"{prefix}.{f.name}" if prefix else f.name
            raise UserError(f"config key '{where}' is missing")
    kwargs = {
        k: _convert(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()
    }
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build a `Config`, rejecting unknown keys and wrong types with the dotted key named."""
    refuse_absolute_milestones(data)
    cfg: Config = _from_dict(Config, data)
    validate(cfg)
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def parse_set(items: list[str]) -> dict[str, Any]:
    """`["a.b=1", "c.d=[1, 2]"]` -> nested dict; values parsed as YAML scalars/lists."""
    flat: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set '{item}' must look like key.sub=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise UserError(f"--set '{item}': empty key; use e.g. --set method.lam=1.0")
        try:
            value = yaml_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        clash = next((k for k in flat if k.startswith(f"{key}.") or key.startswith(f"{k}.")),
                     None)
        if clash is not None:
            raise UserError(f"--set '{item}' conflicts with --set of '{clash}'")
        flat[key] = value
    return unflatten(flat)


def load_yaml(path: str | Path) -> dict[str, Any]:
    data = read_yaml(path, "config file", "pass a YAML written by dnet-tune")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file '{path}' must hold a mapping of sections (data, model, ...)")
    return data


def validate(cfg: Config) -> None:
    """Checks of values (not types) that would otherwise fail deep inside a run."""
    positive = {
        "data.imbalance": cfg.data.imbalance,
        "data.batch_size": cfg.data.batch_size,
        "data.meta_batch_size": cfg.data.meta_batch_size,
        "data.eval_batch_size": cfg.data.eval_batch_size,
        "data.cutout_size": cfg.data.cutout_size,
        "train.epochs": cfg.train.epochs,
        "train.workers": cfg.train.workers,
        "optim.lr": cfg.optim.lr,
        "method.meta_interval": cfg.method.meta_interval,
        "dn.lr": cfg.dn.lr,
        "model.cosine_scale": cfg.model.cosine_scale,
        "stage2.epochs": cfg.stage2.epochs,
        "stage2.lr": cfg.stage2.lr,
        "stage2.samples_per_visit": cfg.stage2.samples_per_visit,
        "stage2.batch_size": 1 if cfg.stage2.batch_size is None else cfg.stage2.batch_size,
    }
    for key, v in positive.items():
        if v <= 0:
            raise UserError(f"config key '{key}' must be > 0, got {v}")
    non_negative = {
        "data.meta_per_class": cfg.data.meta_per_class,
        "data.val_per_class": cfg.data.val_per_class,
        "data.num_workers": cfg.data.num_workers,
        "optim.weight_decay": cfg.optim.weight_decay,
        "optim.momentum": cfg.optim.momentum,
        "optim.warmup_epochs": cfg.optim.warmup_epochs,
        "dn.weight_decay": cfg.dn.weight_decay,
        "method.lam": cfg.method.lam,
        "method.focal_gamma": cfg.method.focal_gamma,
        "stage2.momentum": cfg.stage2.momentum,
        "stage2.weight_decay": cfg.stage2.weight_decay,
    }
    for key, v in non_negative.items():
        if v < 0:
            raise UserError(f"config key '{key}' must be >= 0, got {v}")
    if cfg.data.imbalance < 1:
        raise UserError(f"config key 'data.imbalance' must be >= 1, got {cfg.data.imbalance}")
    if not cfg.dn.hidden or any(h <= 0 for h in cfg.dn.hidden):
        raise UserError(f"config key 'dn.hidden' must be a non-empty list of widths > 0, "
                        f"got {cfg.dn.hidden}")
    if not 0 < cfg.method.cb_beta < 1:
        raise UserError(f"config key 'method.cb_beta' must be in (0, 1), got {cfg.method.cb_beta}")
    tau = cfg.method.cdb_tau
    if isinstance(tau, str) and tau != "dynamic":
        raise UserError(f"config key 'method.cdb_tau' must be a number or 'dynamic', got {tau!r}")
    if isinstance(tau, float) and tau < 0:
        raise UserError(f"config key 'method.cdb_tau' must be >= 0, got {tau}")
    for key in ("smoothing_head", "smoothing_tail"):
        eps = getattr(cfg.stage2, key)
        if eps is not None and not 0 <= eps < 1:
            raise UserError(f"config key 'stage2.{key}' must be in [0, 1) or null, got {eps}")
    if isinstance(cfg.train.threads, int) and cfg.train.threads < 1:
        raise UserError(f"config key 'train.threads' must be >= 1 or auto, "
                        f"got {cfg.train.threads}")
    check_schedule(cfg.optim, cfg.train)
    if cfg.model.pretrained is not None and not cfg.model.pretrained.strip():
        raise UserError("config key 'model.pretrained' must be the path of a state-dict file "
                        "or null, got ''")
    if any(not p.strip() for p in cfg.model.reinit):
        raise UserError(f"config key 'model.reinit' must list module names such as layer4.2, "
                        f"got {cfg.model.reinit}")
    if not (cfg.train.device in ("auto", "cpu", "cuda") or cfg.train.device.startswith("cuda:")):
        raise UserError(f"config key 'train.device' must be auto, cpu, cuda or cuda:N, "
                        f"got {cfg.train.device!r}")
