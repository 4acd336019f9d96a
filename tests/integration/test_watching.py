"""Watching a sweep: one tiny sweep with TensorBoard, MLflow (a local file store) and W&B (offline)
on, held still mid-run for `mtrl status`, killed (SIGKILL of the driver), then rerun to the end.

Read back with each library's own reader: every trial has each tag once per step, equal to the
Parquet's value; `mtrl status --json` adds the running trial's reported step to the Parquet's
and gives the ETA its throughput implies, then reports the finished sweep with no time left.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import uuid

import numpy as np
import pytest

from orchestrator.trackers import stable_run_id
from orchestrator.trackers.base import TRAIN_TAG_PREFIXES
from testkit import pause
from testkit.ray import (
    REPO,
    kill_ray_processes,
    mtrl_command,
    read_dataset,
    run_and_log,
    subprocess_env,
    tiny_sweep,
    trials_of,
    wait_until,
)

pytestmark = pytest.mark.slow

SWEEP = "watch"
TOTAL_STEPS = 600
PAUSED_TRIAL = "Empty-5x5-v0-single-dense-s01"
PAUSED_STEP = 300  # an epoch between the checkpoints at 200 and 400


def _status(root: str, env: dict, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(mtrl_command("status", root, *flags), env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def _parquet_last_steps(root: str) -> dict[str, int]:
    train = read_dataset(root, "train")
    return {key: int(group["step"].max()) for key, group in train.groupby("run_key")}


def _expected_points(root: str) -> dict[str, dict[str, dict[int, float]]]:
    """Per run_key, per tag, ``{step: value}`` as the trackers must hold them (nulls and NaNs are no points)."""
    out: dict[str, dict[str, dict[int, float]]] = {}
    train = read_dataset(root, "train")
    evals = read_dataset(root, "evals")
    for run_key, group in train.groupby("run_key"):
        tags = out.setdefault(run_key, {})
        for column in group.columns:
            if column.startswith(TRAIN_TAG_PREFIXES):
                points = {int(s): float(v) for s, v in zip(group["step"], group[column], strict=True)
                          if v is not None and not math.isnan(v)}
                if points:
                    tags[column] = points
    for run_key, group in evals.groupby("run_key"):
        tags = out.setdefault(run_key, {})
        for task, rows in group.groupby("task"):
            tags[f"eval/{task}/normalised_return"] = dict(zip(rows["step"].astype(int),
                                                              rows["normalised_return_mean"].astype(float),
                                                              strict=True))
        means = group.groupby("step")["normalised_return_mean"].mean()
        tags["eval/normalised_return"] = {int(s): float(v) for s, v in means.items()}
    return out


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    """The sweep run twice (held still, status read, driver killed; then rerun): its folder and what was seen."""
    tmp = tmp_path_factory.mktemp("watch")
    sweep = tiny_sweep(tmp / "watch.yaml", SWEEP, seeds=3, total_steps=TOTAL_STEPS,
                       trackers=["tensorboard", "mlflow", "wandb"])
    storage = tmp / "results"
    root = str(storage / SWEEP)
    ray_tmp = f"/tmp/mtrl-watch-{uuid.uuid4().hex[:8]}"
    os.makedirs(ray_tmp)
    (tmp / "home").mkdir()
    env = subprocess_env(RAY_TMPDIR=ray_tmp, HOME=str(tmp / "home"), MLFLOW_TRACKING_URI=f"file:{tmp / 'mlruns'}",
                         MLFLOW_ALLOW_FILE_STORE="true", WANDB_MODE="offline")
    env.pop("WANDB_DIR", None)
    paused_env = pause.environment(f"{PAUSED_TRIAL}@{PAUSED_STEP}", env)
    # One CPU: one trial at a time, so nothing moves while the paused trial is held.
    command = mtrl_command("run", sweep, "--storage", str(storage), "--num-cpus", "1")
    seen: dict = {}
    try:
        with open(tmp / "first.log", "w") as log:
            driver = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=paused_env, cwd=REPO)
            try:
                wait_until(lambda: os.path.exists(pause.marker_path(root, f"{PAUSED_TRIAL}@{PAUSED_STEP}")),
                           timeout=400, interval=0.2, what="the paused trial")

                def running_status() -> bool:
                    done = _status(root, env, "--json")
                    seen["running"] = json.loads(done.stdout) if done.returncode == 0 else None
                    return bool(seen["running"]) and seen["running"]["trials"]["running"] == 1
                wait_until(running_status, timeout=120, interval=1.0, what="status to show the running trial")
                seen["parquet_while_running"] = _parquet_last_steps(root)
                seen["trials_listing"] = _status(root, env, "--trials").stdout
            finally:
                driver.send_signal(signal.SIGKILL)
                driver.wait(timeout=60)
                kill_ray_processes(ray_tmp)
        seen["first_log"] = (tmp / "first.log").read_text()
        resumed = run_and_log(command, tmp / "second.log", paused_env, timeout=600)
        seen["second_log"] = (tmp / "second.log").read_text()
        assert resumed.returncode == 0, seen["second_log"][-3000:]
        finished = _status(root, env, "--json")
        assert finished.returncode == 0, finished.stderr
        seen["finished"] = json.loads(finished.stdout)
    finally:
        kill_ray_processes(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    print(seen["trials_listing"])  # the closing note quotes it (pytest -s)
    return {"root": root, "sweep": sweep, "mlruns": str(tmp / "mlruns"), "seen": seen,
            "expected": _expected_points(root), "trials": trials_of(sweep)}


def test_status_of_a_running_and_a_finished_sweep(watched):
    running, parquet = watched["seen"]["running"], watched["seen"]["parquet_while_running"]
    (trial,) = running["running"]
    assert (trial["run_key"], trial["step"]) == (PAUSED_TRIAL, PAUSED_STEP)
    assert parquet[PAUSED_TRIAL] == PAUSED_STEP - 100  # its rows and checkpoint stop at the step before
    not_running = sum(step for key, step in parquet.items() if key != PAUSED_TRIAL)
    assert running["steps_done"] == not_running + PAUSED_STEP
    assert running["steps_total"] == 3 * TOTAL_STEPS and running["slots"] == 1
    rate = trial["steps_per_second"]
    assert rate > 0 and trial["normalised_return"] is not None and trial["eval_step"] == 200
    # One slot: the paused trial's 300 steps, then the pending trials', all at its own speed.
    left = running["steps_total"] - running["steps_done"]
    assert running["eta_seconds"] == pytest.approx(left / rate, rel=1e-9)
    listing = watched["seen"]["trials_listing"]
    assert PAUSED_TRIAL in listing and f"{PAUSED_STEP}/{TOTAL_STEPS}" in listing

    finished = watched["seen"]["finished"]
    assert finished["steps_done"] == finished["steps_total"] == 3 * TOTAL_STEPS
    assert finished["eta_seconds"] == 0 and finished["trials"]["done"] == 3


def test_tensorboard_has_each_tag_once_per_step_equal_to_the_parquet(watched):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, expected = watched["root"], watched["expected"]
    # The killed run's event file holds steps past the checkpoint it resumed from: there is something to purge.
    files = os.listdir(os.path.join(root, "tensorboard", PAUSED_TRIAL))
    assert len(files) == 2, files
    for trial in watched["trials"]:
        accumulator = EventAccumulator(os.path.join(root, "tensorboard", trial.run_key), size_guidance={"scalars": 0})
        accumulator.Reload()
        tags = accumulator.Tags()["scalars"]
        assert set(tags) == set(expected[trial.run_key])
        for tag in tags:
            events = accumulator.Scalars(tag)
            steps = [e.step for e in events]
            assert steps == sorted(set(steps)), (trial.run_key, tag, steps)  # increasing, once each
            assert max(steps) <= TOTAL_STEPS
            want = expected[trial.run_key][tag]
            assert {e.step: e.value for e in events} == {s: float(np.float32(v)) for s, v in want.items()}, tag


def test_mlflow_has_one_run_per_trial_with_each_metric_once_per_step(watched, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=f"file:{watched['mlruns']}")
    experiment = client.get_experiment_by_name(SWEEP)
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(t.run_key for t in watched["trials"])
    for run in runs:
        run_key = run.info.run_name
        assert run.data.tags["mtrl.run_id"] == stable_run_id(SWEEP, run_key)
        assert run.data.tags["mtrl.cell"] == "Empty-5x5-v0/single/dense"
        assert run.info.status == "FINISHED"
        assert run.data.params["total_steps"] == str(TOTAL_STEPS)
        expected = watched["expected"][run_key]
        assert set(run.data.metrics) == set(expected)
        for key, want in expected.items():
            history = client.get_metric_history(run.info.run_id, key)
            steps = [m.step for m in history]
            assert len(steps) == len(set(steps)), (run_key, key, steps)
            assert {m.step: m.value for m in history} == want, (run_key, key)


def test_wandb_offline_runs_have_the_stable_id_and_every_value(watched):
    from testkit.wandb_offline import offline_runs

    root, expected = watched["root"], watched["expected"]
    runs = offline_runs(os.path.join(root, "wandb"))
    ids = {t.run_key: stable_run_id(SWEEP, t.run_key) for t in watched["trials"]}
    assert {r.run_id for r in runs} == set(ids.values())
    assert sum(r.run_id == ids[PAUSED_TRIAL] for r in runs) == 2  # the killed run and its resume: one W&B id
    for trial in watched["trials"]:
        last = [r for r in runs if r.run_id == ids[trial.run_key]][-1]
        assert (last.name, last.group, last.project) == (trial.run_key, "Empty-5x5-v0/single/dense", SWEEP)
        # The newest folder holds every step once (a resume logs the Parquet's steps up to its checkpoint
        # first), each with the Parquet's values; the last are the final values.
        assert last.steps == sorted(set(last.steps)) and max(last.steps) == TOTAL_STEPS
        tags = expected[trial.run_key]
        want = {step: {tag: points[step] for tag, points in tags.items() if step in points} for step in last.steps}
        assert set(last.steps) == {s for points in tags.values() for s in points}
        for step in last.steps:
            assert last.history[step] == pytest.approx(want[step], rel=1e-12), (trial.run_key, step)


def test_the_logs_show_progress_lines_and_no_tracker_failure(watched):
    for name in ("first_log", "second_log"):
        log = watched["seen"][name]
        assert "tracker" not in log, log[-2000:]
    assert "steps " in watched["seen"]["second_log"] and "ETA" in watched["seen"]["second_log"]
