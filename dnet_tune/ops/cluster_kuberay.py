"""Offline checks of KubeRay manifests (RayCluster, RayJob, RayService and the Services and
Ingresses beside them).

The operator's structural schema silently prunes a misspelt field, and the CRD accepts most
mistakes that fail only at run time (pods pending, version skew, trials on the head, a dashboard
open to the internet or to anyone without a token, a search writing to storage other nodes cannot
see).
"""

from __future__ import annotations

import shlex
from typing import Any

from dnet_tune.ops.cluster_auth import kuberay_auth, literal_tokens
from dnet_tune.ops.cluster_rules import (
    GPU_KEY,
    IMAGE_VERSION,
    RAY_KINDS,
    SENSITIVE_PORTS,
    WORLD_CIDRS,
    Pairs,
    get_in,
    get_list,
    open_ingress,
    suggest,
    whole,
)

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


def is_manifest(docs: list[Any]) -> bool:
    return all(isinstance(d, dict) for d in docs) and any("apiVersion" in d or "kind" in d
                                                          for d in docs)


def manifest_findings(docs: list[dict[str, Any]], ray_version: str) -> Pairs:
    out = [p for n, d in enumerate(docs) for p in _kube_doc(d, n, ray_version)]
    if not any(d.get("kind") in RAY_KINDS for d in docs):
        out.append(("kind", f"no {'/'.join(RAY_KINDS)} document in this manifest"))
    return out


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
    return out + kuberay_auth(spec, key)


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
    out = open_ingress(doc, where) + literal_tokens(doc, where)
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
