"""The architecture registry, and the interface every actor and critic network follows.

A sweep's ``archs`` axis names registered architectures. Each registration gives a builder
``build(n_tasks, n_out, n_experts, hidden) -> torch.nn.Module`` called twice per trial, for
the actor (``n_out = 7`` logits) then the critic (``n_out = 1`` value), and what the rest of
the tool needs to know without building one: whether it mixes experts, whether it only runs
on one task, trial settings it implies, its display names and its cost for the dry run.

PPO, the treatments and the plasticity metrics work with any network that follows
:class:`NetworkInterface`; ``agents.network_check.check_network`` checks one, and ``mtrl run``
runs that check on every plugin architecture of a sweep before anything starts. The paper's
architectures register in ``agents.architectures`` through the same
:func:`register_architecture`; a plugin registers from its own module (``docs/extending.md``).
Torch-free: builders are resolved when a trial builds its networks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from mtrl_plasticity.errors import RegistryError, brief
from mtrl_plasticity.registry import Registry, caller_module, now_or_as_decorator, resolve

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class NeuronLayer:
    """One hidden layer of neurons: where its values are recorded and which weights touch it.

    ``forward(record=r)`` stores its post-activation values as ``r[name]``, shaped
    ``[B, n_neurons, ...]`` or ``[B, n_neurons * positions]`` (channel-major flatten); a
    neuron's score averages ``|value|`` over the batch and over any spatial positions.
    """

    name: str
    """Key in the ``record`` dict of the network's ``forward``."""
    n_neurons: int
    """Output channels (conv) or units (linear)."""
    producers: tuple[str, ...]
    """Modules whose output channel/row ``i`` feeds neuron ``i`` (its incoming weights)."""
    consumers: tuple[tuple[str, int], ...]
    """``(module, positions)``: neuron ``i`` feeds input channels ``i`` (conv consumer) or
    input columns ``i*positions .. (i+1)*positions - 1`` (linear consumer after a flatten)."""
    task: int | None = None
    """Only this task's samples reach the layer (a task head); ``None``: every sample."""
    recyclable: bool = True
    """Whether ReDo may re-initialise its neurons (it needs a single producer of its own)."""


class NetworkInterface(Protocol):
    """What PPO, the treatments and the metrics use of an actor or critic (a ``torch.nn.Module``).

    * ``forward(obs, task, record=None) -> [B, n_out]``: ``obs`` uint8 ``[B, 3, 7, 7]``
      (MiniGrid's codes, channels first), ``task`` int64 ``[B]``. With a ``record`` dict it
      stores the post-activation output of every neuron layer under its name.
    * ``features_from_record(record) -> [B, F]``: the shared features (input of the task
      heads) out of such a record: the effective rank (srank) is taken on them.
    * ``neuron_layers() -> list[NeuronLayer]``: the hidden layers whose units count as
      neurons (dormant ratio, ReDo), with the modules that produce and consume them.
    * ``weight_layers() -> dict[str, Module]``: every layer with a prunable ``weight`` by
      module name (GMP and SET mask these; the Fisher trace sums over them).
    * ``output_layers() -> list[nn.Linear]``: the layers Reset re-initialises.
    * ``n_tasks``: the number of tasks (task ids are ``0 .. n_tasks - 1``).
    """

    n_tasks: int

    def __call__(self, obs: torch.Tensor, task: torch.Tensor,
                 record: dict[str, torch.Tensor] | None = None) -> torch.Tensor: ...
    def features_from_record(self, record: dict[str, torch.Tensor]) -> torch.Tensor: ...
    def neuron_layers(self) -> list[NeuronLayer]: ...
    def weight_layers(self) -> dict[str, nn.Module]: ...
    def output_layers(self) -> list[nn.Linear]: ...


Builder = Callable[..., Any]
"""``build(n_tasks: int, n_out: int, n_experts: int, hidden: int) -> torch.nn.Module``."""

DEFAULT_UPDATE_MS = 0.5
"""The dry run's PPO update cost of an architecture that gives none: MTPPO's."""


@dataclass(frozen=True)
class ArchitectureSpec:
    """Everything registered under one architecture name."""

    name: str
    build: Builder | str
    """The builder, or ``"module:function"`` imported on first build."""
    display_name: str
    """Short name for tables and figure legends (``MOORE``)."""
    long_name: str
    """Name for captions (``Mixture of Orthogonal Experts (MOORE)``)."""
    uses_experts: bool = False
    """Its builder takes ``n_experts`` (the benchmark's k unless ``n_experts`` is set): needs at least one."""
    single_task: bool = False
    """Only runs on one-task benchmarks (the single-task baseline)."""
    trial_defaults: Mapping[str, Any] = field(default_factory=dict)
    """TrialConfig values it implies unless a sweep gives them (the single-task critic)."""
    update_ms_per_task_step: Callable[[int], float] | float = DEFAULT_UPDATE_MS
    """Dry-run cost model: milliseconds of PPO update per lock-step step per task, or a function of the
    expert count (``orchestrator.estimate``)."""

    def builder(self) -> Builder:
        """The builder, imported now if it was registered as ``"module:function"``."""
        return resolve(self.build)

    def update_ms(self, experts: int) -> float:
        cost = self.update_ms_per_task_step
        return float(cost(experts) if callable(cost) else cost)


ARCHITECTURES: Registry[ArchitectureSpec] = Registry("architecture")
"""Every registered architecture by name, built-ins first."""

def register_architecture(name: str, build: Builder | str | None = None, *, display_name: str | None = None,
                          long_name: str | None = None, uses_experts: bool = False, single_task: bool = False,
                          trial_defaults: Mapping[str, Any] | None = None,
                          update_ms_per_task_step: Callable[[int], float] | float = DEFAULT_UPDATE_MS
                          ) -> Callable[[Any], Any]:
    """Register architecture ``name``; with ``build`` omitted, use it as a decorator of the builder.

    ``trial_defaults`` names TrialConfig fields; a name TrialConfig lacks is refused, in one
    line naming the architecture, when a trial of it is configured.
    """
    owner = caller_module()
    defaults = dict(trial_defaults or {})
    if not all(isinstance(key, str) for key in defaults):
        raise RegistryError(f"architecture {name!r}: trial_defaults must map TrialConfig field names to values")

    def add(builder: Builder | str) -> None:
        if not (callable(builder) or (isinstance(builder, str) and ":" in builder)):
            raise RegistryError(f"architecture {name!r}: build must be a function or 'module:function', "
                                f"got {brief(builder)}")
        ARCHITECTURES.add(name, ArchitectureSpec(name, builder, display_name or name, long_name or display_name or name,
                                                 uses_experts, single_task, defaults, update_ms_per_task_step), owner)

    return now_or_as_decorator(build, add)


def architecture_spec(name: str) -> ArchitectureSpec:
    """The registration of ``name``; one-line :class:`~mtrl_plasticity.errors.UnknownName` if none."""
    return ARCHITECTURES.get(name)
