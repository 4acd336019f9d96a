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
    """Make ``task``'s environment once, as a trial does: a MiniGrid env with the registered ``max_steps``."""
    from envs.multitask import TaskEnvError, make_task_env

    try:
        make_task_env(task).close()
    except TaskEnvError as exc:  # the env maker's own checks, one line naming the task
        raise UserError(str(exc)) from None
    except Exception as exc:
        from envs.benchmarks import TASKS

        raise UserError(f"task {task!r}: gymnasium cannot make {TASKS[task].env_id!r}: {type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:200]}") from None
