"""`mtrl run` on one local Ray instance (shared by the tests of this module).

The smoke sweep end to end, a rerun that changes nothing, and a trial that crashes once
(injected fault) and is retried from its checkpoint with every row exactly once.
"""

from __future__ import annotations

import json
import logging
import os

import pytest
from PIL import Image
from _ray_testlib import (SWEEPS, assert_rows_exactly_once, parquet_files, read_dataset, tiny_sweep,
                          trials_of)

from analysis.figures import figure_pixels
from orchestrator.checkpoint import DirectoryCheckpointer
from orchestrator.cli import main as mtrl
from orchestrator.faults import ENV_VAR
from orchestrator.sink import ParquetSink
from orchestrator.status import read_status
from orchestrator.trial import run_trial

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def test_smoke_sweep_writes_exactly_the_expected_rows(tmp_path, capfd, caplog):
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
    tune_files = {p.name for p in (storage / "smoke" / "tune").glob("*/*") if p.is_file()}
    assert {"result.json", "progress.csv"} <= tune_files
    assert not [name for name in tune_files if name.startswith("events.out.tfevents")]

    # The same command again: nothing to do, no file touched.
    before = parquet_files(root)
    assert mtrl(["run", smoke, "--storage", str(storage)]) == 0
    assert "all 4 trials done" in capfd.readouterr().out
    assert parquet_files(root) == before

    # A driver killed while Tune rewrote tuner.pkl leaves it empty: the next run puts back the
    # copy verified at the start of the previous one and resumes as if nothing happened.
    (storage / "smoke" / "tune" / "tuner.pkl").write_bytes(b"")
    assert mtrl(["run", smoke, "--storage", str(storage)]) == 0
    assert "all 4 trials done" in capfd.readouterr().out
    assert parquet_files(root) == before

    # Older versions let a driver killed while Tune uploaded its state leave any state file
    # cut short (in CI: the newest grid state and an older experiment state): still resumed.
    tune_dir = storage / "smoke" / "tune"
    experiment_states = sorted(tune_dir.glob("experiment_state-*.json"))  # one per second a run began
    assert len(experiment_states) >= 2
    for damaged in (experiment_states[0], max(tune_dir.glob("basic-variant-state-*.json"))):
        damaged.write_bytes(damaged.read_bytes()[:100])
    trial_files = _trial_folder_files(tune_dir)
    tune_log = logging.getLogger("ray.tune")  # Ray's handlers write to the stderr of before the test
    tune_log.addHandler(caplog.handler)
    try:
        assert mtrl(["run", smoke, "--storage", str(storage)]) == 0
    finally:
        tune_log.removeHandler(caplog.handler)
    assert "all 4 trials done" in capfd.readouterr().out
    # Resumed, not restarted: Tune's own restore fails on the damaged grid state, logs it and
    # begins a new experiment that runs every trial again.
    assert "basic-variant-state" in caplog.text  # the damaged file was passed over
    assert "Failed to restore the run state" not in caplog.text
    assert parquet_files(root) == before
    assert _trial_folder_files(tune_dir) == trial_files

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


def _trial_folder_files(tune_dir) -> dict[str, bytes]:
    """``{path: content}`` of every file in Tune's trial folders (Tune re-uploads them on resume)."""
    return {str(p): p.read_bytes() for p in tune_dir.glob("*/**/*") if p.is_file()}


def test_crashed_trial_is_retried_from_its_checkpoint(tmp_path, monkeypatch):
    """Also the URI route: storage given as file:// goes through pyarrow.fs like s3:// would."""
    sweep = tiny_sweep(tmp_path / "fault.yaml", "fault", seeds=2, total_steps=600)
    trials = trials_of(sweep)
    victim = trials[0]
    # Crash at step 400: right after the segment (200, 400] is written, before its checkpoint.
    monkeypatch.setenv(ENV_VAR, f"{victim.run_key}@400")
    storage = tmp_path / "results"
    assert mtrl(["run", sweep, "--storage", f"file://{storage}"]) == 0
    root = str(storage / "fault")
    assert os.path.exists(os.path.join(root, ".injected-faults", f"{victim.run_key}@400"))
    assert_rows_exactly_once(root, trials)

    retries = {t.config.run_key: t.retries for t in read_status(root).trials}
    assert retries == {victim.run_key: 1, trials[1].run_key: 0}
    # Tune restored the retry from the checkpoint at step 200: the final attempt reported 300,
    # 400, 500, 600 and nothing before. Which of the crashed attempt's reports result.json still
    # holds varies (actor reuse, reports in flight when it died), so only the last attempt's
    # reports are checked, by Tune's own count of iterations since the restore.
    reports = [json.loads(line) for line in open(os.path.join(root, "tune", victim.run_key, "result.json"))]
    assert reports[-1]["iterations_since_restore"] == 4
    assert [r["step"] for r in reports[-4:]] == [300, 400, 500, 600]

    # Same rows as the trial run straight through without Ray.
    reference = tmp_path / "reference"
    run_trial(victim, ParquetSink.for_config(str(reference), victim), DirectoryCheckpointer(str(tmp_path / "ck")))
    for dataset in ("evals", "train"):
        mine = read_dataset(root, dataset)
        mine = mine[mine["run_key"] == victim.run_key].reset_index(drop=True)
        expected = read_dataset(str(reference), dataset)
        assert mine.drop(columns=["sweep"]).equals(expected.drop(columns=["sweep"]))
