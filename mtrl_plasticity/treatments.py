"""The treatment registry: names, parameters, counters and variants of what a trial does to its networks.

A sweep file names a treatment as a string (``dense``, ``gmp95``, ``redo`` ...) and may
override its parameters (``{redo: {tau: 0.001}}``). A treatment is three things, registered
together by :func:`register_treatment`:

* its **parameters**: a pydantic model (:class:`TreatmentParameters`), constraints as
  ``Field``\\ s, a docstring per field, defaults of the draft protocol and, in
  ``protocol_defaults``, the values another protocol of the paper uses instead;
* its **implementation**: a subclass of ``agents.treatments.Treatment`` whose hooks the
  trial loop calls, given as the class or as ``"module:Class"`` (imported when a trial builds
  it, so checking a sweep never imports torch for the built-ins);
* its **counters** (``interventions/<name>`` columns of the train rows) and **variants**:
  names that pin some parameters (``gmp95`` pins ``final_sparsity: 0.95``), each with its
  display name for tables and figures.

The paper's treatments register in ``agents.treatment_parameters`` through this same
function; a plugin does the same from its own module (``docs/extending.md``)::

    @register_treatment("random", RandomParameters, counters=("weights_pruned",),
                        variants={"random90": Variant({"sparsity": 0.9}, "Random 90%")})
    class RandomPruning(MaskedTreatment): ...

Everything here is torch-free: it checks a sweep's treatment names and parameters before
anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from mtrl_plasticity.errors import RegistryError, TreatmentError, brief, validation_message
from mtrl_plasticity.registry import Registry, caller_module, now_or_as_decorator, resolve
from mtrl_plasticity.results import CORE_COUNTERS


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
    implementation: type | str
    """The ``agents.treatments.Treatment`` subclass, or ``"module:Class"`` imported on first build."""
    counters: tuple[str, ...] = ()
    """Counters it declares (``interventions/<name>`` columns besides the core four)."""
    pinned: Mapping[str, Any] = field(default_factory=dict)
    display_name: str = ""
    description: str = ""
    base: str = ""
    """The parametrised name a variant pins (``gmp`` for ``gmp95``); the name itself otherwise."""

    def implementation_class(self) -> type:
        """The implementation, imported now if it was registered as ``"module:Class"``."""
        return resolve(self.implementation)

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

TREATMENT_HOOKS = ("build_optimizer", "setup", "on_step", "after_optimizer_step", "counters", "sparsity",
                   "masks_of", "state_dict", "load_state_dict")
"""What the trial loop calls on a treatment (``agents.treatments.Treatment`` defines them all)."""

def register_treatment(name: str, parameters: type[TreatmentParameters] = NoParameters, *,
                       implementation: type | str | None = None, counters: Sequence[str] = (),
                       display_name: str | None = None, description: str = "",
                       variants: Mapping[str, Variant] | None = None) -> Callable[[Any], Any]:
    """Register treatment ``name`` (and its named ``variants``).

    Call it with ``implementation=`` (a class or ``"module:Class"``), or use it as a class
    decorator. Checks here, at import of the registering module, so a plugin with a bad
    registration fails before any trial: the name and counters are valid, ``parameters``
    is a :class:`TreatmentParameters` whose defaults, protocol defaults and every variant's
    pinned values validate; a class given directly has every hook of :data:`TREATMENT_HOOKS`
    (that it is an ``agents.treatments.Treatment`` is checked when a trial builds it).
    """
    owner = caller_module()
    if not (isinstance(parameters, type) and issubclass(parameters, TreatmentParameters)):
        raise RegistryError(f"treatment {name!r}: parameters must be a TreatmentParameters subclass, "
                            f"got {brief(parameters)}")
    counter_names = tuple(counters)
    for counter in counter_names:
        if not isinstance(counter, str) or not COUNTER_PATTERN.fullmatch(counter):
            raise RegistryError(f"treatment {name!r}: counter {brief(counter)} is not a lower_snake_case name")
    named_variants = dict(variants or {})

    def add(impl: type | str) -> None:
        if isinstance(impl, str) and ":" not in impl or not isinstance(impl, (str, type)) or (
                isinstance(impl, type) and not all(callable(getattr(impl, hook, None)) for hook in TREATMENT_HOOKS)):
            raise RegistryError(f"treatment {name!r}: the implementation must be a Treatment subclass "
                                f"(agents.treatments) or 'module:Class', got {brief(impl)}")
        base = TreatmentSpec(name, parameters, impl, counter_names, {}, display_name or name, description, name)
        specs = [base] + [TreatmentSpec(v_name, parameters, impl, counter_names, dict(v.pinned),
                                        v.display_name or v_name, v.description or description, name)
                          for v_name, v in named_variants.items()]
        for spec in specs:
            _check_defaults(spec)
        for spec in specs:  # all checked first: a bad variant registers nothing
            TREATMENTS.check(spec.name, owner)
        for spec in specs:
            TREATMENTS.add(spec.name, spec, owner)

    return now_or_as_decorator(implementation, add)


def _check_defaults(spec: TreatmentSpec) -> None:
    try:
        spec.parameters.model_validate(dict(spec.pinned))
        for protocol in spec.parameters.protocol_defaults:
            spec.parameters.model_validate({**spec.protocol_defaults(protocol), **spec.pinned})
    except ValidationError as exc:
        raise RegistryError(f"treatment {spec.name!r}: invalid parameter defaults: "
                            f"{validation_message(exc, limit=1, show_input=True)}") from None


def treatment_spec(name: str) -> TreatmentSpec:
    """The registration of ``name``; :class:`~mtrl_plasticity.errors.UnknownName` (one line) if none."""
    return TREATMENTS.get(name)


def parse_parameters(name: str, params: Mapping[str, Any] | None = None, *, total_steps: int) -> TreatmentParameters:
    """``name``'s parameters from a sweep's overrides, validated; :class:`TreatmentError` otherwise.

    What ``mtrl run`` and ``mtrl status`` use to check a sweep without building anything, and
    what a trial builds its treatment from.
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0:
        treatment_spec(name)
        raise TreatmentError(f"treatment {name!r} needs a positive total_steps, got {brief(total_steps)}")
    parsed = _validated(name, params)
    try:
        parsed.check_budget(total_steps)
    except ValueError as exc:
        raise TreatmentError(f"treatment {name!r}: {exc}") from None
    return parsed


