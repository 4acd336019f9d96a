"""Treatments: a registry from names to the things a trial does to its networks.

A sweep file names a treatment as a string (``dense``, ``gmp95``, ``redo`` ...) and may
override its parameters (``{redo: {tau: 0.001}}``). A treatment is three things, registered
together by :func:`register_treatment`:

* its **parameters**: a pydantic model (:class:`TreatmentParameters`), constraints as
  ``Field``\\ s, a docstring per field, defaults of the draft protocol and, in
  ``protocol_defaults``, the values another protocol of the paper uses instead;
* its **implementation**: a :class:`Treatment` subclass whose hooks the trial loop calls,
  given as the class or as ``"module:Class"`` (imported on first build, so checking a sweep
  never imports torch for the built-ins);
* its **counters** (``interventions/<name>`` columns of the train rows) and **variants**:
  names that pin some parameters (``gmp95`` pins ``final_sparsity: 0.95``), each with its
  display name for tables and figures.

The paper's treatments register themselves in :mod:`agents.treatment_parameters`, through
this same function; a plugin does the same from its own module (``docs/extending.md``)::

    @register_treatment("random", RandomParameters, counters=("weights_pruned",),
                        variants={"random90": Variant({"sparsity": 0.9}, "Random 90%")})
    class RandomPruning(MaskedTreatment): ...

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

import importlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from mtrl.registry import Registry, RegistryError, caller_module
from orchestrator.errors import UserError, brief
from orchestrator.schema import CORE_COUNTERS, counter_column

if TYPE_CHECKING:
    import torch

OPTIMIZER_KERNEL: dict[str, Any] = {"fused": True}
"""How every treatment's Adam/AdamW runs: torch's fused kernel, the same update in one kernel
per step (~4x faster on CPU than the per-tensor loop torch picks for CPU tensors by default)."""


class TreatmentError(UserError):
    """Parameters a treatment refuses (one line naming the treatment)."""


class TreatmentParameters(BaseModel):
    """A treatment's parameters: subclass it, one annotated field per parameter.

    Strict: a string is not a number and ``1`` is not ``true`` (sweep files are typed YAML).
    Unknown names are refused. ``protocol_defaults`` maps a protocol of the paper
    (``SweepSpec.protocol``: ``"tmlr"``) to the parameter values it uses instead of the
    field defaults; a sweep of that protocol fills them in unless it gives its own.
    Cross-parameter rules are pydantic ``model_validator``\\ s; ``model_fields_set`` tells
    what the sweep (or a variant) set explicitly. ``check_budget`` sees ``total_steps``.
    """

    # validate_default: a default that breaks its own Field constraint is refused like a sweep's value
    # (pydantic leaves defaults unchecked otherwise), so a plugin's bad default fails at registration.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, validate_default=True,
                              use_attribute_docstrings=True)

    protocol_defaults: ClassVar[dict[str, dict[str, Any]]] = {}

    def check_budget(self, total_steps: int) -> None:
        """Raise ``ValueError`` for values that cannot work with this budget (default: none)."""


class NoParameters(TreatmentParameters):
    """A treatment without parameters (``dense``)."""


class Treatment:
    """The dense baseline: plain Adam, no intervention. Subclasses override hooks.

    ``self.params`` is the validated :class:`TreatmentParameters` instance, ``self.name`` the
    registered name (a variant's name for a variant), ``self.total_steps`` the budget.
    Counters are declared at registration; :meth:`count` adds to one.
    """

    def __init__(self, params: TreatmentParameters | None = None, *, name: str = "dense", total_steps: int,
                 counters: Sequence[str] = ()) -> None:
        self.params = params if params is not None else NoParameters()
        self.name = name
        self.total_steps = total_steps
        self._counters = {c: 0.0 for c in dict.fromkeys([*CORE_COUNTERS, *counters])}

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

    def count(self, counter: str, amount: float = 1.0) -> None:
        """Add ``amount`` to a declared counter (an undeclared one is a bug of the treatment)."""
        if counter not in self._counters:
            raise KeyError(f"treatment {self.name!r} counts {counter!r}, which it did not declare "
                           f"(register_treatment(..., counters=[...]))")
        self._counters[counter] += amount

    def counters(self) -> dict[str, float]:
        """Cumulative intervention counts: the schema's core counters and the declared ones."""
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


# --- the registry ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """A registered name that pins parameters of its treatment (``gmp95``: ``final_sparsity``)."""

    pinned: Mapping[str, Any]
    """Parameter values the name fixes; a sweep may not give them (it would change what the name means)."""
    display_name: str | None = None
    """How tables and figures name it (default: the registered name)."""
    description: str = ""
    """One line for docs/treatments.md (default: the treatment's)."""


@dataclass(frozen=True)
class TreatmentSpec:
    """Everything registered under one name (a variant has its own spec)."""

    name: str
    parameters: type[TreatmentParameters]
    implementation: type[Treatment] | str
    """The :class:`Treatment` subclass, or ``"module:Class"`` imported on first build."""
    counters: tuple[str, ...] = ()
    """Counters it declares (``interventions/<name>`` columns besides the core four)."""
    pinned: Mapping[str, Any] = field(default_factory=dict)
    display_name: str = ""
    description: str = ""
    base: str = ""
    """The parametrised name a variant pins (``gmp`` for ``gmp95``); the name itself otherwise."""

    def implementation_class(self) -> type[Treatment]:
        if not isinstance(self.implementation, str):
            return self.implementation
        module, _, attr = self.implementation.partition(":")
        return getattr(importlib.import_module(module), attr)

    def protocol_defaults(self, protocol: str | None) -> dict[str, Any]:
        """The parameter values ``protocol`` uses instead of the defaults (pinned ones excluded)."""
        values = self.parameters.protocol_defaults.get(protocol or "", {})
        return {k: v for k, v in values.items() if k not in self.pinned}

    def extra_counters(self) -> tuple[str, ...]:
        """Declared counters beyond the schema's core four: the columns this treatment adds."""
        return tuple(c for c in self.counters if c not in CORE_COUNTERS)


TREATMENTS: Registry[TreatmentSpec] = Registry("treatment")
"""Every registered treatment by name, built-ins first."""

COUNTER_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
"""A counter name (lower_snake_case): it becomes the column ``interventions/<name>``."""


def register_treatment(name: str, parameters: type[TreatmentParameters] = NoParameters, *,
                       implementation: type[Treatment] | str | None = None, counters: Sequence[str] = (),
                       display_name: str | None = None, description: str = "",
                       variants: Mapping[str, Variant] | None = None) -> Callable:
    """Register treatment ``name`` (and its named ``variants``).

    Call it with ``implementation=`` (a class or ``"module:Class"``), or use it as a class
    decorator. Checks here, at import of the registering module, so a plugin with a bad
    registration fails before any trial: the name and counters are valid, ``parameters``
    is a :class:`TreatmentParameters` whose defaults, protocol defaults and every variant's
    pinned values validate.
    """
    owner = caller_module()
    if not (isinstance(parameters, type) and issubclass(parameters, TreatmentParameters)):
        raise RegistryError(f"treatment {name!r}: parameters must be a TreatmentParameters subclass, "
                            f"got {brief(parameters)}")
    counters = tuple(counters)
    for counter in counters:
        if not isinstance(counter, str) or not COUNTER_PATTERN.fullmatch(counter):
            raise RegistryError(f"treatment {name!r}: counter {brief(counter)} is not a lower_snake_case name")
    variants = dict(variants or {})

    def add(impl: type[Treatment] | str) -> None:
        if not isinstance(impl, str) and not (isinstance(impl, type) and issubclass(impl, Treatment)):
            raise RegistryError(f"treatment {name!r}: the implementation must be a Treatment subclass, got {brief(impl)}")
        base = TreatmentSpec(name, parameters, impl, counters, {}, display_name or name, description, name)
        specs = [base] + [TreatmentSpec(v_name, parameters, impl, counters, dict(v.pinned), v.display_name or v_name,
                                        v.description or description, name) for v_name, v in variants.items()]
        for spec in specs:
            _check_defaults(spec)
        for spec in specs:  # all checked first: a bad variant registers nothing
            TREATMENTS.check(spec.name, owner)
        for spec in specs:
            TREATMENTS.add(spec.name, spec, owner)

    if implementation is not None:
        add(implementation)
        return lambda cls: cls

    def decorator(cls: type[Treatment]) -> type[Treatment]:
        add(cls)
        return cls

    return decorator


def _check_defaults(spec: TreatmentSpec) -> None:
    try:
        spec.parameters.model_validate(dict(spec.pinned))
        for protocol in spec.parameters.protocol_defaults:
            spec.parameters.model_validate({**spec.protocol_defaults(protocol), **spec.pinned})
    except ValidationError as exc:
        raise RegistryError(f"treatment {spec.name!r}: invalid parameter defaults: {_first_problem(exc)}") from None


def treatment_names() -> list[str]:
    return TREATMENTS.names()


def treatment_spec(name: str) -> TreatmentSpec:
    """The registration of ``name``; :class:`mtrl.registry.UnknownName` (one line) if none."""
    return TREATMENTS.get(name)


def parse_parameters(name: str, params: Mapping[str, Any] | None = None, *, total_steps: int) -> TreatmentParameters:
    """``name``'s parameters from a sweep's overrides, validated; :class:`TreatmentError` otherwise.

    What ``mtrl run`` and ``mtrl status`` use to check a sweep without building anything.
    """
    spec = treatment_spec(name)
    params = dict(params or {})
    pinned = set(spec.pinned) & set(params)
    if pinned:
        raise TreatmentError(f"treatment {name!r} fixes {sorted(pinned)}; use the parametrised form "
                             f"{spec.base!r} instead")
    unknown = set(params) - set(spec.parameters.model_fields)
    if unknown:
        known = sorted(set(spec.parameters.model_fields) - set(spec.pinned))
        raise TreatmentError(f"treatment {name!r} has no parameter(s) {sorted(unknown)}; known: {known or 'none'}")
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0:
        raise TreatmentError(f"treatment {name!r} needs a positive total_steps, got {brief(total_steps)}")
    try:
        parsed = spec.parameters.model_validate({**spec.pinned, **params})
        parsed.check_budget(total_steps)
    except ValidationError as exc:
        raise TreatmentError(f"treatment {name!r}: {_first_problem(exc)}") from None
    except ValueError as exc:
        raise TreatmentError(f"treatment {name!r}: {exc}") from None
    return parsed


def check_treatment(name: str, params: Mapping[str, Any] | None = None, *, total_steps: int) -> None:
    """Raise the one-line error :func:`build_treatment` would raise for these parameters, without building."""
    parse_parameters(name, params, total_steps=total_steps)


def build_treatment(name: str, params: Mapping[str, Any] | None = None, *, total_steps: int) -> Treatment:
    """The treatment a trial runs: parameters checked as :func:`check_treatment` does."""
    parsed = parse_parameters(name, params, total_steps=total_steps)
    spec = treatment_spec(name)
    return spec.implementation_class()(parsed, name=name, total_steps=total_steps, counters=spec.counters)


def _first_problem(exc: ValidationError) -> str:
    """pydantic's first complaint in one line: ``tau: Input should be greater than 0 (got 0)``."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    shown = f"{where}: {message}" if where else message
    if "input" in err and where:
        shown += f" (got {brief(err['input'])})"
    return " ".join(shown.split())


# The paper's treatments register here, at the end: they use the names above.
import agents.treatment_parameters  # noqa: E402,F401
