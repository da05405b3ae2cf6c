"""Offline checks for the cluster configs in `clusters/` (`dnet-tune cluster check`).

Nothing here can launch a cluster, so mistakes in a launcher config or a KubeRay manifest would
otherwise surface only after minutes of provisioning and real GPU cost: a misspelt key the
launcher rejects (or KubeRay silently drops), trials landing on a CPU head, a dashboard open to the
internet, or nodes running a Ray other than the one the search was written against. Each problem
is one `Finding` naming the file and the dotted key, so a CI log points straight at the line.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from dnet_tune.ops.cluster_rules import (
    GPU_KEY,
    IMAGE_VERSION,
    RAY_KINDS,
    RAY_PIN,
    SENSITIVE_PORTS,
    WORLD_CIDRS,
    Pairs,
    get_in,
    get_list,
    join_path,
    open_ingress,
    suggest,
    whole,
)
from dnet_tune.yamlio import YamlFileError, read_yaml_documents

# KubeRay v1 field names (generous: newer optional fields too), so a misspelt key is reported
# instead of being pruned silently by the operator's structural schema.
_CLUSTER_FIELDS = {
    "rayVersion", "enableInTreeAutoscaling", "autoscalerOptions", "headGroupSpec",
    "workerGroupSpecs", "headServiceAnnotations", "suspend", "managedBy",
    "gcsFaultToleranceOptions", "authOptions", "upgradeStrategy"}
_HEAD_FIELDS = {"template", "headService", "enableIngress", "rayStartParams", "serviceType",
                "resources", "labels"}
_WORKER_FIELDS = {"groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds",
                  "template", "rayStartParams", "scaleStrategy", "numOfHosts", "suspend",
                  "resources", "labels"}
_JOB_FIELDS = {
    "entrypoint", "metadata", "runtimeEnvYAML", "jobId", "shutdownAfterJobFinishes",
    "ttlSecondsAfterFinished", "activeDeadlineSeconds", "rayClusterSpec", "clusterSelector",
    "submitterPodTemplate", "submitterConfig", "entrypointNumCpus", "entrypointNumGpus",
    "entrypointResources", "suspend", "submissionMode", "managedBy", "backoffLimit",
    "deletionPolicy", "deletionStrategy"}
_SERVICE_FIELDS = {"serveConfigV2", "rayClusterConfig", "upgradeStrategy",
                   "excludeHeadPodFromServeSvc", "serviceUnhealthySecondThreshold",
                   "deploymentUnhealthySecondThreshold"}


@dataclass(frozen=True)
class Finding:
    file: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}"


def installed_ray_version() -> str:
    return importlib.metadata.version("ray")


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


# ----------------------------------------------------------------------------- launcher configs


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


# ----------------------------------------------------------------------------- KubeRay manifests


def _unknown(spec: Any, known: set[str], key: str) -> Pairs:
    return [(f"{key}.{k}", f"unknown field '{k}' (KubeRay would drop it silently)"
             + suggest(str(k), known)) for k in (spec if isinstance(spec, dict) else {})
            if k not in known]


def _containers(template: Any) -> list[dict[str, Any]]:
    return [c for c in get_list(template, "spec", "containers") if isinstance(c, dict)]


def _pvc_mounts(template: Any) -> list[str]:
    claims = [get_in(v, "name") for v in get_list(template, "spec", "volumes")
              if get_in(v, "persistentVolumeClaim")]
    return [str(get_in(m, "mountPath")) for c in _containers(template)
            for m in get_list(c, "volumeMounts") if get_in(m, "name") in claims]


def _head_group(head: dict[str, Any], hk: str) -> Pairs:
    out = _unknown(head, _HEAD_FIELDS, hk)
    cpus = get_in(head, "rayStartParams", "num-cpus")
    if cpus != "0":
        out.append((f"{hk}.rayStartParams.num-cpus", "must be the string \"0\" so no trial runs "
                                                     f"on the head; got {cpus!r}"))
    for sk, stype in (("serviceType", head.get("serviceType")),
                      ("headService.spec.type", get_in(head, "headService", "spec", "type"))):
        if stype in ("LoadBalancer", "NodePort"):
            out.append((f"{hk}.{sk}", f"{stype} exposes the dashboard (8265), GCS (6379) and "
                                      "client (10001) ports; use ClusterIP and port-forward"))
    if head.get("enableIngress"):
        out.append((f"{hk}.enableIngress", "an Ingress publishes the dashboard; use port-forward"))
    for i, c in enumerate(_containers(head.get("template"))):
        if whole(get_in(c, "resources", "limits", GPU_KEY)):
            out.append((f"{hk}.template.spec.containers[{i}].resources.limits.{GPU_KEY}",
                        "the head runs no trials; give the GPUs to a worker group"))
    return out


def _worker_group(group: dict[str, Any], gk: str) -> tuple[Pairs, bool]:
    """Findings for one worker group, and whether it offers whole GPUs to trials."""
    out = _unknown(group, _WORKER_FIELDS, gk)
    out += [(f"{gk}.{f}", "missing; required for every worker group") for f in
            ("groupName", "replicas", "minReplicas", "maxReplicas", "template") if f not in group]
    lo, n, hi = (whole(group.get(f)) for f in ("minReplicas", "replicas", "maxReplicas"))
    if lo is not None and n is not None and hi is not None and not lo <= n <= hi:
        out.append((f"{gk}.replicas", "need minReplicas <= replicas <= maxReplicas, got "
                                      f"{lo} / {n} / {hi}"))
    has_gpu = False
    for j, c in enumerate(_containers(group.get("template"))):
        ck = f"{gk}.template.spec.containers[{j}].resources"
        gpu = get_in(c, "resources", "limits", GPU_KEY)
        req = get_in(c, "resources", "requests", GPU_KEY)
        if gpu is not None and whole(gpu) is None:
            out.append((f"{ck}.limits.{GPU_KEY}", f"must be a whole number of GPUs, got {gpu!r}"))
        elif whole(gpu):
            has_gpu = True
            if req is not None and whole(req) != whole(gpu):
                out.append((f"{ck}.requests.{GPU_KEY}", "must equal the GPU limit"))
    tolerations = get_list(group, "template", "spec", "tolerations")
    if has_gpu and not any(get_in(t, "key") == GPU_KEY for t in tolerations):
        out.append((f"{gk}.template.spec.tolerations", f"no toleration for {GPU_KEY}; pods "
                                                       "would not schedule on tainted GPU nodes"))
    return out, has_gpu and bool(hi)


def _cluster_spec(spec: Any, key: str, ray_version: str) -> Pairs:
    """The RayCluster spec, also embedded in RayJob/RayService: the CRD would accept most of
    these mistakes and fail only at run time (pods pending, version skew, trials on the head)."""
    if not isinstance(spec, dict):
        return [(key, "missing; a RayCluster spec is required")]
    out = _unknown(spec, _CLUSTER_FIELDS, key)
    version = spec.get("rayVersion")
    if str(version) != ray_version:
        got = "missing" if version is None else f"{version} does not match the installed ray"
        out.append((f"{key}.rayVersion", f"{got}; set \"{ray_version}\" (installed ray)"))
    groups = []
    if isinstance(spec.get("headGroupSpec"), dict):
        groups.append((f"{key}.headGroupSpec", spec["headGroupSpec"]))
        out += _head_group(spec["headGroupSpec"], f"{key}.headGroupSpec")
    else:
        out.append((f"{key}.headGroupSpec", "missing; the head group is required"))
    workers = spec.get("workerGroupSpecs")
    if not isinstance(workers, list) or not workers:
        out.append((f"{key}.workerGroupSpecs", "missing or empty; add a GPU worker group"))
        workers = []
    gpu_groups = 0
    for i, group in enumerate(workers):
        if isinstance(group, dict):
            groups.append((f"{key}.workerGroupSpecs[{i}]", group))
            found, has_gpu = _worker_group(group, f"{key}.workerGroupSpecs[{i}]")
            out, gpu_groups = out + found, gpu_groups + has_gpu
    if workers and not gpu_groups:
        out.append((f"{key}.workerGroupSpecs", f"no worker group has a whole {GPU_KEY} in "
                    "resources.limits and maxReplicas > 0; GPU trials could never run"))
    for gk, group in groups:
        for j, c in enumerate(_containers(group.get("template"))):
            match = IMAGE_VERSION.search(str(c.get("image", "")))
            if match and match.group(1) != str(version):
                out.append((f"{gk}.template.spec.containers[{j}].image", f"image {c['image']} "
                            f"runs Ray {match.group(1)} but rayVersion is {version}"))
    return out


def _job_storage(spec: dict[str, Any], key: str) -> Pairs:
    """Trials on several nodes all write under --storage, so it must be one shared place."""
    entry = spec.get("entrypoint")
    if not isinstance(entry, str) or "dnet-tune search" not in entry:
        return [(f"{key}.entrypoint", f"must run `dnet-tune search ...`, got {entry!r}")]
    try:
        argv = shlex.split(entry)
    except ValueError:
        argv = entry.split()
    storage = next((a.split("=", 1)[1] for a in argv if a.startswith("--storage=")), None)
    if "--storage" in argv[:-1]:
        storage = argv[argv.index("--storage") + 1]
    if storage is None:
        return [(f"{key}.entrypoint", "no --storage; trials on several nodes need shared "
                                      "storage (s3://, gs:// or file:// on a PVC mount)")]
    if storage.startswith(("s3://", "gs://", "gcs://")) or "clusterSelector" in spec:
        return []
    local = storage.removeprefix("file://")
    cluster = spec.get("rayClusterSpec")
    templates = [get_in(cluster, "headGroupSpec", "template")]
    templates += [get_in(g, "template") for g in get_list(cluster, "workerGroupSpecs")]
    if not all(any(local == m or local.startswith(m.rstrip("/") + "/")
                   for m in _pvc_mounts(t)) for t in templates):
        return [(f"{key}.entrypoint", f"--storage {storage} is neither a bucket URI nor under "
                 "a PersistentVolumeClaim mounted on the head and every worker group")]
    if local == storage:  # dnet-tune search refuses plain paths on a multi-node cluster
        return [(f"{key}.entrypoint", f"--storage {storage}: write file://{storage} so the "
                                      "search knows the path is shared")]
    return []


def _kube_doc(doc: dict[str, Any], n: int, ray_version: str) -> Pairs:
    kind, name = doc.get("kind"), get_in(doc, "metadata", "name")
    where = f"{kind}/{name}:" if name else f"doc[{n}] {kind}:"
    out = open_ingress(doc, where)
    spec: dict[str, Any] = doc["spec"] if isinstance(doc.get("spec"), dict) else {}
    if kind == "Service" and spec.get("type") in ("LoadBalancer", "NodePort"):
        for i, p in enumerate(get_list(spec, "ports")):
            if {get_in(p, "port"), get_in(p, "targetPort")} & {*SENSITIVE_PORTS, "dashboard",
                                                          "gcs-server", "client"}:
                out.append((f"{where}spec.ports[{i}]", f"{spec['type']} Service exposes a Ray "
                                                       "head port; use ClusterIP + port-forward"))
    if kind == "Ingress":
        notes = get_in(doc, "metadata", "annotations")
        notes = notes if isinstance(notes, dict) else {}
        ranges = [str(v) for k, v in notes.items() if "source-range" in str(k)]
        if not ranges or any(w in r for r in ranges for w in WORLD_CIDRS):
            out.append((f"{where}metadata.annotations", "Ingress without a source-range "
                                                        "allowlist; use port-forward instead"))
    if kind not in RAY_KINDS:
        return out
    if doc.get("apiVersion") != "ray.io/v1":
        out.append((f"{where}apiVersion", f"must be ray.io/v1, got {doc.get('apiVersion')!r}"))
    if not name:
        out.append((f"{where}metadata.name", "missing; every resource needs a name"))
    if kind == "RayCluster":
        return out + _cluster_spec(doc.get("spec"), f"{where}spec", ray_version)
    if kind == "RayService":
        out += _unknown(spec, _SERVICE_FIELDS, f"{where}spec")
        return out + _cluster_spec(spec.get("rayClusterConfig"), f"{where}spec.rayClusterConfig",
                                   ray_version)
    out += _unknown(spec, _JOB_FIELDS, f"{where}spec")
    if "clusterSelector" not in spec:  # otherwise it reuses a cluster defined elsewhere
        out += _cluster_spec(spec.get("rayClusterSpec"), f"{where}spec.rayClusterSpec",
                             ray_version)
    return out + _job_storage(spec, f"{where}spec")


# ----------------------------------------------------------------------------- entry points


def _classify(docs: list[Any], ray_version: str) -> Pairs:
    if all(isinstance(d, dict) for d in docs) and any("apiVersion" in d or "kind" in d
                                                      for d in docs):
        out = [p for n, d in enumerate(docs) for p in _kube_doc(d, n, ray_version)]
        if not any(d.get("kind") in RAY_KINDS for d in docs):
            out.append(("kind", f"no {'/'.join(RAY_KINDS)} document in this manifest"))
        return out
    if len(docs) == 1 and isinstance(docs[0], dict) and (
            {"cluster_name", "provider", "available_node_types"} & docs[0].keys()):
        ours = _launcher_findings(docs[0], ray_version) + open_ingress(docs[0])
        keys = {k for k, _ in ours}  # our message wins over the schema's at the same key
        return ours + [p for p in _schema_findings(docs[0]) if p[0] not in keys]
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
