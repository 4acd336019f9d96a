"""The paper's treatments: their parameters (pydantic models, torch-free) and their registration.

``mtrl run`` (``--dry-run`` included) and ``mtrl status`` check each trial's treatment
parameters before anything starts, without importing torch: the implementations are
registered as ``"module:Class"`` and imported when a trial builds one. A plugin registers
its treatments through the same :func:`mtrl_plasticity.register_treatment`.

Field defaults are the draft protocol; ``protocol_defaults["tmlr"]`` holds what the
published (TMLR 2025) protocol uses instead. ``docs/treatments.md``'s table is generated
from these registrations (``python -m orchestrator.treatment_table``).
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, PositiveInt, model_validator

from agents.sparsity.schedule import PruningSchedule
from mtrl_plasticity.results import NetworkName
from mtrl_plasticity.treatments import NoParameters, TreatmentParameters, Variant, register_treatment

Scope = Literal["global", "layer", "erk"]
SCOPES = get_args(Scope)
"""Where gmp ranks magnitudes: over the whole network, per layer, or per layer at ERK sparsities."""

Distribution = Literal["erk", "uniform"]
DISTRIBUTIONS = get_args(Distribution)
"""How SET splits its sparsity over layers (``epsilon`` overrides both)."""

LayerChoice = Literal["linear", "all"]
LAYER_CHOICES = get_args(LayerChoice)
"""Which layers SET makes sparse: Linear only (published), or Conv2d and Linear."""



class GmpParameters(TreatmentParameters):
    """Gradual magnitude pruning (:mod:`agents.sparsity.gmp`): the cubic schedule and its scope."""

    final_sparsity: float = Field(0.95, ge=0.0, lt=1.0, allow_inf_nan=False)
    """Fraction of each network's prunable weights masked from ``end_fraction`` on."""
    scope: Scope = "global"
    """Where magnitudes are ranked: the whole network, each layer, or each layer at ERK sparsities."""
    prune_task_encoder: bool = False
    """Also prune the MoE/MOORE task encoder (its weights pick the expert mixture)."""
    start_fraction: float = Field(0.05, ge=0.0, le=1.0, allow_inf_nan=False)
    """Pruning starts at this fraction of ``total_steps``."""
    end_fraction: float = Field(0.8, ge=0.0, le=1.0, allow_inf_nan=False)
    """The final sparsity is reached at this fraction of ``total_steps``."""
    frequency: PositiveInt = 500
    """Prune every this many steps inside the window (and at its end)."""

    @model_validator(mode="after")
    def _window_in_order(self) -> "GmpParameters":
        if self.end_fraction < self.start_fraction:
            raise ValueError(f"end_fraction {self.end_fraction} is before start_fraction {self.start_fraction}")
        return self

    def schedule(self, total_steps: int) -> PruningSchedule:
        return PruningSchedule.from_fractions(total_steps, self.final_sparsity, self.start_fraction,
                                              self.end_fraction, self.frequency)


class SetParameters(TreatmentParameters):
    """Sparse Evolutionary Training (:mod:`agents.sparsity.set`): layout and rewiring."""

    sparsity: float = Field(0.95, ge=0.0, lt=1.0, allow_inf_nan=False)
    """Fraction of the sparse layers' weights that are inactive, constant over training."""
    zeta: float = Field(0.3, ge=0.0, le=1.0, allow_inf_nan=False)
    """Fraction of each sparse layer's active weights dropped and regrown at each rewiring."""
    rewire_every: PositiveInt = 2000
    """Rewire every this many steps."""
    distribution: Distribution = "erk"
    """How the sparsity is split over layers."""
    epsilon: float | None = Field(None, gt=0.0, allow_inf_nan=False)
    """Mocanu's Erdos-Renyi epsilon: sets each layer's density instead of ``sparsity``."""
    layers: LayerChoice = "linear"
    """Which layers are sparse: ``linear`` (published) or ``all`` (convolutions too)."""
    prune_task_encoder: bool = False
    """Also make the MoE/MOORE task encoder sparse."""

    @model_validator(mode="after")
    def _sparsity_or_epsilon(self) -> "SetParameters":
        if self.epsilon is not None and "sparsity" in self.model_fields_set:
            raise ValueError("give either sparsity or epsilon (epsilon sets the sparsity through Mocanu's "
                             "Erdos-Renyi layout)")
        return self


