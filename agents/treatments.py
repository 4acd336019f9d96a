"""Treatments as a trial runs them: the :class:`Treatment` hooks and :func:`build_treatment`.

A treatment's name, parameters, counters and variants are registered in the ground floor
(:mod:`mtrl_plasticity.treatments`); this module is the code side: the base class whose
hooks the trial loop calls, and the builder that turns a registered name and a sweep's
parameters into an instance.

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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

import agents.treatment_parameters  # noqa: F401  (registers the paper's treatments, which build_treatment finds)
from agents.agent import ActorCritic, NetworkName
from agents.plasticity_buffer import PlasticityBuffer
from agents.sparsity.masks import count_zero_weights
from mtrl_plasticity.errors import RegistryError
from mtrl_plasticity.results import CORE_COUNTERS
from mtrl_plasticity.treatments import NoParameters, TreatmentParameters, parse_parameters, treatment_spec

OPTIMIZER_KERNEL: dict[str, Any] = {"fused": True}
"""How every treatment's Adam/AdamW runs: torch's fused kernel, the same update as the
per-tensor loop torch picks for CPU tensors by default, in one kernel per step
(``bench/bench_networks.py`` measures both)."""


class Treatment:
    """The dense baseline: plain Adam, no intervention. Subclasses override hooks.

    ``self.params`` is the validated :class:`~mtrl_plasticity.treatments.TreatmentParameters`
    instance, ``self.name`` the registered name (a variant's name for a variant),
    ``self.total_steps`` the budget. Counters are declared at registration; :meth:`count`
    adds to one.
    """

    def __init__(self, params: TreatmentParameters | None = None, *, name: str = "dense", total_steps: int,
                 counters: Sequence[str] = ()) -> None:
        self.params = params if params is not None else NoParameters()
        self.name = name
        self.total_steps = total_steps
        self._counters = {c: 0.0 for c in dict.fromkeys([*CORE_COUNTERS, *counters])}

    # --- hooks ----------------------------------------------------------------------
    def build_optimizer(self, params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=lr, **OPTIMIZER_KERNEL)

    def setup(self, agent: ActorCritic) -> None:
        pass

    def on_step(self, step: int, agent: ActorCritic, buffer: PlasticityBuffer) -> None:
        pass

    def after_optimizer_step(self, agent: ActorCritic, network_name: NetworkName) -> None:
        pass

    def count(self, counter: str, amount: float = 1.0) -> None:
        """Add ``amount`` to a declared counter (an undeclared one is a bug of the treatment)."""
        if counter not in self._counters:
            raise KeyError(f"treatment {self.name!r} counts {counter!r}, which it did not declare "
                           f"(register_treatment(..., counters=[...]))")
        self._counters[counter] += amount

    def counters(self) -> dict[str, float]:
        """Cumulative intervention counts: the schema's core counters and the declared ones."""
        return dict(self._counters)

    def masks_of(self, network_name: NetworkName) -> dict[str, torch.Tensor]:
        """``{param name: bool mask}`` of ``"actor"`` or ``"critic"``; empty when unmasked.

        The plasticity metrics use it to leave masked neurons and weights out.
        """
        return {}

    def sparsity(self, agent: ActorCritic) -> dict[str, float]:
        """Fraction of prunable weights exactly zero, per network.

        Counted over the weights of every Conv2d and Linear layer, the MoE/MOORE task
        encoder included (biases never), whether or not this treatment prunes them: it is
        the network's actual sparsity, not the schedule's target.
        """
        out: dict[str, float] = {}
        for name, network in agent.networks().items():
            zeros, total = count_zero_weights(network)
            out[name] = zeros / total if total else 0.0
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"counters": dict(self._counters)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, value in state.get("counters", {}).items():
            self._counters[name] = float(value)


def treatment_class(name: str) -> type[Treatment]:
    """The implementation registered as ``name``, imported now; a one-line error if it is no :class:`Treatment`."""
    implementation = treatment_spec(name).implementation_class()
    if not (isinstance(implementation, type) and issubclass(implementation, Treatment)):
        raise RegistryError(f"treatment {name!r}: its implementation {implementation!r} is not a subclass of "
                            f"agents.treatments.Treatment")
    return implementation


def build_treatment(name: str, params: Mapping[str, Any] | None = None, *, total_steps: int) -> Treatment:
    """The treatment a trial runs, its parameters checked as a sweep's are (one-line errors)."""
    parsed = parse_parameters(name, params, total_steps=total_steps)
    return treatment_class(name)(parsed, name=name, total_steps=total_steps, counters=treatment_spec(name).counters)
