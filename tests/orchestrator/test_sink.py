"""Parquet segments: atomic names, idempotent rewrites, compaction without duplicates."""

import os

import pandas as pd

from orchestrator import schema
from orchestrator.sink import ParquetSink


def _eval_row(step, task="Empty-5x5-v0", value=0.5):
    return {"schema_version": schema.SCHEMA_VERSION, "sweep": "t", "run_key": "k", "seed": 0, "step": step,
            "epoch": step // 10, "task": task, "task_index": 0, "episodes": 2, "return_mean": value,
            "return_std": 0.0, "normalised_return_mean": value, "success_rate": 1.0, "episode_length_mean": 3.0}


def _train_row(step):
    return {"schema_version": schema.SCHEMA_VERSION, "sweep": "t", "run_key": "k", "seed": 0, "step": step,
            "epoch": step // 10, **{c: 1.0 for c in schema.TRAIN_METRIC_COLUMNS}}


def test_rewritten_segment_replaces_rows_and_compaction_keeps_one_copy(tmp_path):
    sink = ParquetSink(str(tmp_path), "t", "k", "Empty-5x5-v0", "single", "dense")
    sink.write_segment([_eval_row(0), _eval_row(10)], [_train_row(10)], 0, 10)
    sink.write_segment([_eval_row(20)], [_train_row(20)], 10, 20)
    # A resumed trial rewrites the same segment: still one copy of each row.
    sink.write_segment([_eval_row(20, value=0.7)], [_train_row(20)], 10, 20)
    files = os.listdir(sink.dirs["evals"])
    assert sorted(files) == ["k__000000000-000000010.parquet", "k__000000010-000000020.parquet"]
    frame = pd.read_parquet(tmp_path / schema.EVALS_DIR)
    assert list(frame.step) == [0, 10, 20] and frame.normalised_return_mean.iloc[-1] == 0.7
    assert set(frame.arch) == {"single"}  # partition columns come back from the path

    sink.compact()
    sink.compact()  # idempotent
    assert os.listdir(sink.dirs["evals"]) == ["k.parquet"]
    frame = pd.read_parquet(tmp_path / schema.EVALS_DIR)
    assert list(frame.step) == [0, 10, 20]
    # A crash after compaction and a rerun of the last segment still leaves one row per key.
    sink.write_segment([_eval_row(20, value=0.7)], [_train_row(20)], 10, 20)
    sink.compact()
    assert len(pd.read_parquet(tmp_path / schema.TRAIN_DIR)) == 2


def test_temporary_files_are_invisible_to_readers(tmp_path):
    sink = ParquetSink(str(tmp_path), "t", "k", "Empty-5x5-v0", "single", "dense")
    sink.write_segment([_eval_row(0)], [], 0, 0)
    with open(os.path.join(sink.dirs["evals"], ".k__000000000-000000010.parquet.tmp"), "wb") as f:
        f.write(b"half a file")
    assert len(pd.read_parquet(tmp_path / schema.EVALS_DIR)) == 1
    assert len(sink.read("evals")) == 1
