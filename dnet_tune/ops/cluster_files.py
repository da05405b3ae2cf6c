"""Offline checks for the cluster configs in `clusters/` (`dnet-tune cluster check`).

Nothing here can launch a cluster, so mistakes in a launcher config or a KubeRay manifest would
otherwise surface only after minutes of provisioning and real GPU cost: a misspelt key the
launcher rejects (or KubeRay silently drops), trials landing on a CPU head, a dashboard open to the
internet or to anyone without a token, or nodes running a Ray other than the one the search was
written against. Each problem is one `Finding` naming the file and the dotted key, so a CI log
points straight at the line. This module reads the files and tells the two formats apart;
`cluster_launcher` and `cluster_kuberay` check them, `cluster_auth` has the token rule of both.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnet_tune.ops.cluster_kuberay import is_manifest, manifest_findings
from dnet_tune.ops.cluster_launcher import is_launcher_config, launcher_findings
from dnet_tune.ops.cluster_rules import Pairs
from dnet_tune.yamlio import YamlFileError, read_yaml_documents


@dataclass(frozen=True)
class Finding:
    file: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}"


def installed_ray_version() -> str:
    return importlib.metadata.version("ray")


# ----------------------------------------------------------------------------- entry points


def _classify(docs: list[Any], ray_version: str) -> Pairs:
    if is_manifest(docs):
        return manifest_findings(docs, ray_version)
    if is_launcher_config(docs):
        return launcher_findings(docs[0], ray_version)
    return [("(file)", "neither a Ray cluster-launcher config (cluster_name, provider, ...) nor "
                       "a KubeRay manifest (apiVersion: ray.io/v1, kind: RayCluster/RayJob)")]


def check_file(path: Path) -> list[Finding]:
    """All problems in one config; unreadable files are findings too, so one bad file never
    hides the verdict on the others."""
    name = str(path)
    if not path.is_file():
        what = "a directory without *.yaml files" if path.is_dir() else "no such file"
        return [Finding(name, "(file)", what)]
    try:
        docs = read_yaml_documents(path, "cluster file")
    except YamlFileError as exc:
        return [Finding(name, "(file)", exc.reason)]
    if not docs:
        return [Finding(name, "(file)", "empty file")]
    return [Finding(name, k, m) for k, m in _classify(docs, installed_ray_version())]


def _expand(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        found = sorted([*p.rglob("*.yaml"), *p.rglob("*.yml")]) if p.is_dir() else []
        out += found or [p]
    return out


def check_files(paths: list[str]) -> list[Finding]:
    """Findings for every file; a directory stands for the YAML files under it."""
    return [f for p in _expand(paths) for f in check_file(p)]


def main_check(paths: list[str], console_print: Callable[[str], Any] = print) -> int:
    """The whole `dnet-tune cluster check` command: one line per finding or passing file, and
    exit code 2 when anything failed, like every other user mistake in the CLI."""
    if not paths:
        console_print("no files given; pass cluster configs, e.g. clusters/aws-gpu.yaml")
        return 2
    failed = False
    for path in _expand(paths):
        findings = check_file(path)
        for f in findings:
            console_print(str(f))
        if not findings:
            console_print(f"OK {path}")
        failed = failed or bool(findings)
    return 2 if failed else 0
