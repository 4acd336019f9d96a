"""`TrialConfig`: everything one training run depends on, frozen and serialisable.

Defaults are the draft paper's protocol (Table 2 and Table 4; `PROTOCOL.md`). A sweep file
or the `mtrl trial` flags override them; the published (TMLR) protocol is a sweep file that
overrides a handful of fields.
"""

from __future__ import annotations

import json
from typing import Any, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from mtrl_plasticity.errors import UnknownName
from mtrl_plasticity.registry import name_problem
from mtrl_plasticity.results import axis_label, run_key
from orchestrator import registered

MAX_SEED = 2**31 - 1
"""Largest seed: the Parquet ``seed`` column is int32."""


class TrialConfig(BaseModel):
    """One trial of the grid: a benchmark, an architecture, a treatment and a seed."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    # --- identity -----------------------------------------------------------------
    benchmark: str
    """``MT3``, ``MT5``, ``MT7`` or a single task name such as ``DoorKey-6x6-v0``."""
    arch: str
    """Registered architecture: ``mtppo`` (shared trunk), ``moe``, ``moore``, ``single``, ...
    (``agents.architectures``)."""
    treatment: str = "dense"
    """Registered treatment name (``dense``, ``gmp95``, ``redo``, ...; ``agents.treatment_parameters``)."""
    treatment_params: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the treatment's own defaults, e.g. ``{"tau": 0.001}`` for ReDo."""
    label: str = ""
    """The treatment's label in its sweep (``redo.tau-0.001``, or the sweep file's ``label:``): what the
    run_key, the ``treatment`` partition, tables and figures show. Empty: the treatment's name."""
    axis_fields: tuple[str, ...] = ()
    """The fields of this config that are grid axes of its sweep (``axes:``): their values are part of
    the run_key and columns of every Parquet row."""
    seed: int = 0
    """The one seed behind torch, numpy, Python and every environment."""
    sweep: str = "adhoc"
    """Name of the sweep this trial belongs to (a column of every Parquet row)."""

    # --- budget -------------------------------------------------------------------
    total_steps: int = Field(200_000, le=10**9)
    """Lock-step training steps; each step advances every task's environment once."""
    steps_per_epoch: int = Field(2_000, le=100_000)
    """Steps collected between two PPO updates (2000 per task, 2000*T samples in all)."""
    eval_interval_steps: int = 2_000
    """Evaluate every this many steps (and once before training)."""
    eval_episodes: int = Field(25, le=1_000)
    """Evaluation episodes per task and evaluation point (MOORE used 16, the paper 25)."""
    checkpoint_interval_steps: int = 10_000
    """Write Parquet segments and a checkpoint every this many steps (and at the end)."""

    # --- PPO (MOORE's semantics) --------------------------------------------------
    gamma: float = Field(0.99, gt=0, le=1, allow_inf_nan=False)
    """Discount factor for GAE."""
    gae_lambda: float = Field(0.95, ge=0, le=1, allow_inf_nan=False)
    """GAE lambda."""
    clip_eps: float = Field(0.2, gt=0, le=1, allow_inf_nan=False)
    """PPO clipping epsilon of the surrogate objective."""
    ent_coef: float = Field(0.01, ge=0, le=1, allow_inf_nan=False)
    """Entropy bonus coefficient."""
    actor_lr: float = Field(1e-3, gt=0, le=1, allow_inf_nan=False)
    """Adam learning rate of the actor."""
    critic_lr: float = Field(1e-3, gt=0, le=1, allow_inf_nan=False)
    """Adam learning rate of the critic."""
    policy_epochs: int = Field(8, le=1_000)
    """Passes over the epoch's samples for the policy."""
    policy_batch_per_task: int = Field(256, le=100_000)
    """Minibatch size per task for the policy (the minibatch mixes tasks: 256*T)."""
    critic_epochs: int = Field(1, le=1_000)
    """Critic passes per update; MOORE's multi-task scripts do one full-batch Adam step. Arch
    ``single`` defaults to 10 instead (its registration's ``trial_defaults`` in agents.architectures)."""
    critic_batch_size: int = Field(0, ge=0, le=10**6)
    """Critic minibatch size; 0 means the full batch, as MOORE's multi-task scripts do. Arch
    ``single`` defaults to 256 instead (its registration's ``trial_defaults`` in agents.architectures)."""
    hidden_size: int = Field(128, le=8_192)
    """Width of each task head's hidden layer."""
    n_experts: int = Field(0, ge=0, le=64)
    """Experts for MoE/MOORE; 0 takes the benchmark's k (2/3/4 for MT3/MT5/MT7)."""

    reset_episodes_each_epoch: bool = False
    """Start every task's episode afresh at the start of each epoch, as MOORE's ``Core.learn``
    does (the paper's protocols set it): an episode still running at an epoch's end is
    bootstrapped from ``V(s')`` as a truncation and dropped (it is not counted in
    ``charts/train_*``). False carries it over into the next epoch."""

    # --- plasticity metrics (paper appendix C) ------------------------------------
    measure_plasticity: bool = True
    """Compute dormancy, srank and Fisher trace at every evaluation point."""
    plasticity_buffer_size: int = Field(100_000, ge=1, le=10**7)
    """Training observations kept for the metrics (the most recent ones; 155 bytes each, so at most 1.55 GB)."""
    metric_batch_size: int = Field(1024, le=10**6)
    """Samples drawn from the buffer for each metric."""
    dormant_tau: float = Field(0.01, ge=0, le=1, allow_inf_nan=False)
    """Threshold on the normalised activation below which a neuron is dormant."""
    srank_delta: float = Field(0.01, ge=0, lt=1, allow_inf_nan=False)
    """Tolerance delta of the effective rank srank_delta."""

    # --- execution ----------------------------------------------------------------
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` uses a GPU when one is visible to the process, else the CPU."""
    torch_threads: int = Field(1, le=1_024)
    """Intra-op threads for torch; one trial is one CPU by default."""
    fast_observations: bool = True
    """MiniGrid observations through the exact fast path of ``envs.fast_obs`` (same bytes)."""
    check_observations: bool = False
    """Compute every observation both ways and stop at the first difference (a platform check)."""

    @model_validator(mode="before")
    @classmethod
    def _architecture_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("arch"), str):
            try:
                defaults = registered.arch_trial_defaults(data["arch"], cls.model_fields)
            except UnknownName:
                return data  # an unknown arch is reported by its field validator
            data = {**defaults, **data}
        return data

    @field_validator("benchmark")
    @classmethod
    def _known_benchmark(cls, value: str) -> str:
        registered.benchmark(value)  # one line naming the choices
        return value

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        registered.architecture(value)
        return value

    @field_validator("treatment")
    @classmethod
    def _known_treatment(cls, value: str) -> str:
        return registered.treatment(value)

    @field_validator("axis_fields")
    @classmethod
    def _known_axis_fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            problem = axis_field_problem(name)
            if problem is not None:
                raise ValueError(problem)
        if len(set(value)) != len(value):
            raise ValueError(f"axis_fields names a field twice: {list(value)}")
        return tuple(sorted(value))

    @field_validator("label")
    @classmethod
    def _folder_safe_label(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("treatment"):
            return ""  # one spelling of "the treatment's own name", so that equal configs compare equal
        problem = name_problem(value) if value else None
        if problem is not None:
            raise ValueError(f"treatment label {problem}")
        return value

    @model_validator(mode="after")
    def _axis_values_have_labels(self) -> "TrialConfig":
        if self.axis_fields:
            axis_label(self.axis_values)  # a ValueError naming the values without a folder-safe spelling
        return self

    @field_validator("seed")
    @classmethod
    def _non_negative_seed(cls, value: int) -> int:
        if not 0 <= value <= MAX_SEED:
            raise ValueError(f"seed must be in 0..{MAX_SEED} (the seed column is int32), got {value}")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1: `seed: true` or `total_steps: yes` is a typo, not a number.
        if isinstance(value, bool) and info.field_name is not None and \
                cls.model_fields[info.field_name].annotation in (int, float):
            raise ValueError(f"expected a number, got {str(value).lower()}")
        return value

    @model_validator(mode="after")
    def _consistent_budget(self) -> "TrialConfig":
        for name in ("total_steps", "steps_per_epoch", "eval_interval_steps", "eval_episodes",
                     "checkpoint_interval_steps", "policy_epochs", "policy_batch_per_task",
                     "critic_epochs", "hidden_size", "metric_batch_size", "torch_threads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.total_steps % self.steps_per_epoch:
            raise ValueError(
                f"steps_per_epoch={self.steps_per_epoch} must divide total_steps={self.total_steps}")
        for name in ("eval_interval_steps", "checkpoint_interval_steps"):
            interval = getattr(self, name)
            if interval % self.steps_per_epoch or self.total_steps % interval:
                raise ValueError(
                    f"{name}={interval} must be a multiple of steps_per_epoch={self.steps_per_epoch}"
                    f" and divide total_steps={self.total_steps}")
        registered.check_cell(self.benchmark, self.arch, self.treatment, self.treatment_params,
                              experts=self.experts, total_steps=self.total_steps)
        return self

    # --- derived ------------------------------------------------------------------
    @property
    def run_key(self) -> str:
        """Stable trial name: names the Tune trial, its folders and every Parquet row."""
        return run_key(self.benchmark, self.arch, self.treatment_label, self.seed, self.axis_label)

    @property
    def treatment_label(self) -> str:
        """The treatment's label: :attr:`label`, or the treatment's registered name."""
        return self.label or self.treatment

    @property
    def axis_values(self) -> dict[str, Any]:
        """``{field: value}`` of the grid axes (:attr:`axis_fields`)."""
        return {name: getattr(self, name) for name in self.axis_fields}

    @property
    def axis_label(self) -> str:
        """The label of the grid-axis values (``actor_lr-0.0003.n_experts-2``; ``""`` without axes)."""
        return axis_label(self.axis_values)

    @property
    def experts(self) -> int:
        """Experts of MoE/MOORE: ``n_experts``, else the benchmark's k."""
        return self.n_experts or registered.benchmark(self.benchmark).n_experts

    @property
    def n_epochs(self) -> int:
        return self.total_steps // self.steps_per_epoch

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): equal configs give equal strings."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrialConfig":
        """The config of :meth:`to_json` (an older tool's JSON, without the newer fields, reads with their defaults)."""
        return cls.model_validate(json.loads(text))


NOT_AXES = frozenset({"benchmark", "arch", "treatment", "seed", "sweep", "treatment_params", "label", "axis_fields",
                      "checkpoint_interval_steps"})
"""TrialConfig fields that cannot be grid axes: the grid's own, the treatment's parameters (give
variants of a treatment instead) and the checkpoint interval (a setting of the sweep)."""
_SCALARS = (int, float, bool, str)


def axis_field_problem(name: str) -> str | None:
    """Why TrialConfig field ``name`` cannot be a grid axis, or None."""
    field = TrialConfig.model_fields.get(name)
    if field is None:
        return f"{name!r} is not a trial setting"
    if name in NOT_AXES:
        return f"{name!r} cannot be a grid axis"
    annotation = field.annotation
    if annotation not in _SCALARS and get_origin(annotation) is not Literal:
        return f"{name!r} is not a number, flag or name, so it cannot be a grid axis"
    return None


def axis_type(name: str) -> type:
    """The Python type of grid-axis field ``name`` (``str`` for a choice of names)."""
    annotation = TrialConfig.model_fields[name].annotation
    return str if get_origin(annotation) is Literal else annotation  # type: ignore[return-value]
