"""Treatments: a registry from names to the things a trial does to its networks.

A sweep file names a treatment as a string (``dense``, ``gmp95``, ``redo`` ...) and may
override its parameters (``treatment_params``). The trial loop calls the hooks of
:class:`Treatment` at fixed points; a treatment that does nothing is ``dense``.

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
from typing import Any

import torch

from agents.sparsity.masks import count_zero_weights

COUNTER_NAMES = ("prune_events", "neurons_recycled", "resets_done", "set_rewires")

OPTIMIZER_KERNEL: dict[str, Any] = {"fused": True}
"""How every treatment's Adam/AdamW runs: torch's fused kernel, the same update in one kernel
per step (~4x faster on CPU than the per-tensor loop torch picks for CPU tensors by default)."""


class Treatment:
    """The dense baseline: plain Adam, no intervention. Subclasses override hooks."""

    name = "dense"
    defaults: dict[str, Any] = {}

    def __init__(self, total_steps: int, *, _name: str | None = None, _fixed: dict[str, Any] | None = None,
                 **params: Any) -> None:
        # ``_name``/``_fixed`` come from the registry: a named variant (``gmp95``) of a
        # parametrised class, with some parameters pinned and no longer accepted.
        if _name is not None:
            self.name = _name
        fixed = dict(_fixed or {})
        known = sorted(set(self.defaults) - set(fixed))
        unknown = set(params) - set(known)
        if unknown:
            raise ValueError(
                f"treatment {self.name!r} has no parameter(s) {sorted(unknown)}; "
                f"known: {known or 'none'}"
            )
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0:
            raise ValueError(f"treatment {self.name!r} needs a positive total_steps, got {total_steps!r}")
        self.total_steps = total_steps
        self.given = dict(params)  # what the sweep set explicitly (some checks need it)
        self.params = {**self.defaults, **fixed, **params}
        self._counters = {name: 0.0 for name in COUNTER_NAMES}

    # --- parameter validation (one-line ValueErrors: TrialConfig runs these before any work) ---
    def _number(self, key: str, *, integer: bool = False, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False, optional: bool = False) -> Any:
        """``self.params[key]`` checked to be a number in the given range (None if ``optional``)."""
        value = self.params[key]
        if value is None and optional:
            return None
        kinds = (int,) if integer else (int, float)
        ok = isinstance(value, kinds) and not isinstance(value, bool)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            lo = "" if low is None else f"{'(' if low_open else '['}{low}"
            hi = "" if high is None else f"{high}{')' if high_open else ']'}"
            span = f" in {lo or '(-inf'}, {hi or 'inf)'}" if (lo or hi) else ""
            raise ValueError(f"treatment {self.name!r}: {key} must be {'an integer' if integer else 'a number'}"
                             f"{span}, got {value!r}")
        return value

    def _choice(self, key: str, choices: tuple) -> Any:
        value = self.params[key]
        if value not in choices:
            raise ValueError(f"treatment {self.name!r}: {key} must be one of {list(choices)}, got {value!r}")
        return value

    def _flag(self, key: str) -> bool:
        value = self.params[key]
        if not isinstance(value, bool):
            raise ValueError(f"treatment {self.name!r}: {key} must be true or false, got {value!r}")
        return value

    def _networks(self, key: str = "networks") -> tuple[str, ...]:
        value = self.params[key]
        if isinstance(value, str) or not all(v in ("actor", "critic") for v in value) or not value:
            raise ValueError(f"treatment {self.name!r}: {key} must be a non-empty list of 'actor'/'critic', "
                             f"got {value!r}")
        return tuple(dict.fromkeys(value))

    # --- hooks ----------------------------------------------------------------------
    def build_optimizer(self, params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
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


_REGISTRY: dict[str, Callable[..., Treatment]] = {}


def register(name: str, factory: Callable[..., Treatment]) -> None:
    """Make ``name`` selectable from sweep files; ``factory(total_steps, **params)``."""
    _REGISTRY[name] = factory


def treatment_names() -> list[str]:
    return list(_REGISTRY)


def build_treatment(name: str, params: dict[str, Any] | None = None, *, total_steps: int) -> Treatment:
    if name not in _REGISTRY:
        raise ValueError(f"unknown treatment {name!r}; choose one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[name](total_steps, **(params or {}))


def _lazy(module: str, cls: str, name: str, **fixed: Any) -> Callable[..., Treatment]:
    """A factory that imports its class on first use (the classes import this module).

    ``fixed`` pins parameters for a named variant (``gmp95`` pins ``final_sparsity``):
    the variant neither lists nor accepts them, so ``gmp95`` cannot silently become 80%.
    """

    def factory(total_steps: int, **params: Any) -> Treatment:
        base = getattr(importlib.import_module(module), cls)
        pinned = set(fixed) & set(params)
        if pinned:
            raise ValueError(f"treatment {name!r} fixes {sorted(pinned)}; use the parametrised form instead")
        return base(total_steps, _name=name, _fixed=fixed, **params)

    return factory


register("dense", Treatment)
register("gmp", _lazy("agents.sparsity.gmp", "GradualMagnitudePruning", "gmp"))
register("gmp80", _lazy("agents.sparsity.gmp", "GradualMagnitudePruning", "gmp80", final_sparsity=0.80))
register("gmp95", _lazy("agents.sparsity.gmp", "GradualMagnitudePruning", "gmp95", final_sparsity=0.95))
register("gmp99", _lazy("agents.sparsity.gmp", "GradualMagnitudePruning", "gmp99", final_sparsity=0.99))
register("set", _lazy("agents.sparsity.set", "SparseEvolutionaryTraining", "set"))
register("set95", _lazy("agents.sparsity.set", "SparseEvolutionaryTraining", "set95", sparsity=0.95))
register("redo", _lazy("agents.interventions.redo", "ReDo", "redo"))
register("reset", _lazy("agents.interventions.reset", "OutputLayerReset", "reset"))
register("wd", _lazy("agents.interventions.weight_decay", "WeightDecay", "wd"))
