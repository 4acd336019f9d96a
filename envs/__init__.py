"""MiniGrid benchmarks, lock-step multi-task training environments, batched evaluation."""

from envs.benchmarks import (
    MULTI_TASK_BENCHMARKS,
    TASKS,
    Benchmark,
    TaskSpec,
    get_benchmark,
    normalise_return,
)

__all__ = ["MULTI_TASK_BENCHMARKS", "TASKS", "Benchmark", "TaskSpec", "get_benchmark", "normalise_return"]
