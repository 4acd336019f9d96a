"""Trackers and progress without Ray: the sweep file's `trackers`, the one-line refusals before anything
starts, TensorBoard's one point per step across a resume of `run_trial`, a failing tracker that never
fails its trial, the progress record, throughput, time left and the live table's heartbeat."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from mtrl_plasticity.errors import UserError
from orchestrator.checkpoint import DirectoryCheckpointer
from orchestrator.cli import main as cli_main
from orchestrator.config import TrialConfig
from orchestrator.progress import (
    ProgressRecord,
    ProgressRecorder,
    TrialWork,
    makespan,
    progress_path,
    read_record,
    slots_for,
    time_left,
    window_rate,
)
from orchestrator.sink import ParquetSink
from orchestrator.spec import validate_spec
from orchestrator.trackers import TrackerRun, open_trackers, stable_run_id, tracker_names
from orchestrator.trackers.base import TRAIN_TAG_PREFIXES, TrackerSet, epoch_scalars
from orchestrator.trial import run_trial
from orchestrator.tune_progress import ProgressTable
from testkit.ray import free_port
from testkit.sweep import REPO, tiny_spec_data

TINY = {"benchmark": "Empty-5x5-v0", "arch": "single", "total_steps": 400, "steps_per_epoch": 100,
        "eval_interval_steps": 200, "eval_episodes": 2, "checkpoint_interval_steps": 200,
        "measure_plasticity": False}
TRIAL_FLAGS = ["--benchmark", "Empty-5x5-v0", "--arch", "single", "--total-steps", "200", "--steps-per-epoch", "100",
               "--eval-episodes", "1", "--quiet"]


# --- the sweep file and the command line ------------------------------------------------------
def test_tensorboard_is_the_default_and_an_empty_list_turns_trackers_off(tmp_path):
    assert validate_spec(tiny_spec_data(), "s.yaml").trackers == ["tensorboard"]
    assert validate_spec(tiny_spec_data(trackers=[]), "s.yaml").trackers == []
    both = validate_spec(tiny_spec_data(trackers=["wandb", "mlflow"]), "s.yaml")
    assert both.trackers == ["wandb", "mlflow"]
    # Trackers are logs: a rerun may change them without a new version of the grid.
    from orchestrator.sweep_folder import SweepFolder, prepare

    folder = SweepFolder.for_spec(both, str(tmp_path))
    prepare(folder, validate_spec(tiny_spec_data(), "s.yaml"))
    assert prepare(folder, both).version is None


def test_unknown_or_repeated_trackers_are_refused_in_one_line():
    with pytest.raises(UserError, match=r"^s.yaml: trackers: unknown tracker 'tb'; choose from tensorboard, wandb"):
        validate_spec(tiny_spec_data(trackers=["tb"]), "s.yaml")
    with pytest.raises(UserError, match="tracker 'wandb' appears twice"):
        tracker_names(["wandb", "wandb"], "--tracker")
    assert tracker_names(["none"]) == []


def test_a_missing_tracker_package_is_one_line_before_anything_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if it were not installed: `import wandb` fails
    results = tmp_path / "r"
    code = cli_main(["trial", *TRIAL_FLAGS, "--results", str(results), "--tracker", "wandb"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == ("mtrl trial: error: tracker wandb needs the wandb package, which is not installed: "
                   "pip install 'mtrl-plasticity[trackers]'\n")
    assert not results.exists()


def _trial_command(tmp_path, tracker: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_"))}
    environ.update(HOME=str(tmp_path), NETRC=str(tmp_path / "no-netrc"), PYTHONPATH=REPO, **env)
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", "trial", *TRIAL_FLAGS, "--results",
                           str(tmp_path / "r"), "--tracker", tracker], env=environ, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_wandb_without_an_api_key_is_one_line(tmp_path):
    done = _trial_command(tmp_path, "wandb")
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["mtrl trial: error: tracker wandb: no W&B API key; set WANDB_API_KEY, run "
                                        "`wandb login`, or set WANDB_MODE=offline (and `wandb sync` the runs later)"]
    assert not (tmp_path / "r").exists()


def test_an_unreachable_mlflow_server_is_one_line(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    done = _trial_command(tmp_path, "mlflow", MLFLOW_TRACKING_URI=uri)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"mtrl trial: error: tracker mlflow: cannot use the tracking store '{uri}' (")
    assert not (tmp_path / "r").exists()


# --- TensorBoard across a resume, and a tracker that fails ---------------------------------------
class StopAt:
    """A checkpointer that stops the trial (raises) once it reports ``step``: a run cut short after its
    trackers logged ``step`` and before its next checkpoint."""

    def __init__(self, inner: DirectoryCheckpointer, step: int) -> None:
        self.inner, self.step = inner, step

    def load(self, accept=None):
        return self.inner.load(accept)

    def save(self, state, metrics):
        self.inner.save(state, metrics)

    def report(self, metrics):
        self.inner.report(metrics)
        if metrics["step"] == self.step:
            raise KeyboardInterrupt("stopped")


def test_tensorboard_keeps_one_point_per_step_across_a_resume(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = TrialConfig(**TINY)
    root = str(tmp_path)
    sink = ParquetSink.for_config(root, config)
    checkpoints = str(tmp_path / "checkpoints")
    warnings: list[str] = []
    run = TrackerRun(config, root)
    with pytest.raises(KeyboardInterrupt):
        run_trial(config, sink, StopAt(DirectoryCheckpointer(checkpoints), 300),
                  open_trackers(["tensorboard"], run, warnings.append))
    result = run_trial(config, sink, DirectoryCheckpointer(checkpoints),
                       open_trackers(["tensorboard"], run, warnings.append))
    assert result.resumed_from_step == 200 and warnings == []
    event_dir = tmp_path / "tensorboard" / config.run_key
    assert len(os.listdir(event_dir)) == 2  # the first run's file holds step 300, past its checkpoint

    accumulator = EventAccumulator(str(event_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    train = sink.read("train").to_pylist()
    evals = sink.read("evals").to_pylist()
    for column in [c for c in train[0] if c.startswith(TRAIN_TAG_PREFIXES)]:
        want = {r["step"]: float(np.float32(r[column])) for r in train
                if r[column] is not None and not math.isnan(r[column])}
        events = accumulator.Scalars(column) if want else []
        assert [e.step for e in events] == sorted(want), column  # once per step, in order
        assert {e.step: e.value for e in events} == want, column
    means = {e.step: e.value for e in accumulator.Scalars("eval/normalised_return")}
    assert means == {r["step"]: float(np.float32(r["normalised_return_mean"])) for r in evals}
    assert "perf/wall_seconds" not in accumulator.Tags()["scalars"]


class Failing:
    def __init__(self) -> None:
        self.calls = 0

    def start(self, resumed_from):
        pass

    def log(self, step, scalars):
        self.calls += 1
        raise ConnectionError("server went away")

    def checkpoint(self, step):
        pass

    def close(self, finished):
        pass


def test_a_failing_tracker_warns_once_and_the_trial_goes_on(tmp_path):
    config = TrialConfig(**TINY)
    failing, warnings = Failing(), []
    plain = ParquetSink.for_config(str(tmp_path / "plain"), config)
    run_trial(config, plain, DirectoryCheckpointer(str(tmp_path / "plain-ck")))
    tracked = ParquetSink.for_config(str(tmp_path / "tracked"), config)
    result = run_trial(config, tracked, DirectoryCheckpointer(str(tmp_path / "tracked-ck")),
                       TrackerSet([("flaky", failing)], warnings.append))
    assert result.steps == config.total_steps and failing.calls == 1
    assert warnings == ["tracker flaky failed (ConnectionError: server went away); it is off for the rest of this "
                        "run of the trial, which goes on"]
    deterministic = [c for c in plain.read("train").column_names if not c.startswith("perf/")]
    assert tracked.read("train").select(deterministic).equals(plain.read("train").select(deterministic))


def test_epoch_tags_are_the_parquet_columns_without_nulls_or_wall_clock():
    train = {"step": 200, "losses/policy_loss": 0.5, "charts/train_return_mean": math.nan,
             "plasticity/srank_actor": None, "perf/wall_seconds": 3.0, "interventions/resets_done": 1.0}
    evals = [{"task": "a", "normalised_return_mean": 0.25}, {"task": "b", "normalised_return_mean": 0.75}]
    assert epoch_scalars(train, evals) == {"losses/policy_loss": 0.5, "interventions/resets_done": 1.0,
                                           "eval/a/normalised_return": 0.25, "eval/b/normalised_return": 0.75,
                                           "eval/normalised_return": 0.5}
    assert stable_run_id("s", "k") == stable_run_id("s", "k") != stable_run_id("s2", "k")


# --- progress, throughput, time left ---------------------------------------------------------------
def test_the_progress_record_holds_step_rate_and_last_evaluation(tmp_path):
    clock = iter([100.0, 110.0, 120.0, 130.0])
    config = TrialConfig(**TINY)
    recorder = ProgressRecorder(str(tmp_path), config, clock=lambda: next(clock))
    recorder.start(200)
    recorder.log(300, {"losses/policy_loss": 0.1})
    recorder.log(400, {"eval/normalised_return": 0.5})
    record = read_record(str(tmp_path), config.run_key, ProgressRecord)
    assert record is not None
    assert (record.step, record.steps_per_second, record.eval_step, record.normalised_return) == (400, 10.0, 400, 0.5)
    assert (record.resumed_from, record.state, record.time) == (200, "running", 120.0)
    recorder.close(True)
    assert json.loads(open(progress_path(str(tmp_path), config.run_key)).read())["state"] == "finished"


def test_throughput_is_measured_over_the_last_window_and_at_least_one_epoch():
    samples = [(0.0, 0), (100.0, 1000), (400.0, 4000), (500.0, 4500)]
    assert window_rate(samples, window_s=300) == (4500 - 1000) / 400  # from the last sample before the window
    assert window_rate([(0.0, 0), (1000.0, 500)], window_s=300) == 0.5
    assert window_rate([(0.0, 0)]) is None


def test_slots_and_makespan():
    assert slots_for(1, 0, 16, 0) == 16 and slots_for(2, 0, 5, 0) == 2 and slots_for(1, 0.25, 64, 2) == 8
    assert slots_for(1, 0, 16, 0, max_concurrent=4) == 4 and slots_for(4, 0, 2, 0) == 1
    assert makespan([10, 10, 10], 2) == 20
    assert makespan([5], 2, busy=[30, 1]) == 30
    assert makespan([], 3, busy=[7]) == 7


def test_time_left_from_measured_speeds_and_the_cost_model():
    work = [TrialWork("a", "A", 1000, 400, running=True, steps_per_second=10.0, model_s_per_step=0.05),
            TrialWork("b", "A", 1000, 0, model_s_per_step=0.05),  # same cell: a's speed
            TrialWork("c", "B", 1000, 0, model_s_per_step=0.2),  # no measured cell: a's ratio to the model
            TrialWork("d", "B", 1000, 1000)]
    # slot 1: a (60 s) then c (1000 steps x 0.2 s x (0.1 / 0.05) = 400 s); slot 2: b (100 s).
    assert time_left(work, slots=2) == pytest.approx(460.0)
    assert time_left(work, slots=1) == pytest.approx(60 + 100 + 400)
    assert time_left([TrialWork("x", "A", 10, 10)], 1) == 0.0
    assert time_left([TrialWork("x", "A", 10, 0)], 1) is None  # nothing measured yet


class FakeTrial:
    def __init__(self, run_key: str, status: str, step: int | None = None) -> None:
        self.config = {"trial": {"run_key": run_key, "config": json.dumps(
            {"benchmark": "Empty-5x5-v0", "arch": "single", "treatment": "dense", "total_steps": 400})}}
        self.status = status
        self.last_result = {"step": step} if step is not None else {}
        self.run_metadata = None


def test_the_live_table_prints_a_progress_line_at_a_fixed_interval_in_logs(capsys, monkeypatch):
    work = [TrialWork("k0", "Empty-5x5-v0 / single / dense", 400, 0, model_s_per_step=0.01),
            TrialWork("k1", "Empty-5x5-v0 / single / dense", 400, 400, model_s_per_step=0.01)]
    table = ProgressTable("s", ["Empty-5x5-v0 / single / dense"], refresh_s=0, log_interval_s=30, heartbeat_s=60,
                          done_before={"Empty-5x5-v0 / single / dense": 1}, work=work)
    table.setup()
    now = [1000.0]
    monkeypatch.setattr("orchestrator.tune_progress.time.monotonic", lambda: now[0])
    monkeypatch.setattr("orchestrator.tune_progress.time.time", lambda: now[0])
    trials = [FakeTrial("k0", "RUNNING", 100)]
    table.on_trial_result(0, trials, trials[0], {"step": 0})
    now[0] += 10
    table.on_trial_result(0, trials, trials[0], {"step": 100})
    table.on_step_end(0, trials)
    now[0] += 30  # the counts are the same: no line yet
    table.on_step_end(0, trials)
    now[0] += 31  # 61 s after the first line: the heartbeat
    table.on_step_end(0, trials)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("s: 1/2 done, 1 running, 0 pending, 0 failed; steps 500/800, 10.0 steps/s, ETA 30s")
    assert lines[1].endswith("1/2 done, 1 running, 0 pending, 0 failed; steps 500/800, 10.0 steps/s, ETA 30s")


def test_dry_run_prints_the_wall_clock_for_the_local_cpus_and_a_cluster(tmp_path, capsys):
    from orchestrator import estimate
    from orchestrator.progress import format_duration
    from orchestrator.spec import expand

    spec_data = tiny_spec_data("wall", seeds=3)
    path = tmp_path / "wall.yaml"
    path.write_text(json.dumps(spec_data))
    assert cli_main(["run", str(path), "--dry-run", "--num-cpus", "2", "--cpus", "8", "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    each = estimate.trial_core_seconds(expand(validate_spec(spec_data, "s"))[0])
    assert f"wall clock on the local CPUs (2 cores, 2 trial(s) at once): about {format_duration(2 * each)}" in out
    assert f"wall clock on a cluster (8 cores, 8 trial(s) at once): about {format_duration(each)}" in out
    assert "trackers: tensorboard" in out
