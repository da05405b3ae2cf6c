"""Token authentication in cluster files, for both formats `cluster check` reads.

Ray 2.60 turns token authentication on by itself only for a local `ray.init()`. A cluster whose
nodes run `ray start` (the launcher) or that KubeRay starts runs without it unless every node has
RAY_AUTH_MODE=token, and then its dashboard and job API (8265) and its GCS (6379) run code for
anyone who reaches them: the hole through which unauthenticated Ray clusters were taken over in
the wild. Ray reads the token from RAY_AUTH_TOKEN, else the file at RAY_AUTH_TOKEN_PATH, else
~/.ray/auth_token. Two more mistakes surface only after provisioning or in a leak, so they are
findings too: token mode without a token on a node (`ray start` fails there), and a token
written into the file itself (it ends up in version control and in logs).
"""

from __future__ import annotations

import re
from typing import Any

from dnet_tune.ops.cluster_rules import Pairs, get_in, get_list, join_path, walk

AUTH_ON = re.compile(r"(?<![\w$])RAY_AUTH_MODE=[\"']?token\b")
TOKEN_VAR = re.compile(r"(?<![\w$])RAY_AUTH_TOKEN=")
TOKEN_PATH = re.compile(r"(?<![\w$])RAY_AUTH_TOKEN_PATH=[\"']?([^\s\"']+)")
# RAY_AUTH_TOKEN=<text>, unless the text is a shell expansion ($VAR, $(cat file), "$...")
LITERAL = re.compile(r"(?<![\w$])RAY_AUTH_TOKEN=[\"']?[^\s\"'$;&|)]")
DEFAULT_FILE = ".ray/auth_token"  # Ray's default token path, under the home directory
TOKEN_MOUNT = "/home/ray/ray_auth_token"  # where the shipped launcher configs put the token
HOW_TO_TOKEN = "the token from `ray get-auth-token --generate`; see clusters/README.md"
OPEN = "anyone who reaches the dashboard/job API (8265) or GCS (6379) can run code"


# ----------------------------------------------------------------------------- launcher configs


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _uses_docker(doc: dict[str, Any]) -> bool:
    docker = doc.get("docker")
    return isinstance(docker, dict) and docker.get("container_name") != "" and any(
        docker.get(k) for k in ("image", "head_image", "worker_image"))


def _roles(doc: dict[str, Any]) -> dict[str, list[str]]:
    """Per role (the head, each worker node type), the text that sets the environment its
    `ray start` runs in: docker run options (a node type's own worker_run_options replace the
    global ones, as in Ray) and the start commands that run `ray start` (each command is a shell
    of its own, so an `export` in another one does not count)."""
    docker = doc.get("docker") if _uses_docker(doc) else {}
    common = _strings(get_in(docker, "run_options"))
    types = doc.get("available_node_types")
    types = types if isinstance(types, dict) else {}
    head = doc.get("head_node_type")

    def starts(key: str) -> list[str]:
        return [c for c in _strings(doc.get(key)) if "ray start" in c]

    roles = {"the head": common + _strings(get_in(docker, "head_run_options"))
             + starts("head_start_ray_commands")}
    for name, spec in types.items():
        if name != head:
            own = get_in(spec, "docker")
            options = get_in(own, "worker_run_options") if isinstance(own, dict) and \
                "worker_run_options" in own else get_in(docker, "worker_run_options")
            roles[f"worker type {name}"] = (common + _strings(options)
                                            + starts("worker_start_ray_commands"))
    return roles


def _has_token(texts: list[str], doc: dict[str, Any]) -> bool:
    """A token reaches the node: RAY_AUTH_TOKEN from the shell, a RAY_AUTH_TOKEN_PATH that
    file_mounts fills or a command writes (named other than in the assignment itself), or a
    file mounted at Ray's default path."""
    mounts = get_in(doc, "file_mounts")
    mounts = [str(k) for k in mounts] if isinstance(mounts, dict) else []
    commands = [TOKEN_PATH.sub("", c) for k, v in doc.items() if str(k).endswith("_commands")
                for c in _strings(v)]
    for text in texts:
        if TOKEN_VAR.search(text):
            return True
        for path in TOKEN_PATH.findall(text):
            if path in mounts or any(path in c for c in commands):
                return True
    return any(m.rstrip("/").endswith(DEFAULT_FILE) for m in mounts)


def _who(names: list[str], total: int) -> str:
    if len(names) == total and total > 1:
        return "the head and the workers"
    return ", ".join(names)


