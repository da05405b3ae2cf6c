"""A built wheel carries the search spaces and the recipes, so a pip-installed dnet-tune (a
cluster node, a RayJob without a checkout) finds `search_spaces/<dataset>.yaml` for every
registered dataset and every `recipes/<name>.yaml`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from dnet_tune.data.registry import DATASETS

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_ships_the_search_spaces_and_finds_them_installed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("dnet_tune", "search_spaces", "recipes"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(wheels)], check=True)
    (wheel,) = wheels.glob("dnet_tune-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for dataset in DATASETS.names():
        assert f"dnet_tune/search_spaces/{dataset}.yaml" in names
    recipes = sorted(p.name for p in (ROOT / "recipes").glob("*.yaml"))
    assert "paper.yaml" in recipes
    for recipe in recipes:
        assert f"dnet_tune/recipes/{recipe}" in names
    for init in (ROOT / "dnet_tune").rglob("__init__.py"):  # every subpackage is listed
        assert init.relative_to(ROOT).as_posix() in names

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True)
    code = ("from dnet_tune.tune.space import default_space_path; "
            "from dnet_tune.tune.space_file import load_space; "
            "p = default_space_path('digits_lt'); load_space(p); print(p); "
            "from dnet_tune.recipe import read_recipe, recipe_path; read_recipe('paper'); "
            "print(recipe_path('paper'))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, cwd=tmp_path, env={"PYTHONPATH": str(target)}).stdout
    space, recipe = out.split()
    assert Path(space).is_relative_to(target)
    assert Path(recipe).is_relative_to(target)
    helped = subprocess.run([sys.executable, "-m", "dnet_tune.cli", "search", "--help"],
                            check=True, capture_output=True, text=True, cwd=tmp_path,
                            env={"PYTHONPATH": str(target)}).stdout
    assert "--warm-start" in helped  # the installed command finds its command modules


def _declared() -> set[str]:
    import re

    import pytest

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0].lower().replace("_", "-")
            for d in project["dependencies"]}


def _imported_top_levels() -> set[str]:
    import ast

    out = set()
    for path in (ROOT / "dnet_tune").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                out |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                out.add(node.module.split(".")[0])
    return out - set(sys.stdlib_module_names) - {"dnet_tune"}


def test_every_imported_distribution_is_a_declared_dependency():
    """An import that only works because another package happened to bring its distribution
    (scipy with scikit-learn, SQLAlchemy with optuna) breaks when that one drops it."""
    from importlib.metadata import packages_distributions

    dists = packages_distributions()
    imported = _imported_top_levels()
    assert {"torch", "ray", "scipy", "sqlalchemy"} <= imported  # the scan sees lazy imports
    missing = {}
    for module in sorted(imported):
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not names & _declared():
            missing[module] = sorted(names)
    assert missing == {}, f"imported but not in pyproject's dependencies: {missing}"
