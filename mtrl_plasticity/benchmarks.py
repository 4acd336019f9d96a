"""The task and benchmark registries, and the paper's score normalisation (Table 3).

Two registries: :data:`TASKS` (MiniGrid environments with the numbers that normalise their
returns) and :data:`MULTI_TASK_BENCHMARKS` (ordered task lists trained together). Every
registered task is also a one-task benchmark of its own name. The paper's tasks and
benchmarks register in ``envs.benchmarks`` through :func:`register_task` and
:func:`register_benchmark`; a plugin registers its own the same way (``docs/extending.md``).

A MiniGrid success pays ``1 - 0.9 * steps / max_steps`` and a failure 0. The normalised
score divides a raw return by the best reward achievable on the task (a success in the
optimal number of steps), so an optimal agent scores exactly 1.0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mtrl_plasticity.errors import RegistryError, UnknownName, brief
from mtrl_plasticity.registry import Registry, caller_module


@dataclass(frozen=True)
class TaskSpec:
    """One MiniGrid task and the numbers the paper normalises it with."""

    name: str
    """Task name without the ``MiniGrid-`` prefix, e.g. ``"LavaGapS7-v0"``."""
    optimal_steps: int
    """Steps an optimal agent needs (paper Table 3)."""
    max_steps: int
    """The environment's own episode limit (truncation)."""
    gym_id: str | None = None
    """The Gymnasium id to make, when it is not ``MiniGrid-<name>`` (a plugin's own environment)."""

    @property
    def env_id(self) -> str:
        return self.gym_id or f"MiniGrid-{self.name}"

    @property
    def best_reward(self) -> float:
        """Best achievable raw return: a success in ``optimal_steps`` steps."""
        return success_reward(self.optimal_steps, self.max_steps)


def success_reward(steps: int, max_steps: int) -> float:
    """MiniGrid's reward for reaching the goal after ``steps`` steps."""
    return 1.0 - 0.9 * (steps / max_steps)


@dataclass(frozen=True)
class Benchmark:
    """An ordered set of tasks trained together, and the expert count MoE/MOORE use for it."""

    name: str
    tasks: tuple[str, ...]
    n_experts: int

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)


TASK_REGISTRY: Registry[TaskSpec] = Registry("task")
BENCHMARK_REGISTRY: Registry[Benchmark] = Registry("benchmark")

TASKS: Mapping[str, TaskSpec] = TASK_REGISTRY.view
"""Every registered task by name (a read-only live view of the registry)."""
MULTI_TASK_BENCHMARKS: Mapping[str, Benchmark] = BENCHMARK_REGISTRY.view
"""Every registered multi-task benchmark by name (a read-only live view of the registry)."""


def register_task(name: str, *, optimal_steps: int, max_steps: int, gym_id: str | None = None) -> TaskSpec:
    """Make task ``name`` usable in benchmarks (and as a one-task benchmark of that name).

    ``optimal_steps`` is what an optimal agent needs (it sets the best achievable reward the
    scores are normalised by); ``max_steps`` must be the environment's own episode limit
    (trials check it when they make the env). ``gym_id`` defaults to ``MiniGrid-<name>``.
    """
    for what, value in (("optimal_steps", optimal_steps), ("max_steps", max_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RegistryError(f"task {name!r}: {what} must be a positive integer, got {value!r}")
    if optimal_steps > max_steps:
        raise RegistryError(f"task {name!r}: optimal_steps {optimal_steps} exceeds max_steps {max_steps}")
    if name in BENCHMARK_REGISTRY:
        raise RegistryError(f"task {name!r} clashes with the benchmark of that name; choose another name")
    return TASK_REGISTRY.add(name, TaskSpec(name, optimal_steps, max_steps, gym_id), caller_module())


def register_benchmark(name: str, tasks: Sequence[str], *, n_experts: int) -> Benchmark:
    """Register the benchmark ``name``: registered ``tasks`` trained together, in this order.

    ``n_experts`` is the expert count MoE/MOORE use on it unless a sweep sets ``n_experts``.
    """
    task_names = tuple(tasks)
    unknown = [t for t in task_names if t not in TASKS]
    if unknown:
        raise RegistryError(f"benchmark {name!r}: unknown task(s) {unknown}; register them first (register_task)")
    if len(task_names) < 2 or len(set(task_names)) != len(task_names):
        raise RegistryError(f"benchmark {name!r}: needs two or more distinct tasks (every task is a one-task "
                            f"benchmark of its own name already), got {list(task_names)}")
    if isinstance(n_experts, bool) or not isinstance(n_experts, int) or n_experts < 1:
        raise RegistryError(f"benchmark {name!r}: n_experts must be a positive integer, got {n_experts!r}")
    if name in TASK_REGISTRY:
        raise RegistryError(f"benchmark {name!r} clashes with the task of that name; choose another name")
    return BENCHMARK_REGISTRY.add(name, Benchmark(name, task_names, n_experts), caller_module())


def benchmark_names() -> list[str]:
    """Every name :func:`get_benchmark` accepts: the multi-task benchmarks, then each single task."""
    return list(MULTI_TASK_BENCHMARKS) + list(TASKS)


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called ``name``; a single task name gives a one-task benchmark.

    :class:`~mtrl_plasticity.errors.UnknownName` (one line, with the choices) for any other name.
    """
    if name in MULTI_TASK_BENCHMARKS:
        return MULTI_TASK_BENCHMARKS[name]
    if name in TASKS:
        return Benchmark(name, (name,), n_experts=1)
    raise UnknownName(f"unknown benchmark {brief(name)}; choose one of: {', '.join(benchmark_names())}")


def unregister(name: str) -> None:
    """Forget a benchmark or task registered by a test (the paper's own stay)."""
    BENCHMARK_REGISTRY.remove(name)
    TASK_REGISTRY.remove(name)


def normalise_return(raw_return: float, task: str) -> float:
    """Raw undiscounted return divided by the task's best achievable reward (Table 3)."""
    return raw_return / TASKS[task].best_reward
