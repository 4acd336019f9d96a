"""Treatments: a registry from names to the things a trial does to its networks.

A sweep file names a treatment as a string (``dense``, ``gmp95``, ``redo`` ...) and may
override its parameters (``treatment_params``). The trial loop calls the hooks of
:class:`Treatment` at fixed points; a treatment that does nothing is ``dense``.

A treatment's parameters and their checks live in a torch-free class of
:mod:`agents.treatment_parameters` that the treatment inherits; the sweep driver checks a
sweep with those (:func:`check_treatment`) without importing torch, the trial builds the
treatment (:func:`build_treatment`). To add one: a parameter class there, a subclass of
:class:`Treatment` (or ``MaskedTreatment``) and it, and a ``_register_variant`` line below.

Hook order inside a trial (``step`` counts lock-step training steps done so far):

1. ``build_optimizer(params, lr)`` for the actor, then the critic (with
   :data:`OPTIMIZER_KERNEL`);
2. ``setup(agent)`` once, before any environment step (e.g. SET's initial masks);
3. ``on_step(step, agent, buffer)`` after every lock-step environment step
   (``step`` = 1, 2, ...): step-scheduled interventions (pruning, ReDo, Reset, rewiring);
4. ``after_optimizer_step(agent, network_name)`` after every optimizer step of the
   actor (``"actor"``) or critic (``"critic"``): e.g. re-apply masks;
5. ``counters()`` and ``sparsity(agent)`` when a train row is written;
6. ``state_dict()`` / ``load_state_dict()`` for checkpoints (tensors and numbers only).

On resume the trial builds everything afresh (``setup`` included) and then loads the
checkpoint, so ``load_state_dict`` replaces whatever ``setup`` drew.

Randomness inside a treatment uses torch's global RNG (the trial seeds and checkpoints it).

Registered names (defaults are the draft protocol; the published one is a set of overrides,
see ``docs/treatments.md``):

==========  ==============================================================================
dense       plain Adam
gmp80/95/99 gradual magnitude pruning to 80/95/99% (``gmp``: ``final_sparsity`` a parameter)
set95       Sparse Evolutionary Training at 95% (``set``: ``sparsity`` a parameter)
redo        ReDo (recycle dormant neurons every 5000 steps, tau 0.01)
reset       re-initialise the task heads' output layers at 60k and 120k steps
wd          weight decay 1e-3 (L2 inside Adam; ``decoupled=True`` for AdamW)
==========  ==============================================================================
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents.treatment_parameters import (
    GmpParameters,
    ReDoParameters,
    ResetParameters,
    SetParameters,
    TreatmentParameters,
    WeightDecayParameters,
)

if TYPE_CHECKING:
    import torch

COUNTER_NAMES = ("prune_events", "neurons_recycled", "resets_done", "set_rewires")

OPTIMIZER_KERNEL: dict[str, Any] = {"fused": True}
"""How every treatment's Adam/AdamW runs: torch's fused kernel, the same update in one kernel
per step (~4x faster on CPU than the per-tensor loop torch picks for CPU tensors by default)."""


class Treatment(TreatmentParameters):
    """The dense baseline: plain Adam, no intervention. Subclasses override hooks.

    A treatment with parameters also inherits their class from
    :mod:`agents.treatment_parameters` (``class ReDo(Treatment, ReDoParameters)``), which
    checks them and sets the attributes the hooks use. This module imports torch only
    inside hooks: the sweep driver imports it to check sweeps.
    """

    def __init__(self, total_steps: int, **params: Any) -> None:
        super().__init__(total_steps, **params)
        self._counters = {name: 0.0 for name in COUNTER_NAMES}

    # --- hooks ----------------------------------------------------------------------
    def build_optimizer(self, params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
        import torch

        return torch.optim.Adam(params, lr=lr, **OPTIMIZER_KERNEL)

    def setup(self, agent) -> None:
        pass

    def on_step(self, step: int, agent, buffer) -> None:
        pass

    def after_optimizer_step(self, agent, network_name: str) -> None:
        pass

    def counters(self) -> dict[str, float]:
        """Cumulative intervention counts, one per name in :data:`COUNTER_NAMES`."""
        return dict(self._counters)

    def masks_of(self, network_name: str) -> dict[str, torch.Tensor]:
        """``{param name: bool mask}`` of ``"actor"`` or ``"critic"``; empty when unmasked.

        The plasticity metrics use it to leave masked neurons and weights out.
        """
        return {}

    def sparsity(self, agent) -> dict[str, float]:
        """Fraction of prunable weights exactly zero, per network.

        Counted over the weights of every Conv2d and Linear layer, the MoE/MOORE task
        encoder included (biases never), whether or not this treatment prunes them: it is
        the network's actual sparsity, not the schedule's target.
        """
        from agents.sparsity.masks import count_zero_weights

        out = {}
        for name, network in agent.networks().items():
            zeros, total = count_zero_weights(network)
            out[name] = zeros / total if total else 0.0
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"counters": dict(self._counters)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, value in state.get("counters", {}).items():
            self._counters[name] = float(value)


@dataclass(frozen=True)
class Registration:
    """How a registered name is built, and how its parameters are checked without building it."""

    build: Callable[..., Treatment]
    """``build(total_steps, **params)``: the treatment a trial runs."""
    check: Callable[..., Any]
    """``check(total_steps, **params)``: raises the ``ValueError`` ``build`` would raise for bad
    parameters; for the registered paper treatments it imports no torch."""


_REGISTRY: dict[str, Registration] = {}


def register(name: str, factory: Callable[..., Treatment], check: Callable[..., Any] | None = None) -> None:
    """Make ``name`` selectable from sweep files; ``factory(total_steps, **params)``.

    ``check`` (same signature) validates parameters for the sweep driver; by default it is
    ``factory`` itself, which is right but imports whatever the factory imports.
    """
    _REGISTRY[name] = Registration(factory, check or factory)


def treatment_names() -> list[str]:
    return list(_REGISTRY)


def _registration(name: str) -> Registration:
    if name not in _REGISTRY:
        raise ValueError(f"unknown treatment {name!r}; choose one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def build_treatment(name: str, params: dict[str, Any] | None = None, *, total_steps: int) -> Treatment:
    return _registration(name).build(total_steps, **(params or {}))


def check_treatment(name: str, params: dict[str, Any] | None = None, *, total_steps: int) -> None:
    """Raise the one-line ``ValueError`` :func:`build_treatment` would raise, without building.

    What ``mtrl run`` and ``mtrl status`` use to check a sweep: the paper's treatments are
    checked by their torch-free parameter classes (:mod:`agents.treatment_parameters`).
    """
    _registration(name).check(total_steps, **(params or {}))


def _register_variant(name: str, module: str, cls: str, parameters: type[TreatmentParameters],
                      **fixed: Any) -> None:
    """Register ``name``: built by ``module.cls`` (imported on first build), checked by ``parameters``.

    ``fixed`` pins parameters for a named variant (``gmp95`` pins ``final_sparsity``):
    the variant neither lists nor accepts them, so ``gmp95`` cannot silently become 80%.
    ``cls`` inherits ``parameters``, so both run the same checks.
    """

    def refuse_pinned(params: dict[str, Any]) -> None:
        pinned = set(fixed) & set(params)
        if pinned:
            raise ValueError(f"treatment {name!r} fixes {sorted(pinned)}; use the parametrised form instead")

    def build(total_steps: int, **params: Any) -> Treatment:
        refuse_pinned(params)
        # Imported here, not at the top: the implementations import this module (and torch).
        implementation = getattr(importlib.import_module(module), cls)
        return implementation(total_steps, _name=name, _fixed=fixed, **params)

    def check(total_steps: int, **params: Any) -> TreatmentParameters:
        refuse_pinned(params)
        return parameters(total_steps, _name=name, _fixed=fixed, **params)

    register(name, build, check)


_GMP = ("agents.sparsity.gmp", "GradualMagnitudePruning", GmpParameters)
_SET = ("agents.sparsity.set", "SparseEvolutionaryTraining", SetParameters)

register("dense", Treatment, TreatmentParameters)
_register_variant("gmp", *_GMP)
_register_variant("gmp80", *_GMP, final_sparsity=0.80)
_register_variant("gmp95", *_GMP, final_sparsity=0.95)
_register_variant("gmp99", *_GMP, final_sparsity=0.99)
_register_variant("set", *_SET)
_register_variant("set95", *_SET, sparsity=0.95)
_register_variant("redo", "agents.interventions.redo", "ReDo", ReDoParameters)
_register_variant("reset", "agents.interventions.reset", "OutputLayerReset", ResetParameters)
_register_variant("wd", "agents.interventions.weight_decay", "WeightDecay", WeightDecayParameters)
