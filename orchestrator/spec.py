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
import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mtrl_plasticity.errors import SpecError, TreatmentError, UserError, brief, clip, validation_message
from mtrl_plasticity.plugins import load_plugins
from mtrl_plasticity.registry import name_problem
from mtrl_plasticity.results import Cell, axis_label, label_pieces
from mtrl_plasticity.treatments import TREATMENTS, resolved_parameters, treatment_spec
from orchestrator import registered, yaml_input
from orchestrator.config import MAX_SEED, TrialConfig, axis_field_problem, axis_type
from orchestrator.trackers import DEFAULT_TRACKERS, tracker_names
from orchestrator.yaml_input import read_yaml_file

__all__ = ["Cell", "SpecError", "SweepSpec", "cells", "expand", "load_spec", "trials_by_cell", "validate_spec"]

GRID_FIELDS = ("benchmark", "arch", "treatment", "seed", "sweep")
"""TrialConfig fields the grid itself sets: not allowed in ``defaults`` or ``overrides``."""

MAX_SEEDS = 1_000
"""Most seeds per cell (a count or a list)."""
MAX_AXIS_COMBINATIONS = 1_000
"""Most value combinations of the ``axes`` (their product)."""
STORED = "stored"
"""Validation context key: the data is a results folder's ``sweep.yaml`` (see :func:`validate_spec`)."""
KNOWN_LABELS = "known_labels"
"""Validation context key: labels a results folder already gives treatment entries (:func:`label_key`)."""


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
    """A treatment's label (one variant) or its registered name (every entry of that treatment)."""

    def matches(self, benchmark: str, arch: str, choice: TreatmentChoice) -> bool:
        return ((self.benchmark is None or self.benchmark == benchmark) and (self.arch is None or self.arch == arch)
                and (self.treatment is None or self.treatment in (choice.label, choice.name)))


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
    """One value of the ``treatments`` axis: a registered name, parameter overrides and its label."""

    name: str
    params: Mapping[str, Any]
    label: str
    """What names its trials (run_key, ``treatment`` partition, tables): the user's ``label:``, else
    :func:`derived_label`."""


