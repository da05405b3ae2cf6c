"""The smoke search as a Ray job on a Ray that requires a token, the way clusters/README.md tells
a user to submit one: `ray get-auth-token --generate` writes the token file, `ray start --head`
runs with RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH (as the launcher configs start their
nodes), and `RAY_AUTH_MODE=token ray job submit` sends `dnet-tune search --smoke` on digits_lt;
the same client without the token is turned away.

That Ray is stopped by the pids of its processes, found by a mark in their environment
(`tune/faults/reaper.py`), never with `ray stop`, which stops every Ray on the machine.

The job CLI and the dashboard that serves the job API need ray[default]: without its packages
the test is skipped, naming them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from drivers import MARK, ROOT, wait_until_reaped

from dnet_tune.tune.faults import reaper


def _missing_default_extra() -> list[str]:
    """The distributions ray[default] adds that are not installed, read from the installed
    ray's own metadata, so the list follows that Ray."""
    from importlib.metadata import PackageNotFoundError, requires, version

    from packaging.requirements import Requirement

    missing = set()
    for line in requires("ray") or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            continue  # a dependency of ray itself
        if not req.marker.evaluate({"extra": "default"}):
            continue  # another extra, or not for this Python
        try:
            version(req.name)
        except PackageNotFoundError:
            missing.add(req.name)
    return sorted(missing)


MISSING = _missing_default_extra()
NEEDS = ("`ray job submit` and the dashboard's job API need ray[default]; not installed: "
         f"{', '.join(MISSING)} (pip install -e '.[cluster]')")
# `make test-cluster` (and so CI) sets it: there a skip would hide that the test never ran
REQUIRED = os.environ.get("DNET_REQUIRE_CLUSTER_EXTRA") == "1"
if MISSING and REQUIRED:
    pytestmark = pytest.mark.usefixtures("_fail_without_the_extra")
else:
    pytestmark = pytest.mark.skipif(bool(MISSING), reason=NEEDS)


@pytest.fixture
def _fail_without_the_extra():
    pytest.fail(f"DNET_REQUIRE_CLUSTER_EXTRA=1, but {NEEDS}")

_here = Path(sys.executable).with_name("ray")
RAY = [str(_here)] if _here.is_file() else [sys.executable, "-m", "ray.scripts.scripts"]
SEARCH = ("search", "--smoke", "--dataset", "digits_lt", "--method", "ce", "--trials", 2,
          "--max-epochs", 2, "--confirm-top", 1, "--confirm-seeds", 1, "--seed", 0)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _ray(env: dict[str, str], *argv: object, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*RAY, *map(str, argv)], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def _get(url: str, token: str | None) -> tuple[int, str]:
    """One request to the job API, straight (no proxy), with or without the bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:  # not listening yet
        return 0, str(exc)


def _wait_for_job_api(url: str, token: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    status, body = _get(url, token)
    while status != 200 and time.monotonic() < deadline:
        time.sleep(1)
        status, body = _get(url, token)
    assert status == 200, (status, body)


def test_smoke_search_through_ray_job_submit_with_a_token(tmp_path_factory):
    base = tmp_path_factory.mktemp("tok")
    home, storage = base / "home", base / "results"
    # never a token or an address from the environment the tests run in
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("RAY_AUTH") and k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    clean.update(no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost")

    gen = _ray({**clean, "HOME": str(home)}, "get-auth-token", "--generate")
    token = gen.stdout.strip()
    token_file = home / ".ray" / "auth_token"
    assert gen.returncode == 0 and token, gen.stderr
    assert token_file.read_text() == token  # the file a launcher config copies to its nodes

    gcs, dash, agent, agent_grpc, client, metrics, runtime_env = _free_ports(7)
    owner, mark = uuid.uuid4().hex, uuid.uuid4().hex
    head_env = {**clean, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file),
                reaper.ENV: owner, MARK: mark, "RAY_TMPDIR": str(base),
                "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    keeper = reaper.start(owner)  # stops every process of this Ray when its stdin closes
    try:
        started = _ray(head_env, "start", "--head", "--node-ip-address=127.0.0.1",
                       f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                       "--include-dashboard=true", f"--dashboard-agent-listen-port={agent}",
                       f"--dashboard-agent-grpc-port={agent_grpc}",
                       f"--ray-client-server-port={client}", f"--metrics-export-port={metrics}",
                       f"--runtime-env-agent-port={runtime_env}", "--num-cpus=2", "--num-gpus=0",
                       f"--object-store-memory={150 * 1024**2}", f"--temp-dir={base / 'r'}",
                       "--disable-usage-stats", timeout=180)
        assert started.returncode == 0, started.stdout + started.stderr
        address = f"http://127.0.0.1:{dash}"
        _wait_for_job_api(f"{address}/api/jobs/", token)

        # without the token: refused, by the API and by the CLI of a client that lacks it
        assert _get(f"{address}/api/jobs/", None)[0] == 401
        assert _get(f"{address}/api/jobs/", "not-the-token")[0] == 403
        refused = _ray(clean, "job", "list", "--address", address)
        assert refused.returncode != 0
        assert "Authentication required" in refused.stdout + refused.stderr

        # with it: RAY_AUTH_MODE=token, and the token from ~/.ray/auth_token as on a laptop
        job = f"dnet-smoke-{uuid.uuid4().hex[:8]}"
        client_env = {**clean, "HOME": str(home), "RAY_AUTH_MODE": "token"}
        submitted = _ray(client_env, "job", "submit", "--address", address,
                         "--submission-id", job, "--", sys.executable, "-m", "dnet_tune.cli",
                         *SEARCH, "--storage", storage, "--name", "viajob", timeout=600)
        log = submitted.stdout + submitted.stderr
        assert submitted.returncode == 0, log
        assert f"Job '{job}' succeeded" in log
        status, body = _get(f"{address}/api/jobs/{job}", token)
        assert status == 200 and json.loads(body)["status"] == "SUCCEEDED", body
    finally:
        assert keeper.stdin is not None
        keeper.stdin.close()
        keeper.wait(timeout=90)
    wait_until_reaped(mark)

    exp = storage / "viajob"
    assert json.loads((exp / "search.json").read_text())["status"] == "finished", log
    summary = pq.read_table(exp / "summary.parquet").to_pylist()
    assert len(summary) == 2 and {r["status"] for r in summary} <= {"finished", "stopped"}
    assert len(pq.read_table(exp / "confirm.parquet")) == 1
    assert (exp / "best_config.yaml").is_file() and (exp / "best" / "ce.yaml").is_file()
    assert str(exp) in log  # the search's own output, streamed back to the client
