"""Nested config dicts and their dotted names (`optim.lr`), in both directions.

Search spaces, `--set` overrides and result tables all speak of config keys as dotted names,
while configs are nested sections; these are the only conversions between the two.
"""

from __future__ import annotations

from typing import Any


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge plain dicts; `over` wins. Lists are replaced, not concatenated."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def nest(key: str, value: Any) -> dict[str, Any]:
    """`("optim.lr", 0.1)` -> `{"optim": {"lr": 0.1}}`."""
    node: Any = value
    for part in reversed(key.split(".")):
        node = {part: node}
    return dict(node)


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """`{"optim.lr": 0.1, "optim.wd": 0}` -> `{"optim": {"lr": 0.1, "wd": 0}}`."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        out = merge(out, nest(key, value))
    return out


def flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"optim": {"lr": 0.1}}` -> `{"optim.lr": 0.1}` (lists are values, not levels)."""
    out: dict[str, Any] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