def launcher_auth(doc: dict[str, Any]) -> Pairs:
    roles = _roles(doc)
    docker = _uses_docker(doc)
    off = [r for r, texts in roles.items() if not any(AUTH_ON.search(t) for t in texts)]
    tokenless = [r for r, texts in roles.items() if r not in off and not _has_token(texts, doc)]
    if docker:
        key = "docker.run_options"
        fix = (f"add `--env RAY_AUTH_MODE=token` and `--env RAY_AUTH_TOKEN_PATH={TOKEN_MOUNT}` "
               f"to docker.run_options and `{TOKEN_MOUNT}: ~/.ray/auth_token` to file_mounts "
               f"({HOW_TO_TOKEN})")
    else:
        key = "head_start_ray_commands" if "the head" in off + tokenless \
            else "worker_start_ray_commands"
        fix = ("start Ray as `RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=<file> ray start ...` in "
               "head_start_ray_commands and worker_start_ray_commands, with file_mounts copying "
               f"~/.ray/auth_token to <file> ({HOW_TO_TOKEN})")
    out = []
    if off:
        out.append((key, f"no token authentication on {_who(off, len(roles))} "
                         f"(RAY_AUTH_MODE=token unset), so {OPEN}; {fix}"))
    if tokenless:
        out.append((key, f"RAY_AUTH_MODE=token but no token reaches {_who(tokenless, len(roles))}"
                         f", so `ray start` would fail there after provisioning; {fix}"))
    return out + literal_tokens(doc)


def literal_tokens(doc: Any, prefix: str = "") -> Pairs:
    """A token written into the file, as shell text or as a Kubernetes env value."""
    out = []
    for path, value, _ in walk(doc, (), ()):
        if isinstance(value, str) and LITERAL.search(value):
            out.append((prefix + join_path(path), "RAY_AUTH_TOKEN is written into the file, "
                        "which puts the token into version control and logs; read it from a "
                        "file (RAY_AUTH_TOKEN_PATH) or a Secret instead"))
        elif isinstance(value, dict) and value.get("name") == "RAY_AUTH_TOKEN" \
                and "value" in value:
            out.append((prefix + join_path((*path, "value")), "the token is written into the "
                        "manifest, which puts it into version control; take it from a Secret "
                        "(valueFrom.secretKeyRef) or let `authOptions: {mode: token}` make one"))
    return out


# ----------------------------------------------------------------------------- KubeRay manifests


def _env_auth(container: Any) -> bool:
    """KubeRay before authOptions: RAY_AUTH_MODE=token and a token from a Secret (or a file)
    in the container's own environment."""
    env = {get_in(e, "name"): e for e in get_list(container, "env") if isinstance(e, dict)}
    mode = get_in(env.get("RAY_AUTH_MODE"), "value") == "token"
    secret = get_in(env.get("RAY_AUTH_TOKEN"), "valueFrom", "secretKeyRef") is not None
    from_secret = any(get_in(e, "secretRef") for e in get_list(container, "envFrom"))
    return mode and (secret or from_secret or "RAY_AUTH_TOKEN_PATH" in env)


def kuberay_auth(spec: dict[str, Any], key: str) -> Pairs:
    """One RayCluster spec (also inside a RayJob or RayService): `authOptions: {mode: token}`,
    or on operators older than that field the environment of every Ray container (the first
    of each pod, as KubeRay counts) and of the autoscaler sidecar."""
    if "authOptions" in spec:
        mode = get_in(spec, "authOptions", "mode")
        if mode == "token":
            return []
        got = "missing" if mode is None else f"{mode!r} turns token authentication off"
        return [(f"{key}.authOptions.mode", f"{got}, so {OPEN}; set `mode: token`")]
    places = []
    head = spec.get("headGroupSpec")
    places.append((f"{key}.headGroupSpec", head))
    places += [(f"{key}.workerGroupSpecs[{i}]", g)
               for i, g in enumerate(get_list(spec, "workerGroupSpecs"))]
    env_key = ".template.spec.containers[0].env"
    ray = [(k + env_key, (get_list(g, "template", "spec", "containers") or [None])[0])
           for k, g in places]
    if spec.get("enableInTreeAutoscaling"):
        ray.append((f"{key}.autoscalerOptions.env", get_in(spec, "autoscalerOptions")))
    lacking = [k for k, container in ray if not _env_auth(container)]
    if len(lacking) == len(ray):
        return [(f"{key}.authOptions", f"missing: the cluster runs without token "
                 f"authentication, so {OPEN}; add `authOptions: {{mode: token}}` (KubeRay "
                 ">= 1.5.1; older operators: RAY_AUTH_MODE=token and RAY_AUTH_TOKEN from a "
                 "Secret in the env of every Ray container and of autoscalerOptions)")]
    return [(k, "no RAY_AUTH_MODE=token with RAY_AUTH_TOKEN from a Secret here while other "
                "parts of the cluster have them; give every Ray container and the autoscaler "
                "both, or use `authOptions: {mode: token}` (KubeRay >= 1.5.1)") for k in lacking]
