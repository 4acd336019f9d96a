"""`mtrl status` from the Parquet, the spec and Tune's saved state (read as plain JSON)."""

from __future__ import annotations

import json
import pathlib

import pytest
from rich.console import Console

from analysis.cli import mtrl
from mtrl_plasticity.errors import ResultsDirError
from orchestrator.checkpoint import DirectoryCheckpointer
from orchestrator.sink import ParquetSink
from orchestrator.spec import expand, validate_spec
from orchestrator.status import read_status, render_status
from orchestrator.sweep_folder import SweepFolder, driver_lock, prepare
from orchestrator.trial import run_trial
from testkit.sweep import tiny_spec_data


def tune_state(path, statuses: dict[str, tuple[str, int]]) -> None:
    """A minimal experiment_state file of the shape Ray Tune 2.60 writes."""
    data = [[json.dumps({"custom_trial_name": key, "status": status}), json.dumps({"num_failures": failures})]
            for key, (status, failures) in statuses.items()]
    path = path / "run-20260101T000000Z"
    path.mkdir(parents=True, exist_ok=True)
    (path / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": data}))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A 4-trial sweep folder: s00 finished, s01 half-way (one checkpoint), s02/s03 not started."""
    root = tmp_path_factory.mktemp("status")
    spec = validate_spec(tiny_spec_data(seeds=4), "s.yaml")
    folder = SweepFolder.for_spec(spec, str(root))
    prepare(folder, spec)
    trials = expand(spec)
    run_trial(trials[0], ParquetSink.for_config(folder.root, trials[0]), DirectoryCheckpointer(str(root / "c0")))

    class StopAfterFirstCheckpoint(DirectoryCheckpointer):
        def save(self, state, metrics):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_trial(trials[1], ParquetSink.for_config(folder.root, trials[1]), StopAfterFirstCheckpoint(str(root / "c1")))
    return folder, trials


def test_status_combines_parquet_and_tune_state(sweep, tmp_path):
    folder, trials = sweep
    keys = [t.run_key for t in trials]
    status = read_status(folder.root)
    assert [t.state for t in status.trials] == ["done", "pending", "pending", "pending"]
    assert status.tune_state_saved is None
    assert [(t.eval_rows, t.train_rows, t.last_step) for t in status.trials] == [
        (3, 4, 400), (2, 2, 200), (0, 0, None), (0, 0, None)]

    tune_state(pathlib.Path(folder.tune_dir),
               {keys[0]: ("RUNNING", 0), keys[1]: ("RUNNING", 1), keys[2]: ("ERROR", 2)})
    with driver_lock(folder):  # a live `mtrl run`
        status = read_status(folder.root)
    # Parquet wins for a finished trial; Tune tells running and failed ones.
    assert [t.state for t in status.trials] == ["done", "running", "failed", "pending"]
    assert status.driver.startswith("pid ")
    assert [t.retries for t in status.trials] == [0, 1, 2, 0]
    console = Console(width=200, record=True)
    console.print(render_status(status))
    text = console.export_text()
    assert "1/4 trials done" in text and "Tune state saved" in text and "driven by mtrl run" in text
    row = next(line for line in text.splitlines() if line.startswith("│ Empty-5x5-v0 / single / dense"))
    assert [cell.strip() for cell in row.split("│")[2:-1]] == ["4", "1", "1", "1", "1", "3", "5/12", "6/16"]


def test_without_a_driver_nothing_is_running(sweep):
    folder, trials = sweep
    keys = [t.run_key for t in trials]
    tune_state(pathlib.Path(folder.tune_dir), {keys[0]: ("RUNNING", 0), keys[1]: ("RUNNING", 1), keys[2]: ("ERROR", 2)})
    status = read_status(folder.root)  # the Tune state still says running: the driver died
    assert [t.state for t in status.trials] == ["done", "pending", "failed", "pending"]
    assert status.driver == ""


def test_status_command(sweep, capsys):
    folder, _ = sweep
    assert mtrl(["status", folder.root]) == 0
    assert "trials done" in capsys.readouterr().out


def test_status_of_something_else_is_refused(tmp_path):
    with pytest.raises(ResultsDirError, match="not a results folder"):
        read_status(str(tmp_path))
    assert mtrl(["status", str(tmp_path / "missing")]) == 2
