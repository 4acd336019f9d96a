"""The shared names of the results: how trials, cells, datasets, files and folders are called.

Writers (the trial worker, the sweep driver) and readers (``mtrl status``, the resume check,
the analysis, a user's pandas code) agree on these names and on nothing else, so each one is
defined once, here. The Parquet columns and their types are the schema
(``orchestrator.schema``); the folder's marker and storage rules are ``orchestrator.storage``.

A results folder (``mtrl run`` writes a sweep folder, ``mtrl trial`` a trial folder)::

    mtrl-results.json                          MARKER: this tool's folder, and which layout
    sweep.yaml                                 SPEC_FILE (sweep folders): the grid's latest version
    history/<NNNN>-<UTC time>.yaml             HISTORY_DIR: every version of the grid the folder accepted
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
from collections.abc import Mapping
from typing import Literal, NamedTuple, Protocol, get_args

# --- trials and cells ---------------------------------------------------------------------------


def run_key(benchmark: str, arch: str, treatment: str, seed: int, axes: str = "") -> str:
    """The stable name of a trial: its Tune trial, its folders, and a column of every Parquet row.

    ``treatment`` is the treatment's label in the sweep (the registered name unless the sweep
    gives a variant); ``axes`` the trial's :func:`axis_label` (``""`` without grid axes).
    """
    middle = f"{treatment}-{axes}" if axes else treatment
    return f"{benchmark}-{arch}-{middle}-s{seed:02d}"


# --- labels: treatment variants and grid axes ----------------------------------------------------
# A label is folder-safe (it goes into run_keys, file names and the `treatment` partition) and
# stable (a function of the values alone). Pieces are ``<field>-<value>`` joined by ".", fields in
# sorted order: ``random.sparsity-0.7`` (a variant of ``random``), ``actor_lr-0.0003.n_experts-2``
# (the values of two grid axes). A value is written as Python writes it, shortest round-trip for
# floats, so one value has one spelling (``3e-4`` and ``0.0003`` are both ``0.0003``).
_PIECE_START = re.compile(r"\.(?=[a-z][a-z0-9_]*-)")
"""Where one ``<field>-<value>`` piece ends and the next begins (values never hold ".x-")."""
_SAFE_VALUE = re.compile(r"[A-Za-z0-9._-]+")


def format_value(value: object) -> str | None:
    """How a label spells a value: ``true``, ``4``, ``0.0003``, ``1e-05``, ``cpu``; None if it has no
    folder-safe spelling (a list, a mapping, a string with other characters)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value).replace("+", "")
    if isinstance(value, str) and _SAFE_VALUE.fullmatch(value) and "__" not in value:
        return value
    return None


def label_pieces(values: Mapping[str, object]) -> str | None:
    """``{"n_experts": 2, "actor_lr": 3e-4}`` -> ``"actor_lr-0.0003.n_experts-2"``; None when a value has no
    folder-safe spelling."""
    pieces = []
    for name in sorted(values):
        text = format_value(values[name])
        if text is None:
            return None
        pieces.append(f"{name}-{text}")
    return ".".join(pieces)


def axis_label(values: Mapping[str, object]) -> str:
    """The label of a trial's grid-axis values (``""`` without axes); every value must have a spelling."""
    label = label_pieces(values)
    if label is None:
        raise ValueError(f"grid-axis values {dict(values)!r} have no folder-safe spelling")
    return label


def label_display(pieces: str) -> str:
    """``"actor_lr-0.0003.n_experts-2"`` -> ``"actor_lr=0.0003, n_experts=2"`` (how tables and legends show it)."""
    if not pieces:
        return ""
    parts = _PIECE_START.split(pieces)
    return ", ".join(part.replace("-", "=", 1) for part in parts)


# --- cells ----------------------------------------------------------------------------------------
class CellMember(Protocol):
    """Anything that names a cell: a trial config, a status row."""

    @property
    def benchmark(self) -> str: ...
    @property
    def arch(self) -> str: ...
    @property
    def treatment_label(self) -> str: ...
    @property
    def axis_label(self) -> str: ...


class Cell(NamedTuple):
    """A (benchmark, arch, treatment, axes) combination: the unit of tables, figures and status.

    A cell holds one trial per seed. ``treatment`` is the treatment's label (its registered
    name, or a variant's label), ``axes`` the :func:`axis_label` of the sweep's grid-axis values
    (``""`` without axes). Single-task baselines are cells whose benchmark is the task and whose
    arch is ``single``.
    """

    benchmark: str
    arch: str
    treatment: str
    axes: str = ""

    @classmethod
    def of(cls, member: CellMember) -> Cell:
        """The cell of a trial config (or anything else with the four names)."""
        return cls(member.benchmark, member.arch, member.treatment_label, member.axis_label)

    def label(self) -> str:
        """``"MT3 / moe / dense"`` (``"... / actor_lr=0.001"`` with axes): how tables and progress lines name it."""
        text = f"{self.benchmark} / {self.arch} / {self.treatment}"
        return f"{text} / {label_display(self.axes)}" if self.axes else text

    def __str__(self) -> str:
        """``"MT3/moe/dense"`` (``"MT3/moe/dense/actor_lr-0.001"`` with axes): how messages name the cell."""
        text = f"{self.benchmark}/{self.arch}/{self.treatment}"
        return f"{text}/{self.axes}" if self.axes else text


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
HISTORY_DIR = "history"
"""Every version of a sweep's spec the folder accepted (``<NNNN>-<UTC time>.yaml``); SPEC_FILE is the latest."""
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
