"""Primitives shared by the launcher and KubeRay checks in `cluster_files`.

Both formats are loose nested YAML that may be broken in any way, so every lookup here tolerates
wrong types (a broken file must yield findings, never a traceback), and the world-open ingress scan
is format-agnostic: AWS IpRanges, GCP sourceRanges and Kubernetes ipBlocks are all just strings.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from typing import Any

# Ports a Ray head must never expose to the internet: whoever reaches them can run code.
SENSITIVE_PORTS = {8265: "Ray dashboard/job API", 6379: "Ray GCS", 10001: "Ray client"}
WORLD_CIDRS = {"0.0.0.0/0", "::/0"}
RAY_KINDS = ("RayCluster", "RayJob", "RayService")
GPU_KEY = "nvidia.com/gpu"
IMAGE_VERSION = re.compile(r"(?:^|/)ray(?:-ml|-llm)?:(\d+\.\d+\.\d+)")
RAY_PIN = re.compile(r"\bray(?:\[[^\]]*\])?==(\d+[\w.]*)")


Pairs = list[tuple[str, str]]  # (key, message) before the file name is attached


def join_path(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def whole(value: Any) -> int | None:
    """A count as an int, or None when it is not a whole non-negative number."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return int(value) if float(value).is_integer() else None
    return None


def get_in(node: Any, *keys: str) -> Any:
    """Nested lookup that tolerates wrong types, so a broken file yields findings, not crashes."""
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def get_list(node: Any, *keys: str) -> list[Any]:
    """`get_in` for places that must hold a list; anything else reads as empty."""
    value = get_in(node, *keys)
    return value if isinstance(value, list) else []


def suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def walk(node: Any, path: tuple[Any, ...], parents: tuple[Any, ...]) -> Iterator[Any]:
    yield path, node, parents
    if isinstance(node, dict):
        items: Any = node.items()
    else:
        items = enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield from walk(v, (*path, k), (*parents, node))


def rule_ports(rule: dict[str, Any]) -> set[int] | None:
    """Ports an ingress rule opens; None means all (AWS protocol -1, GCP/K8s rule without ports)."""
    if "FromPort" in rule or "IpProtocol" in rule:  # AWS IpPermissions
        lo, hi = whole(rule.get("FromPort")), whole(rule.get("ToPort", rule.get("FromPort")))
        if str(rule.get("IpProtocol")) == "-1" or lo is None or hi is None:
            return None  # -1, missing or unreadable ports: assume the worst
        return set(range(lo, hi + 1))
    specs: list[Any] = []
    for entry in get_list(rule, "allowed"):  # GCP firewall
        if not isinstance(entry, dict) or not entry.get("ports"):
            return None
        specs += entry["ports"]
    for entry in get_list(rule, "ports"):  # Kubernetes NetworkPolicy / Service
        specs.append(entry.get("port") if isinstance(entry, dict) else entry)
    ports: set[int] = set()
    for spec in specs:
        lo_s, _, hi_s = str(spec).partition("-")
        if lo_s.isdigit():
            ports |= set(range(int(lo_s), int(hi_s or lo_s) + 1))
    return ports if specs else None


def open_ingress(doc: Any, prefix: str = "") -> Pairs:
    """World-open CIDRs anywhere in a document (egress aside), naming the Ray ports they expose;
    scanning everything catches AWS IpRanges, GCP sourceRanges and K8s ipBlocks alike."""
    out = []
    for path, value, parents in walk(doc, (), ()):
        if not (isinstance(value, str) and value.strip() in WORLD_CIDRS):
            continue
        if any("egress" in str(p).lower() for p in path):
            continue
        rule = next((p for p in reversed(parents) if isinstance(p, dict)
                     and {"FromPort", "IpProtocol", "allowed", "ports"} & p.keys()), None)
        ports = rule_ports(rule) if rule else None
        hit = sorted(SENSITIVE_PORTS) if ports is None else sorted(set(SENSITIVE_PORTS) & ports)
        if hit:
            names = ", ".join(f"{p} ({SENSITIVE_PORTS[p]})" for p in hit)
            out.append((prefix + join_path(path), f"ingress from {value} exposes {names} to "
                        "the internet; reach the head through an SSH tunnel or port-forward"))
        else:
            out.append((prefix + join_path(path), f"ingress open to {value}; restrict it to "
                        "your own address range"))
    return out


