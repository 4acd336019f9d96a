"""Synthetic results folders in the exact Parquet layout trials write (orchestrator/schema.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtrl_plasticity.benchmarks import TASKS, get_benchmark
from orchestrator.schema import (
    EVALS_DIR,
    EVALS_SCHEMA,
    PARTITION_COLUMNS,
    SCHEMA_VERSION,
    TRAIN_DIR,
    TRAIN_METRIC_COLUMNS,
    TRAIN_SCHEMA,
)
from testkit.synthetic import write_synthetic_sweep

# The grid of the shared end-to-end sweep (kept small: the whole analysis suite runs in CI).
E2E = dict(
    benchmarks=("MT3", "MT5"),
    archs=("mtppo", "moe"),
    treatments=("dense", "gmp80", "gmp95", "redo"),
    seeds=range(4),
    total_steps=10_000,
    eval_interval=2_000,
    segment_steps=4_000,
    skip=("MT3-moe-gmp95-s02",),  # a missing seed
    truncate={"MT5-mtppo-redo-s01": 6_000},  # an unfinished run
)


def eval_row(benchmark: str, arch: str, treatment: str, seed: int, step: int, task: str,
             return_mean: float, **overrides: Any) -> dict[str, Any]:
    """One evaluation row with every column of EVALS_SCHEMA plus the partition columns."""
    row = {
        "schema_version": SCHEMA_VERSION,
        "sweep": "hand",
        "run_key": f"{benchmark}-{arch}-{treatment}-s{seed:02d}",
        "seed": seed,
        "step": step,
        "epoch": step // 2000,
        "task": task,
        "task_index": list(get_benchmark(benchmark).tasks).index(task),
        "episodes": 25,
        "return_mean": return_mean,
        "return_std": 0.0,
        "normalised_return_mean": return_mean / TASKS[task].best_reward,
        "success_rate": float(return_mean > 0),
        "episode_length_mean": 10.0,
        "benchmark": benchmark,
        "arch": arch,
        "treatment": treatment,
    }
    row.update(overrides)
    return row


def train_row(benchmark: str, arch: str, treatment: str, seed: int, step: int, **metrics: float) -> dict[str, Any]:
    """One training row (metrics default to 0.0; pass ``None`` for a null)."""
    row: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "sweep": "hand", "run_key": f"{benchmark}-{arch}-{treatment}-s{seed:02d}",
        "seed": seed, "step": step, "epoch": step // 2000,
        "benchmark": benchmark, "arch": arch, "treatment": treatment,
    }
    row.update({name: 0.0 for name in TRAIN_METRIC_COLUMNS})
    row.update({k.replace("__", "/"): v for k, v in metrics.items()})
    return row


def write_rows(root: Path, kind: str, rows: list[dict[str, Any]], name: str | None = None,
               schema: pa.Schema | None = None) -> list[Path]:
    """Write rows into ``root/metrics/<kind>/benchmark=../arch=../treatment=../<name>.parquet``.

    Rows are grouped by run; the partition columns go into the directory names only. ``name``
    defaults to ``<run_key>`` (a compacted file); ``schema`` defaults to the dataset's schema.
    """
    schema = schema or (EVALS_SCHEMA if kind == "evals" else TRAIN_SCHEMA)
    base = Path(root) / (EVALS_DIR if kind == "evals" else TRAIN_DIR)
    by_run: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_run.setdefault(row["run_key"], []).append(row)
    paths = []
    for key, run_rows in by_run.items():
        first = run_rows[0]
        folder = base.joinpath(*(f"{c}={first[c]}" for c in PARTITION_COLUMNS))
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in run_rows], schema=schema)
        path = folder / f"{name or key}.parquet"
        pq.write_table(table, path)
        paths.append(path)
    return paths


@pytest.fixture
def hand_evals():
    """A function building evaluation rows: ``hand_evals(benchmark, arch, treatment, seed, steps, score)``."""

    def build(benchmark: str, arch: str, treatment: str, seed: int, steps, score=lambda step, task: 0.5):
        rows = []
        for step in steps:
            for task in get_benchmark(benchmark).tasks:
                rows.append(eval_row(benchmark, arch, treatment, seed, step, task,
                                     score(step, task) * TASKS[task].best_reward))
        return rows

    return build


@pytest.fixture(scope="session")
def e2e_results(tmp_path_factory) -> Path:
    """A synthetic results folder (segments, a missing seed, an unfinished run, single-task runs)."""
    root = tmp_path_factory.mktemp("e2e") / "results"
    write_synthetic_sweep(root, **E2E)
    return root


@pytest.fixture(scope="session")
def e2e_output(e2e_results, tmp_path_factory):
    """``analyze`` run once on :func:`e2e_results`: (analysis result, output folder)."""
    from analysis.pipeline import compute
    from analysis.report import write_outputs

    out = tmp_path_factory.mktemp("e2e_out")
    result = compute(e2e_results, reps=200, band_reps=50, seed=0, jobs=2)
    write_outputs(result, out)
    return result, out


@pytest.fixture
def rows_writer():
    """:func:`write_rows` as a fixture (test modules do not import conftest)."""
    return write_rows


@pytest.fixture
def make_eval_row():
    """:func:`eval_row` as a fixture."""
    return eval_row


@pytest.fixture
def make_train_row():
    """:func:`train_row` as a fixture."""
    return train_row
