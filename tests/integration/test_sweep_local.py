"""`mtrl run` on one local Ray instance (shared by the tests of this module).

The smoke sweep end to end, a rerun that changes nothing, and a trial that crashes once
(injected fault) and is retried from its checkpoint with every row exactly once.
"""

from __future__ import annotations

import glob
import json
import logging
import os

import pytest
from PIL import Image

from analysis.cli import mtrl
from analysis.figures import figure_pixels
from orchestrator.checkpoint import DirectoryCheckpointer
from orchestrator.sink import ParquetSink
from orchestrator.status import read_status
from orchestrator.trial import run_trial
from testkit.faults import environment as fault_environment
from testkit.ray import SWEEPS, assert_rows_exactly_once, parquet_files, read_dataset, tiny_sweep, trials_of

pytestmark = pytest.mark.slow


VICTIM = "Empty-5x5-v0-single-dense-s00"
"""The trial of the `fault` sweep that crashes once at step 400 (the fault injection of testkit.faults)."""


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    import ray

    # The fault injection's environment before Ray starts: its workers inherit it (the trial hook
    # wraps every trial of this module; only the victim of the `fault` sweep is ever hit).
    with pytest.MonkeyPatch.context() as env:
        for name, value in fault_environment(f"{VICTIM}@400").items():
            if os.environ.get(name) != value:
                env.setenv(name, value)
        # log_to_driver=False as `mtrl run` starts its own Ray (ray_connect.ray_connected): workers' output
        # stays off the console, where a dying worker's interpreter-shutdown noise could land.
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)
        yield
        ray.shutdown()


def test_smoke_sweep_writes_exactly_the_expected_rows(tmp_path, capfd):
    storage = tmp_path / "results"
    smoke = os.path.join(SWEEPS, "smoke.yaml")
    assert mtrl(["run", smoke, "--storage", str(storage)]) == 0
    out = capfd.readouterr().out
    assert "all 4 trials done" in out
    root = str(storage / "smoke")
    trials = trials_of(smoke)
    assert_rows_exactly_once(root, trials)  # 4 trials x 3 evaluation points x 3 tasks; 4 x 4 epochs
    assert len(read_dataset(root, "evals")) == 36 and len(read_dataset(root, "train")) == 16
    status = read_status(root)
    assert [t.state for t in status.trials] == ["done"] * 4
    # Tune's per-trial reports are kept (result.json, progress.csv); its TensorBoard files are not.
    tune_files = {p.name for p in (storage / "smoke" / "tune").glob("run-*/*/*") if p.is_file()}
    assert {"result.json", "progress.csv"} <= tune_files
    assert not [name for name in tune_files if name.startswith("events.out.tfevents")]

    # The same command again: nothing to do, no file touched.
    before = parquet_files(root)
    assert mtrl(["run", smoke, "--storage", str(storage)]) == 0
    assert "all 4 trials done" in capfd.readouterr().out
    assert parquet_files(root) == before

    # Tune's own state is never read back: a rerun with it damaged or gone changes nothing.
    tune_dir = storage / "smoke" / "tune"
    for state in tune_dir.glob("run-*/*"):
        if state.is_file():
            state.write_bytes(state.read_bytes()[:10])
    assert mtrl(["run", smoke, "--storage", str(storage)]) == 0
    assert "all 4 trials done" in capfd.readouterr().out
    assert parquet_files(root) == before

    # The analysis stage on this real sweep: every table and figure, one row per cell.
    report = tmp_path / "report"
    assert mtrl(["analyze", root, "--out", str(report), "--reps", "200", "--quiet"]) == 0
    for name in ("table1.md", "table1.csv", "table1.tex", "index.md", "learning_curves_sparsity.png",
                 "plasticity_MT3_sparsity.png", "profiles_MT3.png"):
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name
    with Image.open(report / "learning_curves_sparsity.png") as image:
        assert image.size == figure_pixels("curves", 2, 1)  # a row per architecture, a column per benchmark
    table_rows = [line for line in (report / "table1.md").read_text().splitlines()
                  if line.startswith("|") and "Dense" in line]
    assert len(table_rows) == 2  # MTPPO/Dense and MoE/Dense
    index = (report / "index.md").read_text()
    assert "table1.md" in index and "learning_curves_sparsity.png" in index


def test_crashed_trial_is_retried_from_its_checkpoint(tmp_path, capfd):
    """Also the URI route: storage given as file:// goes through pyarrow.fs like s3:// would."""
    sweep = tiny_sweep(tmp_path / "fault.yaml", "fault", seeds=2, total_steps=600)
    trials = trials_of(sweep)
    victim = trials[0]
    # Crash at step 400 (the module's Ray carries the fault): right after the segment (200, 400]
    # is written, before its checkpoint.
    assert victim.run_key == VICTIM
    storage = tmp_path / "results"
    assert mtrl(["run", sweep, "--storage", f"file://{storage}"]) == 0
    root = str(storage / "fault")
    assert os.path.exists(os.path.join(root, ".injected-faults", f"{victim.run_key}@400"))
    assert_rows_exactly_once(root, trials)

    retries = {t.config.run_key: t.retries for t in read_status(root).trials}
    assert retries == {victim.run_key: 1, trials[1].run_key: 0}
    # The retry continued from the checkpoint at step 200 in the sweep folder: its reports are
    # 300, 400, 500, 600 and the final one, after the crashed attempt's 100 and 200 (actor
    # reuse may keep or drop reports in flight when it died, so only the tail is checked).
    [result_file] = glob.glob(os.path.join(root, "tune", "run-*", victim.run_key, "result.json"))
    steps = [json.loads(line)["step"] for line in open(result_file)]
    assert steps[-5:] == [300, 400, 500, 600, 600] and 200 in steps[:-5]
    # One console line for the failed attempt; the full traceback in the sweep folder.
    log = open(os.path.join(root, "logs", f"{victim.run_key}.log")).read()
    assert "InjectedFault" in log and "Traceback" in log
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "attempt 1 of 3 failed" in line]
    assert len(lines) == 1 and victim.run_key in lines[0] and "injected fault" in lines[0]
    assert "Traceback" not in err
    assert read_status(root).trials[0].last_error.startswith("testkit.faults.InjectedFault") or \
        "injected fault" in read_status(root).trials[0].last_error

    # Same rows as the trial run straight through without Ray.
    reference = tmp_path / "reference"
    run_trial(victim, ParquetSink.for_config(str(reference), victim), DirectoryCheckpointer(str(tmp_path / "ck")))
    for dataset in ("evals", "train"):
        mine = read_dataset(root, dataset)
        mine = mine[mine["run_key"] == victim.run_key].reset_index(drop=True)
        expected = read_dataset(str(reference), dataset)
        assert mine.drop(columns=["sweep"]).equals(expected.drop(columns=["sweep"]))
