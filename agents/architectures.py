"""Architectures: a registry from names to builders of the actor and critic networks.

A sweep's ``archs`` axis names registered architectures. Each registration gives a builder
``build(n_tasks, n_out, n_experts, hidden) -> torch.nn.Module`` called twice per trial, for
the actor (``n_out = 7`` logits) then the critic (``n_out = 1`` value), and what the rest of
the tool needs to know without building one: whether it mixes experts, whether it only runs
on one task, trial settings it implies, its display names and its cost for the dry run.

PPO, the treatments and the plasticity metrics work with any network that follows
:class:`NetworkInterface`; :func:`check_network` checks one, and ``mtrl run`` runs that check
on every plugin architecture of a sweep before anything starts. The paper's architectures
register at the end of this module through the same :func:`register_architecture` (built by
:class:`agents.networks.MultiTaskNetwork`); a plugin registers from its own module
(``docs/extending.md``). This module imports torch only inside functions that build.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from mtrl.registry import Registry, RegistryError, caller_module
from orchestrator.errors import UserError, brief

if TYPE_CHECKING:
    import torch
    from torch import nn

    from agents.networks import NeuronLayer


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

    def __call__(self, obs: torch.Tensor, task: torch.Tensor, record: dict | None = None) -> torch.Tensor: ...
    def features_from_record(self, record: dict) -> torch.Tensor: ...
    def neuron_layers(self) -> list[NeuronLayer]: ...
    def weight_layers(self) -> dict[str, nn.Module]: ...
    def output_layers(self) -> list[nn.Linear]: ...


Builder = Callable[..., Any]
"""``build(n_tasks: int, n_out: int, n_experts: int, hidden: int) -> torch.nn.Module``."""


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
    update_ms_per_task_step: Callable[[int], float] | float = 0.5
    """Dry-run cost model: milliseconds of PPO update per lock-step step per task, or a function of the
    expert count (``orchestrator.estimate``); 0.5 is MTPPO's."""

    def builder(self) -> Builder:
        if not isinstance(self.build, str):
            return self.build
        module, _, attr = self.build.partition(":")
        return getattr(importlib.import_module(module), attr)

    def update_ms(self, experts: int) -> float:
        cost = self.update_ms_per_task_step
        return float(cost(experts) if callable(cost) else cost)


ARCHITECTURES: Registry[ArchitectureSpec] = Registry("architecture")
"""Every registered architecture by name, built-ins first."""


def register_architecture(name: str, build: Builder | str | None = None, *, display_name: str | None = None,
                          long_name: str | None = None, uses_experts: bool = False, single_task: bool = False,
                          trial_defaults: Mapping[str, Any] | None = None,
                          update_ms_per_task_step: Callable[[int], float] | float = 0.5) -> Callable:
    """Register architecture ``name``; with ``build`` omitted, use it as a decorator of the builder.

    ``trial_defaults`` may only name TrialConfig fields (checked here, so a typo fails at import).
    """
    owner = caller_module()

    def add(builder: Builder | str) -> None:
        if not (callable(builder) or (isinstance(builder, str) and ":" in builder)):
            raise RegistryError(f"architecture {name!r}: build must be a function or 'module:function', "
                                f"got {brief(builder)}")
        defaults = dict(trial_defaults or {})
        from orchestrator.config import TrialConfig  # torch-free; imported late (config imports this module)

        unknown = set(defaults) - set(TrialConfig.model_fields)
        if unknown:
            raise RegistryError(f"architecture {name!r}: trial_defaults names unknown trial setting(s) {sorted(unknown)}")
        ARCHITECTURES.add(name, ArchitectureSpec(name, builder, display_name or name, long_name or display_name or name,
                                                 uses_experts, single_task, defaults, update_ms_per_task_step), owner)

    if build is not None:
        add(build)
        return lambda fn: fn

    def decorator(fn: Builder) -> Builder:
        add(fn)
        return fn

    return decorator


def architecture_names() -> list[str]:
    return ARCHITECTURES.names()


def architecture_spec(name: str) -> ArchitectureSpec:
    """The registration of ``name``; one-line :class:`mtrl.registry.UnknownName` if none."""
    return ARCHITECTURES.get(name)


def build_network(arch: str, n_tasks: int, n_out: int, n_experts: int = 1, hidden: int = 128) -> nn.Module:
    """An actor (``n_out=7``) or critic (``n_out=1``) of the registered architecture ``arch``."""
    spec = architecture_spec(arch)
    return spec.builder()(n_tasks=n_tasks, n_out=n_out, n_experts=n_experts if spec.uses_experts else 0,
                          hidden=hidden)


class NetworkInterfaceError(UserError):
    """A registered architecture whose network does not follow :class:`NetworkInterface` (one line)."""


