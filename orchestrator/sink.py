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
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mtrl_plasticity.results import (
    DATASETS,
    compacted_name,
    dataset_dir,
    is_run_file,
    partition_dir,
    segment_name,
)
from mtrl_plasticity.treatments import treatment_spec
from orchestrator import schema
from orchestrator.config import TrialConfig, axis_type
from orchestrator.storage import (
    list_files,
    read_table_verified,
    remove_temporaries,
    resolve_filesystem,
    write_table_atomically,
)

Row = dict[str, Any]


class ParquetSink:
    """Writes one trial's ``evals`` and ``train`` rows under a results root."""

    def __init__(self, results_root: str, sweep: str, run_key: str, benchmark: str, arch: str,
                 treatment: str, extra_counters: Sequence[str] = (), axes: Sequence[pa.Field] = ()) -> None:
        """``treatment``: the treatment's label (the partition); ``axes``: the grid-axis columns
        (:func:`orchestrator.schema.axis_columns`)."""
        self.fs, self.root = resolve_filesystem(results_root)
        self.sweep, self.run_key = sweep, run_key
        self.dirs = {dataset: posixpath.join(self.root, dataset_dir(dataset), partition_dir(benchmark, arch, treatment))
                     for dataset in DATASETS}
        # The train files carry the counters the treatment declares besides the core ones.
        self.schemas = {dataset: schema.dataset_schema(dataset, extra_counters, axes) for dataset in DATASETS}
        self.keys = {dataset: list(schema.dataset_keys(dataset)) for dataset in DATASETS}

    @classmethod
    def for_config(cls, results_root: str, config: TrialConfig) -> ParquetSink:
        axes = schema.axis_columns({name: axis_type(name) for name in config.axis_fields})
        return cls(results_root, config.sweep, config.run_key, config.benchmark, config.arch, config.treatment_label,
                   treatment_spec(config.treatment).extra_counters(), axes)

    def write_segment(self, evals: Sequence[Row], train: Sequence[Row], first_step: int, last_step: int) -> None:
        """Write the rows of one checkpoint interval; an existing segment of that name is replaced."""
        name = segment_name(self.run_key, first_step, last_step)
        for dataset, rows in zip(DATASETS, (evals, train), strict=True):
            if rows:
                table = pa.Table.from_pylist(list(rows), schema=self.schemas[dataset])
                write_table_atomically(self.fs, posixpath.join(self.dirs[dataset], name), table)

    def run_files(self, dataset: str) -> list[str]:
        """Every file of this run in ``dataset`` (segments and a compacted file), sorted."""
        return [f.path for f in list_files(self.fs, self.dirs[dataset]) if is_run_file(f.base_name, self.run_key)]

    def remove_temporaries(self) -> list[str]:
        """Delete this run's partial files (``.<segment>.tmp``) a failed or killed write left; other
        runs' files in the shared partition folders are left alone."""
        return [path for dataset in DATASETS for path in remove_temporaries(
            self.fs, self.dirs[dataset], lambda name: is_run_file(name, self.run_key))]

    def is_compacted(self) -> bool:
        """True when each dataset of the run is its one compacted file (no segments left)."""
        return all([posixpath.basename(f) for f in self.run_files(dataset)] == [compacted_name(self.run_key)]
                   for dataset in DATASETS)

    def read(self, dataset: str) -> pa.Table:
        """This run's rows of ``dataset``, deduplicated on the keys (last file wins), sorted."""
        files = self.run_files(dataset)
        if not files:
            return self.schemas[dataset].empty_table()
        # Verified: a damaged page must fail here, not be copied into a compacted file with a fresh CRC.
        tables = [read_table_verified(self.fs, f, schema=self.schemas[dataset]) for f in files]
        table = pa.concat_tables(tables)
        keys = self.keys[dataset]
        # Keep the last occurrence of each key: later files hold the newer copy of a row.
        table = table.append_column("__order", pa.array(range(table.num_rows), pa.int64()))
        last = table.group_by(keys, use_threads=False).aggregate([("__order", "max")])
        keep = pc.is_in(table["__order"], value_set=last["__order_max"])
        table = table.filter(keep).drop_columns(["__order"])
        return table.sort_by([(k, "ascending") for k in keys])

    def compact(self, datasets: Sequence[str] = DATASETS) -> None:
        """Merge this run's files into ``<run_key>.parquet`` per dataset and remove the segments."""
        for dataset in datasets:
            files = self.run_files(dataset)
            target = posixpath.join(self.dirs[dataset], compacted_name(self.run_key))
            if not files or files == [target]:
                continue
            write_table_atomically(self.fs, target, self.read(dataset))
            for path in files:
                if path != target:
                    self.fs.delete_file(path)
