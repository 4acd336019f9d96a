"""What the analysis must say rather than hide: bad returns, the sweep's grid, dropped baseline seeds."""

from __future__ import annotations

import pyarrow as pa
import yaml

from analysis import Cell
from analysis.pipeline import compute
from analysis.report import write_outputs
from mtrl_plasticity.benchmarks import get_benchmark
from orchestrator.schema import EVALS_SCHEMA

MT3 = get_benchmark("MT3").tasks


def _runs(make_eval_row, cells, seeds, steps=(0, 2000), score=0.5):
    from mtrl_plasticity.benchmarks import TASKS

    rows = []
    for benchmark, arch, treatment in cells:
        for seed in seeds:
            for step in steps:
                for task in get_benchmark(benchmark).tasks:
                    rows.append(make_eval_row(benchmark, arch, treatment, seed, step, task,
                                              score * TASKS[task].best_reward))
    return rows


def test_null_returns_everywhere_or_a_missing_column_are_reported_not_a_crash(tmp_path, rows_writer, make_eval_row):
    """Seed 1's returns are null at every step; seed 2's file has no return_mean column at all."""
    root = tmp_path / "results"
    rows = _runs(make_eval_row, [("MT3", "moe", "dense")], seeds=(0,))
    rows_writer(root, "evals", rows)
    null_rows = _runs(make_eval_row, [("MT3", "moe", "dense")], seeds=(1,))
    for row in null_rows:
        row["return_mean"] = row["normalised_return_mean"] = None
    rows_writer(root, "evals", null_rows)
    no_column = pa.schema([f for f in EVALS_SCHEMA if f.name not in ("return_mean", "normalised_return_mean")])
    rows_writer(root, "evals", _runs(make_eval_row, [("MT3", "moe", "dense")], seeds=(2,)), schema=no_column)

    result = compute(root, reps=20, band_reps=10, jobs=1)
    matrix = result.finals[Cell("MT3", "moe", "dense")]
    assert matrix.run_keys == ["MT3-moe-dense-s00"]
    notes = result.coverage.lines()
    for key in ("MT3-moe-dense-s01", "MT3-moe-dense-s02"):
        assert (f"run {key} left out of the final scores of MT3/moe/dense: its return_mean is NaN, null or missing "
                "at every evaluation") in notes
    assert result.table1.loc[0, "n_runs"] == 1


def _sweep_yaml(root, treatments, seeds, baselines=False, total_steps=2000):
    spec = {"name": "hand", "benchmarks": ["MT3"], "archs": ["mtppo", "moe"], "treatments": list(treatments),
            "seeds": seeds, "single_task_baselines": baselines, "checkpoint_interval_steps": 1000,
            "defaults": {"total_steps": total_steps, "steps_per_epoch": 500, "eval_interval_steps": 1000}}
    root.mkdir(parents=True, exist_ok=True)
    (root / "sweep.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")


def test_coverage_follows_sweep_yaml_and_names_a_treatment_that_failed_everywhere(tmp_path, rows_writer,
                                                                                make_eval_row):
    """The grid asks for redo and 3 seeds; redo left no row, and seed 2 is missing everywhere.
    Inference from the rows would expect seeds 0-1 of dense only and report nothing."""
    root = tmp_path / "results"
    _sweep_yaml(root, ["dense", "redo"], 3)
    rows_writer(root, "evals", _runs(make_eval_row, [("MT3", "mtppo", "dense"), ("MT3", "moe", "dense")], (0, 1)))
    result = compute(root, reps=20, band_reps=10, jobs=1)
    cov = result.coverage
    assert cov.grid_source == "sweep.yaml"
    assert cov.missing_cells == [Cell("MT3", "mtppo", "redo"), Cell("MT3", "moe", "redo")]
    assert cov.missing_seeds == {Cell("MT3", "mtppo", "dense"): [2], Cell("MT3", "moe", "dense"): [2]}
    assert cov.missing_axis_values == [("treatment", "redo", 2)]
    lines = cov.lines()
    assert "missing treatment redo: no run in any of its 2 cell(s) of the sweep's grid" in lines
    assert "missing cell MT3/moe/redo (no runs; expected seeds 0-2)" in lines
    # Table 1 keeps a (missing) row for the treatment and counts the seeds against the grid
    table = result.table1.set_index(["arch", "treatment", "benchmark"])
    assert table.loc[("moe", "redo", "MT3"), "n_runs"] == 0
    assert table.loc[("moe", "dense", "MT3"), "expected_runs"] == 3
    write_outputs(result, tmp_path / "out", figures=False)
    assert "| MoE | ReDo | — | missing |" in (tmp_path / "out" / "table1.md").read_text()


