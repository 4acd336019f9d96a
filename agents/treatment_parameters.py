"""Every registered treatment's parameters and their checks, without torch.

``mtrl run`` (``--dry-run`` included) and ``mtrl status`` check each trial's treatment
parameters before anything starts. Importing torch for that alone cost ~2 CPU-s per command,
so a treatment's parameters and checks live here, in a class its torch implementation
inherits: ``class GradualMagnitudePruning(MaskedTreatment, GmpParameters)``. The driver
builds the parameter class (:func:`agents.treatments.check_treatment`), the trial the
treatment (:func:`agents.treatments.build_treatment`); both run the same checks, and every
failed check is a one-line ``ValueError`` naming the treatment.

Each class reads its parameters into attributes in ``__init__`` (``self.tau``,
``self.schedule`` ...); the implementation uses those attributes and nothing else of
``self.params``.
"""

from __future__ import annotations

from typing import Any

from agents.sparsity.schedule import PruningSchedule

SCOPES = ("global", "layer", "erk")
"""Where gmp ranks magnitudes: over the whole network, per layer, or per layer at ERK sparsities."""

DISTRIBUTIONS = ("erk", "uniform")
"""How SET splits its sparsity over layers (``epsilon`` overrides both)."""

LAYER_CHOICES = ("linear", "all")
"""Which layers SET makes sparse: Linear only (published), or Conv2d and Linear."""


class TreatmentParameters:
    """The dense baseline's parameters (none), and the checks every treatment shares.

    ``params`` is ``defaults`` updated by the registry's pinned values (``_fixed``: ``gmp95``
    pins ``final_sparsity``) and by what the sweep gave (``given``); a parameter that is
    neither a default nor free to set is refused.
    """

    name = "dense"
    defaults: dict[str, Any] = {}

    def __init__(self, total_steps: int, *, _name: str | None = None, _fixed: dict[str, Any] | None = None,
                 **params: Any) -> None:
        if _name is not None:
            self.name = _name
        self.fixed = dict(_fixed or {})
        known = sorted(set(self.defaults) - set(self.fixed))
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
        self.params = {**self.defaults, **self.fixed, **params}

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


class GmpParameters(TreatmentParameters):
    """Gradual magnitude pruning (:mod:`agents.sparsity.gmp`): the cubic schedule and its scope."""

    name = "gmp"
    defaults: dict[str, Any] = {
        "final_sparsity": 0.95,
        "scope": "global",
        "prune_task_encoder": False,
        "start_fraction": 0.05,
        "end_fraction": 0.8,
        "frequency": 500,
    }

    def __init__(self, total_steps: int, **params: Any) -> None:
        super().__init__(total_steps, **params)
        final = self._number("final_sparsity", low=0.0, high=1.0, high_open=True)
        self.scope = self._choice("scope", SCOPES)
        self.prune_task_encoder = self._flag("prune_task_encoder")
        start = self._number("start_fraction", low=0.0, high=1.0)
        end = self._number("end_fraction", low=0.0, high=1.0)
        if end < start:
            raise ValueError(f"treatment {self.name!r}: end_fraction {end} is before start_fraction {start}")
        frequency = self._number("frequency", integer=True, low=0, low_open=True)
        self.schedule = PruningSchedule.from_fractions(total_steps, final, start, end, frequency)


class SetParameters(TreatmentParameters):
    """Sparse Evolutionary Training (:mod:`agents.sparsity.set`): layout and rewiring."""

    name = "set"
    defaults: dict[str, Any] = {
        "sparsity": 0.95,
        "zeta": 0.3,
        "rewire_every": 2000,
        "distribution": "erk",
        "epsilon": None,
        "layers": "linear",
        "prune_task_encoder": False,
    }

    def __init__(self, total_steps: int, **params: Any) -> None:
        super().__init__(total_steps, **params)
        self.target = self._number("sparsity", low=0.0, high=1.0, high_open=True)
        self.zeta = self._number("zeta", low=0.0, high=1.0)
        self.rewire_every = self._number("rewire_every", integer=True, low=0, low_open=True)
        self.distribution = self._choice("distribution", DISTRIBUTIONS)
        self.epsilon = self._number("epsilon", low=0.0, low_open=True, optional=True)
        if self.epsilon is not None and ("sparsity" in self.given or "sparsity" in self.fixed):
            raise ValueError(f"treatment {self.name!r}: give either sparsity or epsilon (epsilon sets the "
                             "sparsity through Mocanu's Erdos-Renyi layout)")
        self.layers = self._choice("layers", LAYER_CHOICES)
        self.prune_task_encoder = self._flag("prune_task_encoder")


class ReDoParameters(TreatmentParameters):
    """ReDo (:mod:`agents.interventions.redo`): how often, how dormant, on what."""

    name = "redo"
    defaults: dict[str, Any] = {"tau": 0.01, "every": 5000, "batch_size": 1024, "networks": ["actor", "critic"]}

    def __init__(self, total_steps: int, **params: Any) -> None:
        super().__init__(total_steps, **params)
        self.tau = self._number("tau", low=0.0, low_open=True)
        self.every = self._number("every", integer=True, low=0, low_open=True)
        self.batch_size = self._number("batch_size", integer=True, low=0, low_open=True)
        self.networks = self._networks()


class ResetParameters(TreatmentParameters):
    """Reset of the heads' output layers (:mod:`agents.interventions.reset`): when, how often."""

    name = "reset"
    defaults: dict[str, Any] = {"steps": [60000, 120000], "every": None, "max_resets": None,
                                "networks": ["actor", "critic"]}

    def __init__(self, total_steps: int, **params: Any) -> None:
        super().__init__(total_steps, **params)
        self.every = self._number("every", integer=True, low=0, low_open=True, optional=True)
        self.max_resets = self._number("max_resets", integer=True, low=0, optional=True)
        steps = self.params["steps"]
        if self.every is not None and "steps" in self.given:
            raise ValueError(f"treatment {self.name!r}: give either steps or every, not both")
        if isinstance(steps, (str, bytes)) or not hasattr(steps, "__iter__") or not all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in steps):
            raise ValueError(f"treatment {self.name!r}: steps must be a list of positive integers, got {steps!r}")
        self.steps = frozenset(steps)
        self.networks = self._networks()


class WeightDecayParameters(TreatmentParameters):
    """Weight decay (:mod:`agents.interventions.weight_decay`): coefficient, L2 or decoupled."""

    name = "wd"
    defaults: dict[str, Any] = {"coef": 1e-3, "decoupled": False}

    def __init__(self, total_steps: int, **params: Any) -> None:
        super().__init__(total_steps, **params)
        self.coef = self._number("coef", low=0.0)
        self.decoupled = self._flag("decoupled")
