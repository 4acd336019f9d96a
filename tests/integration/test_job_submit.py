"""The cluster routes end to end against a local `ray start --head` (loopback, free ports):
`ray job submit --working-dir ... -- mtrl run ...`, and the `ray submit` launcher joining it."""

from __future__ import annotations

import os
import shutil
import sys
import uuid

import pytest
from _ray_testlib import (REPO, assert_rows_exactly_once, free_port, kill_ray_processes, run_and_log,
                          subprocess_env, tiny_sweep, trials_of)

pytestmark = pytest.mark.slow


@pytest.fixture
def head_node(tmp_path):
    """A one-node Ray cluster started like a real head; its processes are stopped afterwards."""
    temp_dir = f"/tmp/mtrl-head-{uuid.uuid4().hex[:8]}"
    ports = {name: free_port() for name in ("gcs", "dashboard", "client", "agent_http", "agent_grpc",
                                            "runtime_env", "metrics")}
    # A loopback test cluster: token authentication off, so the CLI needs no token file.
    env = subprocess_env(RAY_AUTH_MODE="disabled")
    command = ["ray", "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(ports["gcs"]),
               "--num-cpus", "2", "--temp-dir", temp_dir, "--include-dashboard", "true",
               "--dashboard-host", "127.0.0.1", "--dashboard-port", str(ports["dashboard"]),
               "--ray-client-server-port", str(ports["client"]),
               "--dashboard-agent-listen-port", str(ports["agent_http"]),
               "--dashboard-agent-grpc-port", str(ports["agent_grpc"]),
               "--runtime-env-agent-port", str(ports["runtime_env"]),
               "--metrics-export-port", str(ports["metrics"]), "--disable-usage-stats"]
    try:
        started = run_and_log(command, tmp_path / "ray-start.log", env, timeout=180)
        assert started.returncode == 0, (tmp_path / "ray-start.log").read_text()[-3000:]
        yield {"dashboard": f"http://127.0.0.1:{ports['dashboard']}", "gcs": f"127.0.0.1:{ports['gcs']}", "env": env}
    finally:
        kill_ray_processes(temp_dir, f":{ports['gcs']}")
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_job_submit_and_launcher_run_sweeps_on_the_cluster(tmp_path, head_node):
    working_dir = tmp_path / "job"
    working_dir.mkdir()
    sweep = tiny_sweep(working_dir / "job.yaml", "job", seeds=2)
    storage = tmp_path / "results"
    # The documented route: `ray job submit --working-dir . -- mtrl run SWEEP --storage ...`.
    submitted = run_and_log(["ray", "job", "submit", "--address", head_node["dashboard"],
                             "--working-dir", str(working_dir), "--", "mtrl", "run", "job.yaml",
                             "--storage", str(storage)], tmp_path / "job.log", head_node["env"], timeout=400)
    log = (tmp_path / "job.log").read_text()
    assert submitted.returncode == 0, log[-3000:]
    assert "all 2 trials done" in log and "succeeded" in log
    assert_rows_exactly_once(str(storage / "job"), trials_of(sweep))

    # What `ray submit docker/cluster.yaml docker/launch_sweep.py -- SWEEP` runs on the head node.
    other = tiny_sweep(tmp_path / "launched.yaml", "launched", seeds=1)
    launched = run_and_log([sys.executable, os.path.join(REPO, "docker", "launch_sweep.py"), other,
                            "--storage", str(storage), "--address", head_node["gcs"]],
                           tmp_path / "launcher.log", head_node["env"], timeout=400)
    log = (tmp_path / "launcher.log").read_text()
    assert launched.returncode == 0, log[-3000:]
    assert "all 1 trials done" in log
    assert_rows_exactly_once(str(storage / "launched"), trials_of(other))