def test_a_sweep_whose_runs_all_stopped_early_is_unfinished_against_its_total_steps(tmp_path, rows_writer,
                                                                                   make_eval_row):
    """sweep.yaml asks for 4,000 steps and every run stopped at 2,000: the rows alone would call
    step 2,000 the end; the grid makes every run unfinished, left out unless asked for."""
    root = tmp_path / "results"
    _sweep_yaml(root, ["dense"], 2, total_steps=4000)
    rows_writer(root, "evals", _runs(make_eval_row, [("MT3", "mtppo", "dense"), ("MT3", "moe", "dense")], (0, 1)))
    result = compute(root, reps=20, band_reps=10, jobs=1)
    assert result.coverage.unfinished_runs == {f"MT3-{a}-dense-s0{s}": (2000, 4000) for a in ("moe", "mtppo")
                                               for s in (0, 1)}
    assert result.table1["n_runs"].tolist() == [0, 0] and result.table_steps == {"MT3": (4000,)}
    included = compute(root, reps=20, band_reps=10, jobs=1, include_unfinished=True)
    assert included.table1["n_runs"].tolist() == [2, 2] and included.table1["n_unfinished"].tolist() == [2, 2]


def test_runs_outside_the_grid_and_an_invalid_sweep_yaml_are_reported(tmp_path, rows_writer, make_eval_row):
    root = tmp_path / "results"
    _sweep_yaml(root, ["dense"], [0])
    rows_writer(root, "evals", _runs(make_eval_row, [("MT3", "mtppo", "dense"), ("MT3", "moe", "dense")], (0, 1)))
    result = compute(root, reps=20, band_reps=10, jobs=1)
    cov = result.coverage
    assert cov.outside_grid == {Cell("MT3", "moe", "dense"): [1], Cell("MT3", "mtppo", "dense"): [1]}
    assert ("runs outside sweep.yaml's grid in MT3/moe/dense: seeds 1 (left out of the scores; "
            "--include-outside-grid includes them)") in cov.lines()
    assert result.table1["n_runs"].tolist() == [1, 1]  # seed 0 of each cell: seed 1 is left out
    included = compute(root, reps=20, band_reps=10, jobs=1, include_outside_grid=True)
    assert included.table1["n_runs"].tolist() == [2, 2]
    assert "seeds 1 (included in the scores)" in included.coverage.lines()[0]

    (root / "sweep.yaml").write_text("name: hand\nprotocol: draft\n", encoding="utf-8")  # not a full spec
    cov = compute(root, reps=20, band_reps=10, jobs=1).coverage
    assert cov.grid_source == "rows"
    assert any(line.startswith("sweep.yaml is not a valid sweep spec (") and "inferred from the rows" in line
               for line in cov.lines())


def test_single_task_seeds_dropped_from_the_baseline_are_reported(tmp_path, rows_writer, make_eval_row):
    """Seed 1 exists for two of MT3's three tasks: the baseline joins on seed 0 and says so."""
    root = tmp_path / "results"
    cells = [(task, "single", "dense") for task in MT3]
    rows = _runs(make_eval_row, cells, (0, 1))
    rows = [r for r in rows if not (r["seed"] == 1 and r["task"] == MT3[2])]
    rows += _runs(make_eval_row, [("MT3", "moe", "dense")], (0, 1))
    rows_writer(root, "evals", rows)
    result = compute(root, reps=20, band_reps=10, jobs=1)
    assert result.single_task_runs == {"MT3": 1}
    lines = result.coverage.lines()
    for task in MT3[:2]:
        assert (f"run {task}-single-dense-s01 left out of the single-task baseline of MT3: seed 1 is missing for "
                f"{MT3[2]}, another task of MT3") in lines
