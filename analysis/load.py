"""Read the ``evals`` and ``train`` Parquet datasets of a results folder into pandas.

A results folder holds Hive-partitioned segments (see :mod:`orchestrator.schema`; the
folder's ``sweep.yaml`` is :mod:`analysis.grid`'s)::

    <results>/metrics/evals/benchmark=MT3/arch=moe/treatment=dense/<run_key>__<first>-<last>.parquet
    <results>/metrics/evals/benchmark=MT3/arch=moe/treatment=dense/<run_key>.parquet   (compacted)

The readers here

* list the ``*.parquet`` files themselves (``*.parquet.tmp`` files still being written, and
  names starting with ``.`` or ``_``, are skipped), in sorted order, so a read is repeatable;
* push ``filters`` (pandas/pyarrow DNF tuples or a ``pyarrow.compute.Expression``) and the
  column projection down to pyarrow, so partition filters prune whole directories;
* refuse rows whose ``schema_version`` is not one of
  :data:`orchestrator.schema.READABLE_SCHEMA_VERSIONS`, and unreadable files (cut short, not
  Parquet, a page of a column read whose CRC fails), with an
  :class:`~mtrl_plasticity.errors.AnalysisError` naming the file (a version 1 row reads
  ``axes`` as ``""`` and ``discounted_return_mean`` as null);
* take the union of the columns over the files: a treatment's declared counters
  (``interventions/<c>``) and the columns of a sweep's grid axes (one per axis field, always
  loaded, like the identity columns);
* drop duplicate rows on the dataset's keys (a compacted file beside its segments, a segment
  rewritten after a resume) and record what they dropped in ``DataFrame.attrs``.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn, TypeAlias

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mtrl_plasticity.errors import AnalysisError
from mtrl_plasticity.results import (
    COUNTER_PREFIX,
    DATASETS,
    EVALS,
    PARQUET_SUFFIX,
    PARTITION_COLUMNS,
    TRAIN,
    dataset_dir,
    is_hidden,
)
from orchestrator.schema import (
    READABLE_SCHEMA_VERSIONS,
    dataset_keys,
    dataset_schema,
    deterministic_columns,
)
from orchestrator.storage import list_files, resolve_filesystem

PathLike: TypeAlias = str | os.PathLike[str]
Filters: TypeAlias = Sequence[tuple[Any, ...]] | Sequence[Sequence[tuple[Any, ...]]] | pc.Expression | None

IDENTITY_COLUMNS = ("schema_version", "sweep", "run_key", "benchmark", "arch", "treatment", "seed", "step", "epoch",
                    "axes")
"""Columns every loaded frame carries whatever ``columns`` asks for (and each grid axis's column)."""

_PARTITION_SCHEMA = pa.schema([pa.field(name, pa.string()) for name in PARTITION_COLUMNS])

PARQUET_VERIFIED = ds.ParquetFileFormat(
    default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=True))
"""Parquet that checks the CRC of every page it decodes (files without CRCs, from earlier versions, read as before)."""


