"""End to end: ``analyze`` on a synthetic results folder writes every table and figure."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from analysis import AnalysisError, Cell
from analysis.cli import main, register
from analysis.figures import figure_pixels
from analysis.paper import PAPER_TABLE_1, follows_draft_protocol
from analysis.pipeline import compute
from analysis.report import write_outputs
from testkit.synthetic import write_synthetic_sweep

REPO = Path(__file__).resolve().parents[2]
ARCHS, TREATMENTS, BENCHMARKS = ("mtppo", "moe"), ("dense", "gmp80", "gmp95", "redo"), ("MT3", "MT5")

EXPECTED_TABLES = ["table1.md", "table1.csv", "table1.tex", "poi.md", "poi.csv", "single_task.md",
                   "single_task.csv", "final_scores.csv", "index.md"]
# file -> (figure kind, rows, columns) of its panel grid
EXPECTED_FIGURES = {
    "learning_curves_sparsity.png": ("curves", 2, 2),
    "learning_curves_interventions.png": ("curves", 2, 2),
    "plasticity_MT3_sparsity.png": ("plasticity", 2, 5),
    "plasticity_MT3_interventions.png": ("plasticity", 2, 5),
    "plasticity_MT5_sparsity.png": ("plasticity", 2, 5),
    "plasticity_MT5_interventions.png": ("plasticity", 2, 5),
    "profiles_MT3.png": ("profiles", 1, 2),
    "profiles_MT5.png": ("profiles", 1, 2),
    "poi.png": ("poi", len(ARCHS) * (len(TREATMENTS) - 1), 2),
    "learning_curves_single_task.png": ("curves", 2, 4),  # the 5 tasks of MT5, 4 panels a row
}


def _table_rows(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def test_every_table_and_figure_is_written(e2e_output):
    _result, out = e2e_output
    for name in EXPECTED_TABLES + list(EXPECTED_FIGURES):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name


@pytest.mark.parametrize("name", sorted(EXPECTED_FIGURES))
def test_pngs_are_non_empty_images_of_the_expected_size(e2e_output, name):
    _result, out = e2e_output
    kind, rows, cols = EXPECTED_FIGURES[name]
    with Image.open(out / name) as image:
        assert image.format == "PNG"
        assert image.size == figure_pixels(kind, rows, cols)
        pixels = np.asarray(image.convert("RGB")).astype(np.uint32)
    colours = np.unique((pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2])
    assert len(colours) > 20  # drawn, not a blank canvas
    assert (pixels.min(axis=2) < 128).mean() > 0.005  # and with visible dark ink (text, lines)


def test_markdown_table_has_one_row_per_architecture_and_treatment(e2e_output):
    _result, out = e2e_output
    rows = _table_rows((out / "table1.md").read_text())
    assert len(rows) == len(ARCHS) * len(TREATMENTS)
    assert {(r[0], r[1]) for r in rows} == {(a, t) for a in ("MTPPO", "MoE")
                                            for t in ("Dense", "80% Sparsity", "95% Sparsity", "ReDo")}
    for row in rows:
        assert re.fullmatch(r"(\*\*)?\d\.\d\d(\*\*)?( ↑)?", row[2]), row
        assert re.match(r"\(\d\.\d\d, \d\.\d\d\)", row[3]), row
    csv = pd.read_csv(out / "table1.csv")
    assert len(csv) == len(ARCHS) * len(TREATMENTS) * len(BENCHMARKS)
    assert "paper_iqm" not in csv.columns  # a 10k-step sweep is not the paper's protocol
    # marks: exactly the best (two decimals) per architecture and benchmark, improvements over dense
    for _, group in csv.groupby(["arch", "benchmark"]):
        shown = group["iqm"].round(2)
        assert list(group["best"]) == list(shown == shown.max())
        dense = shown[group["treatment"] == "dense"].iloc[0]
        assert list(group["improves_on_dense"]) == list((shown > dense) & (group["treatment"] != "dense"))
    tex = (out / "table1.tex").read_text()
    assert r"\begin{tabular}" in tex and r"80\% Sparsity" in tex and r"\best{" in tex


def test_missing_seeds_and_unfinished_runs_are_listed_in_the_report(e2e_output):
    _result, out = e2e_output
    index = (out / "index.md").read_text()
    assert "missing seeds in MT3/moe/gmp95: 2" in index
    assert "unfinished run MT5-mtppo-redo-s01: last evaluation at step 6,000 of 10,000" in index
    moe_gmp95 = [r for r in _table_rows((out / "table1.md").read_text()) if r[:2] == ["MoE", "95% Sparsity"]][0]
    assert moe_gmp95[3].endswith("[n=3]")  # MT3: only 3 of the 4 seeds
    for link in re.findall(r"\]\(([^)]+)\)", index):
        assert (out / link).is_file(), link


def test_final_scores_and_estimates_are_consistent(e2e_output):
    result, out = e2e_output
    scores = pd.read_csv(out / "final_scores.csv")
    assert "MT5-mtppo-redo-s01" not in set(scores["run_key"])  # unfinished: left out by default
    assert set(scores.loc[scores["arch"] != "single", "step"]) == {10_000}
    cell = Cell("MT3", "moe", "dense")
    assert result.finals[cell].scores.shape == (4, 3)
    est = result.table1_estimates[cell]
    assert est.low <= est.point <= est.high
    assert set(result.single_task) == {"MT3", "MT5"}


def test_an_unfinished_run_is_counted_out_of_table1_or_included_and_marked(e2e_results, e2e_output, tmp_path):
    """MT5-mtppo-redo-s01 stopped at step 6,000 of 10,000: by default its cell reads [n=3] and the
    report names it; --include-unfinished scores it at 6,000 and the cell says so."""
    _result, out = e2e_output
    row = [r for r in _table_rows((out / "table1.md").read_text()) if r[:2] == ["MTPPO", "ReDo"]][0]
    assert row[5].endswith("[n=3]")  # MT5's CI column
    assert "at step 10,000; runs that stopped earlier are left out" in (out / "table1.md").read_text()
    index = (out / "index.md").read_text()
    assert "run MT5-mtppo-redo-s01 left out of the final scores of MT5/mtppo/redo: unfinished" in index

    included = compute(e2e_results, reps=20, band_reps=10, seed=0, jobs=1, include_unfinished=True)
    write_outputs(included, tmp_path, figures=False)
    row = [r for r in _table_rows((tmp_path / "table1.md").read_text()) if r[:2] == ["MTPPO", "ReDo"]][0]
    assert row[5].endswith("[1 unfinished]")
    csv = pd.read_csv(tmp_path / "table1.csv")
    assert csv.loc[(csv["arch"] == "mtppo") & (csv["treatment"] == "redo"), "n_unfinished"].tolist() == [0, 1]
    scores = pd.read_csv(tmp_path / "final_scores.csv")
    assert set(scores.loc[scores["run_key"] == "MT5-mtppo-redo-s01", "step"]) == {6000}


def test_same_input_and_seed_give_identical_tables(e2e_results, e2e_output, tmp_path):
    _result, first = e2e_output
    again = compute(e2e_results, reps=200, band_reps=50, seed=0, jobs=1)
    write_outputs(again, tmp_path, figures=False)
    for name in ("table1.md", "table1.csv", "table1.tex", "poi.csv", "poi.md", "single_task.csv", "final_scores.csv"):
        assert (tmp_path / name).read_bytes() == (first / name).read_bytes(), name
    other_seed = compute(e2e_results, reps=200, band_reps=50, seed=1, jobs=1)
    assert not other_seed.table1["ci_low"].equals(again.table1["ci_low"])


def test_at_step_selects_that_evaluation(e2e_results, tmp_path):
    result = compute(e2e_results, reps=50, band_reps=20, at_step=4000, jobs=1)
    assert all(set(m.steps) <= {4000} for m in result.finals.values())
    write_outputs(result, tmp_path, figures=False)
    assert "at step 4,000" in (tmp_path / "table1.md").read_text()
    with pytest.raises(AnalysisError, match="step 3,000"):
        compute(e2e_results, reps=10, band_reps=10, at_step=3000, jobs=1)


def test_paper_numbers_appear_for_a_draft_protocol_sweep(tmp_path):
    root = tmp_path / "results"
    write_synthetic_sweep(root, benchmarks=("MT3",), archs=("mtppo",), treatments=("dense", "gmp95"), seeds=range(2),
                          total_steps=6000, single_task=False, write_train=False,
                          sweep_yaml={"name": "paper", "protocol": "draft"})
    result = compute(root, reps=20, band_reps=10, jobs=1)
    assert result.paper_compare and "draft" in result.paper_reason
    write_outputs(result, tmp_path / "out", figures=False)
    rows = _table_rows((tmp_path / "out" / "table1.md").read_text())
    assert rows[0][:2] == ["MTPPO", "Dense"] and rows[0][4] == "0.57 (0.50, 0.65)"
    assert rows[1][4] == "0.61 (0.55, 0.66)"
    csv = pd.read_csv(tmp_path / "out" / "table1.csv")
    assert csv.loc[csv["treatment"] == "gmp95", "paper_iqm"].item() == 0.61
    index = (tmp_path / "out" / "index.md").read_text()
    assert "No single-task PPO runs" in index and "Paper comparison: yes" in index
    # the command line can turn it off
    assert not compute(root, reps=20, band_reps=10, jobs=1, paper_compare=False).paper_compare


def test_draft_protocol_detection():
    steps = list(range(0, 200_001, 2000))
    assert follows_draft_protocol({}, 200_000, steps)[0]
    assert not follows_draft_protocol({}, 400_000, list(range(0, 400_001, 10_000)))[0]
    assert not follows_draft_protocol({"protocol": "tmlr"}, 200_000, steps)[0]
    assert follows_draft_protocol({"protocol": "draft"}, 20_000, None)[0]
    assert not follows_draft_protocol({}, 200_000, steps, at_step=100_000)[0]
    assert len(PAPER_TABLE_1) == 3 * 7 * 3
    assert PAPER_TABLE_1[("moore", "wd", "MT5")].point == 0.83


def test_cli_reports_a_corrupt_file_in_one_line_and_exits_2(tmp_path, capsys):
    root = tmp_path / "results"
    write_synthetic_sweep(root, benchmarks=("MT3",), archs=("moe",), treatments=("dense",), seeds=range(2),
                          total_steps=4000, single_task=False)
    bad = root / "metrics/evals/benchmark=MT3/arch=moe/treatment=dense/MT3-moe-dense-s01.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    assert main([str(root), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and err.startswith("mtrl analyze: error:")
    assert main([str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--quiet"]) == 2
    assert "no evaluation rows" in capsys.readouterr().err


def test_register_adds_the_analyze_subcommand(tmp_path):
    parser = argparse.ArgumentParser(prog="mtrl")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["analyze", str(tmp_path), "--out", "x", "--reps", "10", "--at-step", "2000"])
    assert (args.command, args.reps, args.at_step, args.out, args.paper_compare) == ("analyze", 10, 2000, "x", None)
    assert callable(args.func)
    assert args.func(parser.parse_args(["analyze", str(tmp_path / "missing"), "--quiet"])) == 2


def test_python_dash_m_analysis_runs(e2e_results, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "analysis", str(e2e_results), "--out", str(out), "--reps", "20",
                           "--band-reps", "10", "--no-figures", "--jobs", "1"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Table 1" in done.stdout and "coverage finding" in done.stdout
    assert (out / "index.md").is_file() and (out / "table1.md").is_file()


def test_table1_iqm_is_exact_on_hand_made_parquet(tmp_path, rows_writer, make_eval_row):
    """Scores k/16 (k = 1..12) over 4 seeds x 3 tasks: the IQM drops k = 1-3 and 10-12 -> 6.5/16."""
    from rliable import library as rly
    from rliable import metrics

    from mtrl_plasticity.benchmarks import TASKS

    root = tmp_path / "results"
    tasks = ("LavaGapS7-v0", "RedBlueDoors-6x6-v0", "MemoryS11-v0")
    order = np.random.default_rng(0).permutation(12) + 1
    rows, matrix = [], np.zeros((4, 3))
    for seed in range(4):
        for j, task in enumerate(tasks):
            k = order[seed * 3 + j]
            matrix[seed, j] = k / 16
            best = TASKS[task].best_reward
            rows.append(make_eval_row("MT3", "moe", "dense", seed, 0, task, 0.0))
            rows.append(make_eval_row("MT3", "moe", "dense", seed, 2000, task, k / 16 * best))
    rows_writer(root, "evals", rows)
    result = compute(root, reps=300, band_reps=20, seed=3, jobs=1)
    est = result.table1_estimates[Cell("MT3", "moe", "dense")]
    assert est.point == pytest.approx(6.5 / 16, abs=1e-12)
    np.testing.assert_allclose(result.finals[Cell("MT3", "moe", "dense")].scores, matrix, atol=1e-12)
    np.random.seed(3)
    _, intervals = rly.get_interval_estimates({"m": matrix}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=300)
    assert (est.low, est.high) == (pytest.approx(intervals["m"][0, 0], abs=1e-9),
                                   pytest.approx(intervals["m"][1, 0], abs=1e-9))
    assert result.plasticity.empty  # no metrics/train: no plasticity figures, no error


@pytest.mark.parametrize("flag, value, message", [
    ("--seed", "-1", "argument --seed: must be >= 0, got -1"),
    ("--jobs", "0", "argument --jobs: must be >= 1, got 0"),
    ("--jobs", "-2", "argument --jobs: must be >= 1, got -2"),
    ("--reps", "0", "argument --reps: must be >= 1, got 0"),
])
def test_python_dash_m_analysis_refuses_bad_counts_in_one_line(e2e_results, tmp_path, flag, value, message):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "analysis", str(e2e_results), "--out", str(tmp_path / "out"),
                           "--no-figures", "--quiet", flag, value],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    # One line: argparse's usage block is not printed above it.
    assert done.stderr.splitlines() == [f"python -m analysis: error: {message} (see python -m analysis --help)"]
    assert not (tmp_path / "out").exists()  # refused before any work


def test_compute_refuses_a_negative_seed_and_zero_jobs(e2e_results):
    with pytest.raises(AnalysisError, match="--seed must be >= 0, got -1"):
        compute(e2e_results, seed=-1)
    with pytest.raises(AnalysisError, match="--jobs must be >= 1, got 0"):
        compute(e2e_results, jobs=0)
