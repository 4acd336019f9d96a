"""`mtrl trial` and its checkpoints: a damaged newest checkpoint falls back to the previous one
(set aside, one line), and a second `mtrl trial --resume` on the same trial is refused."""

from __future__ import annotations

import os
import shutil

import pandas as pd

from analysis.cli import mtrl
from orchestrator.checkpoint import DirectoryCheckpointer
from orchestrator.sink import ParquetSink
from orchestrator.storage import SET_ASIDE_DIR

RUN_KEY = "Empty-5x5-v0-single-dense-s00"
ARGS = ["trial", "--benchmark", "Empty-5x5-v0", "--arch", "single", "--total-steps", "600", "--steps-per-epoch",
        "100", "--eval-interval", "200", "--eval-episodes", "2", "--checkpoint-interval", "200",
        "--set", "measure_plasticity=false", "--quiet"]


def rows(results: str) -> dict[str, pd.DataFrame]:
    out = {}
    for dataset in ("evals", "train"):
        sink = ParquetSink(results, "adhoc", RUN_KEY, "Empty-5x5-v0", "single", "dense")
        frame = sink.read(dataset).to_pandas()
        out[dataset] = frame[[c for c in frame.columns if not c.startswith("perf/")]]
    return out


def test_a_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    results = str(tmp_path / "r")
    assert mtrl([*ARGS, "--results", results]) == 0
    expected = rows(results)
    checkpoints = os.path.join(results, "trials", RUN_KEY, "checkpoints")
    assert sorted(os.listdir(checkpoints)) == [".lock", "step-000000400.pt", "step-000000600.pt"]
    with open(os.path.join(checkpoints, "step-000000600.pt"), "r+b") as f:
        f.truncate(300)
    capsys.readouterr()
    assert mtrl([*ARGS, "--results", results, "--resume"]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "is damaged" in line]
    assert len(warnings) == 1 and "step-000000600.pt" in warnings[0] and "previous one" in warnings[0]
    assert "resumed from step 400" in captured.out and "Traceback" not in captured.err
    aside = os.listdir(os.path.join(results, "trials", RUN_KEY, SET_ASIDE_DIR, "checkpoints"))
    assert len(aside) == 1 and aside[0].startswith("step-000000600.pt.")
    after = rows(results)
    for dataset in expected:
        pd.testing.assert_frame_equal(after[dataset], expected[dataset])


def test_two_resumes_of_one_trial_are_refused(tmp_path, capsys):
    results = str(tmp_path / "r")
    assert mtrl([*ARGS, "--total-steps", "200", "--checkpoint-interval", "200", "--results", results]) == 0
    checkpoints = os.path.join(results, "trials", RUN_KEY, "checkpoints")
    capsys.readouterr()
    with DirectoryCheckpointer(checkpoints).exclusive("the other"):
        code = mtrl([*ARGS, "--total-steps", "200", "--checkpoint-interval", "200", "--results", results, "--resume"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "is being run by another process" in err and RUN_KEY in err


def test_a_checkpoint_of_another_trial_is_set_aside(tmp_path, capsys):
    """A checkpoint copied in from another trial (zip CRCs intact) is damage like any other: set aside
    with one line, and the trial continues from its own previous checkpoint to the rows of a clean run."""
    other, results = str(tmp_path / "other"), str(tmp_path / "r")
    assert mtrl([*ARGS, "--seed", "1", "--results", other]) == 0
    assert mtrl([*ARGS, "--results", results]) == 0
    expected = rows(results)
    checkpoints = os.path.join(results, "trials", RUN_KEY, "checkpoints")
    foreign = os.path.join(other, "trials", RUN_KEY.replace("-s00", "-s01"), "checkpoints", "step-000000600.pt")
    # The trial stopped before its last checkpoint; the other trial's step 600 copied in its place.
    os.remove(os.path.join(checkpoints, "step-000000600.pt"))
    shutil.copy(foreign, checkpoints)
    capsys.readouterr()
    assert mtrl([*ARGS, "--results", results, "--resume"]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "moved to" in line]
    assert len(warnings) == 1, captured.err
    assert "step-000000600.pt" in warnings[0] and f"belongs to trial {RUN_KEY.replace('-s00', '-s01')}" in warnings[0]
    assert "previous one" in warnings[0]
    assert "resumed from step 400" in captured.out and "Traceback" not in captured.err
    aside = os.listdir(os.path.join(results, "trials", RUN_KEY, SET_ASIDE_DIR, "checkpoints"))
    assert len(aside) == 1 and aside[0].startswith("step-000000600.pt.")
    after = rows(results)
    for dataset in expected:
        pd.testing.assert_frame_equal(after[dataset], expected[dataset])


def test_a_foreign_only_checkpoint_means_starting_over(tmp_path, capsys):
    """With no checkpoint of its own left, the trial starts over (one line) and ends with a clean run's rows."""
    other, results = str(tmp_path / "other"), str(tmp_path / "r")
    short = [*ARGS, "--total-steps", "400"]
    assert mtrl([*short, "--set", "gamma=0.9", "--results", other]) == 0  # the same run_key, another config
    assert mtrl([*short, "--results", results]) == 0
    expected = rows(results)
    checkpoints = os.path.join(results, "trials", RUN_KEY, "checkpoints")
    for name in os.listdir(checkpoints):
        if name.endswith(".pt"):
            os.remove(os.path.join(checkpoints, name))
    shutil.copy(os.path.join(other, "trials", RUN_KEY, "checkpoints", "step-000000400.pt"), checkpoints)
    capsys.readouterr()
    assert mtrl([*short, "--results", results, "--resume"]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "moved to" in line]
    assert len(warnings) == 1 and "a different configuration" in warnings[0] and "starting over" in warnings[0]
    assert "resumed" not in captured.out
    after = rows(results)
    for dataset in expected:
        pd.testing.assert_frame_equal(after[dataset], expected[dataset])
