"""A two-node local cluster (`ray.cluster_utils.Cluster`): removing the worker node mid-sweep
loses no rows; the trial it ran is retried on the head node from its checkpoint."""

from __future__ import annotations

import subprocess

import pytest

from orchestrator.status import read_status
from testkit.ray import (
    REPO,
    assert_rows_exactly_once,
    checkpointed_run_keys,
    compacted_run_keys,
    mtrl_command,
    subprocess_env,
    tiny_sweep,
    trials_of,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # another module's instance; this test brings its own cluster
        ray.shutdown()
    # One CPU per node: with two trials running, exactly one runs on the worker node.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    yield cluster
    cluster.shutdown()


def test_losing_a_worker_node_loses_no_rows(tmp_path, cluster):
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    sweep = tiny_sweep(tmp_path / "nodes.yaml", "nodes", seeds=3, total_steps=1200, max_failures=3)
    trials = trials_of(sweep)
    storage = tmp_path / "results"
    root = str(storage / "nodes")
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen(mtrl_command("run", sweep, "--storage", str(storage), "--address", cluster.address),
                                  stdout=log, stderr=subprocess.STDOUT, env=subprocess_env(), cwd=REPO)
        try:
            # Both nodes busy, each trial past its first checkpoint and not finished: remove one.
            wait_until(lambda: len(checkpointed_run_keys(root) - compacted_run_keys(root)) >= 2, timeout=300,
                       interval=0.1, what="two trials running with a checkpoint")
            cluster.remove_node(worker)
            returncode = driver.wait(timeout=400)
        finally:
            if driver.poll() is None:
                driver.kill()
    log_text = (tmp_path / "driver.log").read_text()
    assert returncode == 0, log_text[-3000:]
    assert "all 3 trials done" in log_text
    assert_rows_exactly_once(root, trials)
    assert sum(t.retries for t in read_status(root).trials) >= 1
