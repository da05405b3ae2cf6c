"""Named recipes: published training settings as validated config layers (`--recipe NAME`).

A recipe is a YAML file in `recipes/` (shipped inside the wheel as `dnet_tune/recipes`, like the
search spaces): config sections, plus a `recipe:` block saying what it is, where its values come
from and which datasets it is written for. It sits between the dataset's own recipe and the
user's YAML: defaults < dataset recipe < --recipe < --config < --set < flags, so a recipe states
a setting once and every individual value can still be overridden.

A recipe is checked as strictly as a config (unknown keys and wrong types name the key), and a
recipe written for CIFAR refuses another dataset instead of training ResNet-32 on 8×8 digits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dnet_tune.config import Config, config_from_dict, config_to_dict
from dnet_tune.dotted import merge
from dnet_tune.errors import UserError
from dnet_tune.yamlio import read_yaml

META_KEY = "recipe"
META_KEYS = {"description", "datasets", "source"}


def recipes_dir() -> Path:
    """`recipes/` of a checkout, else the copy a wheel ships as `dnet_tune/recipes`."""
    here = Path(__file__).resolve()
    checkout = here.parents[1] / "recipes"
    return checkout if checkout.is_dir() else here.parent / "recipes"


def recipe_names() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def recipe_path(name: str) -> Path:
    """A shipped recipe by name, or a YAML file by path (anything with `/` or `.yaml`)."""
    if "/" in name or name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.is_file():
            raise UserError(f"recipe file '{name}' does not exist")
        return path
    path = recipes_dir() / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown recipe '{name}'; choose one of: {', '.join(recipe_names())} "
                        f"(or pass the path of a recipe YAML)")
    return path


def read_recipe(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metadata, config layer) of a recipe, both checked; the layer is a nested config dict."""
    path = recipe_path(name)
    raw = read_yaml(path, "recipe", "see recipes/ for examples")
    if not isinstance(raw, dict):
        raise UserError(f"recipe '{path}' must be a mapping of config sections")
    body = dict(raw)
    meta = body.pop(META_KEY, None) or {}
    if not isinstance(meta, dict):
        raise UserError(f"recipe '{path}': {META_KEY} must be a mapping "
                        f"({', '.join(sorted(META_KEYS))})")
    unknown = sorted(set(meta) - META_KEYS)
    if unknown:
        raise UserError(f"recipe '{path}': unknown key '{META_KEY}.{unknown[0]}'; valid keys "
                        f"here: {', '.join(sorted(META_KEYS))}")
    datasets = meta.get("datasets", [])
    if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
        raise UserError(f"recipe '{path}': {META_KEY}.datasets must be a list of dataset names")
    if "name" in (body.get("data") or {}):
        raise UserError(f"recipe '{path}': data.name is chosen with --dataset, not by a recipe "
                        f"(list the datasets under {META_KEY}.datasets)")
    try:  # the same strict conversion as any config: every key and type is checked
        config_from_dict(merge(config_to_dict(Config()), body))
    except UserError as exc:
        raise UserError(f"recipe '{path}': {exc}") from None
    return meta, body


def recipe_layer(name: str, dataset: str) -> dict[str, Any]:
    """The config layer of recipe `name` for `dataset`; a dataset it is not written for fails."""
    meta, body = read_recipe(name)
    datasets = meta.get("datasets") or []
    if datasets and dataset not in datasets:
        raise UserError(f"recipe '{name}' is written for {', '.join(datasets)}, not "
                        f"{dataset}; pass --dataset {datasets[0]}")
    return body


def list_recipes() -> list[tuple[str, str]]:
    """(name, description) of every shipped recipe."""
    return [(n, str(read_recipe(n)[0].get("description", ""))) for n in recipe_names()]