def load_evals(results_dir: PathLike, filters: Filters = None, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """Evaluation rows of a results folder: one row per ``(run_key, step, task)``.

    Args:
        results_dir: the results folder (local path or a ``pyarrow.fs`` URI such as ``s3://b/x``);
            the rows are read from ``<results_dir>/metrics/evals``.
        filters: pushed down to pyarrow, e.g. ``[("arch", "==", "moe"), ("step", ">", 0)]``.
        columns: columns to read besides :data:`IDENTITY_COLUMNS` and ``task`` (default: all).

    Returns:
        A frame with the columns of :data:`orchestrator.schema.EVALS_SCHEMA` plus the partition
        columns ``benchmark``/``arch``/``treatment`` and a column per grid axis, deduplicated on
        ``(run_key, step, task)``. ``df.attrs`` holds ``files``, ``rows_read``,
        ``duplicates_dropped``, ``conflicting_duplicates`` (duplicates whose deterministic
        columns differ) and ``axis_columns`` (the grid axes' column names).

    Raises:
        AnalysisError: an unreadable file or an unknown ``schema_version`` (naming the file).
    """
    return _load(results_dir, EVALS, filters, columns)


def load_train(results_dir: PathLike, filters: Filters = None, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """Training rows of a results folder: one row per ``(run_key, step)``.

    Same arguments and guarantees as :func:`load_evals`, for ``<results_dir>/metrics/train``
    and :data:`orchestrator.schema.TRAIN_SCHEMA`; a folder without training rows gives an
    empty frame with the schema's columns.
    """
    return _load(results_dir, TRAIN, filters, columns)


def dataset_files(results_dir: PathLike, kind: str = EVALS) -> list[str]:
    """The Parquet files of one dataset (``"evals"`` or ``"train"``), sorted; ``.tmp`` files skipped."""
    fs, base = _filesystem(results_dir, kind)
    return _list_files(fs, base)


# --------------------------------------------------------------------------------------


def _filesystem(results_dir: PathLike, kind: str) -> tuple[pafs.FileSystem, str]:
    if kind not in DATASETS:
        raise ValueError(f"kind must be one of {sorted(DATASETS)}, got {kind!r}")
    subdir = dataset_dir(kind)
    text = os.fspath(results_dir)
    try:
        fs, root = resolve_filesystem(text)  # the project's one storage layer
    except (pa.ArrowException, OSError) as exc:
        raise AnalysisError(f"cannot open results folder {text}: {exc}") from exc
    return fs, f"{root.rstrip('/')}/{subdir}"


def _list_files(fs: pafs.FileSystem, base: str) -> list[str]:
    files = []
    for info in list_files(fs, base, recursive=True):
        relative = info.path[len(base):].lstrip("/")
        if info.path.endswith(PARQUET_SUFFIX) and not any(is_hidden(part) for part in relative.split("/")):
            files.append(info.path)
    return files


def _to_expression(filters: Filters) -> pc.Expression | None:
    if filters is None or isinstance(filters, pc.Expression):
        return filters
    if len(filters) == 0:
        return None
    try:
        return pq.filters_to_expression(list(filters))
    except (TypeError, ValueError, pa.ArrowException) as exc:
        raise AnalysisError(f"bad filters {filters!r}: {exc}") from exc


def _empty_frame(schema: pa.Schema, columns: list[str]) -> pd.DataFrame:
    return schema.empty_table().select(columns).to_pandas()


def _load(results_dir: PathLike, kind: str, filters: Filters, columns: Iterable[str] | None) -> pd.DataFrame:
    fs, base = _filesystem(results_dir, kind)
    keys = dataset_keys(kind)
    files = _list_files(fs, base)
    # Counters plugin treatments declared and the grid axes' columns (orchestrator.schema).
    counters, axes = _extra_columns(fs, files, dataset_schema(kind))
    file_schema = dataset_schema(kind, counters if kind == TRAIN else (), axes)
    full_schema = pa.schema(list(file_schema) + list(_PARTITION_SCHEMA))
    axis_names = [f.name for f in axes]
    wanted = _wanted_columns(full_schema, [*keys, *axis_names], columns)
    expression = _to_expression(filters)
    if not files:
        frame = _empty_frame(full_schema, wanted)
        frame.attrs.update(files=0, rows_read=0, duplicates_dropped=0, conflicting_duplicates=0, source=base,
                           axis_columns=axis_names)
        return frame

    dataset = ds.dataset(files, schema=full_schema, format=PARQUET_VERIFIED, filesystem=fs,
                         partitioning=ds.partitioning(_PARTITION_SCHEMA, flavor="hive"),
                         partition_base_dir=base)
    try:  # binding the filter to the schema happens here, before any file is read
        scanner = dataset.scanner(columns=wanted, filter=expression)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise AnalysisError(f"bad filters {filters!r}: {_one_line(exc)}") from exc
    try:
        table = scanner.to_table()
    except (pa.ArrowException, OSError) as exc:
        _raise_for_bad_file(fs, base, files, file_schema, exc)
    _check_schema_version(dataset, table, expression)

    frame = table.to_pandas()
    frame["axes"] = frame["axes"].fillna("")  # rows of schema version 1: no axes
    rows_read = len(frame)
    duplicated = frame.duplicated(subset=list(keys), keep="first")
    n_duplicates = int(duplicated.sum())
    conflicting = 0
    if n_duplicates:
        comparable = [c for c in deterministic_columns(frame.columns) if c not in ("schema_version",)]
        conflicting = len(frame.drop_duplicates(subset=comparable)) - (rows_read - n_duplicates)
        frame = frame.loc[~duplicated].reset_index(drop=True)
    frame.attrs.update(files=len(files), rows_read=rows_read, duplicates_dropped=n_duplicates,
                       conflicting_duplicates=int(max(conflicting, 0)), source=base, axis_columns=axis_names)
    return frame


def _extra_columns(fs: pafs.FileSystem, files: list[str], base: pa.Schema) -> tuple[list[str], list[pa.Field]]:
    """``(counters beyond the core ones, grid-axis columns)`` found in the files' footers.

    Every run of one (benchmark, arch, treatment) folder has the same treatment, so the same
    counters, and the same sweep, whose axis fields never change once it has results (they are
    part of the run_key): the first and the last file of each folder are read, not every file.
    """
    by_folder: dict[str, list[str]] = {}
    for path in files:
        by_folder.setdefault(posixpath.dirname(path), []).append(path)
    counters: dict[str, None] = {}
    axes: dict[str, pa.Field] = {}
    for paths in by_folder.values():
        for path in dict.fromkeys([paths[0], paths[-1]]):
            try:
                with fs.open_input_file(path) as handle:
                    schema = pq.read_schema(handle)
            except (pa.ArrowException, OSError):
                continue  # a damaged file is reported by the scan, with its name
            for column in schema:
                if column.name in base.names or column.name in PARTITION_COLUMNS:
                    continue
                if column.name.startswith(COUNTER_PREFIX):
                    counters[column.name.removeprefix(COUNTER_PREFIX)] = None
                else:
                    axes.setdefault(column.name, column)
    return sorted(counters), [axes[name] for name in sorted(axes)]


def _wanted_columns(schema: pa.Schema, keys: Sequence[str], columns: Iterable[str] | None) -> list[str]:
    names = schema.names
    if columns is None:
        return names
    requested = list(columns)
    unknown = [c for c in requested if c not in names]
    if unknown:
        raise AnalysisError(f"unknown column(s) {unknown}; the dataset has: {', '.join(names)}")
    keep = set(IDENTITY_COLUMNS) | set(keys) | set(requested)
    return [c for c in names if c in keep]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _raise_for_bad_file(fs: pafs.FileSystem, base: str, files: list[str], file_schema: pa.Schema,
                        exc: BaseException) -> NoReturn:
    """Find the file that makes the scan fail and raise an AnalysisError naming it."""
    for path in files:
        try:
            ds.dataset(path, schema=file_schema, format=PARQUET_VERIFIED, filesystem=fs).to_table()
        except (pa.ArrowException, OSError) as file_exc:
            reason = _one_line(file_exc)
            if "CRC checksum verification failed" in reason:
                reason = ("damaged: a page fails its checksum (in a sweep folder, `mtrl run` sets it aside and "
                          "redoes its trial)")
            raise AnalysisError(f"cannot read Parquet file {path}: {reason}") from file_exc
    raise AnalysisError(f"cannot read the Parquet dataset under {base}: {_one_line(exc)}") from exc


def _check_schema_version(dataset: ds.Dataset, table: pa.Table, expression: pc.Expression | None) -> None:
    if table.num_rows == 0:
        return
    versions = table["schema_version"]
    readable = pa.array(READABLE_SCHEMA_VERSIONS, pa.int32())
    n_ok = pc.sum(pc.is_in(versions, value_set=readable)).as_py() or 0  # nulls are not counted
    n_bad = len(versions) - n_ok
    if n_bad == 0:
        return
    bad = ~ds.field("schema_version").isin(readable) | ds.field("schema_version").is_null()
    fragments = dataset.get_fragments(filter=expression) if expression is not None else dataset.get_fragments()
    for fragment in fragments:
        rows = fragment.to_table(schema=dataset.schema, columns=["schema_version"], filter=bad)
        if rows.num_rows:
            found = sorted({v for v in rows["schema_version"].to_pylist()}, key=lambda v: (v is None, v))
            shown = ", ".join("missing" if v is None else str(v) for v in found)
            raise AnalysisError(
                f"{fragment.path}: unknown schema_version {shown}; this analysis reads schema_version "
                f"{_versions()} only (re-run the trial or use a matching version of the tool)")
    raise AnalysisError(f"unknown schema_version in {n_bad} rows; this analysis reads versions {_versions()}")


def _versions() -> str:
    return " and ".join(map(str, READABLE_SCHEMA_VERSIONS))