BASELINE = TreatmentChoice("dense", {}, "dense")
"""The treatment of the single-task baselines."""


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
    treatments: list[str | dict[str, Any]] = Field(min_length=1)
    """Grid axis: treatment names, or ``{name: {param: value}}`` to override its parameters, optionally
    with ``label: LABEL`` (default: the name and the parameters that differ from its defaults). A
    treatment may appear several times with different parameters (its variants)."""
    seeds: StrictInt | list[StrictInt]
    """A count ``n`` (seeds ``0 .. n-1``) or an explicit list of seeds."""
    single_task_baselines: bool = False
    """Also run arch ``single`` with treatment ``dense`` on every task of the benchmarks."""
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    """Further grid axes over TrialConfig fields, ``{field: [values]}``: each combination of values is
    its own set of trials in every cell (``{actor_lr: [1e-3, 3e-4]}``)."""
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
    def _labelled_treatments(cls, value: list, info: ValidationInfo) -> list:
        context = info.context or {}
        protocol = info.data.get("protocol", "custom")
        known: Mapping[str, str] = context.get(KNOWN_LABELS) or {}
        out: list[str | dict[str, Any]] = []
        labels: dict[str, int] = {}
        keys: dict[str, int] = {}
        for i, entry in enumerate(value):
            name, params, label = _entry_parts(entry)
            registered.treatment(name)
            try:
                full = resolved_parameters(name, params, protocol)
                plain = resolved_parameters(name, {}, protocol)
            except TreatmentError as exc:
                raise ValueError(f"entry {i}: {exc}") from None
            key = label_key(name, full)
            if label is None:
                if context.get(STORED):  # a sweep.yaml of a tool without labels: one entry per name, named by it
                    label = name
                else:
                    label = known.get(key) or derived_label(name, {k: v for k, v in full.items() if plain.get(k) != v})
            else:
                _check_label(label, name)
            if key in keys:
                shown = f"with {brief(full)}" if full else "without parameters"
                raise ValueError(f"entries {keys[key]} and {i} are the same treatment: "
                                 f"{treatment_spec(name).base!r} {shown}")
            if label in labels:
                raise ValueError(f"entries {labels[label]} and {i} are both labelled {label!r}; give one a "
                                 f"different label:")
            labels[label], keys[key] = i, i
            out.append(name if not params and label == name else {name: dict(params), "label": label})
        return out

    @field_validator("axes")
    @classmethod
    def _valid_axes(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        combinations = 1
        for name in sorted(value):
            problem = axis_field_problem(name)
            if problem is not None:
                hint = _suggest(name, TrialConfig.model_fields) if name not in TrialConfig.model_fields else ""
                raise ValueError(f"{problem}{hint}")
            values = value[name]
            if not isinstance(values, list) or not values:
                raise ValueError(f"{name}: give a non-empty list of values, got {brief(values)}")
            out[name] = [_axis_value(name, v) for v in values]
            _unique(out[name], f"{name} value")
            combinations *= len(values)
        if combinations > MAX_AXIS_COMBINATIONS:
            raise ValueError(f"{combinations:,} combinations of values; at most {MAX_AXIS_COMBINATIONS:,}")
        return out

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
        grid = treatment_cells(self) + [(task, "single", BASELINE) for task in self.baseline_tasks()]
        choices = {"benchmark": {b for b, _, _ in grid}, "arch": {a for _, a, _ in grid},
                   "treatment": {n for _, _, c in grid for n in (c.label, c.name)}}
        for i, override in enumerate(self.overrides):
            for axis in ("benchmark", "arch", "treatment"):
                wanted = getattr(override.match, axis)
                if wanted is not None and wanted not in choices[axis]:
                    raise ValueError(f"overrides.{i}.match.{axis}: {brief(wanted)} is not in this sweep's grid")
            if not any(override.match.matches(b, a, c) for b, a, c in grid):
                raise ValueError(f"overrides.{i}.match selects no cell of this sweep")
        return self

    @model_validator(mode="after")
    def _axes_set_nowhere_else(self) -> "SweepSpec":
        for name in self.axes:
            if name in self.defaults:
                raise ValueError(f"defaults.{name} is also a grid axis (axes.{name}): give its values in one place")
            for i, override in enumerate(self.overrides):
                if name in override.set:
                    raise ValueError(f"overrides.{i}.set.{name} is a grid axis (axes.{name}): every cell takes "
                                     f"each of its values")
        return self

    # --- derived ----------------------------------------------------------------------
    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    @property
    def treatment_choices(self) -> list[TreatmentChoice]:
        """The ``treatments`` entries, each with its label (validation wrote every label out)."""
        out = []
        for entry in self.treatments:
            name, params, label = _entry_parts(entry)
            out.append(TreatmentChoice(name, params, label or name))
        return out

    def axis_combinations(self) -> list[dict[str, Any]]:
        """Every combination of the ``axes`` values, ``[{}]`` without axes (fields sorted, values in file order)."""
        names = list(self.axes)
        return [dict(zip(names, values, strict=True)) for values in itertools.product(*self.axes.values())]

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
        return [Cell(task, "single", "dense", axis_label(values)) for task in self.baseline_tasks()
                for values in self.axis_combinations()]

    def resolved(self) -> dict[str, Any]:
        """The spec as plain data, every default filled in (what ``sweep.yaml`` stores)."""
        return self.model_dump(mode="json")


def _unique(values: Sequence, what: str) -> None:
    seen = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{what} {brief(v)} appears twice")
        seen.add(v)


def _entry_parts(entry: Any) -> tuple[str, dict[str, Any], str | None]:
    """``(name, params, label or None)`` of a ``treatments`` entry; ``ValueError`` for another shape."""
    if isinstance(entry, str):
        return entry, {}, None
    names = [k for k in entry if k != "label"]
    if len(names) != 1:
        raise ValueError(f"a treatment entry is a name, {{name: {{param: value}}}} or {{name: {{param: value}}, "
                         f"label: LABEL}}, got {brief(entry)}")
    name = names[0]
    params = entry[name]
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ValueError(f"the parameters of {name!r} are a mapping {{param: value}}, got {brief(params)}")
    label = entry.get("label")
    if "label" in entry and not isinstance(label, str):
        raise ValueError(f"the label of {name!r} is a name, got {brief(label)}")
    return str(name), dict(params), label


def label_key(name: str, full_params: Mapping[str, Any]) -> str:
    """What makes two treatment entries the same: the treatment (a named variant counts as its
    parametrised form: ``gmp95`` is ``gmp`` with ``final_sparsity: 0.95``) and every parameter."""
    return json.dumps([treatment_spec(name).base, full_params], sort_keys=True)


def derived_label(name: str, differing: Mapping[str, Any]) -> str:
    """The label of an entry without one: ``name``, plus each parameter that differs from the treatment's
    defaults (of the sweep's protocol) as ``.<param>-<value>``, sorted: ``random.sparsity-0.7``. A value
    without a folder-safe spelling, or a label over the length limit, gives ``name.<8 hex digits>`` of
    the differing parameters instead."""
    if not differing:
        return name
    pieces = label_pieces(differing)
    label = f"{name}.{pieces}" if pieces is not None else None
    if label is None or name_problem(label) is not None:
        digest = hashlib.sha256(json.dumps(dict(differing), sort_keys=True).encode()).hexdigest()[:8]
        label = f"{name}.{digest}"
    return label


def _check_label(label: str, name: str) -> None:
    problem = name_problem(label)
    if problem is not None:
        raise ValueError(f"label of {name!r}: {problem}")
    if label != name and label in TREATMENTS:
        raise ValueError(f"label {label!r} of {name!r} is the name of another registered treatment; choose "
                         f"another label")


def _axis_value(name: str, value: Any) -> Any:
    """``value`` as TrialConfig field ``name`` holds it (``1`` for a float field is ``1.0``); one
    spelling per value, so one trial per value."""
    kind = axis_type(name)
    if isinstance(value, bool) and kind is not bool:
        raise ValueError(f"{name}: expected a number, got {str(value).lower()}")
    annotation = TrialConfig.model_fields[name].annotation
    try:
        typed: Any = TypeAdapter(annotation).validate_python(value, strict=kind is not float)
    except ValidationError as exc:
        raise ValueError(f"{name}: {brief(value)} is not a valid value ({validation_message(exc, limit=1)})") from None
    if kind is float:
        typed = float(typed)
        if not math.isfinite(typed):
            raise ValueError(f"{name}: {brief(value)} is not a finite number")
    if isinstance(typed, str) and label_pieces({name: typed}) is None:
        raise ValueError(f"{name}: {brief(value)} has characters a folder name cannot hold")
    return typed


def _check_trial_fields(fields: Mapping[str, Any], allow_checkpoint_interval: bool) -> None:
    known = set(TrialConfig.model_fields) - set(GRID_FIELDS) - {"label", "axis_fields"}
    if not allow_checkpoint_interval:
        known.discard("checkpoint_interval_steps")
    for key in fields:
        if key in GRID_FIELDS:
            raise ValueError(f"{key!r} is set by the grid; use the {key}s axis instead")
        if key in ("label", "axis_fields"):
            raise ValueError(f"{key!r} is set by the grid: give a treatment entry a label, or the sweep axes:")
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


def validate_spec(data: Mapping[str, Any], source: str, stored: bool = False,
                  known_labels: Mapping[str, str] | None = None) -> SweepSpec:
    """:class:`SweepSpec` from plain data, or :class:`SpecError` naming ``source`` and the key.

    ``stored``: the data is a results folder's ``sweep.yaml``. Every label there is written out,
    except in the files of a tool before labels, where a treatment appeared once and its
    trials carry its name: an entry without a label is then named by its treatment.
    ``known_labels`` (:func:`labels_of` a folder's spec): an entry without a label whose
    treatment and parameters the folder already has takes the folder's label for them.
    """
    context = {STORED: stored, KNOWN_LABELS: dict(known_labels or {})}
    try:
        return SweepSpec.model_validate(data, context=context)
    except ValidationError as exc:
        raise SpecError(f"{source}: {validation_message(exc, describe=_describe_problem)}") from None


def load_spec(path: str, assignments: Mapping[str, Any] | None = None,
              known_labels: Mapping[str, str] | None = None) -> SweepSpec:
    """Read, override (``--set``) and validate a sweep file (``known_labels``: see :func:`validate_spec`)."""
    data = apply_assignments(read_sweep_file(path), assignments or {})
    return validate_spec(data, path, known_labels=known_labels)


def labels_of(spec: SweepSpec) -> dict[str, str]:
    """``{label_key: label}`` of a spec's treatment entries (what :func:`validate_spec` calls ``known_labels``)."""
    return {label_key(c.name, resolved_parameters(c.name, c.params, spec.protocol)): c.label
            for c in spec.treatment_choices}


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
def treatment_cells(spec: SweepSpec) -> list[tuple[str, str, TreatmentChoice]]:
    """``(benchmark, arch, treatment entry)`` of the axes (benchmarks x archs x treatments), in the spec's order."""
    return [(b, a, t) for b in spec.benchmarks for a in spec.archs for t in spec.treatment_choices]


def axis_cells(spec: SweepSpec) -> list[Cell]:
    """The cells of the axes (benchmarks x archs x treatments x axis values), in the spec's order."""
    return [Cell(b, a, t.label, axis_label(values)) for b, a, t in treatment_cells(spec)
            for values in spec.axis_combinations()]


def cells(spec: SweepSpec) -> list[Cell]:
    """Every cell of the grid in a stable order: the axes' cells, then the single-task baselines."""
    return axis_cells(spec) + spec.baseline_cells()


def cell_fields(spec: SweepSpec, benchmark: str, arch: str, choice: TreatmentChoice | None) -> dict[str, Any]:
    """The TrialConfig fields of every trial of a cell except the seed and the grid-axis values.

    Treatment parameters: the protocol's values (a ``tmlr`` sweep gets each treatment's
    ``protocol_defaults["tmlr"]``), then the sweep's ``treatments`` entry, then overrides.
    A single-task baseline (``choice`` None: :data:`BASELINE`) takes no treatment parameters
    but the overrides'.
    """
    params: dict[str, Any] = {}
    if choice is not None:
        params = {**treatment_spec(choice.name).protocol_defaults(spec.protocol), **choice.params}
    entry = choice or BASELINE
    fields: dict[str, Any] = {"checkpoint_interval_steps": spec.checkpoint_interval_steps, **spec.defaults}
    for override in spec.overrides:
        if override.match.matches(benchmark, arch, entry):
            chosen = dict(override.set)
            if "treatment_params" in chosen:
                params = {**params, **chosen.pop("treatment_params")}
            fields.update(chosen)
    fields.update(benchmark=benchmark, arch=arch, treatment=entry.name, label=entry.label, treatment_params=params,
                  sweep=spec.name, axis_fields=tuple(spec.axes))
    return fields


def expand(spec: SweepSpec) -> list[TrialConfig]:
    """Every trial of the sweep, each a validated TrialConfig; :class:`SpecError` on the first bad cell.

    Order: benchmarks, archs, treatments, axis values, seeds (then the baselines likewise).
    """
    trials: list[TrialConfig] = []
    kinds: list[tuple[str, str, TreatmentChoice | None]] = [*treatment_cells(spec)]
    kinds += [(task, "single", None) for task in spec.baseline_tasks()]
    for benchmark, arch, choice in kinds:
        fields = cell_fields(spec, benchmark, arch, choice)
        for values in spec.axis_combinations():
            for seed in spec.seed_list:
                try:
                    trials.append(TrialConfig(**fields, **values, seed=seed))
                except ValidationError as exc:
                    cell = Cell(benchmark, arch, (choice or BASELINE).label, axis_label(values))
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