class ReDoParameters(TreatmentParameters):
    """ReDo (:mod:`agents.interventions.redo`): how often, how dormant, on what."""

    protocol_defaults = {"tmlr": {"tau": 0.001}}

    tau: float = Field(0.01, gt=0.0, allow_inf_nan=False)
    """A neuron is dormant when its normalised mean activation is at most this."""
    every: PositiveInt = 5000
    """Recycle every this many steps."""
    batch_size: PositiveInt = 1024
    """Observations from the recent-training buffer that score the neurons."""
    networks: list[NetworkName] = Field(default_factory=lambda: list(get_args(NetworkName)), min_length=1)
    """Which networks are recycled."""


class ResetParameters(TreatmentParameters):
    """Reset of the heads' output layers (:mod:`agents.interventions.reset`): when, how often."""

    protocol_defaults = {"tmlr": {"every": 100_000, "max_resets": 2}}

    steps: list[PositiveInt] = Field(default_factory=lambda: [60_000, 120_000])
    """Steps at which the output layers are reset (draft protocol)."""
    every: PositiveInt | None = None
    """Reset at every multiple of this instead (before the end of training); excludes ``steps``."""
    max_resets: int | None = Field(None, ge=0)
    """At most this many resets in all."""
    networks: list[NetworkName] = Field(default_factory=lambda: list(get_args(NetworkName)), min_length=1)
    """Whose output layers are reset."""

    @model_validator(mode="after")
    def _steps_or_every(self) -> "ResetParameters":
        if self.every is not None and "steps" in self.model_fields_set:
            raise ValueError("give either steps or every, not both (a sweep of protocol tmlr sets every: "
                             "give every: null with steps)")
        return self


class WeightDecayParameters(TreatmentParameters):
    """Weight decay (:mod:`agents.interventions.weight_decay`): coefficient, L2 or decoupled."""

    protocol_defaults = {"tmlr": {"coef": 1e-6}}

    coef: float = Field(1e-3, ge=0.0, allow_inf_nan=False)
    """Decay coefficient."""
    decoupled: bool = False
    """AdamW's decoupled decay instead of L2 inside Adam."""


register_treatment("dense", NoParameters, implementation="agents.treatments:Treatment", display_name="Dense",
                   description="plain Adam")
register_treatment(
    "gmp", GmpParameters, implementation="agents.sparsity.gmp:GradualMagnitudePruning", counters=["prune_events"],
    display_name="GMP", description="gradual magnitude pruning",
    variants={f"gmp{p}": Variant({"final_sparsity": p / 100}, f"{p}% Sparsity", f"gradual magnitude pruning to {p}%")
              for p in (80, 95, 99)})
register_treatment(
    "set", SetParameters, implementation="agents.sparsity.set:SparseEvolutionaryTraining", counters=["set_rewires"],
    display_name="SET", description="Sparse Evolutionary Training",
    variants={"set95": Variant({"sparsity": 0.95}, "SET 95%", "Sparse Evolutionary Training at 95%")})
register_treatment("redo", ReDoParameters, implementation="agents.interventions.redo:ReDo",
                   counters=["neurons_recycled"], display_name="ReDo", description="recycle dormant neurons")
register_treatment("reset", ResetParameters, implementation="agents.interventions.reset:OutputLayerReset",
                   counters=["resets_done"], display_name="Reset",
                   description="re-initialise the task heads' output layers")
register_treatment("wd", WeightDecayParameters, implementation="agents.interventions.weight_decay:WeightDecay",
                   display_name="Weight Decay", description="weight decay")
