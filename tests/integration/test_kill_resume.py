"""Interrupt the `mtrl run` driver mid-sweep (Ctrl-C, then SIGKILL), run the same command again:
the sweep completes, finished trials are not re-run, and the Parquet equals that of an
uninterrupted sweep with the same seeds."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid

import pytest
from _ray_testlib import (REPO, assert_rows_exactly_once, checkpointed_run_keys, compacted_run_keys,
                          kill_ray_processes, mtrl_command, parquet_files, read_dataset, run_and_log,
                          subprocess_env, tiny_sweep, trials_of, wait_until)

pytestmark = pytest.mark.slow


@pytest.fixture
def ray_tmp():
    """A private RAY_TMPDIR for the drivers' local Ray instances, cleaned up afterwards."""
    path = f"/tmp/mtrl-kill-{uuid.uuid4().hex[:8]}"
    os.makedirs(path)
    yield path
    kill_ray_processes(path)
    shutil.rmtree(path, ignore_errors=True)


def test_interrupted_driver_resumes_to_the_uninterrupted_result(tmp_path, ray_tmp):
    sweep = tiny_sweep(tmp_path / "kill.yaml", "kill", seeds=4, total_steps=1000)
    trials = trials_of(sweep)
    env = subprocess_env(RAY_TMPDIR=ray_tmp)

    reference = tmp_path / "reference"
    # `-X importtime` logs every module the driver imports (its own, not the Ray workers').
    done = run_and_log([sys.executable, "-X", "importtime", "-m", "orchestrator.cli", "run", sweep, "--storage",
                        str(reference)], tmp_path / "reference.log", env, timeout=400)
    reference_log = (tmp_path / "reference.log").read_text()
    assert done.returncode == 0, reference_log[-3000:]
    # The driver schedules and checks; only the trials need torch (~2 CPU-s to import), and
    # Tune's TensorBoard logger, which imports it through tensorboardX, is off.
    driver_imports = {line.rsplit("|", 1)[-1].strip() for line in reference_log.splitlines()
                      if line.startswith("import time:")}
    assert "ray.tune" in driver_imports
    assert "torch" not in driver_imports and "tensorboardX" not in driver_imports

    storage = tmp_path / "results"
    root = str(storage / "kill")
    command = mtrl_command("run", sweep, "--storage", str(storage))

    # Ctrl-C once a trial has a checkpoint: a clean stop, exit code 130, advice to rerun.
    with open(tmp_path / "interrupted.log", "w") as log:
        driver = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        try:
            wait_until(lambda: bool(checkpointed_run_keys(root)), timeout=300, interval=0.1, what="a checkpoint")
            driver.send_signal(signal.SIGINT)
            assert driver.wait(timeout=120) == 130
        finally:
            if driver.poll() is None:
                driver.kill()
    assert "rerun the same command to resume" in (tmp_path / "interrupted.log").read_text()

    # SIGKILL once one trial is finished and another is past a checkpoint.
    with open(tmp_path / "first.log", "w") as log:
        driver = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)

        def one_finished_one_midway() -> bool:
            finished = compacted_run_keys(root)
            return bool(finished) and bool(checkpointed_run_keys(root) - finished)

        try:
            wait_until(one_finished_one_midway, timeout=300, interval=0.1,
                       what="a finished trial and a checkpointed unfinished one")
        finally:
            driver.send_signal(signal.SIGKILL)
            driver.wait(timeout=60)
    finished = compacted_run_keys(root)
    assert finished and len(finished) < len(trials)
    finished_files = {path: info for path, info in parquet_files(root).items()
                      if os.path.basename(path).removesuffix(".parquet") in finished}

    resumed = run_and_log(command, tmp_path / "second.log", env, timeout=400)
    log = (tmp_path / "second.log").read_text()
    assert resumed.returncode == 0, log[-3000:]
    assert "resuming 4 trials" in log and "all 4 trials done" in log
    # Tune restored its state rather than giving up on it and starting the trials afresh.
    assert "Failed to restore the run state" not in log

    # Finished trials were not re-run: their files are byte for byte and mtime untouched.
    after = parquet_files(root)
    assert {path: after[path] for path in finished_files} == finished_files
    assert_rows_exactly_once(root, trials)
    for dataset in ("evals", "train"):
        assert read_dataset(root, dataset).equals(read_dataset(str(reference / "kill"), dataset))
