"""Sweep files: YAML -> a validated :class:`SweepSpec` -> the list of :class:`TrialConfig`.

A sweep file names its grid axes (``benchmarks``, ``archs``, ``treatments``, ``seeds``),
the :class:`TrialConfig` fields every trial shares (``defaults``), per-cell ``overrides``,
optional single-task baselines, the resources of one trial, the checkpoint interval,
retries and the default storage. Example (see ``sweeps/*.yaml`` and ``docs/orchestration.md``)::

    name: smoke
    plugins: [my_lab.treatments]  # optional: modules that register more names (docs/extending.md)
    benchmarks: [MT3]
    archs: [mtppo, moe]
    treatments: [dense, {redo: {tau: 0.001}}]
    seeds: 2                      # seeds 0 and 1; or an explicit list [0, 4, 7]
    single_task_baselines: false  # arch "single", treatment dense, on every task of the benchmarks
    defaults: {total_steps: 2000, eval_interval_steps: 1000}
    overrides:
      - match: {arch: moe}
        set: {n_experts: 3}
    resources: {cpu: 1, gpu: 0}
    checkpoint_interval_steps: 1000
    max_failures: 3
    storage: results

Everything is checked before anything runs: unknown keys (with a suggestion), unknown axis
values, impossible budgets, unknown treatment parameters. :func:`expand` builds every
:class:`TrialConfig`, so each of its validators runs for every trial. Errors are
:class:`SpecError`, one line each.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator, model_validator

from mtrl_plasticity.errors import SpecError, UserError, brief, clip, validation_message
from mtrl_plasticity.plugins import load_plugins
from mtrl_plasticity.registry import name_problem
from mtrl_plasticity.results import Cell
from mtrl_plasticity.treatments import treatment_spec
from orchestrator import registered, yaml_input
from orchestrator.config import MAX_SEED, TrialConfig
from orchestrator.trackers import DEFAULT_TRACKERS, tracker_names
from orchestrator.yaml_input import read_yaml_file

__all__ = ["Cell", "SpecError", "SweepSpec", "cells", "expand", "load_spec", "trials_by_cell", "validate_spec"]

GRID_FIELDS = ("benchmark", "arch", "treatment", "seed", "sweep")
"""TrialConfig fields the grid itself sets: not allowed in ``defaults`` or ``overrides``."""

MAX_SEEDS = 1_000
"""Most seeds per cell (a count or a list)."""


# --- parts of a sweep file ------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Resources(_Strict):
    """What Ray reserves for one trial."""

    cpu: float = Field(1.0, gt=0, le=1_024, allow_inf_nan=False)
    """CPU cores per trial (torch uses ``defaults.torch_threads`` of them)."""
    gpu: float = Field(0.0, ge=0, le=64, allow_inf_nan=False)
    """GPUs per trial; fractional values share one GPU (0.25 = four trials per GPU)."""

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, value: float) -> float:
        if value > 1 and value != int(value):
            raise ValueError(f"a trial may use a fraction of one GPU or whole GPUs, not {value}")
        return value


class CellMatch(_Strict):
    """Which cells an override applies to: every given field must match (omitted = any)."""

    benchmark: str | None = None
    arch: str | None = None
    treatment: str | None = None

    def matches(self, benchmark: str, arch: str, treatment: str) -> bool:
        wanted = (self.benchmark, self.arch, self.treatment)
        return all(w is None or w == got for w, got in zip(wanted, (benchmark, arch, treatment), strict=True))


class Override(_Strict):
    """TrialConfig fields set for the cells that ``match`` selects (applied in file order)."""

    match: CellMatch
    set: dict[str, Any]

    @field_validator("set")
    @classmethod
    def _trial_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_trial_fields(value, allow_checkpoint_interval=True)
        return value


@dataclass(frozen=True)
class TreatmentChoice:
    """One value of the ``treatments`` axis: a registered name and parameter overrides."""

    name: str
    params: Mapping[str, Any]


# --- the sweep file -------------------------------------------------------------------
class SweepSpec(_Strict):
    """A validated sweep file (after ``--set`` overrides)."""

    name: str
    """Sweep name: the results folder ``<storage>/<name>`` and the ``sweep`` column."""
    protocol: Literal["draft", "tmlr", "custom"] = "custom"
    """Which protocol of the paper the file encodes: a label for reports, and ``tmlr`` fills in the
    published protocol's treatment parameters (each treatment's ``protocol_defaults``) unless given."""
    plugins: list[str] = Field(default_factory=list)
    """Modules to import before the rest is checked: they register treatments, architectures and
    benchmarks (``docs/extending.md``). Imported on every worker too."""
    description: str = ""
    benchmarks: list[str] = Field(min_length=1)
    """Grid axis: ``MT3``/``MT5``/``MT7`` or single task names."""
    archs: list[str] = Field(min_length=1)
    """Grid axis: ``mtppo``, ``moe``, ``moore`` (``single`` only with single-task benchmarks)."""
    treatments: list[str | dict[str, dict[str, Any]]] = Field(min_length=1)
    """Grid axis: treatment names, or ``{name: {param: value}}`` to override its parameters."""
    seeds: StrictInt | list[StrictInt]
    """A count ``n`` (seeds ``0 .. n-1``) or an explicit list of seeds."""
    single_task_baselines: bool = False
    """Also run arch ``single`` with treatment ``dense`` on every task of the benchmarks."""
    defaults: dict[str, Any] = Field(default_factory=dict)
    """TrialConfig fields shared by every trial."""
    overrides: list[Override] = Field(default_factory=list)
    """Per-cell TrialConfig fields, applied after ``defaults`` in file order."""
    resources: Resources = Field(default_factory=Resources)
    checkpoint_interval_steps: int = Field(10_000, gt=0, le=10**9)
    """Parquet segment + checkpoint every this many steps (an override may change it per cell)."""
    max_failures: int = Field(3, ge=0, le=100)
    """Retries of a failed trial, each from its last checkpoint."""
    max_concurrent_trials: int | None = Field(None, ge=1, le=100_000)
    """Cap on trials running at once (default: as many as the resources allow)."""
    storage: str = "results"
    """Where results go: a local/NFS path or ``s3://bucket/prefix`` (``--storage`` overrides)."""
    trackers: list[str] = Field(default_factory=lambda: list(DEFAULT_TRACKERS))
    """Where the trials write live curves: ``tensorboard`` (default), ``wandb``, ``mlflow``; ``[]`` for none
    (``--tracker`` overrides; ``orchestrator.trackers``). A log: a rerun may change it."""

    @model_validator(mode="before")
    @classmethod
    def _load_plugins(cls, data: Any) -> Any:
        # Before any other check: the plugins' names are valid values of the axes below.
        if isinstance(data, dict) and data.get("plugins") is not None:
            load_plugins(data["plugins"])
        return data

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        problem = name_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("benchmarks")
    @classmethod
    def _known_benchmarks(cls, value: list[str]) -> list[str]:
        for name in value:
            registered.benchmark(name)  # one line naming the choices
        _unique(value, "benchmark")
        return value

    @field_validator("archs")
    @classmethod
    def _known_archs(cls, value: list[str]) -> list[str]:
        for name in value:
            registered.architecture(name)
        _unique(value, "arch")
        return value

    @field_validator("treatments")
    @classmethod
    def _known_treatments(cls, value: list) -> list:
        names = []
        for entry in value:
            if isinstance(entry, dict) and len(entry) != 1:
                raise ValueError(f"a treatment with parameters is one mapping {{name: {{param: value}}}}, "
                                 f"got {brief(entry)}")
            name = entry if isinstance(entry, str) else next(iter(entry))
            names.append(registered.treatment(name))
        _unique(names, "treatment")  # the run_key names the treatment only
        return value

    @field_validator("trackers")
    @classmethod
    def _known_trackers(cls, value: list[str]) -> list[str]:
        return tracker_names(value)

    @field_validator("seeds")
    @classmethod
    def _valid_seeds(cls, value: int | list[int]) -> int | list[int]:
        if isinstance(value, int):
            if value < 1:
                raise ValueError(f"must be a count >= 1 or a list of seeds, got {value}")
            if value > MAX_SEEDS:
                raise ValueError(f"at most {MAX_SEEDS:,} seeds per cell, got {value:,}")
            return value
        if not value:
            raise ValueError("must be a count >= 1 or a non-empty list of seeds")
        if len(value) > MAX_SEEDS:
            raise ValueError(f"at most {MAX_SEEDS:,} seeds per cell, got a list of {len(value):,}")
        if any(s < 0 for s in value):
            raise ValueError(f"every seed must be >= 0, got {brief(value)}")
        if any(s > MAX_SEED for s in value):
            raise ValueError(f"every seed must be <= {MAX_SEED} (the seed column is int32), got {brief(value)}")
        _unique(value, "seed")
        return value

    @field_validator("defaults")
    @classmethod
    def _default_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_trial_fields(value, allow_checkpoint_interval=False)
        return value

    @model_validator(mode="after")
    def _devices_match_resources(self) -> "SweepSpec":
        device = self.defaults.get("device", "auto")
        if device == "cuda" and self.resources.gpu == 0:
            raise ValueError("defaults.device is 'cuda' but resources.gpu is 0: give trials a GPU or use device 'auto'")
        if device == "cpu" and self.resources.gpu > 0:
            raise ValueError("resources.gpu > 0 but defaults.device is 'cpu': the GPU would sit idle")
        return self

    @model_validator(mode="after")
    def _overrides_match_the_grid(self) -> "SweepSpec":
        grid = cells(self)
        for i, override in enumerate(self.overrides):
            for axis in ("benchmark", "arch", "treatment"):
                wanted = getattr(override.match, axis)
                if wanted is not None and wanted not in {getattr(c, axis) for c in grid}:
                    raise ValueError(f"overrides.{i}.match.{axis}: {brief(wanted)} is not in this sweep's grid")
            if not any(override.match.matches(c.benchmark, c.arch, c.treatment) for c in grid):
                raise ValueError(f"overrides.{i}.match selects no cell of this sweep")
        return self

    # --- derived ----------------------------------------------------------------------
    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    @property
    def treatment_choices(self) -> list[TreatmentChoice]:
        out = []
        for entry in self.treatments:
            if isinstance(entry, str):
                out.append(TreatmentChoice(entry, {}))
            else:
                name, params = next(iter(entry.items()))
                out.append(TreatmentChoice(name, dict(params or {})))
        return out

    def baseline_tasks(self) -> list[str]:
        """Tasks of the single-task baselines: every task of the benchmarks, in order, once."""
        if not self.single_task_baselines:
            return []
        tasks: list[str] = []
        for name in self.benchmarks:
            tasks.extend(t for t in registered.benchmark(name).tasks if t not in tasks)
        return tasks

    def baseline_cells(self) -> list[Cell]:
        """The single-task baseline cells (arch ``single``, treatment ``dense``, no treatment parameters)."""
        return [Cell(task, "single", "dense") for task in self.baseline_tasks()]

    def resolved(self) -> dict[str, Any]:
        """The spec as plain data, every default filled in (what ``sweep.yaml`` stores)."""
        return self.model_dump(mode="json")