def resolved_parameters(name: str, params: Mapping[str, Any] | None = None,
                        protocol: str | None = None) -> dict[str, Any]:
    """Every parameter of ``name`` as a trial of ``protocol`` gets it with the overrides ``params``:
    the defaults, the protocol's values, the pinned ones, then ``params`` (plain JSON data).

    What a sweep's treatment labels and its check for two entries of the same parameters
    compare; :class:`TreatmentError` as :func:`parse_parameters` (the budget is not checked).
    """
    spec = treatment_spec(name)
    return _validated(name, {**spec.protocol_defaults(protocol), **dict(params or {})}).model_dump(mode="json")


def _validated(name: str, params: Mapping[str, Any] | None) -> TreatmentParameters:
    spec = treatment_spec(name)
    given = dict(params or {})
    pinned = set(spec.pinned) & set(given)
    if pinned:
        raise TreatmentError(f"treatment {name!r} fixes {sorted(pinned)}; use the parametrised form "
                             f"{spec.base!r} instead")
    unknown = set(given) - set(spec.parameters.model_fields)
    if unknown:
        known = sorted(set(spec.parameters.model_fields) - set(spec.pinned))
        raise TreatmentError(f"treatment {name!r} has no parameter(s) {sorted(unknown)}; known: {known or 'none'}")
    try:
        return spec.parameters.model_validate({**spec.pinned, **given})
    except ValidationError as exc:
        raise TreatmentError(f"treatment {name!r}: {validation_message(exc, limit=1, show_input=True)}") from None
