"""Benchmarks (MT3/MT5/MT7 and single tasks) and the paper's score normalisation (Table 3).

A MiniGrid success pays ``1 - 0.9 * steps / max_steps`` and a failure 0. The normalised
score divides a raw return by the best reward achievable on the task (a success in the
optimal number of steps), so an optimal agent scores exactly 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    """One MiniGrid task and the numbers the paper normalises it with."""

    name: str
    """Task name without the ``MiniGrid-`` prefix, e.g. ``"LavaGapS7-v0"``."""
    optimal_steps: int
    """Steps an optimal agent needs (paper Table 3)."""
    max_steps: int
    """The environment's own episode limit (truncation)."""

    @property
    def env_id(self) -> str:
        return f"MiniGrid-{self.name}"

    @property
    def best_reward(self) -> float:
        """Best achievable raw return: a success in ``optimal_steps`` steps."""
        return success_reward(self.optimal_steps, self.max_steps)


def success_reward(steps: int, max_steps: int) -> float:
    """MiniGrid's reward for reaching the goal after ``steps`` steps."""
    return 1.0 - 0.9 * (steps / max_steps)


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("DoorKey-6x6-v0", optimal_steps=11, max_steps=360),
        TaskSpec("DistShift1-v0", optimal_steps=11, max_steps=252),
        TaskSpec("RedBlueDoors-6x6-v0", optimal_steps=8, max_steps=720),
        TaskSpec("LavaGapS7-v0", optimal_steps=8, max_steps=196),
        TaskSpec("MemoryS11-v0", optimal_steps=15, max_steps=605),
        TaskSpec("SimpleCrossingS9N2-v0", optimal_steps=15, max_steps=324),
        TaskSpec("MultiRoom-N2-S4-v0", optimal_steps=5, max_steps=40),
        # Not in the paper: an easy task for learning tests and quick demos.
        # The agent starts at (1,1) facing east, the goal is at (3,3): 2 forward, turn, 2 forward.
        TaskSpec("Empty-5x5-v0", optimal_steps=5, max_steps=100),
    )
}
"""Every task a benchmark may name; the first seven are the paper's Table 3."""

PAPER_TASKS = tuple(list(TASKS)[:7])


@dataclass(frozen=True)
class Benchmark:
    """An ordered set of tasks trained together, and the expert count MoE/MOORE use for it."""

    name: str
    tasks: tuple[str, ...]
    n_experts: int

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    def task_specs(self) -> tuple[TaskSpec, ...]:
        return tuple(TASKS[t] for t in self.tasks)


_MT3 = ("LavaGapS7-v0", "RedBlueDoors-6x6-v0", "MemoryS11-v0")
_MT5 = _MT3 + ("DoorKey-6x6-v0", "DistShift1-v0")
_MT7 = _MT5 + ("SimpleCrossingS9N2-v0", "MultiRoom-N2-S4-v0")

MULTI_TASK_BENCHMARKS: dict[str, Benchmark] = {
    "MT3": Benchmark("MT3", _MT3, n_experts=2),
    "MT5": Benchmark("MT5", _MT5, n_experts=3),
    "MT7": Benchmark("MT7", _MT7, n_experts=4),
}


def benchmark_names() -> list[str]:
    """Every name :func:`get_benchmark` accepts: MT3/MT5/MT7, then each single task."""
    return list(MULTI_TASK_BENCHMARKS) + list(TASKS)


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called ``name``; a single task name gives a one-task benchmark."""
    if name in MULTI_TASK_BENCHMARKS:
        return MULTI_TASK_BENCHMARKS[name]
    if name in TASKS:
        return Benchmark(name, (name,), n_experts=1)
    raise ValueError(
        f"unknown benchmark {name!r}; choose one of: {', '.join(benchmark_names())}"
    )


def normalise_return(raw_return: float, task: str) -> float:
    """Raw undiscounted return divided by the task's best achievable reward (Table 3)."""
    return raw_return / TASKS[task].best_reward
