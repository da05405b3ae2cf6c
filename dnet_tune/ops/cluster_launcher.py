"""Offline checks of a Ray cluster-launcher config (`ray up` YAML): Ray's own schema, and what
the schema lets through but a GPU search cannot live with.

Nothing here can launch a cluster, so a key the launcher rejects, trials landing on a CPU head,
nodes running a Ray other than the installed one or without token authentication would otherwise
surface only after minutes of provisioning and real GPU cost (or not at all).
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from dnet_tune.ops.cluster_auth import launcher_auth
from dnet_tune.ops.cluster_rules import (
    IMAGE_VERSION,
    RAY_PIN,
    Pairs,
    get_in,
    join_path,
    open_ingress,
    suggest,
    whole,
)


def is_launcher_config(docs: list[Any]) -> bool:
    return len(docs) == 1 and isinstance(docs[0], dict) and bool(
        {"cluster_name", "provider", "available_node_types"} & docs[0].keys())


def launcher_findings(doc: dict[str, Any], ray_version: str) -> Pairs:
    """Every problem of one launcher config; ours first, the schema's where we said nothing."""
    ours = _launcher_findings(doc, ray_version) + open_ingress(doc) + launcher_auth(doc)
    keys = {k for k, _ in ours}  # our message wins over the schema's at the same key
    return ours + [p for p in _schema_findings(doc) if p[0] not in keys]


@lru_cache(maxsize=1)
def _launcher_schema() -> dict[str, Any]:
    """Ray's own schema, read from the installed package so it always matches its launcher."""
    spec = importlib.util.find_spec("ray")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "autoscaler" / "ray-schema.json"
        if path.is_file():
            schema: dict[str, Any] = json.loads(path.read_text())
            return schema
    raise FileNotFoundError("ray/autoscaler/ray-schema.json not found; is ray installed?")


def _schema_findings(doc: dict[str, Any]) -> Pairs:
    import jsonschema  # only launcher configs need it

    out = []
    errors = jsonschema.Draft7Validator(_launcher_schema()).iter_errors(doc)
    for err in sorted(errors, key=lambda e: [str(p) for p in e.path]):
        path = tuple(err.path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            known = err.schema.get("properties", {})
            for extra in sorted(set(err.instance) - set(known), key=str):
                msg = f"Additional properties are not allowed ('{extra}' was unexpected)"
                out.append((join_path((*path, extra)), msg + suggest(str(extra), known)))
        else:
            out.append((join_path(path), err.message))
    return out


def _launcher_findings(doc: dict[str, Any], ray_version: str) -> Pairs:
    """What the schema lets through but a GPU search cannot live with: no node that offers
    whole GPUs, a head that would take trials, or workers running another Ray."""
    out: Pairs = []
    types, head = doc.get("available_node_types"), doc.get("head_node_type")
    if not isinstance(types, dict) or not types:
        out.append(("available_node_types", "no node types; declare a CPU head type and a GPU "
                                            "worker type so the autoscaler can plan"))
        types = {}
    elif not isinstance(head, str) or head not in types:
        out.append(("head_node_type", f"{head!r} is not one of available_node_types "
                                      f"({', '.join(map(str, types))})"))
    gpu_workers = 0
    for name, spec in types.items():
        key, res = f"available_node_types.{name}", get_in(spec, "resources")
        res = res if isinstance(res, dict) else {}
        gpu = res.get("GPU")
        if gpu is not None and whole(gpu) is None:
            out.append((f"{key}.resources.GPU", f"a node's GPU count must be a whole number, "
                        f"got {gpu!r}; share GPUs per trial, not per node"))
        accel = get_in(spec, "node_config", "guestAccelerators")
        if isinstance(accel, list) and whole(gpu) is not None:
            count = sum(whole(get_in(a, "acceleratorCount")) or 0 for a in accel)
            if count != whole(gpu):
                out.append((f"{key}.resources.GPU", f"declares {gpu} GPUs but guestAccelerators "
                                                    f"attach {count}"))
        lo = get_in(spec, "min_workers") or 0
        hi = get_in(spec, "max_workers") if isinstance(spec, dict) and "max_workers" in spec \
            else doc.get("max_workers", 2)
        if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
            out.append((f"{key}.min_workers", f"min_workers ({lo}) > max_workers ({hi})"))
        if name == head:
            if res.get("CPU") != 0 or res.get("GPU") != 0:
                out.append((f"{key}.resources", f"the head must advertise {{CPU: 0, GPU: 0}} so "
                            f"no trial is scheduled on it; got {res or 'auto-detected'}"))
        elif (whole(gpu) or 0) > 0 and isinstance(hi, int) and hi > 0:
            gpu_workers += 1
    if types and not gpu_workers:
        out.append(("available_node_types", "no worker node type advertises resources.GPU > 0 "
                    "with max_workers > 0; GPU trials could never be scheduled"))
    return out + _launcher_versions(doc, types, ray_version)


def _launcher_versions(doc: dict[str, Any], types: dict[str, Any], ray_version: str) -> Pairs:
    images = [(f"docker.{k}", get_in(doc, "docker", k))
              for k in ("image", "head_image", "worker_image")]
    images += [(f"available_node_types.{n}.docker.worker_image",
                get_in(s, "docker", "worker_image")) for n, s in types.items()]
    commands = [(k, v) for k, v in doc.items() if str(k).endswith("_commands")]
    commands += [(f"available_node_types.{n}.{k}", v) for n, s in types.items()
                 if isinstance(s, dict) for k, v in s.items() if str(k).endswith("_commands")]
    out, seen = [], 0
    for key, image in images:
        match = IMAGE_VERSION.search(image) if isinstance(image, str) else None
        if match:
            seen += 1
            if match.group(1) != ray_version:
                out.append((key, f"image {image} runs Ray {match.group(1)} but the installed "
                                 f"ray is {ray_version}; use rayproject/ray:{ray_version}-..."))
    for key, cmds in commands:
        for i, cmd in enumerate(cmds if isinstance(cmds, list) else []):
            for pin in RAY_PIN.findall(cmd if isinstance(cmd, str) else ""):
                seen += 1
                if pin != ray_version:
                    out.append((f"{key}[{i}]", f"pins ray=={pin} but the installed ray is "
                                               f"{ray_version}"))
    if not seen:
        out.append(("docker.image", "no Ray version pinned; use a rayproject/ray:"
                                    f"{ray_version}-... image or ray=={ray_version} in setup"))
    return out
