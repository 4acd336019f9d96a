"""The cluster routes end to end against a local `ray start --head` (loopback, free ports):
`ray job submit --working-dir ... -- mtrl run ...`, and the `ray submit` launcher joining it."""

from __future__ import annotations

import os
import sys

import pytest

from testkit.ray import REPO, assert_rows_exactly_once, ray_head, run_and_log, tiny_sweep, trials_of

pytestmark = pytest.mark.slow


@pytest.fixture
def head_node(tmp_path):
    with ray_head(tmp_path) as head:
        yield head


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
