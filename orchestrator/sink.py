"""The Parquet sink: a trial's rows as segment files, written so that resume never duplicates.

Write protocol (see :mod:`orchestrator.schema` for the layout):

1. A trial buffers rows. Right before each checkpoint it writes one segment per dataset,
   named by run_key and the step range since the previous checkpoint, first to a hidden
   temporary name (``.<name>.tmp``, skipped by pyarrow, pandas and DuckDB globs), then
   renamed into place. Only then is the checkpoint taken.
2. A trial resumed from checkpoint ``S`` rewrites exactly the segment names after ``S``, so
   a crash between a segment and its checkpoint can never leave two copies of a row.
3. At the end, :meth:`ParquetSink.compact` merges a run's files into ``<run_key>.parquet``
   (deduplicated on the keys; idempotent, so a crash inside it is repaired by a rerun).

All I/O goes through ``pyarrow.fs``: a local path, an NFS mount or ``s3://bucket/prefix``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from orchestrator import schema
# Re-exported: callers that resolve a results root through the sink keep working.
from orchestrator.storage import (atomic_output_stream, list_files, resolve_filesystem,  # noqa: F401
                                  write_bytes_atomically, write_table_atomically)


def partition_dir(dataset_dir: str, benchmark: str, arch: str, treatment: str) -> str:
    return posixpath.join(dataset_dir, f"benchmark={benchmark}", f"arch={arch}", f"treatment={treatment}")


def segment_name(run_key: str, first_step: int, last_step: int) -> str:
    """Rows of steps in ``(first_step, last_step]`` (plus step 0 in the first segment)."""
    return f"{run_key}__{first_step:09d}-{last_step:09d}.parquet"


class ParquetSink:
    """Writes one trial's ``evals`` and ``train`` rows under a results root."""

    def __init__(self, results_root: str, sweep: str, run_key: str, benchmark: str, arch: str,
                 treatment: str, extra_counters: Sequence[str] = ()) -> None:
        self.fs, self.root = resolve_filesystem(results_root)
        self.sweep, self.run_key = sweep, run_key
        self.dirs = {
            "evals": partition_dir(posixpath.join(self.root, schema.EVALS_DIR), benchmark, arch, treatment),
            "train": partition_dir(posixpath.join(self.root, schema.TRAIN_DIR), benchmark, arch, treatment),
        }
        # The train files carry the counters the treatment declares besides the core ones.
        self.schemas = {"evals": schema.EVALS_SCHEMA, "train": schema.train_schema(extra_counters)}
        self.keys = {"evals": list(schema.EVAL_KEYS), "train": list(schema.TRAIN_KEYS)}

    @classmethod
    def for_config(cls, results_root: str, config) -> "ParquetSink":
        from agents.treatments import treatment_spec

        return cls(results_root, config.sweep, config.run_key, config.benchmark, config.arch, config.treatment,
                   treatment_spec(config.treatment).extra_counters())

    def write_segment(self, evals: Sequence[dict], train: Sequence[dict], first_step: int, last_step: int) -> None:
        """Write the rows of one checkpoint interval; an existing segment of that name is replaced."""
        name = segment_name(self.run_key, first_step, last_step)
        for dataset, rows in (("evals", evals), ("train", train)):
            if rows:
                table = pa.Table.from_pylist(list(rows), schema=self.schemas[dataset])
                write_table_atomically(self.fs, posixpath.join(self.dirs[dataset], name), table)

    def run_files(self, dataset: str) -> list[str]:
        """Every file of this run in ``dataset`` (segments and a compacted file), sorted."""
        directory = self.dirs[dataset]
        prefix = f"{self.run_key}__"
        compacted = f"{self.run_key}.parquet"
        return [f.path for f in list_files(self.fs, directory)
                if f.base_name == compacted or (f.base_name.startswith(prefix) and f.base_name.endswith(".parquet"))]

    def read(self, dataset: str) -> pa.Table:
        """This run's rows of ``dataset``, deduplicated on the keys (last file wins), sorted."""
        files = self.run_files(dataset)
        if not files:
            return self.schemas[dataset].empty_table()
        tables = [pq.read_table(f, filesystem=self.fs, schema=self.schemas[dataset]) for f in files]
        table = pa.concat_tables(tables)
        keys = self.keys[dataset]
        # Keep the last occurrence of each key: later files hold the newer copy of a row.
        table = table.append_column("__order", pa.array(range(table.num_rows), pa.int64()))
        last = table.group_by(keys, use_threads=False).aggregate([("__order", "max")])
        keep = pc.is_in(table["__order"], value_set=last["__order_max"])
        table = table.filter(keep).drop_columns(["__order"])
        return table.sort_by([(k, "ascending") for k in keys])

    def compact(self, datasets: Sequence[str] = ("evals", "train")) -> None:
        """Merge this run's files into ``<run_key>.parquet`` per dataset and remove the segments."""
        for dataset in datasets:
            files = self.run_files(dataset)
            target = posixpath.join(self.dirs[dataset], f"{self.run_key}.parquet")
            if not files or files == [target]:
                continue
            write_table_atomically(self.fs, target, self.read(dataset))
            for path in files:
                if path != target:
                    self.fs.delete_file(path)
