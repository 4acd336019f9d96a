"""The Ray-independent parts of the Tune glue: device choice, metrics, fault injection, launcher."""

from __future__ import annotations

import importlib.util
import os
import pickle
from types import SimpleNamespace

import pytest

from mtrl_plasticity.errors import UserError
from mtrl_plasticity.results import Cell
from orchestrator.checkpoint import DirectoryCheckpointer
from orchestrator.sink import ParquetSink
from orchestrator.spec import expand, validate_spec
from orchestrator.sweep_progress import render_table, summary_line, tally
from orchestrator.trial import run_trial
from orchestrator.trial_hook import TRIAL_HOOK_VARIABLE, run_with_hook, trial_hook_from_environment
from orchestrator.tune_glue import (
    TRAINABLE_NAME,
    make_trainable,
    param_space,
    scalar_metrics,
    select_device,
    trial_name,
)
from orchestrator.tune_progress import ProgressTable
from testkit import faults
from testkit.sweep import REPO, tiny_spec_data


def test_a_trial_without_a_gpu_hides_the_gpus_of_its_node():
    environ = {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert select_device("auto", [], environ) == "cpu"
    assert environ["CUDA_VISIBLE_DEVICES"] == ""


@pytest.mark.parametrize("gpu_ids", [[0], ["1"], [0, 1]])
def test_a_trial_given_a_gpu_uses_it(gpu_ids):
    environ = {"CUDA_VISIBLE_DEVICES": "1"}  # as Ray sets it for the trial
    assert select_device("auto", gpu_ids, environ) == "cuda"
    assert select_device("cuda", gpu_ids, environ) == "cuda"
    assert select_device("cpu", gpu_ids, environ) == "cpu"
    assert environ == {"CUDA_VISIBLE_DEVICES": "1"}


def test_cuda_without_an_assigned_gpu_fails_clearly():
    with pytest.raises(RuntimeError, match="assigned it no GPU"):
        select_device("cuda", [], {})


def test_only_scalars_go_to_tune():
    metrics = {"step": 5, "loss": 0.5, "run_key": "k", "done": True, "array": [1, 2], "none": None}
    assert scalar_metrics(metrics) == {"step": 5, "loss": 0.5, "run_key": "k", "done": True}


def test_trials_are_named_by_run_key():
    trials = expand(validate_spec(tiny_spec_data(), "s.yaml"))
    space = param_space(trials)
    values = space["trial"]["grid_search"]
    assert [v["run_key"] for v in values] == ["Empty-5x5-v0-single-dense-s00", "Empty-5x5-v0-single-dense-s01"]
    assert trial_name(SimpleNamespace(config={"trial": values[1]})) == "Empty-5x5-v0-single-dense-s01"
    assert make_trainable("/tmp/x").__name__ == TRAINABLE_NAME


def test_fault_spec_parsing():
    assert faults.parse_faults("a-s00@200, b@400") == {"a-s00": 200, "b": 400}
    assert faults.parse_faults(None) == {}
    with pytest.raises(ValueError, match="run_key@step"):
        faults.parse_faults("a-s00:200")


class Recorder:
    def __init__(self):
        self.calls = []

    def load(self, accept=None):
        return None

    def save(self, state, metrics):
        self.calls.append(("save", metrics["step"]))

    def report(self, metrics):
        self.calls.append(("report", metrics["step"]))


def test_injected_fault_fires_once_per_sweep_folder(tmp_path, monkeypatch):
    config = expand(validate_spec(tiny_spec_data(seeds=1), "s.yaml"))[0]
    sink = ParquetSink.for_config(str(tmp_path), config)
    monkeypatch.setenv(faults.ENV_VAR, f"{config.run_key}@200")
    hook = trial_hook_from_environment({TRIAL_HOOK_VARIABLE: faults.HOOK})

    def train(checkpointer, sink):
        checkpointer.report({"step": 100})
        checkpointer.save({}, {"step": 200})

    inner = Recorder()
    with pytest.raises(faults.InjectedFault, match="at step 200"):
        run_with_hook(hook, config, str(tmp_path), inner, sink, train)
    assert inner.calls == [("report", 100)]  # the checkpoint was not taken
    again = Recorder()
    run_with_hook(hook, config, str(tmp_path), again, sink, train)  # the retry, in a new process
    assert again.calls == [("report", 100), ("save", 200)]
    other = Recorder()
    monkeypatch.setenv(faults.ENV_VAR, "another-run@200")
    run_with_hook(hook, config, str(tmp_path / "other"), other, sink, train)
    assert other.calls == [("report", 100), ("save", 200)]


@pytest.mark.parametrize("reference,message", [
    ("testkit.faults", "must name a function as module:function"),
    ("testkit.nowhere:inject", "does not import: ModuleNotFoundError"),
    ("testkit.faults:ENV_VAR", "is not a function"),
])
def test_a_trial_hook_that_cannot_run_is_refused_in_one_line(reference, message):
    with pytest.raises(UserError, match=message):
        trial_hook_from_environment({TRIAL_HOOK_VARIABLE: reference})
    assert trial_hook_from_environment({}) is None


def test_complete_parquet_is_recognised(tmp_path):
    config = expand(validate_spec(tiny_spec_data(seeds=1), "s.yaml"))[0]
    sink = ParquetSink.for_config(str(tmp_path), config)
    assert not sink.is_compacted()
    run_trial(config, sink, DirectoryCheckpointer(str(tmp_path / "ckpt")))
    assert sink.is_compacted()
    sink.write_segment([], [{"run_key": config.run_key, "step": 400}], 200, 400)  # a stray segment
    assert not sink.is_compacted()


class FakeTrial:
    def __init__(self, benchmark, arch, status, failures=0):
        self.config = {"trial": {"config": f'{{"benchmark": "{benchmark}", "arch": "{arch}", "treatment": "dense"}}'}}
        self.status = status
        self.run_metadata = SimpleNamespace(num_failures=failures)


def test_progress_table_counts_per_cell():
    trials = [FakeTrial("MT3", "moe", "TERMINATED"), FakeTrial("MT3", "moe", "RUNNING", 1),
              FakeTrial("MT3", "mtppo", "ERROR", 2), FakeTrial("MT3", "mtppo", "PENDING"),
              FakeTrial("MT3", "mtppo", "PAUSED")]
    cells = tally(trials, ["MT3 / mtppo / dense", "MT3 / moe / dense", "MT5 / moe / dense"])
    assert list(cells) == ["MT3 / mtppo / dense", "MT3 / moe / dense"]
    assert dict(cells["MT3 / mtppo / dense"].counts) == {"failed": 1, "pending": 2}
    assert cells["MT3 / moe / dense"].retries == 1
    assert summary_line(cells) == "1/5 done, 1 running, 2 pending, 1 failed"
    assert render_table(cells, "t").row_count == 3


def test_the_live_table_names_cells_by_label_and_axis_values_as_status_does():
    data = tiny_spec_data(seeds=1)
    data["treatments"] = ["dense", {"redo": {"tau": 0.001}}, {"redo": {"tau": 0.1}, "label": "redo-high"}]
    data["axes"] = {"actor_lr": [3e-4, 1e-3]}
    configs = expand(validate_spec(data, "s.yaml"))
    trials = [SimpleNamespace(config={"trial": {"config": c.to_json()}}, status="RUNNING",
                              run_metadata=SimpleNamespace(num_failures=0)) for c in configs]
    cells = tally(trials)
    assert list(cells) == [Cell.of(c).label() for c in configs]
    assert "Empty-5x5-v0 / single / redo.tau-0.001 / actor_lr=0.001" in cells
    assert len(cells) == 6 and all(counts.counts["running"] == 1 for counts in cells.values())


def test_progress_table_survives_tune_pickling_it():
    table = ProgressTable("s", ["a"], log_interval_s=5)
    table._last_line = "something"
    copy = pickle.loads(pickle.dumps(table))
    assert (copy.sweep_name, copy.cell_order, copy.log_interval_s, copy._last_line) == ("s", ["a"], 5, "")


def load_launcher():
    spec = importlib.util.spec_from_file_location("launch_sweep", os.path.join(REPO, "docker", "launch_sweep.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launcher_joins_the_cluster_and_finds_sweeps_in_the_image(tmp_path):
    launcher = load_launcher()
    home = tmp_path / "home"
    (home / "sweeps").mkdir(parents=True)
    (home / "sweeps" / "only-in-image.yaml").write_text("name: x\n")
    env = {"MTRL_HOME": str(home)}
    assert launcher.launcher_argv(["sweeps/only-in-image.yaml", "--storage", "s3://b/r"], env) == [
        "run", str(home / "sweeps" / "only-in-image.yaml"), "--storage", "s3://b/r", "--address", "auto"]
    assert launcher.launcher_argv(["/abs/p.yaml", "--address", "h:6379"], env)[-2:] == ["--address", "h:6379"]
    assert "--address" not in launcher.launcher_argv(["/abs/p.yaml"], {"RAY_ADDRESS": "h:6379"})
    with pytest.raises(SystemExit, match="usage"):
        launcher.launcher_argv(["--dry-run"], env)
