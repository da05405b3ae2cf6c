"""`dnet-tune cluster check`: the shipped configs pass, and each kind of broken copy fails with the
finding that names the right key and says what is wrong (not merely "some finding").

Broken copies are made by loading a shipped file, mutating it and dumping it to tmp_path, so the
tests follow the real configs instead of drifting fixtures.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from dnet_tune.ops.cluster_files import (
    Finding,
    check_file,
    check_files,
    installed_ray_version,
    main_check,
)
from dnet_tune.ops.cluster_launcher import _launcher_schema

CLUSTERS = Path(__file__).resolve().parents[2] / "clusters"
SHIPPED = sorted(CLUSTERS.rglob("*.yaml"))
RAY = installed_ray_version()

# (file, worker node type, head node type) of the two launcher configs
LAUNCHERS = [("aws-gpu.yaml", "ray.worker.gpu", "ray.head.cpu"),
             ("gcp-gpu.yaml", "ray_worker_gpu", "ray_head_cpu")]
# (file, index of the Ray document, key prefix of its RayCluster spec)
KUBERAY = [("kuberay/raycluster.yaml", 1, "RayCluster/dnet-tune:spec"),
           ("kuberay/rayjob-search.yaml", 1, "RayJob/dnet-tune-search:spec.rayClusterSpec")]


def load(name: str) -> list[Any]:
    return list(yaml.safe_load_all((CLUSTERS / name).read_text()))


def write(tmp_path: Path, docs: list[Any], name: str = "copy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def at(findings: list[Finding], key: str) -> list[str]:
    """Messages of the findings at exactly `key`."""
    return [f.message for f in findings if f.key == key]


def ray_spec(docs: list[Any], index: int) -> dict[str, Any]:
    doc = docs[index]
    spec: dict[str, Any] = doc["spec"]
    return spec["rayClusterSpec"] if doc["kind"] == "RayJob" else spec


# ----------------------------------------------------------------------------- shipped files


def test_all_four_configs_are_shipped() -> None:
    names = {p.relative_to(CLUSTERS).as_posix() for p in SHIPPED}
    assert {"aws-gpu.yaml", "gcp-gpu.yaml", "kuberay/raycluster.yaml",
            "kuberay/rayjob-search.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(CLUSTERS).as_posix())
def test_every_shipped_config_passes(path: Path) -> None:
    assert check_file(path) == []


def test_shipped_configs_pin_the_installed_ray() -> None:
    for path in SHIPPED:
        assert f"rayproject/ray:{RAY}-py311-" in path.read_text(), path


def test_schema_comes_from_the_installed_ray() -> None:
    assert _launcher_schema()["title"] == "Ray AutoScaler"


# ----------------------------------------------------------------------------- launcher configs


@pytest.mark.parametrize(("name", "worker", "head"), LAUNCHERS)
def test_launcher_misspelled_node_key(tmp_path: Path, name: str, worker: str, head: str) -> None:
    (doc,) = load(name)
    node = doc["available_node_types"][worker]
    node["max_worker"] = node.pop("max_workers")
    found = check_file(write(tmp_path, [doc]))
    assert at(found, f"available_node_types.{worker}.max_worker") == [
        "Additional properties are not allowed ('max_worker' was unexpected); "
        "did you mean 'max_workers'?"]


@pytest.mark.parametrize(("name", "worker", "head"), LAUNCHERS)
def test_launcher_misspelled_top_level_key(tmp_path: Path, name: str, worker: str,
                                           head: str) -> None:
    (doc,) = load(name)
    doc["idle_timeout_minute"] = doc.pop("idle_timeout_minutes")
    found = check_file(write(tmp_path, [doc]))
    assert len(found) == 1
    assert found[0].key == "idle_timeout_minute"
    assert "did you mean 'idle_timeout_minutes'?" in found[0].message


@pytest.mark.parametrize(("name", "worker", "head"), LAUNCHERS)
def test_launcher_fractional_gpu(tmp_path: Path, name: str, worker: str, head: str) -> None:
    (doc,) = load(name)
    doc["available_node_types"][worker]["resources"]["GPU"] = 0.5
    found = check_file(write(tmp_path, [doc]))
    msgs = at(found, f"available_node_types.{worker}.resources.GPU")
    # one readable line, not also the schema's "0.5 is not of type 'integer'"
    assert msgs == ["a node's GPU count must be a whole number, got 0.5; share GPUs per trial, "
                    "not per node"]
    assert any("no worker node type advertises resources.GPU > 0" in m
               for m in at(found, "available_node_types"))


def test_aws_open_ingress_on_dashboard_port(tmp_path: Path) -> None:
    (doc,) = load("aws-gpu.yaml")
    doc["provider"]["security_group"]["IpPermissions"] = [
        {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp",
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    found = check_file(write(tmp_path, [doc]))
    assert [str(f) for f in found] == [
        f"{tmp_path / 'copy.yaml'}: provider.security_group.IpPermissions[0].IpRanges[0].CidrIp: "
        "ingress from 0.0.0.0/0 exposes 8265 (Ray dashboard/job API) to the internet; reach the "
        "head through an SSH tunnel or port-forward"]


def test_aws_open_ingress_on_other_port_and_ipv6(tmp_path: Path) -> None:
    (doc,) = load("aws-gpu.yaml")
    doc["provider"]["security_group"]["IpPermissions"] = [
        {"FromPort": 22, "ToPort": 22, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"FromPort": 6000, "ToPort": 7000, "IpProtocol": "tcp",
         "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}]
    found = check_file(write(tmp_path, [doc]))
    rules = "provider.security_group.IpPermissions"
    assert at(found, f"{rules}[0].IpRanges[0].CidrIp") == [
        "ingress open to 0.0.0.0/0; restrict it to your own address range"]
    assert at(found, f"{rules}[1].Ipv6Ranges[0].CidrIpv6") == [
        "ingress from ::/0 exposes 6379 (Ray GCS) to the internet; reach the head through an "
        "SSH tunnel or port-forward"]
    assert len(found) == 2  # a private range is fine


def test_aws_all_protocols_open_names_every_ray_port(tmp_path: Path) -> None:
    (doc,) = load("aws-gpu.yaml")
    doc["provider"]["security_group"]["IpPermissions"] = [
        {"IpProtocol": "-1", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    (finding,) = check_file(write(tmp_path, [doc]))
    for port in ("8265", "6379", "10001"):
        assert port in finding.message


def test_gcp_firewall_source_ranges(tmp_path: Path) -> None:
    (doc,) = load("gcp-gpu.yaml")
    doc["provider"]["firewall_rules"] = [
        {"name": "ray-dashboard", "sourceRanges": ["0.0.0.0/0"],
         "allowed": [{"IPProtocol": "tcp", "ports": ["8265", "10001"]}]},
        {"name": "everything", "sourceRanges": ["0.0.0.0/0"], "allowed": [{"IPProtocol": "all"}]}]
    found = check_file(write(tmp_path, [doc]))
    assert at(found, "provider.firewall_rules[0].sourceRanges[0]") == [
        "ingress from 0.0.0.0/0 exposes 8265 (Ray dashboard/job API), 10001 (Ray client) to the "
        "internet; reach the head through an SSH tunnel or port-forward"]
    (everything,) = at(found, "provider.firewall_rules[1].sourceRanges[0]")
    assert "6379 (Ray GCS)" in everything


@pytest.mark.parametrize(("name", "worker", "head"), LAUNCHERS)
def test_launcher_ray_version_mismatch(tmp_path: Path, name: str, worker: str, head: str) -> None:
    (doc,) = load(name)
    doc["docker"]["image"] = "rayproject/ray:2.9.0-py311-gpu"
    doc["setup_commands"] = ['pip install "ray[default]==2.9.0" dnet-tune']
    found = check_file(write(tmp_path, [doc]))
    assert at(found, "docker.image") == [
        f"image rayproject/ray:2.9.0-py311-gpu runs Ray 2.9.0 but the installed ray is {RAY}; "
        f"use rayproject/ray:{RAY}-..."]
    assert at(found, "setup_commands[0]") == [f"pins ray==2.9.0 but the installed ray is {RAY}"]


def test_launcher_without_any_ray_pin(tmp_path: Path) -> None:
    (doc,) = load("aws-gpu.yaml")
    del doc["docker"]
    doc["setup_commands"] = ["pip install dnet-tune"]
    found = check_file(write(tmp_path, [doc]))
    assert at(found, "docker.image") == [
        f"no Ray version pinned; use a rayproject/ray:{RAY}-... image or ray=={RAY} in setup"]


@pytest.mark.parametrize(("name", "worker", "head"), LAUNCHERS)
def test_launcher_head_that_would_run_trials(tmp_path: Path, name: str, worker: str,
                                             head: str) -> None:
    (doc,) = load(name)
    doc["available_node_types"][head]["resources"] = {"CPU": 4}
    found = check_file(write(tmp_path, [doc]))
    (msg,) = at(found, f"available_node_types.{head}.resources")
    assert msg.startswith("the head must advertise {CPU: 0, GPU: 0} so no trial is scheduled")


def test_launcher_min_above_max_and_bad_head_type(tmp_path: Path) -> None:
    (doc,) = load("aws-gpu.yaml")
    doc["available_node_types"]["ray.worker.gpu"]["min_workers"] = 9
    found = check_file(write(tmp_path, [doc]))
    assert at(found, "available_node_types.ray.worker.gpu.min_workers") == [
        "min_workers (9) > max_workers (8)"]
    doc["head_node_type"] = "ray.head"
    found = check_file(write(tmp_path, [doc]))
    assert at(found, "head_node_type")[0].startswith("'ray.head' is not one of")


def test_gcp_gpu_count_must_match_accelerators(tmp_path: Path) -> None:
    (doc,) = load("gcp-gpu.yaml")
    doc["available_node_types"]["ray_worker_gpu"]["resources"]["GPU"] = 4
    found = check_file(write(tmp_path, [doc]))
    assert at(found, "available_node_types.ray_worker_gpu.resources.GPU") == [
        "declares 4 GPUs but guestAccelerators attach 1"]


def test_launcher_schema_type_errors_are_reported(tmp_path: Path) -> None:
    (doc,) = load("aws-gpu.yaml")
    doc["max_workers"] = "eight"
    del doc["cluster_name"]
    found = check_file(write(tmp_path, [doc]))
    assert at(found, "max_workers") == ["'eight' is not of type 'integer'"]
    assert at(found, "(top level)") == ["'cluster_name' is a required property"]


# ----------------------------------------------------------------------------- KubeRay manifests


@pytest.mark.parametrize(("name", "index", "prefix"), KUBERAY)
def test_kuberay_misspelled_key(tmp_path: Path, name: str, index: int, prefix: str) -> None:
    docs = load(name)
    spec = ray_spec(docs, index)
    spec["workerGroupSpec"] = spec.pop("workerGroupSpecs")
    found = check_file(write(tmp_path, docs))
    assert at(found, f"{prefix}.workerGroupSpec") == [
        "unknown field 'workerGroupSpec' (KubeRay would drop it silently); "
        "did you mean 'workerGroupSpecs'?"]
    assert at(found, f"{prefix}.workerGroupSpecs") == ["missing or empty; add a GPU worker group"]


@pytest.mark.parametrize(("name", "index", "prefix"), KUBERAY)
def test_kuberay_fractional_gpu(tmp_path: Path, name: str, index: int, prefix: str) -> None:
    docs = load(name)
    container = ray_spec(docs, index)["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    container["resources"]["limits"]["nvidia.com/gpu"] = "0.5"
    found = check_file(write(tmp_path, docs))
    container_key = f"{prefix}.workerGroupSpecs[0].template.spec.containers[0]"
    assert at(found, f"{container_key}.resources.limits.nvidia.com/gpu") == [
        "must be a whole number of GPUs, got '0.5'"]
    (no_gpu,) = at(found, f"{prefix}.workerGroupSpecs")
    assert no_gpu.startswith("no worker group has a whole nvidia.com/gpu")


@pytest.mark.parametrize(("name", "index", "prefix"), KUBERAY)
@pytest.mark.parametrize("service_type", ["LoadBalancer", "NodePort"])
def test_kuberay_public_head_service(tmp_path: Path, name: str, index: int, prefix: str,
                                     service_type: str) -> None:
    docs = load(name)
    ray_spec(docs, index)["headGroupSpec"]["serviceType"] = service_type
    found = check_file(write(tmp_path, docs))
    assert at(found, f"{prefix}.headGroupSpec.serviceType") == [
        f"{service_type} exposes the dashboard (8265), GCS (6379) and client (10001) ports; use "
        "ClusterIP and port-forward"]


def test_kuberay_head_service_override_and_ingress(tmp_path: Path) -> None:
    docs = load("kuberay/raycluster.yaml")
    head = ray_spec(docs, 1)["headGroupSpec"]
    head["headService"] = {"spec": {"type": "LoadBalancer",
                                    "loadBalancerSourceRanges": ["0.0.0.0/0"]}}
    head["enableIngress"] = True
    found = check_file(write(tmp_path, docs))
    base = "RayCluster/dnet-tune:spec.headGroupSpec"
    assert "LoadBalancer exposes" in at(found, f"{base}.headService.spec.type")[0]
    assert at(found, f"{base}.enableIngress") == [
        "an Ingress publishes the dashboard; use port-forward"]
    (open_range,) = at(found, f"{base}.headService.spec.loadBalancerSourceRanges[0]")
    assert "6379 (Ray GCS), 8265 (Ray dashboard/job API), 10001 (Ray client)" in open_range


def test_kuberay_separate_service_ingress_and_network_policy(tmp_path: Path) -> None:
    docs = load("kuberay/raycluster.yaml")
    docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dash"},
                 "spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 8265}]}})
    docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                 "metadata": {"name": "dash"}, "spec": {}})
    docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "open"},
                 "spec": {"ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                                       "ports": [{"port": 10001}]}]}})
    found = check_file(write(tmp_path, docs))
    assert at(found, "Service/dash:spec.ports[0]") == [
        "NodePort Service exposes a Ray head port; use ClusterIP + port-forward"]
    assert at(found, "Ingress/dash:metadata.annotations") == [
        "Ingress without a source-range allowlist; use port-forward instead"]
    assert at(found, "NetworkPolicy/open:spec.ingress[0].from[0].ipBlock.cidr") == [
        "ingress from 0.0.0.0/0 exposes 10001 (Ray client) to the internet; reach the head "
        "through an SSH tunnel or port-forward"]
    assert len(found) == 3


def test_kuberay_restricted_ingress_passes(tmp_path: Path) -> None:
    docs = load("kuberay/raycluster.yaml")
    docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                 "metadata": {"name": "dash", "annotations": {
                     "nginx.ingress.kubernetes.io/whitelist-source-range": "203.0.113.7/32"}}})
    assert check_file(write(tmp_path, docs)) == []


@pytest.mark.parametrize(("name", "index", "prefix"), KUBERAY)
def test_kuberay_image_tag_does_not_match_ray_version(tmp_path: Path, name: str, index: int,
                                                     prefix: str) -> None:
    docs = load(name)
    group = ray_spec(docs, index)["workerGroupSpecs"][0]
    group["template"]["spec"]["containers"][0]["image"] = "rayproject/ray:2.9.0-py311-gpu"
    found = check_file(write(tmp_path, docs))
    assert at(found, f"{prefix}.workerGroupSpecs[0].template.spec.containers[0].image") == [
        f"image rayproject/ray:2.9.0-py311-gpu runs Ray 2.9.0 but rayVersion is {RAY}"]


@pytest.mark.parametrize(("name", "index", "prefix"), KUBERAY)
def test_kuberay_ray_version_not_installed_one(tmp_path: Path, name: str, index: int,
                                               prefix: str) -> None:
    docs = load(name)
    ray_spec(docs, index)["rayVersion"] = "2.9.0"
    found = check_file(write(tmp_path, docs))
    assert at(found, f"{prefix}.rayVersion") == [
        f"2.9.0 does not match the installed ray; set \"{RAY}\" (installed ray)"]
    # both images still say the installed version, so each now disagrees with rayVersion
    assert sum("but rayVersion is 2.9.0" in f.message for f in found) == 2


def test_kuberay_group_rules(tmp_path: Path) -> None:
    docs = load("kuberay/raycluster.yaml")
    spec = ray_spec(docs, 1)
    group = spec["workerGroupSpecs"][0]
    group.update(minReplicas=3, replicas=1)
    del group["groupName"]
    del group["template"]["spec"]["tolerations"]
    group["template"]["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = 2
    spec["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    found = check_file(write(tmp_path, docs))
    g = "RayCluster/dnet-tune:spec.workerGroupSpecs[0]"
    assert at(found, f"{g}.replicas") == [
        "need minReplicas <= replicas <= maxReplicas, got 3 / 1 / 8"]
    assert at(found, f"{g}.groupName") == ["missing; required for every worker group"]
    assert at(found, f"{g}.template.spec.tolerations") == [
        "no toleration for nvidia.com/gpu; pods would not schedule on tainted GPU nodes"]
    assert at(found, f"{g}.template.spec.containers[0].resources.requests.nvidia.com/gpu") == [
        "must equal the GPU limit"]
    assert at(found, "RayCluster/dnet-tune:spec.headGroupSpec.rayStartParams.num-cpus") == [
        "must be the string \"0\" so no trial runs on the head; got 0"]


def test_kuberay_head_with_gpu_and_old_api_version(tmp_path: Path) -> None:
    docs = load("kuberay/raycluster.yaml")
    docs[1]["apiVersion"] = "ray.io/v1alpha1"
    head = ray_spec(docs, 1)["headGroupSpec"]["template"]["spec"]["containers"][0]
    head["resources"]["limits"]["nvidia.com/gpu"] = 1
    found = check_file(write(tmp_path, docs))
    assert at(found, "RayCluster/dnet-tune:apiVersion") == [
        "must be ray.io/v1, got 'ray.io/v1alpha1'"]
    assert at(found, "RayCluster/dnet-tune:spec.headGroupSpec.template.spec.containers[0]"
                     ".resources.limits.nvidia.com/gpu") == [
        "the head runs no trials; give the GPUs to a worker group"]


@pytest.mark.parametrize(("entrypoint", "expected"), [
    ("python train.py", "must run `dnet-tune search ...`, got 'python train.py'"),
    ("dnet-tune search --dataset cifar10_lt",
     "no --storage; trials on several nodes need shared storage (s3://, gs:// or file:// on a "
     "PVC mount)"),
    ("dnet-tune search --storage file:///tmp/results",
     "--storage file:///tmp/results is neither a bucket URI nor under a PersistentVolumeClaim "
     "mounted on the head and every worker group"),
    ("dnet-tune search --storage /mnt/dnet/results",
     "--storage /mnt/dnet/results: write file:///mnt/dnet/results so the search knows the path "
     "is shared"),
    ("dnet-tune search --storage=s3://bucket/dnet", None),
    ("dnet-tune search --storage gs://bucket/dnet", None),
    ("dnet-tune search --storage file:///mnt/dnet/results/cifar", None),
])
def test_rayjob_entrypoint_and_storage(tmp_path: Path, entrypoint: str,
                                       expected: str | None) -> None:
    docs = load("kuberay/rayjob-search.yaml")
    docs[1]["spec"]["entrypoint"] = entrypoint
    found = check_file(write(tmp_path, docs))
    assert at(found, "RayJob/dnet-tune-search:spec.entrypoint") == ([expected] if expected else [])
    assert len(found) == (1 if expected else 0)


def test_rayjob_storage_must_be_mounted_on_every_group(tmp_path: Path) -> None:
    docs = load("kuberay/rayjob-search.yaml")
    worker = ray_spec(docs, 1)["workerGroupSpecs"][0]["template"]["spec"]
    worker["volumes"] = [v for v in worker["volumes"] if v["name"] != "dnet-results"]
    found = check_file(write(tmp_path, docs))
    assert "is neither a bucket URI nor under a PersistentVolumeClaim" in at(
        found, "RayJob/dnet-tune-search:spec.entrypoint")[0]


def test_rayjob_unknown_spec_field_and_missing_name(tmp_path: Path) -> None:
    docs = load("kuberay/rayjob-search.yaml")
    docs[1]["spec"]["shutdownAfterJobFinish"] = docs[1]["spec"].pop("shutdownAfterJobFinishes")
    del docs[1]["metadata"]["name"]
    found = check_file(write(tmp_path, docs))
    assert at(found, "doc[1] RayJob:spec.shutdownAfterJobFinish") == [
        "unknown field 'shutdownAfterJobFinish' (KubeRay would drop it silently); "
        "did you mean 'shutdownAfterJobFinishes'?"]
    assert at(found, "doc[1] RayJob:metadata.name") == ["missing; every resource needs a name"]


def test_rayservice_cluster_config_is_checked(tmp_path: Path) -> None:
    cluster = copy.deepcopy(load("kuberay/raycluster.yaml")[1]["spec"])
    cluster["rayVersion"] = "2.9.0"
    doc = {"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": "serve"},
           "spec": {"serveConfigV2": "", "rayClusterConfig": cluster}}
    found = check_file(write(tmp_path, [doc]))
    assert at(found, "RayService/serve:spec.rayClusterConfig.rayVersion")


def test_manifest_without_ray_kind(tmp_path: Path) -> None:
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}}
    assert at(check_file(write(tmp_path, [doc])), "kind") == [
        "no RayCluster/RayJob/RayService document in this manifest"]


# ----------------------------------------------------------------------------- files and exit codes


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert [str(f) for f in check_files([str(path)])] == [f"{path}: (file): no such file"]


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("cluster_name: x\nprovider: {type: aws\n")
    (finding,) = check_file(path)
    assert finding.key == "(file)"
    assert finding.message.startswith("not valid YAML (line ")


def test_binary_and_empty_files(tmp_path: Path) -> None:
    binary = tmp_path / "blob.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert check_file(binary)[0].message.startswith("cannot read as UTF-8 text")
    assert [f.message for f in check_file(empty)] == ["empty file"]


@pytest.mark.parametrize("content", ["- a\n- b\n", "name: x\nreplicas: 3\n", "just a string\n",
                                     "cluster_name: a\n---\ncluster_name: b\n"])
def test_neither_launcher_nor_kuberay(tmp_path: Path, content: str) -> None:
    path = tmp_path / "other.yaml"
    path.write_text(content)
    (finding,) = check_file(path)
    assert (finding.key, finding.message) == (
        "(file)", "neither a Ray cluster-launcher config (cluster_name, provider, ...) nor a "
                  "KubeRay manifest (apiVersion: ray.io/v1, kind: RayCluster/RayJob)")


def test_finding_str() -> None:
    assert str(Finding("a.yaml", "docker.image", "bad")) == "a.yaml: docker.image: bad"


def test_main_check_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_check([str(CLUSTERS)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"OK {p}" for p in SHIPPED]


def test_main_check_reports_and_returns_2(tmp_path: Path) -> None:
    (doc,) = load("aws-gpu.yaml")
    doc["docker"]["image"] = "rayproject/ray:2.9.0-py311-gpu"
    bad = write(tmp_path, [doc], "bad.yaml")
    lines: list[str] = []
    code = main_check([str(CLUSTERS / "gcp-gpu.yaml"), str(bad), str(tmp_path / "gone.yaml")],
                      console_print=lines.append)
    assert code == 2
    assert lines == [f"OK {CLUSTERS / 'gcp-gpu.yaml'}",
                     f"{bad}: docker.image: image rayproject/ray:2.9.0-py311-gpu runs Ray 2.9.0 "
                     f"but the installed ray is {RAY}; use rayproject/ray:{RAY}-...",
                     f"{tmp_path / 'gone.yaml'}: (file): no such file"]


def test_main_check_without_files_and_empty_directory(tmp_path: Path) -> None:
    lines: list[str] = []
    assert main_check([], console_print=lines.append) == 2
    assert main_check([str(tmp_path)], console_print=lines.append) == 2
    assert lines[-1] == f"{tmp_path}: (file): a directory without *.yaml files"


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dnet_tune.cli import main

    assert main(["cluster", "check", str(CLUSTERS / "aws-gpu.yaml")]) == 0
    (doc,) = load("aws-gpu.yaml")
    doc["available_node_types"]["ray.worker.gpu"]["resources"]["GPU"] = 0.5
    assert main(["cluster", "check", str(write(tmp_path, [doc]))]) == 2
    assert "resources.GPU: a node's GPU count must be a whole number" in capsys.readouterr().out
