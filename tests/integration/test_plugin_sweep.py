"""A researcher's own package extends the tool without a fork (issue 22), end to end on local Ray.

The example plugin (``tests/plugins/lab_plugin``) adds a treatment with its own counter, an
architecture and a benchmark with a new task. Two ways in, each through the real ``mtrl``
command in a child process:

* the sweep file's ``plugins:``, the package in the folder ``mtrl`` runs in (not installed,
  not on ``PYTHONPATH``): ``mtrl run`` ships it to Ray's workers, ``mtrl status`` and
  ``mtrl analyze`` load it again from the stored sweep.yaml;
* the package installed (``pip install --target``) with its ``mtrl.plugins`` entry point, and
  a sweep file that only uses its names.
"""

from __future__ import annotations

import os
import sys

import pandas as pd
import pytest

from testkit.plugins import (
    PACKAGE,
    PRUNE_AT_STEP,
    assert_counter_column,
    copy_package,
    install_package,
    lab_plugin_registered,
    lab_sweep,
)
from testkit.ray import REPO, assert_rows_exactly_once, run_and_log, subprocess_env, trials_of

pytestmark = pytest.mark.slow

MTRL = os.path.join(os.path.dirname(sys.executable), "mtrl")
"""The installed console script: ``sys.path[0]`` is its own folder, not the working folder, as for a user."""


def mtrl(args: list[str], cwd, env: dict, log_path, timeout: float = 400) -> tuple[int, str]:
    """``mtrl ARGS`` run in ``cwd``; (exit code, stdout and stderr together)."""
    done = run_and_log([MTRL, *args], log_path, env, timeout, cwd=cwd)
    return done.returncode, open(log_path).read()


def test_sweep_file_plugin_runs_reports_and_analyses(tmp_path):
    work = tmp_path / "work"  # the user's folder: the sweep file and the plugin package beside it
    work.mkdir()
    copy_package(work)
    sweep = lab_sweep(work / "lab.yaml", "lab")
    storage = tmp_path / "results"
    root = str(storage / "lab")
    env = subprocess_env(HOME=str(tmp_path), PYTHONPATH=REPO)

    code, log = mtrl(["run", "lab.yaml", "--storage", str(storage), "--num-cpus", "2"], work, env,
                     tmp_path / "run.log")
    assert code == 0 and "all 4 trials done" in log, log[-3000:]
    with lab_plugin_registered():
        trials = trials_of(sweep)
        assert {(t.arch, t.treatment) for t in trials} == {(a, t) for a in ("lab_wide", "mtppo")
                                                           for t in ("dense", "lab_prune80")}
        assert_rows_exactly_once(root, trials)
        assert_counter_column(root)

    code, log = mtrl(["status", root], work, env, tmp_path / "status.log")
    assert code == 0, log[-3000:]
    assert "4/4 trials done" in log
    for arch in ("lab_wide", "mtppo"):
        for treatment in ("dense", "lab_prune80"):
            assert f"LAB2 / {arch} / {treatment}" in log
    # From a folder without the package the stored sweep.yaml cannot be read: one line naming it.
    code, log = mtrl(["status", root], tmp_path, env, tmp_path / "status-elsewhere.log")
    assert code == 2 and len(log.strip().splitlines()) == 1 and f"no module named {PACKAGE!r}" in log, log

    report = tmp_path / "report"
    code, log = mtrl(["analyze", root, "--out", str(report), "--reps", "50", "--band-reps", "20", "--quiet"],
                     work, env, tmp_path / "analyze.log")
    assert code == 0, log[-3000:]
    table = pd.read_csv(report / "table1.csv")
    assert sorted(zip(table["arch"], table["treatment"], table["benchmark"], strict=True)) == [
        ("lab_wide", "dense", "LAB2"), ("lab_wide", "lab_prune80", "LAB2"),
        ("mtppo", "dense", "LAB2"), ("mtppo", "lab_prune80", "LAB2")]
    assert table["n_runs"].tolist() == [1] * 4 and table["n_tasks"].tolist() == [2] * 4
    assert table["iqm"].notna().all()
    # The registered display names label the report's rows (index.md holds Table 1 too).
    markdown, index = (report / "table1.md").read_text(), (report / "index.md").read_text()
    for arch_name in ("MTPPO", "Wide MTPPO"):
        for treatment_name in ("Dense", "Lab Random 80%"):
            assert f"| {arch_name} | {treatment_name} |" in markdown and f"| {arch_name} | {treatment_name} |" in index
    assert "Multi-Task PPO, wide trunk (lab)" in (report / "table1.tex").read_text()
    scores = pd.read_csv(report / "final_scores.csv")
    assert set(scores["task"]) == {"DoorKey-5x5-v0", "Empty-5x5-v0"}
    assert "table1.md" in index


def test_installed_entry_point_plugin_runs_without_plugins_key(tmp_path):
    site = install_package(tmp_path / "site")
    work = tmp_path / "work"  # nothing of the plugin here: only the entry point brings it
    work.mkdir()
    sweep = lab_sweep(work / "ep.yaml", "ep", plugins=False, archs=("lab_wide",), treatments=("lab_prune80",))
    storage = tmp_path / "results"
    root = str(storage / "ep")
    env = subprocess_env(HOME=str(tmp_path), PYTHONPATH=os.pathsep.join([REPO, site]))

    code, log = mtrl(["run", "ep.yaml", "--storage", str(storage), "--num-cpus", "1"], work, env,
                     tmp_path / "run.log")
    assert code == 0 and "all 1 trials done" in log, log[-3000:]
    with lab_plugin_registered():
        assert_rows_exactly_once(root, trials_of(sweep))
        assert_counter_column(root)
    code, log = mtrl(["status", root], tmp_path, env, tmp_path / "status.log")
    assert code == 0 and "1/1 trials done" in log and "LAB2 / lab_wide / lab_prune80" in log, log[-3000:]

    # One trial without Ray: the same names, the same counts.
    trial = tmp_path / "trial"
    code, log = mtrl(["trial", "--benchmark", "LAB2", "--arch", "lab_wide", "--treatment", "lab_prune80",
                      "--treatment-param", f"at_step={PRUNE_AT_STEP}", "--results", str(trial), "--total-steps", "400",
                      "--steps-per-epoch", "100", "--eval-interval", "200", "--eval-episodes", "1",
                      "--checkpoint-interval", "200", "--quiet", "--set", "measure_plasticity=false"],
                     work, env, tmp_path / "trial.log")
    assert code == 0, log[-3000:]
    assert_counter_column(str(trial))

    # Without the installed package the names are unknown again: one line, before anything starts.
    code, log = mtrl(["run", "ep.yaml", "--storage", str(tmp_path / "other")], work,
                     subprocess_env(HOME=str(tmp_path), PYTHONPATH=REPO), tmp_path / "run-without.log")
    assert code == 2 and len(log.strip().splitlines()) == 1 and "LAB2" in log, log
    assert not (tmp_path / "other").exists()

