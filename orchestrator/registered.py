"""What the registries say about a trial: the names it may use, and the checks that need them.

Importing this module registers the paper's own treatments, architectures, tasks and
benchmarks (their modules are torch-free), so every part of the orchestrator, and the
analysis above it, sees the built-ins before any plugin registers beside them. The checks of
a trial's configuration that depend on a registration live here, in one place, and are what
both :class:`orchestrator.config.TrialConfig` and the sweep spec call; each failure is one
line naming the problem.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import agents.architectures  # noqa: F401  (registers mtppo, moe, moore, single)
import agents.treatment_parameters  # noqa: F401  (registers dense, gmp*, set*, redo, reset, wd)
import envs.benchmarks  # noqa: F401  (registers the paper's tasks and MT3/MT5/MT7)
from mtrl_plasticity.architectures import ArchitectureSpec, architecture_spec
from mtrl_plasticity.benchmarks import Benchmark, get_benchmark
from mtrl_plasticity.errors import RegistryError
from mtrl_plasticity.treatments import parse_parameters, treatment_spec

__all__ = ["architecture", "arch_trial_defaults", "benchmark", "check_cell", "treatment"]


def benchmark(name: str) -> Benchmark:
    """The registered benchmark (or single task) ``name``; one line naming the choices otherwise."""
    return get_benchmark(name)


def architecture(name: str) -> ArchitectureSpec:
    """The registered architecture ``name``; one line naming the choices otherwise."""
    return architecture_spec(name)


def treatment(name: str) -> str:
    """``name`` itself if a treatment is registered under it; one line naming the choices otherwise."""
    treatment_spec(name)
    return name


def arch_trial_defaults(arch: str, trial_fields: Collection[str]) -> Mapping[str, Any]:
    """The TrialConfig values architecture ``arch`` implies; a registration naming a field TrialConfig
    lacks (``trial_fields``) is refused in one line naming the architecture."""
    defaults = architecture_spec(arch).trial_defaults
    unknown = sorted(set(defaults) - set(trial_fields))
    if unknown:
        raise RegistryError(f"architecture {arch!r}: trial_defaults names unknown trial setting(s) {unknown}")
    return defaults


def check_cell(benchmark_name: str, arch: str, treatment_name: str, treatment_params: Mapping[str, Any],
               *, experts: int, total_steps: int) -> None:
    """Refuse what the registrations rule out for one trial: a single-task architecture on several
    tasks, an expert architecture without experts, treatment parameters the treatment refuses."""
    spec = architecture_spec(arch)
    if spec.single_task and get_benchmark(benchmark_name).n_tasks != 1:
        raise ValueError(f"arch {arch!r} needs a single-task benchmark, got {benchmark_name!r}")
    if spec.uses_experts and experts < 1:
        raise ValueError(f"{arch} needs n_experts >= 1")
    parse_parameters(treatment_name, treatment_params, total_steps=total_steps)
