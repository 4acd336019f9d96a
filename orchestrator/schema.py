"""The Parquet contract between trials (writers) and the analysis stage (readers).

Layout under a results folder::

    metrics/evals/benchmark=<b>/arch=<a>/treatment=<t>/<run_key>__<first>-<last>.parquet
    metrics/train/benchmark=<b>/arch=<a>/treatment=<t>/<run_key>__<first>-<last>.parquet

``benchmark``, ``arch`` and ``treatment`` are Hive partition columns: they live in the
directory names, not inside the files, and pyarrow/pandas add them back on read, so
``pandas.read_parquet("results/x/metrics/evals", filters=[("arch", "==", "moe")])`` works.

Rules every reader may rely on:

* a segment file appears atomically (written as ``*.parquet.tmp``, then renamed);
* rows are unique on :data:`EVAL_KEYS` / :data:`TRAIN_KEYS` across all files of a run
  (readers still deduplicate on those keys as a safety net);
* columns whose name starts with :data:`WALL_CLOCK_PREFIX` depend on the machine and the
  clock; every other column is a deterministic function of the trial config and seed.

Intervention counters (``interventions/<counter>``) are an open family, so that a treatment
from a plugin can add its own without a schema release:

* every train file has the :data:`~mtrl_plasticity.results.CORE_COUNTERS` columns (the
  paper's treatments' counters; 0.0 in the rows of a treatment that does not count them), as
  schema version 1 always had;
* a treatment may declare further counters at registration
  (:func:`mtrl_plasticity.register_treatment`); the train files of its trials then also
  have ``interventions/<counter>`` (float64, cumulative) for each, after the core columns
  and before the ``perf/`` columns (:func:`train_schema`);
* readers take the union of the columns over the files they read (``analysis.load`` does);
  a row of a run whose treatment lacks a counter reads null there.

The declared counters of a treatment come from the registry, so a writer and every later
reader agree on them without a list here.

Grid axes (a sweep's ``axes:``) are columns too. Every row has ``axes``, the label of its
trial's axis values (``actor_lr-0.0003.n_experts-2``; empty without axes), and the rows of a
sweep with axes have one column per axis field, named as the field and typed as it (int64,
float64, bool or string), right after ``axes`` (:func:`axis_columns`), so
``filters=[("actor_lr", "==", 3e-4)]`` selects one value. They are not partitions: a value
would multiply the folders, and the run_key already names the trial.

Schema version 2 added ``axes`` and the axis columns, and the evals column
``discounted_return_mean``. Version 1 files read with those columns null (``axes``: no axes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pyarrow as pa

from mtrl_plasticity.results import (
    CORE_COUNTERS,
    COUNTER_PREFIX,
    EVALS,
    PARTITION_COLUMNS,
    TRAIN,
    counter_column,
    dataset_dir,
)

__all__ = ["CORE_COUNTERS", "COUNTER_PREFIX", "EVALS_DIR", "EVALS_SCHEMA", "EVAL_KEYS", "PARTITION_COLUMNS",
           "READABLE_SCHEMA_VERSIONS", "SCHEMA_VERSION", "TRAIN_DIR", "TRAIN_KEYS", "TRAIN_METRIC_COLUMNS",
           "TRAIN_SCHEMA", "axis_columns", "counter_column",
           "dataset_keys", "dataset_schema", "deterministic_columns", "train_metric_columns", "train_schema"]

SCHEMA_VERSION = 2
"""Bumped whenever a column changes meaning or type; readers refuse unknown versions."""
READABLE_SCHEMA_VERSIONS = (1, 2)
"""The versions this tool reads (and resumes): every earlier one's files are a subset of this one's."""

WALL_CLOCK_PREFIX = "perf/"

EVALS_DIR = dataset_dir(EVALS)
TRAIN_DIR = dataset_dir(TRAIN)

EVAL_KEYS = ("run_key", "step", "task")
TRAIN_KEYS = ("run_key", "step")

_IDENTITY_FIELDS = [
    pa.field("schema_version", pa.int32()),
    pa.field("sweep", pa.string()),
    pa.field("run_key", pa.string()),
    pa.field("seed", pa.int32()),
    pa.field("step", pa.int64()),  # lock-step training steps done when the row was taken
    pa.field("epoch", pa.int32()),  # training epochs done (0 = before training)
    pa.field("axes", pa.string()),  # label of the trial's grid-axis values, "" without axes (version 2)
]

_AXIS_TYPES = {int: pa.int64(), float: pa.float64(), bool: pa.bool_(), str: pa.string()}

EVALS_SCHEMA = pa.schema(
    _IDENTITY_FIELDS
    + [
        pa.field("task", pa.string()),  # e.g. "LavaGapS7-v0"
        pa.field("task_index", pa.int32()),  # position of the task in its benchmark
        pa.field("episodes", pa.int32()),
        pa.field("return_mean", pa.float64()),  # undiscounted raw return
        pa.field("return_std", pa.float64()),
        pa.field("discounted_return_mean", pa.float64()),  # mean of sum_t gamma^t r_t, the trial's gamma (version 2)
        pa.field("normalised_return_mean", pa.float64()),  # raw / best achievable (Table 3)
        pa.field("success_rate", pa.float64()),  # fraction of episodes with reward > 0
        pa.field("episode_length_mean", pa.float64()),
    ]
)
"""One row per (run_key, step, task): an evaluation point of one task."""

TRAIN_METRIC_COLUMNS = (
    # PPO update of the epoch that ended at `step`
    "losses/policy_loss",
    "losses/value_loss",
    "losses/entropy",
    "losses/approx_kl",
    "losses/clip_fraction",
    "losses/explained_variance",
    # training episodes that ended during the epoch
    "charts/train_return_mean",
    "charts/train_episodes",
    "charts/env_steps",  # transitions collected so far, all tasks together (step * T)
    # fraction of prunable weights that are exactly masked
    "sparsity/actor",
    "sparsity/critic",
    # plasticity metrics: only at evaluation points, null elsewhere
    "plasticity/dormant_actor",
    "plasticity/dormant_critic",
    "plasticity/srank_actor",
    "plasticity/srank_critic",
    "plasticity/fisher_trace",
    # cumulative intervention counters: the core ones (CORE_COUNTERS)
    *(counter_column(c) for c in CORE_COUNTERS),
    # wall clock (excluded from determinism comparisons)
    "perf/wall_seconds",  # seconds of this trial so far, summed over resumed runs
    "perf/env_seconds",  # of which inside env.step/reset (training and evaluation)
    "perf/env_fraction",  # env_seconds / wall_seconds
    "perf/steps_per_second",  # lock-step training steps per second in this epoch
)

TRAIN_SCHEMA = pa.schema(
    _IDENTITY_FIELDS + [pa.field(name, pa.float64()) for name in TRAIN_METRIC_COLUMNS]
)
"""One row per (run_key, step) at the end of every training epoch (without any declared counter)."""


def train_metric_columns(extra_counters: Iterable[str] = ()) -> tuple[str, ...]:
    """:data:`TRAIN_METRIC_COLUMNS` with ``interventions/<c>`` for each extra counter, before ``perf/``."""
    extra = [counter_column(c) for c in extra_counters if c not in CORE_COUNTERS]
    if not extra:
        return TRAIN_METRIC_COLUMNS
    first_perf = next(i for i, c in enumerate(TRAIN_METRIC_COLUMNS) if c.startswith(WALL_CLOCK_PREFIX))
    return TRAIN_METRIC_COLUMNS[:first_perf] + tuple(dict.fromkeys(extra)) + TRAIN_METRIC_COLUMNS[first_perf:]


def axis_columns(axis_types: Mapping[str, type]) -> list[pa.Field]:
    """The columns of grid axes ``{field: python type}``, sorted by name (int64, float64, bool, string)."""
    return [pa.field(name, _AXIS_TYPES[axis_types[name]]) for name in sorted(axis_types)]


def _with_axes(schema: pa.Schema, axes: Sequence[pa.Field]) -> pa.Schema:
    if not axes:
        return schema
    at = schema.get_field_index("axes") + 1
    return pa.schema(list(schema)[:at] + list(axes) + list(schema)[at:])


def train_schema(extra_counters: Sequence[str] = (), axes: Sequence[pa.Field] = ()) -> pa.Schema:
    """The train file schema of a trial whose treatment declares ``extra_counters`` beyond the core
    ones, with the columns of its grid ``axes`` (:func:`axis_columns`)."""
    if not [c for c in extra_counters if c not in CORE_COUNTERS]:
        return _with_axes(TRAIN_SCHEMA, axes)
    return _with_axes(pa.schema(_IDENTITY_FIELDS + [pa.field(name, pa.float64())
                                                    for name in train_metric_columns(extra_counters)]), axes)


def dataset_schema(dataset: str, extra_counters: Sequence[str] = (), axes: Sequence[pa.Field] = ()) -> pa.Schema:
    """The file schema of ``dataset`` (``"evals"`` or ``"train"``, the latter with a treatment's extra
    counters), with the columns of the trial's grid ``axes``."""
    return _with_axes(EVALS_SCHEMA, axes) if dataset == EVALS else train_schema(extra_counters, axes)


def dataset_keys(dataset: str) -> tuple[str, ...]:
    """The columns a row of ``dataset`` is unique on."""
    return EVAL_KEYS if dataset == EVALS else TRAIN_KEYS


def deterministic_columns(columns: Iterable[str]) -> list[str]:
    """The columns that must be equal between two runs with the same config and seed."""
    return [c for c in columns if not c.startswith(WALL_CLOCK_PREFIX)]
