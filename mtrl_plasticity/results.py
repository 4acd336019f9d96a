"""The shared names of the results: how trials, cells, datasets, files and folders are called.

Writers (the trial worker, the sweep driver) and readers (``mtrl status``, the resume check,
the analysis, a user's pandas code) agree on these names and on nothing else, so each one is
defined once, here. The Parquet columns and their types are the schema
(``orchestrator.schema``); the folder's marker and storage rules are ``orchestrator.storage``.

A results folder (``mtrl run`` writes a sweep folder, ``mtrl trial`` a trial folder)::

    mtrl-results.json                          MARKER: this tool's folder, and which layout
    sweep.yaml                                 SPEC_FILE (sweep folders)
    metrics/<dataset>/benchmark=<b>/arch=<a>/treatment=<t>/<segment or compacted file>
    checkpoints/<run_key>/step-<step>.pt       CHECKPOINTS_DIR (sweep folders)
    trials/<run_key>/                          TRIALS_DIR (trial folders: config.json, checkpoints/)
    logs/<run_key>.log, .failures.json         LOGS_DIR
    set-aside/                                 SET_ASIDE_DIR: damaged files moved out of the way
    tune/run-<time>/                           TUNE_DIR: Ray Tune's own files (logs only)
    tensorboard/<run_key>/                     TENSORBOARD_DIR: each trial's TensorBoard event files (logs only)
    progress/<run_key>.json                    PROGRESS_DIR: each running trial's progress record (logs only)
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple, Protocol, get_args

# --- trials and cells ---------------------------------------------------------------------------


def run_key(benchmark: str, arch: str, treatment: str, seed: int) -> str:
    """The stable name of a trial: its Tune trial, its folders, and a column of every Parquet row."""
    return f"{benchmark}-{arch}-{treatment}-s{seed:02d}"


class CellMember(Protocol):
    """Anything that names a cell: a trial config, a status row."""

    @property
    def benchmark(self) -> str: ...
    @property
    def arch(self) -> str: ...
    @property
    def treatment(self) -> str: ...


class Cell(NamedTuple):
    """A (benchmark, arch, treatment) combination: the unit of tables, figures and status.

    A cell holds one trial per seed. Single-task baselines are cells whose benchmark is the
    task and whose arch is ``single``.
    """

    benchmark: str
    arch: str
    treatment: str

    @classmethod
    def of(cls, member: CellMember) -> Cell:
        """The cell of a trial config (or anything else with the three names)."""
        return cls(member.benchmark, member.arch, member.treatment)

    def label(self) -> str:
        """``"MT3 / moe / dense"``: how tables and progress lines name the cell."""
        return f"{self.benchmark} / {self.arch} / {self.treatment}"

    def __str__(self) -> str:
        """``"MT3/moe/dense"``: how messages name the cell."""
        return f"{self.benchmark}/{self.arch}/{self.treatment}"


# --- an agent's two networks ----------------------------------------------------------------
NetworkName = Literal["actor", "critic"]
"""The two networks of an agent, as treatments, masks, metrics and columns (``sparsity/actor``) name them."""
NETWORK_NAMES: tuple[NetworkName, ...] = get_args(NetworkName)


# --- datasets and their files -------------------------------------------------------------------
EVALS = "evals"
"""One row per (run_key, step, task): an evaluation point of one task."""
TRAIN = "train"
"""One row per (run_key, step): the end of a training epoch."""
DATASETS = (EVALS, TRAIN)
METRICS_DIR = "metrics"
PARTITION_COLUMNS = ("benchmark", "arch", "treatment")
"""Hive partition columns: folder names, not columns inside the files."""

PARQUET_SUFFIX = ".parquet"
_SEGMENT = re.compile(r"__(\d{9})-(\d{9})\.parquet$")


def dataset_dir(dataset: str) -> str:
    """``metrics/<dataset>``, relative to the results folder."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    return f"{METRICS_DIR}/{dataset}"


def partition_dir(benchmark: str, arch: str, treatment: str) -> str:
    """``benchmark=<b>/arch=<a>/treatment=<t>``, relative to a dataset's folder."""
    return f"benchmark={benchmark}/arch={arch}/treatment={treatment}"


def segment_name(key: str, first_step: int, last_step: int) -> str:
    """The file of a trial's rows of steps in ``(first_step, last_step]`` (plus step 0 in the first segment)."""
    return f"{key}__{first_step:09d}-{last_step:09d}{PARQUET_SUFFIX}"


def compacted_name(key: str) -> str:
    """The one file a finished trial's segments are compacted into."""
    return f"{key}{PARQUET_SUFFIX}"


def segment_range(name: str) -> tuple[int, int] | None:
    """``(first_step, last_step)`` of a segment file name, or None for any other name."""
    match = _SEGMENT.search(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def run_key_of_file(name: str) -> str | None:
    """The run_key a segment or compacted file name belongs to, or None for another file."""
    if not name.endswith(PARQUET_SUFFIX) or is_hidden(name):
        return None
    return name.split("__")[0].removesuffix(PARQUET_SUFFIX)


def is_run_file(name: str, key: str) -> bool:
    """Whether ``name`` is one of the files of run ``key``: a segment of it, or its compacted file."""
    return name == compacted_name(key) or (name.startswith(f"{key}__") and name.endswith(PARQUET_SUFFIX))


def is_hidden(name: str) -> bool:
    """Temporary and private files (``.x.tmp``, ``_metadata``) that readers skip."""
    return name.startswith((".", "_"))


# --- intervention counters ----------------------------------------------------------------------
COUNTER_PREFIX = "interventions/"
CORE_COUNTERS = ("prune_events", "neurons_recycled", "resets_done", "set_rewires")
"""Counters every train file holds (the paper's treatments'); a treatment may declare more."""


def counter_column(counter: str) -> str:
    """The train column of a counter: ``interventions/<counter>``."""
    return f"{COUNTER_PREFIX}{counter}"


# --- the folder layout --------------------------------------------------------------------------
MARKER = "mtrl-results.json"
"""Marks a folder written by this tool; a folder with files but without it is never written into."""
MARKER_KIND = "mtrl-results"
SPEC_FILE = "sweep.yaml"
CHECKPOINTS_DIR = "checkpoints"
TRIALS_DIR = "trials"
TRIAL_CONFIG_FILE = "config.json"
LOGS_DIR = "logs"
SET_ASIDE_DIR = "set-aside"
TUNE_DIR = "tune"
TENSORBOARD_DIR = "tensorboard"
"""Each trial's TensorBoard event files, ``tensorboard/<run_key>/``: logs, never read to resume."""
PROGRESS_DIR = "progress"
"""Each trial's progress record (``progress/<run_key>.json``) and the driver's (``progress/driver.json``)."""
WANDB_DIR = "wandb"
"""W&B's local files of the trials of a local results folder (unless ``WANDB_DIR`` says otherwise)."""
