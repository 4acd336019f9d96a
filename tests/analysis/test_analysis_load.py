"""Reading the Parquet layout: filters, deduplication, schema versions, bad files, coverage."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import AnalysisError, Cell, coverage, load_evals, load_train
from orchestrator.schema import EVAL_KEYS, EVALS_SCHEMA, SCHEMA_VERSION, TRAIN_KEYS
from testkit.synthetic import write_synthetic_sweep


@pytest.fixture
def small(tmp_path) -> Path:
    root = tmp_path / "results"
    write_synthetic_sweep(root, benchmarks=("MT3",), archs=("mtppo", "moe"), treatments=("dense", "gmp95"),
                          seeds=range(2), total_steps=6000, segment_steps=4000)
    return root


def test_loads_every_row_with_partition_columns(small):
    evals = load_evals(small)
    # 2 archs x 2 treatments x 2 seeds x 4 eval points x 3 tasks + 3 tasks x 2 seeds single x 4 points x 1
    assert len(evals) == 2 * 2 * 2 * 4 * 3 + 3 * 2 * 4
    assert {"benchmark", "arch", "treatment"} <= set(evals.columns)
    assert set(evals["arch"]) == {"mtppo", "moe", "single"}
    assert not evals.duplicated(subset=list(EVAL_KEYS)).any()
    assert evals.attrs["files"] == 14 * 2  # two segments per run
    train = load_train(small)
    assert len(train) == 14 * 3  # epochs at 2000, 4000, 6000
    assert not train.duplicated(subset=list(TRAIN_KEYS)).any()


def test_filters_and_columns_are_pushed_down(small):
    moe = load_evals(small, filters=[("arch", "==", "moe"), ("step", ">", 0)], columns=["return_mean"])
    assert set(moe["arch"]) == {"moe"} and moe["step"].min() > 0
    assert "success_rate" not in moe.columns and "return_mean" in moe.columns and "task" in moe.columns
    either = load_evals(small, filters=[[("treatment", "==", "gmp95")], [("arch", "==", "single")]])
    assert set(either["treatment"]) == {"gmp95", "dense"} and set(either["arch"]) == {"mtppo", "moe", "single"}
    with pytest.raises(AnalysisError, match="unknown column"):
        load_evals(small, columns=["nope"])
    for bad in ([("nope", "==", 1)], [("step", ">", "abc")], [("arch", "~~", "moe")]):
        with pytest.raises(AnalysisError, match="bad filters"):
            load_evals(small, filters=bad)


def test_pandas_reads_the_layout_directly(small):
    frame = pd.read_parquet(small / "metrics" / "evals", filters=[("arch", "==", "moe")])
    assert len(frame) == len(load_evals(small, filters=[("arch", "==", "moe")]))


def test_duplicates_are_dropped_and_counted(small):
    run_dir = small / "metrics/evals/benchmark=MT3/arch=moe/treatment=dense"
    segments = sorted(run_dir.glob("MT3-moe-dense-s00__*.parquet"))
    compacted = pa.concat_tables([pq.read_table(p, schema=EVALS_SCHEMA) for p in segments])
    pq.write_table(compacted, run_dir / "MT3-moe-dense-s00.parquet")  # compaction left its segments behind
    evals = load_evals(small)
    assert evals.attrs["duplicates_dropped"] == compacted.num_rows
    assert evals.attrs["conflicting_duplicates"] == 0
    assert not evals.duplicated(subset=list(EVAL_KEYS)).any()
    assert len(evals) == 2 * 2 * 2 * 4 * 3 + 3 * 2 * 4


def test_conflicting_duplicates_are_counted(small, rows_writer, make_eval_row):
    row = make_eval_row("MT3", "moe", "dense", 0, 0, "LavaGapS7-v0", 0.123, sweep="synthetic")
    rows_writer(small, "evals", [row], name="MT3-moe-dense-s00__0-0")
    evals = load_evals(small)
    assert evals.attrs["duplicates_dropped"] == 1 and evals.attrs["conflicting_duplicates"] == 1


def test_temporary_and_hidden_files_are_skipped(small):
    run_dir = small / "metrics/evals/benchmark=MT3/arch=moe/treatment=dense"
    (run_dir / "MT3-moe-dense-s00__8000-8000.parquet.tmp").write_bytes(b"half a file")
    (run_dir / ".hidden.parquet").write_bytes(b"junk")
    assert len(load_evals(small)) == 2 * 2 * 2 * 4 * 3 + 3 * 2 * 4


def test_unknown_schema_version_is_refused_naming_the_file(small, rows_writer, make_eval_row):
    row = make_eval_row("MT3", "moe", "dense", 5, 0, "LavaGapS7-v0", 0.1, schema_version=SCHEMA_VERSION + 1)
    path = rows_writer(small, "evals", [row])[0]
    with pytest.raises(AnalysisError) as info:
        load_evals(small)
    message = str(info.value)
    assert str(path) in message and f"schema_version {SCHEMA_VERSION + 1}" in message and "\n" not in message
    # filtered away, the file is not read and the rest loads
    assert len(load_evals(small, filters=[("arch", "==", "mtppo")])) > 0


def test_missing_schema_version_column_is_refused(small):
    path = small / "metrics/evals/benchmark=MT3/arch=moe/treatment=dense/MT3-moe-dense-s07.parquet"
    table = pq.read_table(next(path.parent.glob("*.parquet")), schema=EVALS_SCHEMA).drop_columns(["schema_version"])
    pq.write_table(table, path)
    with pytest.raises(AnalysisError, match="schema_version missing"):
        load_evals(small)


def test_corrupt_parquet_gives_a_clear_error_naming_the_file(small):
    path = small / "metrics/evals/benchmark=MT3/arch=moe/treatment=gmp95/MT3-moe-gmp95-s01__0-4000.parquet"
    path.write_bytes(path.read_bytes()[:100])  # truncated: no footer
    with pytest.raises(AnalysisError) as info:
        load_evals(small)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_folder_without_rows_gives_an_empty_frame(tmp_path):
    evals = load_evals(tmp_path)
    assert evals.empty and "return_mean" in evals.columns
    assert load_train(tmp_path).empty


def test_coverage_lists_missing_cells_seeds_points_and_unfinished_runs(tmp_path):
    root = tmp_path / "results"
    write_synthetic_sweep(
        root, benchmarks=("MT3",), archs=("mtppo", "moe"), treatments=("dense", "redo"), seeds=range(3),
        total_steps=8000, segment_steps=2000, single_task=True,
        skip=["MT3-moe-redo-s00", "MT3-moe-redo-s01", "MT3-moe-redo-s02",  # a whole cell
              "MT3-mtppo-dense-s01",  # a seed
              "MemoryS11-v0-single-dense-s00", "MemoryS11-v0-single-dense-s01", "MemoryS11-v0-single-dense-s02"],
        truncate={"MT3-moe-dense-s02": 4000})
    (root / "metrics/evals/benchmark=MT3/arch=mtppo/treatment=redo/MT3-mtppo-redo-s02__4000-4000.parquet").unlink()
    report = coverage(load_evals(root))
    assert report.missing_cells == [Cell("MT3", "moe", "redo"), Cell("MemoryS11-v0", "single", "dense")]
    assert report.missing_seeds == {Cell("MT3", "mtppo", "dense"): [1]}
    assert report.unfinished_runs == {"MT3-moe-dense-s02": (4000, 8000)}
    assert report.missing_points == {"MT3-mtppo-redo-s02": 3}  # one step x 3 tasks
    assert report.missing_single_tasks == ["MemoryS11-v0"]
    assert report.expected_seeds["multi-task"] == [0, 1, 2]
    text = "\n".join(report.lines())
    for needle in ("missing cell MT3/moe/redo", "missing seeds in MT3/mtppo/dense: 1",
                   "unfinished run MT3-moe-dense-s02", "MT3-mtppo-redo-s02 lacks 3", "MemoryS11-v0"):
        assert needle in text
    assert not report.complete


def test_coverage_of_a_complete_sweep_is_empty(small):
    report = coverage(load_evals(small))
    assert report.complete and report.lines() == []
