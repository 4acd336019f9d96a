"""Checks of a sweep's plugin parts before anything starts: networks and environments.

A plugin's registration is checked when it is imported (names, parameter defaults); what
can only be checked by building it is checked here, once per sweep, for the parts a plugin
registered (the paper's own are covered by the test suite):

* every plugin architecture of the sweep builds an actor and a critic for each benchmark's
  task count that follow :class:`agents.architectures.NetworkInterface`
  (:func:`agents.architectures.check_network`);
* every plugin task of the sweep makes its environment, a MiniGrid env whose ``max_steps``
  is the one registered (the scores are normalised with it).

Each failure is a one-line :class:`orchestrator.errors.UserError`.
"""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.config import TrialConfig
from orchestrator.errors import UserError

BUILTIN_PACKAGES = ("agents", "envs", "orchestrator", "analysis", "mtrl")


def is_builtin(owner: str) -> bool:
    """Whether a registration came from this package (not from a plugin)."""
    return owner.split(".")[0] in BUILTIN_PACKAGES


def check_plugin_parts(trials: Iterable[TrialConfig]) -> None:
    """Build each plugin architecture and environment the trials use once; raise on the first problem."""
    from agents.architectures import ARCHITECTURES, check_network
    from envs.benchmarks import TASK_REGISTRY, get_benchmark

    shapes: set[tuple[str, int, int, int]] = set()
    tasks: set[str] = set()
    for trial in trials:
        benchmark = get_benchmark(trial.benchmark)
        if not is_builtin(ARCHITECTURES.owner(trial.arch)):
            shapes.add((trial.arch, benchmark.n_tasks, trial.experts, trial.hidden_size))
        tasks.update(t for t in benchmark.tasks if not is_builtin(TASK_REGISTRY.owner(t)))
    for arch, n_tasks, experts, hidden in sorted(shapes):
        check_network(arch, n_tasks, n_experts=experts, hidden=hidden)
    for task in sorted(tasks):
        check_task_env(task)


def check_task_env(task: str) -> None:
    """Make ``task``'s environment once: a MiniGrid env with the registered ``max_steps``."""
    import gymnasium as gym
    from minigrid.minigrid_env import MiniGridEnv

    from envs.benchmarks import TASKS

    spec = TASKS[task]
    try:
        env = gym.make(spec.env_id).unwrapped
    except Exception as exc:
        raise UserError(f"task {task!r}: gymnasium cannot make {spec.env_id!r}: {type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:200]}") from None
    try:
        if not isinstance(env, MiniGridEnv):
            raise UserError(f"task {task!r}: {spec.env_id!r} is a {type(env).__name__}, not a MiniGrid env")
        if env.max_steps != spec.max_steps:
            raise UserError(f"task {task!r}: registered with max_steps={spec.max_steps} but {spec.env_id!r} has "
                            f"max_steps={env.max_steps}; the scores would be normalised wrongly")
    finally:
        env.close()