def _unique(values: Sequence, what: str) -> None:
    seen = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{what} {brief(v)} appears twice")
        seen.add(v)


def _check_trial_fields(fields: Mapping[str, Any], allow_checkpoint_interval: bool) -> None:
    known = set(TrialConfig.model_fields) - set(GRID_FIELDS)
    if not allow_checkpoint_interval:
        known.discard("checkpoint_interval_steps")
    for key in fields:
        if key in GRID_FIELDS:
            raise ValueError(f"{key!r} is set by the grid; use the {key}s axis instead")
        if key == "checkpoint_interval_steps" and not allow_checkpoint_interval:
            raise ValueError("set checkpoint_interval_steps at the top level of the sweep file")
        if key not in known:
            raise ValueError(f"unknown trial setting {brief(key)}{_suggest(key, known)}")


def _suggest(key: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- loading --------------------------------------------------------------------------
def parse_assignments(pairs: Sequence[str]) -> dict[str, Any]:
    """``["a.b=1", "seeds=[1, 2]"]`` -> ``{"a.b": 1, "seeds": [1, 2]}`` (values parsed as YAML)."""
    return yaml_input.parse_assignments(pairs, "--set")


def read_sweep_file(path: str) -> dict[str, Any]:
    """The YAML mapping of a sweep file; :class:`SpecError` if it is missing, malformed or too big."""
    try:
        data = read_yaml_file(path, what="sweep file")
    except UserError as exc:
        raise SpecError(str(exc)) from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a sweep file is a YAML mapping (name:, benchmarks:, ...), got {type(data).__name__}")
    return data


def apply_assignments(data: dict[str, Any], assignments: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with dotted paths set: ``{"defaults.total_steps": 4000}``.

    Integer path parts index lists (``overrides.0.set.gamma``); missing mappings are created.
    """
    out = copy.deepcopy(data)
    for path, value in assignments.items():
        parts = path.split(".")
        node: Any = out
        for part in parts[:-1]:
            node = _child(node, part, path)
        last = parts[-1]
        if isinstance(node, list):
            node[_index(node, last, path)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise SpecError(f"--set {clip(path)}: {clip('.'.join(parts[:-1]))} is not a mapping or list")
    return out


def _child(node: Any, part: str, path: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, path)]
    if isinstance(node, dict):
        if part not in node or node[part] is None:
            node[part] = {}
        return node[part]
    raise SpecError(f"--set {clip(path)}: {brief(part)} is inside a value that is not a mapping or list")


def _index(node: list, part: str, path: str) -> int:
    try:
        index = int(part)
        node[index]
    except (ValueError, IndexError):
        raise SpecError(f"--set {clip(path)}: {brief(part)} is not an index of a list of {len(node)}") from None
    return index


def validate_spec(data: Mapping[str, Any], source: str) -> SweepSpec:
    """:class:`SweepSpec` from plain data, or :class:`SpecError` naming ``source`` and the key."""
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{source}: {validation_message(exc, describe=_describe_problem)}") from None


def load_spec(path: str, assignments: Mapping[str, Any] | None = None) -> SweepSpec:
    """Read, override (``--set``) and validate a sweep file."""
    data = apply_assignments(read_sweep_file(path), assignments or {})
    return validate_spec(data, path)


_UNION_SHAPES = {
    "treatments": "expected a list of treatment names or {name: {param: value}} mappings",
    "seeds": "expected a count (seeds 0..n-1) or a list of seeds",
}
"""What a union-typed field accepts: pydantic would list one complaint per branch."""

_TYPE_ERRORS = ("string_type", "dict_type", "int_type", "int_parsing", "list_type")


def _describe_problem(err: dict[str, Any], location: list[str]) -> str:
    """A sweep file's problem phrased for a user: a union's expected shapes, unknown keys with a suggestion."""
    # A union (treatments entry: str | mapping) names its branches in the location.
    loc = [p for p in location if not p.startswith(("str", "dict[", "int", "list["))]
    where = ".".join(loc)
    if loc and loc[0] in _UNION_SHAPES and err["type"] in _TYPE_ERRORS:
        return f"{loc[0]}: {_UNION_SHAPES[loc[0]]}"
    if err["type"] == "extra_forbidden":
        return f"unknown key {where!r}{_suggest(loc[-1], _fields_at(loc[:-1]))}"
    message = err["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _fields_at(loc: list[str]) -> list[str]:
    """Field names of the model at ``loc`` inside a sweep file (for "did you mean")."""
    model: type[BaseModel] = SweepSpec
    for part in loc:
        if part.isdigit():
            continue
        info = model.model_fields.get(part)
        nested = _model_in(info.annotation) if info is not None else None
        if nested is None:
            return []
        model = nested
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


# --- expansion ------------------------------------------------------------------------
def axis_cells(spec: SweepSpec) -> list[Cell]:
    """The cells of the axes (benchmarks x archs x treatments), in the spec's order."""
    return [Cell(b, a, t.name) for b in spec.benchmarks for a in spec.archs for t in spec.treatment_choices]


def cells(spec: SweepSpec) -> list[Cell]:
    """Every cell of the grid in a stable order: the axes' cells, then the single-task baselines."""
    return axis_cells(spec) + spec.baseline_cells()


def cell_fields(spec: SweepSpec, cell: Cell, baseline: bool = False) -> dict[str, Any]:
    """The TrialConfig fields of every trial of ``cell`` except the seed.

    Treatment parameters: the protocol's values (a ``tmlr`` sweep gets each treatment's
    ``protocol_defaults["tmlr"]``), then the sweep's ``treatments`` entry, then overrides.
    A single-task ``baseline`` cell takes no treatment parameters but the overrides'.
    """
    params: dict[str, Any] = {}
    if not baseline:
        params = treatment_spec(cell.treatment).protocol_defaults(spec.protocol)
        for choice in spec.treatment_choices:
            if choice.name == cell.treatment:
                params = {**params, **choice.params}
    fields: dict[str, Any] = {"checkpoint_interval_steps": spec.checkpoint_interval_steps, **spec.defaults}
    for override in spec.overrides:
        if override.match.matches(cell.benchmark, cell.arch, cell.treatment):
            chosen = dict(override.set)
            if "treatment_params" in chosen:
                params = {**params, **chosen.pop("treatment_params")}
            fields.update(chosen)
    fields.update(benchmark=cell.benchmark, arch=cell.arch, treatment=cell.treatment,
                  treatment_params=params, sweep=spec.name)
    return fields


def expand(spec: SweepSpec) -> list[TrialConfig]:
    """Every trial of the sweep, each a validated TrialConfig; :class:`SpecError` on the first bad cell."""
    trials: list[TrialConfig] = []
    kinds = [(cell, False) for cell in axis_cells(spec)] + [(cell, True) for cell in spec.baseline_cells()]
    for cell, baseline in kinds:
        fields = cell_fields(spec, cell, baseline)
        for seed in spec.seed_list:
            try:
                trials.append(TrialConfig(**fields, seed=seed))
            except ValidationError as exc:
                raise SpecError(f"cell {cell.label()}: {validation_message(exc)}") from None
    if spec.resources.gpu == 0:
        on_cuda = next((t for t in trials if t.device == "cuda"), None)
        if on_cuda is not None:
            raise SpecError(f"cell {Cell.of(on_cuda).label()}: device 'cuda' but resources.gpu is 0")
    keys = [t.run_key for t in trials]
    if len(set(keys)) != len(keys):
        duplicate = next(k for k in keys if keys.count(k) > 1)
        raise SpecError(f"two trials share the run_key {duplicate!r}")
    return trials


def trials_by_cell(trials: Iterable[TrialConfig]) -> dict[Cell, list[TrialConfig]]:
    out: dict[Cell, list[TrialConfig]] = {}
    for trial in trials:
        out.setdefault(Cell.of(trial), []).append(trial)
    return out


# --- comparing two specs ----------------------------------------------------------------
RESUME_NEUTRAL_FIELDS = ("storage", "trackers")
"""Fields that may differ between the stored and the given spec of one sweep."""


def spec_differences(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """``["defaults.total_steps: 2000 -> 4000", ...]`` between two resolved specs."""
    a, b = _flatten(stored), _flatten(given)
    out = []
    for key in sorted(set(a) | set(b)):
        if key.split(".")[0] in RESUME_NEUTRAL_FIELDS:
            continue
        if a.get(key, _MISSING) != b.get(key, _MISSING):
            out.append(f"{key}: {_show(a.get(key, _MISSING))} -> {_show(b.get(key, _MISSING))}")
    return out


_MISSING = object()


def _show(value: Any) -> str:
    return "(absent)" if value is _MISSING else brief(value)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}
