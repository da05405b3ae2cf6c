"""The house rules, read from the source: imports flow one way and the core never knows Ray.

Built from `ast` (no import is executed), so a loop or a layering slip fails here by name instead
of as an ImportError at some later call site.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "dnet_tune"
CORE = ("dnet_tune.config", "dnet_tune.data", "dnet_tune.models", "dnet_tune.method",
        "dnet_tune.train", "dnet_tune.stage2", "dnet_tune.stage2_sampler", "dnet_tune.run",
        "dnet_tune.schedule", "dnet_tune.graph_step", "dnet_tune.distributed")
# the report reads finished results: it may ask `driver` whether a search is alive, never touch
# the fault machinery or the engine that runs trials
REPORT = "dnet_tune.tune.report"
FORBIDDEN_IN_REPORT = ("ray", "optuna.study", "dnet_tune.tune.faults", "dnet_tune.tune.runner",
                       "dnet_tune.tune.trainable", "dnet_tune.tune.per_method",
                       "dnet_tune.tune.search", "dnet_tune.tune.confirm",
                       "dnet_tune.tune.ray_session", "dnet_tune.cli", "dnet_tune.commands")
FORBIDDEN_IN_CORE = ("ray", "dnet_tune.tune", "dnet_tune.ops", "dnet_tune.cli",
                     "dnet_tune.commands")


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _imported_names(module: str, path: Path) -> set[str]:
    """Absolute names of everything `module` imports, wherever in the file (lazy ones too)."""
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports.

    A package's `__init__` importing its own children is how registries fill (the children
    register themselves in a leaf module), and a module importing its parent package only runs
    that `__init__`; neither is an edge of the flow.
    """
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for name in _imported_names(m, path):
            target = name
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if not target or target == m or m.startswith(f"{target}."):
                continue
            if path.name == "__init__.py" and target.startswith(f"{m}."):
                continue
            graph[m].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return [*stack[stack.index(w):], w]
            if w not in state and (found := visit(w)):
                return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30  # the walk really saw the package
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def _core_modules() -> list[str]:
    return sorted(m for m in _modules() if any(m == c or m.startswith(f"{c}.") for c in CORE))


def _forbidden_imports(module: str, forbidden: tuple[str, ...]) -> list[str]:
    names = _imported_names(module, _modules()[module])
    return sorted(n for n in names if any(n == f or n.startswith(f"{f}.") for f in forbidden))


@pytest.mark.parametrize("module", _core_modules())
def test_core_imports_neither_ray_nor_the_upper_layers(module):
    bad = _forbidden_imports(module, FORBIDDEN_IN_CORE)
    assert not bad, f"{module} imports {bad}"


def test_the_layer_check_sees_a_forbidden_import(tmp_path):
    fake = tmp_path / "mod.py"
    fake.write_text("def f():\n    from ray import tune\n    from ..tune import search\n")
    names = _imported_names("dnet_tune.method.mod", fake)
    assert "ray" in names and "dnet_tune.tune.search" in names


def test_importing_the_core_loads_no_ray():
    import subprocess
    import sys

    code = ("import sys, dnet_tune.run, dnet_tune.train, dnet_tune.data, dnet_tune.models, "
            "dnet_tune.distributed.trainer, dnet_tune.distributed.launch; "
            "print(any(m == 'ray' or m.startswith('ray.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=PACKAGE.parent).stdout.strip()
    assert out == "False"


def _report_modules() -> list[str]:
    return sorted(m for m in _modules() if m == REPORT or m.startswith(f"{REPORT}."))


def test_the_report_is_a_wing():
    assert len(_report_modules()) >= 8  # the walk found the wing's modules


@pytest.mark.parametrize("module", _report_modules())
def test_the_report_imports_only_the_leaves_below_it(module):
    bad = _forbidden_imports(module, FORBIDDEN_IN_REPORT)
    assert not bad, f"{module} imports {bad}"
