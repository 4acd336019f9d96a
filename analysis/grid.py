"""What a sweep folder says about its own grid: ``sweep.yaml``, read once per analysis.

A sweep folder (``mtrl run``) stores its resolved spec as ``sweep.yaml``. :func:`read_sweep`
reads it once, imports the plugins it lists (their tasks normalise the scores, their names
label tables and figures), and expands it with the project's own spec code (which builds and
validates every trial's config and starts nothing) into the exact cells and seeds the sweep
was asked to run, so :func:`analysis.coverage.coverage` can name every missing cell, seed and
treatment, including a treatment that failed everywhere and so left no row. Folders of ad-hoc
trials (``mtrl trial``) have no ``sweep.yaml``: their grid is inferred from the rows.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from typing import Any

from analysis.paper import variant_long_name
from mtrl_plasticity.errors import AnalysisError, UserError
from mtrl_plasticity.plugins import load_entry_points, load_plugins
from mtrl_plasticity.results import SPEC_FILE, Cell
from orchestrator.spec import SweepSpec, expand, validate_spec
from orchestrator.storage import read_bytes, resolve_filesystem
from orchestrator.yaml_input import MAX_FILE_BYTES, load_yaml_bytes


@dataclass(frozen=True)
class Grid:
    """Every cell of a sweep with the seeds it should hold."""

    seeds: dict[Cell, tuple[int, ...]]
    """Cell -> its seeds, in the spec's order (multi-task cells, then single-task baselines)."""
    last_steps: dict[Cell, int]
    """Cell -> its trials' ``total_steps``: the last evaluation step a finished run reaches
    (trials evaluate at step 0 and every ``eval_interval_steps``, which divides it)."""
    source: str = SPEC_FILE
    run_keys: frozenset[str] = frozenset()
    """The run keys of the grid's trials: rows of other runs are outside the grid."""
    variants: dict[str, str] = field(default_factory=dict)
    """Treatment label -> its long form (display name and parameters) for the labels that are
    not a registered name used as is: ``"redo.tau-0.001" -> "ReDo (tau=0.001)"``."""
    axis_values: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Axes label -> ``{field: value}``, in the grid's order (empty without grid axes)."""


@dataclass(frozen=True)
class SweepInfo:
    """A results folder's ``sweep.yaml``, as the analysis uses it (all empty for ad-hoc trials)."""

    meta: dict[str, Any] = field(default_factory=dict)
    """``name``, ``protocol`` and ``plugins`` of the file, those it has."""
    grid: Grid | None = None
    """The sweep's grid, or ``None`` without a valid ``sweep.yaml`` (then inferred from the rows)."""
    problem: str | None = None
    """Why a ``sweep.yaml`` that exists gives no grid (not a valid spec)."""


def grid_of(spec: SweepSpec) -> Grid:
    """The cells and seeds of a sweep spec, each cell's last evaluation step, its trials' run keys,
    the long forms of its treatment variants and its grid-axis values."""
    seeds: dict[Cell, list[int]] = {}
    last_steps: dict[Cell, int] = {}
    run_keys = set()
    axis_values: dict[str, dict[str, Any]] = {}
    for trial in expand(spec):
        cell = Cell.of(trial)
        seeds.setdefault(cell, []).append(int(trial.seed))
        last_steps[cell] = max(last_steps.get(cell, 0), int(trial.total_steps))
        run_keys.add(trial.run_key)
        if trial.axis_fields:
            axis_values.setdefault(trial.axis_label, trial.axis_values)
    variants = {c.label: variant_long_name(c.name, c.params) for c in spec.treatment_choices
                if c.params or c.label != c.name}
    return Grid(seeds={cell: tuple(values) for cell, values in seeds.items()}, last_steps=last_steps,
                run_keys=frozenset(run_keys), variants=variants, axis_values=axis_values)


def read_sweep(results_dir: str | os.PathLike[str]) -> SweepInfo:
    """``sweep.yaml`` of ``results_dir`` (a path or URI), read once; its plugins imported.

    :class:`~mtrl_plasticity.errors.AnalysisError` for a file the project's YAML reader refuses
    (malformed, not UTF-8, over its size, depth or alias limits) or a plugin it lists that does
    not load; a file that is YAML but not a valid sweep spec gives no grid and says why.
    """
    text = os.fspath(results_dir)
    fs, root = resolve_filesystem(text)
    source = f"{text.rstrip('/')}/{SPEC_FILE}"  # as the user named the folder
    try:
        load_entry_points()
        data = read_bytes(fs, posixpath.join(root, SPEC_FILE), MAX_FILE_BYTES + 1)
        if data is None:
            return SweepInfo()
        raw = load_yaml_bytes(data, source)
    except OSError:
        return SweepInfo()  # unreadable: the analysis works from the rows alone
    except UserError as exc:
        raise AnalysisError(str(exc)) from None
    if not isinstance(raw, dict):
        return SweepInfo(problem="it is not a mapping")
    meta = {key: raw[key] for key in ("name", "protocol", "plugins") if key in raw}
    try:
        if meta.get("plugins"):
            load_plugins(meta["plugins"])
    except UserError as exc:
        raise AnalysisError(f"{exc} ({SPEC_FILE} lists it: the analysis needs its tasks and names)") from None
    try:
        return SweepInfo(meta, grid_of(validate_spec(raw, source, stored=True)))
    except UserError as exc:
        return SweepInfo(meta, problem=" ".join(str(exc).split()))
