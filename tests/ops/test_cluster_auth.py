"""`dnet-tune cluster check` and token authentication: the shipped configs turn it on, and a copy
without it (or with it off on some nodes, without a token for the nodes, or with the token
written into the file) fails with one finding that says how to fix it.

Broken copies are made from the shipped files, as in test_cluster_files.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_cluster_files import CLUSTERS, KUBERAY, LAUNCHERS, RAY, at, load, ray_spec, write

from dnet_tune.ops.cluster_files import check_file

TOKEN_ENV = ["--env RAY_AUTH_MODE=token", "--env RAY_AUTH_TOKEN_PATH=/home/ray/ray_auth_token"]
FIX = ("add `--env RAY_AUTH_MODE=token` and `--env RAY_AUTH_TOKEN_PATH=/home/ray/ray_auth_token` "
       "to docker.run_options and `/home/ray/ray_auth_token: ~/.ray/auth_token` to file_mounts "
       "(the token from `ray get-auth-token --generate`; see clusters/README.md)")
OPEN = "anyone who reaches the dashboard/job API (8265) or GCS (6379) can run code"


def without_token_env(doc: dict[str, Any]) -> dict[str, Any]:
    doc["docker"]["run_options"] = [o for o in doc["docker"]["run_options"]
                                    if o not in TOKEN_ENV]
    return doc


# ----------------------------------------------------------------------------- shipped files


@pytest.mark.parametrize(("name", "worker", "head"), LAUNCHERS)
def test_shipped_launchers_mount_the_token_file_they_point_ray_at(name: str, worker: str,
                                                                   head: str) -> None:
    (doc,) = load(name)
    assert set(TOKEN_ENV) <= set(doc["docker"]["run_options"])
    assert doc["file_mounts"] == {"/home/ray/ray_auth_token": "~/.ray/auth_token"}


@pytest.mark.parametrize(("name", "index", "prefix"), KUBERAY)
def test_shipped_kuberay_manifests_use_auth_options(name: str, index: int, prefix: str) -> None:
    assert ray_spec(load(name), index)["authOptions"] == {"mode": "token"}


# ----------------------------------------------------------------------------- launcher configs


@pytest.mark.parametrize(("name", "worker", "head"), LAUNCHERS)
def test_launcher_without_token_auth_is_one_finding_that_says_how(
        tmp_path: Path, name: str, worker: str, head: str) -> None:
    path = write(tmp_path, [without_token_env(load(name)[0])])
    found = check_file(path)
    assert [(f.key, f.message) for f in found] == [(
        "docker.run_options", "no token authentication on the head and the workers "
        f"(RAY_AUTH_MODE=token unset), so {OPEN}; {FIX}")]


def test_cli_refuses_a_launcher_without_token_auth(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from dnet_tune.cli import main

    path = write(tmp_path, [without_token_env(load("aws-gpu.yaml")[0])])
    assert main(["cluster", "check", str(path)]) == 2
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{path}: docker.run_options: no token authentication on the head")


@pytest.mark.parametrize("mode", ["disabled", "tokens", ""])
def test_launcher_with_another_auth_mode(tmp_path: Path, mode: str) -> None:
    doc = without_token_env(load("gcp-gpu.yaml")[0])
    doc["docker"]["run_options"] += [f"--env RAY_AUTH_MODE={mode}", TOKEN_ENV[1]]
    (msg,) = at(check_file(write(tmp_path, [doc])), "docker.run_options")
    assert msg.startswith("no token authentication on the head and the workers")


def test_launcher_with_token_auth_on_the_head_only(tmp_path: Path) -> None:
    doc = without_token_env(load("aws-gpu.yaml")[0])
    doc["docker"]["head_run_options"] = TOKEN_ENV
    (msg,) = at(check_file(write(tmp_path, [doc])), "docker.run_options")
    assert msg.startswith("no token authentication on worker type ray.worker.gpu (RAY_AUTH_MODE")


def test_a_node_types_own_worker_options_replace_the_global_ones(tmp_path: Path) -> None:
    doc = without_token_env(load("aws-gpu.yaml")[0])
    doc["docker"]["worker_run_options"] = TOKEN_ENV
    doc["docker"]["head_run_options"] = TOKEN_ENV
    assert check_file(write(tmp_path, [doc])) == []
    doc["available_node_types"]["ray.worker.gpu"]["docker"] = {"worker_run_options": []}
    (msg,) = at(check_file(write(tmp_path, [doc])), "docker.run_options")
    assert msg.startswith("no token authentication on worker type ray.worker.gpu")


@pytest.mark.parametrize(("name", "worker", "head"), LAUNCHERS)
def test_launcher_token_mode_without_a_token_for_the_nodes(tmp_path: Path, name: str,
                                                           worker: str, head: str) -> None:
    (doc,) = load(name)
    doc["file_mounts"] = {}
    found = check_file(write(tmp_path, [doc]))
    assert [(f.key, f.message) for f in found] == [(
        "docker.run_options", "RAY_AUTH_MODE=token but no token reaches the head and the "
        f"workers, so `ray start` would fail there after provisioning; {FIX}")]


def test_launcher_token_at_rays_default_path_needs_no_token_path(tmp_path: Path) -> None:
    doc = without_token_env(load("aws-gpu.yaml")[0])
    doc["docker"]["run_options"].append("-e RAY_AUTH_MODE=token")
    (msg,) = at(check_file(write(tmp_path, [doc])), "docker.run_options")
    assert msg.startswith("RAY_AUTH_MODE=token but no token reaches the head and the workers")
    doc["file_mounts"] = {"~/.ray/auth_token": "~/.ray/auth_token"}
    assert check_file(write(tmp_path, [doc])) == []


def test_launcher_token_written_into_the_file(tmp_path: Path) -> None:
    (doc,) = load("aws-gpu.yaml")
    doc["docker"]["run_options"].append("--env RAY_AUTH_TOKEN=9f2c1e07d4")
    doc["head_setup_commands"].append('export RAY_AUTH_TOKEN="$(cat /home/ray/ray_auth_token)"')
    found = check_file(write(tmp_path, [doc]))
    assert [f.key for f in found] == ["docker.run_options[3]"]
    assert found[0].message.startswith("RAY_AUTH_TOKEN is written into the file, which puts the "
                                       "token into version control and logs")


def test_launcher_without_docker_authenticates_in_its_start_commands(tmp_path: Path) -> None:
    """Each start command is a shell of its own: an `export` in an earlier one does not reach
    `ray start`, so it does not count."""
    (doc,) = load("aws-gpu.yaml")
    del doc["docker"]
    doc["setup_commands"] = [f'pip install "ray[default]=={RAY}" dnet-tune']
    env = "RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=/home/ubuntu/ray_auth_token"
    doc["head_start_ray_commands"] = ["ray stop", f"{env} ray start --head --port=6379"]
    doc["worker_start_ray_commands"] = ["ray stop", f"{env} ray start --address=$RAY_HEAD_IP:6379"]
    doc["file_mounts"] = {"/home/ubuntu/ray_auth_token": "~/.ray/auth_token"}
    assert check_file(write(tmp_path, [doc])) == []
    doc["worker_start_ray_commands"] = [f"export {env}", "ray start --address=$RAY_HEAD_IP:6379"]
    found = check_file(write(tmp_path, [doc]))
    assert [f.key for f in found] == ["worker_start_ray_commands"]
    assert found[0].message.startswith(
        "no token authentication on worker type ray.worker.gpu (RAY_AUTH_MODE=token unset), so "
        f"{OPEN}; start Ray as `RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=<file> ray start ...`")


def test_launcher_without_docker_needs_the_token_file_on_the_nodes(tmp_path: Path) -> None:
    """Naming RAY_AUTH_TOKEN_PATH is not enough: file_mounts or a setup command must put the
    token there (here from a secret manager)."""
    (doc,) = load("gcp-gpu.yaml")
    del doc["docker"]
    doc["setup_commands"] = [f'pip install "ray[default]=={RAY}" dnet-tune']
    env = "RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=/home/ubuntu/ray_auth_token"
    doc["head_start_ray_commands"] = [f"{env} ray start --head --port=6379"]
    doc["worker_start_ray_commands"] = [f"{env} ray start --address=$RAY_HEAD_IP:6379"]
    doc["file_mounts"] = {}
    found = check_file(write(tmp_path, [doc]))
    assert [f.key for f in found] == ["head_start_ray_commands"]
    assert found[0].message.startswith("RAY_AUTH_MODE=token but no token reaches the head and the "
                                       "workers, so `ray start` would fail there")
    doc["setup_commands"].append("gcloud secrets versions access latest --secret=ray-token "
                                 "> /home/ubuntu/ray_auth_token")
    assert check_file(write(tmp_path, [doc])) == []


# ----------------------------------------------------------------------------- KubeRay manifests


@pytest.mark.parametrize(("name", "index", "prefix"), KUBERAY)
def test_kuberay_without_token_auth_is_one_finding_that_says_how(
        tmp_path: Path, name: str, index: int, prefix: str) -> None:
    docs = load(name)
    del ray_spec(docs, index)["authOptions"]
    found = check_file(write(tmp_path, docs))
    assert [(f.key, f.message) for f in found] == [(
        f"{prefix}.authOptions", "missing: the cluster runs without token authentication, so "
        f"{OPEN}; add `authOptions: {{mode: token}}` (KubeRay >= 1.5.1; older operators: "
        "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN from a Secret in the env of every Ray container "
        "and of autoscalerOptions)")]


@pytest.mark.parametrize(("name", "index", "prefix"), KUBERAY)
@pytest.mark.parametrize(("options", "expected"), [
    ({"mode": "disabled"}, "'disabled' turns token authentication off"),
    ({}, "missing"),
    ({"mdoe": "token"}, "missing"),
])
def test_kuberay_auth_options_without_token_mode(tmp_path: Path, name: str, index: int,
                                                 prefix: str, options: dict[str, str],
                                                 expected: str) -> None:
    docs = load(name)
    ray_spec(docs, index)["authOptions"] = options
    assert at(check_file(write(tmp_path, docs)), f"{prefix}.authOptions.mode") == [
        f"{expected}, so {OPEN}; set `mode: token`"]


def test_kuberay_misspelt_auth_options_is_pruned_so_auth_is_missing(tmp_path: Path) -> None:
    docs = load("kuberay/raycluster.yaml")
    spec = ray_spec(docs, 1)
    spec["authOption"] = spec.pop("authOptions")
    found = check_file(write(tmp_path, docs))
    prefix = "RayCluster/dnet-tune:spec"
    assert "did you mean 'authOptions'?" in at(found, f"{prefix}.authOption")[0]
    assert at(found, f"{prefix}.authOptions")[0].startswith("missing: the cluster runs without")


def _manual_env(secret: str = "dnet-tune-auth") -> list[dict[str, Any]]:
    return [{"name": "RAY_AUTH_MODE", "value": "token"},
            {"name": "RAY_AUTH_TOKEN",
             "valueFrom": {"secretKeyRef": {"name": secret, "key": "auth_token"}}}]


def test_kuberay_older_operators_env_from_a_secret(tmp_path: Path) -> None:
    """Without authOptions, every Ray container and the autoscaler sidecar need the env."""
    docs = load("kuberay/raycluster.yaml")
    spec = ray_spec(docs, 1)
    del spec["authOptions"]
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    worker = spec["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    head["env"] = _manual_env()
    worker["envFrom"] = [{"secretRef": {"name": "dnet-tune-auth"}}]
    worker["env"] = _manual_env()[:1]
    spec["autoscalerOptions"]["env"] = _manual_env()
    assert check_file(write(tmp_path, docs)) == []
    del worker["env"]
    found = check_file(write(tmp_path, docs))
    assert [f.key for f in found] == [
        "RayCluster/dnet-tune:spec.workerGroupSpecs[0].template.spec.containers[0].env"]
    assert found[0].message.startswith("no RAY_AUTH_MODE=token with RAY_AUTH_TOKEN from a Secret "
                                       "here while other parts of the cluster have them")


def test_kuberay_token_written_into_the_manifest(tmp_path: Path) -> None:
    docs = load("kuberay/raycluster.yaml")
    container = ray_spec(docs, 1)["headGroupSpec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "RAY_AUTH_TOKEN", "value": "9f2c1e07d4"}]
    found = check_file(write(tmp_path, docs))
    key = "RayCluster/dnet-tune:spec.headGroupSpec.template.spec.containers[0].env[0].value"
    assert [f.key for f in found] == [key]
    assert found[0].message.startswith("the token is written into the manifest")


def test_every_shipped_file_fails_without_its_token_auth(tmp_path: Path) -> None:
    """The rule covers all four shipped files, whatever their format."""
    for n, path in enumerate(sorted(CLUSTERS.rglob("*.yaml"))):
        text = path.read_text()
        text = text.replace("    - --env RAY_AUTH_MODE=token\n", "")
        text = text.replace("authOptions:\n", "authOptionz:\n")
        copy = tmp_path / f"{n}.yaml"
        copy.write_text(text)
        assert any("without token authentication" in f.message
                   or "no token authentication" in f.message for f in check_file(copy)), path
