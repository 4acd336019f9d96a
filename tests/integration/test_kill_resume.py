"""Interrupt the `mtrl run` driver (Ctrl-C; SIGKILL mid-sweep, at start-up, while trials start,
during the last trial's compaction), run the command again (also with another --num-cpus):
the sweep completes, finished trials are not re-run, and the Parquet equals that of an
uninterrupted sweep with the same seeds."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import uuid

import pytest

from testkit.faults import environment as fault_environment
from testkit.ray import (
    REPO,
    assert_rows_exactly_once,
    checkpointed_run_keys,
    compacted_run_keys,
    kill_ray_processes,
    mtrl_command,
    parquet_files,
    read_dataset,
    run_and_log,
    subprocess_env,
    tiny_sweep,
    trials_of,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted sweep both tests compare with: ``(sweep file, its folder, the driver's log)``."""
    tmp_path = tmp_path_factory.mktemp("reference")
    sweep = tiny_sweep(tmp_path / "kill.yaml", "kill", seeds=4, total_steps=1000)
    path = f"/tmp/mtrl-kill-{uuid.uuid4().hex[:8]}"
    os.makedirs(path)
    try:
        # `-X importtime` logs every module the driver imports (its own, not the Ray workers').
        done = run_and_log([sys.executable, "-X", "importtime", "-m", "analysis.cli", "run", sweep, "--storage",
                            str(tmp_path / "reference")], tmp_path / "reference.log",
                           subprocess_env(RAY_TMPDIR=path), timeout=400)
    finally:
        kill_ray_processes(path)
        shutil.rmtree(path, ignore_errors=True)
    log = (tmp_path / "reference.log").read_text()
    assert done.returncode == 0, log[-3000:]
    return sweep, str(tmp_path / "reference" / "kill"), log


def assert_equals_reference(root: str, reference_root: str, sweep: str) -> None:
    assert_rows_exactly_once(root, trials_of(sweep))
    for dataset in ("evals", "train"):
        assert read_dataset(root, dataset).equals(read_dataset(reference_root, dataset))


def test_interrupted_driver_resumes_to_the_uninterrupted_result(tmp_path, ray_tmp, reference):
    sweep, reference_root, reference_log = reference
    trials = trials_of(sweep)
    env = subprocess_env(RAY_TMPDIR=ray_tmp)
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
    assert "Token authentication" not in log  # the embedded Ray's warning a user cannot act on

    # Finished trials were not re-run: their files are byte for byte and mtime untouched.
    after = parquet_files(root)
    assert {path: after[path] for path in finished_files} == finished_files
    assert_equals_reference(root, reference_root, sweep)


def test_driver_killed_at_start_up_while_trials_start_and_during_compaction(tmp_path, ray_tmp, reference):
    """Three SIGKILLs at the moments a sweep is most fragile, then a rerun on fewer CPUs."""
    sweep, reference_root, _ = reference
    trials = trials_of(sweep)
    storage = tmp_path / "results"
    root = str(storage / "kill")
    last = trials[-1].run_key

    def kill_when(moment, what: str, log_name: str, *args: str, faults: str | None = None) -> None:
        env = subprocess_env(RAY_TMPDIR=ray_tmp)
        env = fault_environment(faults, env) if faults else env
        with open(tmp_path / log_name, "w") as log:
            driver = subprocess.Popen(mtrl_command("run", sweep, "--storage", str(storage), *args), stdout=log,
                                      stderr=subprocess.STDOUT, env=env, cwd=REPO)
            try:
                wait_until(moment, timeout=300, interval=0.05, what=what)
            finally:
                driver.send_signal(signal.SIGKILL)
                driver.wait(timeout=60)
        kill_ray_processes(ray_tmp)  # a driver killed by SIGKILL leaves its local Ray behind

    # Start-up: the sweep folder is claimed, Ray is still starting.
    kill_when(lambda: os.path.exists(os.path.join(root, "sweep.yaml")), "the sweep folder", "startup.log")
    # While trials start: Tune has made its run folder, no trial has a checkpoint yet.
    kill_when(lambda: bool(glob.glob(os.path.join(root, "tune", "run-*", "*-s0*"))), "a trial starting",
              "trials-start.log")
    # During the last trial's compaction (one CPU: the trials run in grid order): its evaluation
    # rows compacted, its train segments not yet.
    kill_when(lambda: os.path.exists(os.path.join(root, ".injected-faults", f"{last}@compact")),
              "the last trial's compaction", "compaction.log", "--num-cpus", "1", faults=f"{last}@compact")
    segments = [p for p in glob.glob(os.path.join(root, "metrics", "train", "**", f"{last}__*.parquet"),
                                     recursive=True)]
    assert segments and glob.glob(os.path.join(root, "metrics", "evals", "**", f"{last}.parquet"), recursive=True)

    # Another --num-cpus than before: the rerun builds a fresh Tuner from the sweep folder.
    finished = compacted_run_keys(root)
    finished_files = {path: info for path, info in parquet_files(root).items()
                      if os.path.basename(path).removesuffix(".parquet") in finished}
    resumed = run_and_log(mtrl_command("run", sweep, "--storage", str(storage), "--num-cpus", "1"),
                          tmp_path / "rerun.log", subprocess_env(RAY_TMPDIR=ray_tmp), timeout=400)
    log = (tmp_path / "rerun.log").read_text()
    assert resumed.returncode == 0, log[-3000:]
    assert "all 4 trials done" in log
    after = parquet_files(root)
    assert {path: after[path] for path in finished_files} == finished_files
    assert_equals_reference(root, reference_root, sweep)