def check_network(arch: str, n_tasks: int, n_experts: int = 1, hidden: int = 128) -> None:
    """Build ``arch``'s actor and critic for ``n_tasks`` tasks and check them against the interface.

    Runs a forward pass on a small batch covering every task, with and without ``record``.
    Raises :class:`NetworkInterfaceError` naming the architecture and the first problem. Uses
    its own torch generator for the check batch; the networks' initialisation draws from torch's
    global RNG, so call it before a trial seeds that, never inside one.
    """
    import torch
    from torch import nn

    from agents.networks import N_ACTIONS, OBS_SHAPE, NeuronLayer

    def fail(problem: str) -> None:
        raise NetworkInterfaceError(f"architecture {arch!r}: {problem} (the interface: agents.architectures."
                                    f"NetworkInterface, docs/extending.md)")

    generator = torch.Generator().manual_seed(0)
    batch = 4 * n_tasks
    obs = torch.randint(0, 6, (batch, *OBS_SHAPE), generator=generator, dtype=torch.uint8)
    task = torch.arange(n_tasks).repeat_interleave(4)
    for n_out in (N_ACTIONS, 1):
        try:
            network = build_network(arch, n_tasks, n_out, n_experts=n_experts, hidden=hidden)
        except UserError:
            raise
        except Exception as exc:  # a plugin's builder: its error, in one line
            fail(f"its builder raised {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
        if not isinstance(network, nn.Module):
            fail(f"the builder returned a {type(network).__name__}, not a torch.nn.Module")
        for method in ("features_from_record", "neuron_layers", "weight_layers", "output_layers"):
            if not callable(getattr(network, method, None)):
                fail(f"its network has no {method}() method")
        if getattr(network, "n_tasks", None) != n_tasks:
            fail(f"its network's n_tasks is {brief(getattr(network, 'n_tasks', None))}, not {n_tasks}")
        try:
            with torch.no_grad():
                out = network(obs, task)
                record: dict = {}
                out_recorded = network(obs, task, record=record)
                features = network.features_from_record(record)
            layers = network.neuron_layers()
            weights = network.weight_layers()
            outputs = network.output_layers()
        except Exception as exc:
            fail(f"its network raised {type(exc).__name__} on a forward pass of obs uint8 [B, 3, 7, 7] and "
                 f"task int64 [B]: {' '.join(str(exc).split())[:200]}")
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (batch, n_out):
            fail(f"forward gave shape {tuple(getattr(out, 'shape', ()))} for {batch} samples, expected ({batch}, {n_out})")
        if not torch.equal(out, out_recorded):
            fail("forward(record=...) gives other outputs than forward()")
        if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[0] != batch:
            fail("features_from_record(record) must give the [B, F] shared features")
        if not all(isinstance(layer, NeuronLayer) for layer in layers) or not layers:
            fail("neuron_layers() must return a non-empty list of agents.networks.NeuronLayer")
        if not isinstance(weights, dict) or not all(isinstance(m, nn.Module) and isinstance(getattr(m, "weight", None),
                                                                                            nn.Parameter)
                                                    for m in weights.values()):
            fail("weight_layers() must return {module name: module with a weight parameter}")
        if not outputs or not all(isinstance(m, nn.Linear) for m in outputs):
            fail("output_layers() must return a non-empty list of torch.nn.Linear")
        modules = dict(network.named_modules())
        for layer in layers:
            if layer.name not in record:
                fail(f"neuron layer {layer.name!r} is not in the record of forward(record=...)")
            for name in (*layer.producers, *(c for c, _ in layer.consumers)):
                if name not in modules:
                    fail(f"neuron layer {layer.name!r} names module {name!r}, which the network lacks")
            if record[layer.name].shape[0] and record[layer.name].shape[1] % layer.n_neurons:
                fail(f"neuron layer {layer.name!r} records {record[layer.name].shape[1]} values per sample, "
                     f"not a multiple of its {layer.n_neurons} neurons")


# --- the paper's architectures -----------------------------------------------------------------------
def _moe_update_ms(experts: int) -> float:
    return 0.4 * experts  # k conv trunks


def _moore_update_ms(experts: int) -> float:
    return 0.5 * experts  # k conv trunks and the Gram-matrix mixture


register_architecture("mtppo", "agents.networks:build_mtppo", display_name="MTPPO",
                      long_name="Multi-Task PPO (MTPPO)")
register_architecture("moe", "agents.networks:build_moe", display_name="MoE", long_name="Mixture of Experts (MoE)",
                      uses_experts=True, update_ms_per_task_step=_moe_update_ms)
register_architecture("moore", "agents.networks:build_moore", display_name="MOORE",
                      long_name="Mixture of Orthogonal Experts (MOORE)", uses_experts=True,
                      update_ms_per_task_step=_moore_update_ms)
register_architecture("single", "agents.networks:build_single", display_name="Single-task PPO",
                      long_name="Single-task PPO", single_task=True,
                      # MOORE's single-task baseline (run_minigrid_ppo_st.py) is mushroom-rl's stock PPO
                      # with critic_fit_params=None: 10 epochs of shuffled 256-sample minibatches per update.
                      trial_defaults={"critic_epochs": 10, "critic_batch_size": 256})
