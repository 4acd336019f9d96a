"""Checks of a sweep's plugin parts before anything starts: networks, treatments and environments.

A plugin's registration is checked when it is imported (names, parameter defaults); what
can only be checked by importing or building it is checked here, once per sweep, for the
parts a plugin registered (the paper's own are covered by the test suite):

* every plugin architecture of the sweep builds an actor and a critic for each benchmark's
  task count that follow :class:`mtrl_plasticity.NetworkInterface`
  (:func:`agents.network_check.check_network`);
* every plugin treatment's implementation imports and is an ``agents.treatments.Treatment``;
* every plugin task of the sweep makes its environment, a MiniGrid env whose ``max_steps``
  is the one registered (the scores are normalised with it).

Each failure is a one-line :class:`mtrl_plasticity.errors.UserError`. Torch and gymnasium
are imported only when the sweep has such a part.
"""

from __future__ import annotations

from collections.abc import Iterable

from mtrl_plasticity.architectures import ARCHITECTURES
from mtrl_plasticity.benchmarks import TASK_REGISTRY, TASKS, get_benchmark
from mtrl_plasticity.errors import TaskEnvError, UserError
from mtrl_plasticity.treatments import TREATMENTS
from orchestrator.config import TrialConfig

BUILTIN_PACKAGES = ("agents", "envs", "orchestrator", "analysis", "mtrl_plasticity")


def is_builtin(owner: str) -> bool:
    """Whether a registration came from this package (not from a plugin)."""
    return owner.split(".")[0] in BUILTIN_PACKAGES


def check_plugin_parts(trials: Iterable[TrialConfig]) -> None:
    """Build each plugin architecture and environment the trials use once; raise on the first problem."""
    shapes: set[tuple[str, int, int, int]] = set()
    treatments: set[str] = set()
    tasks: set[str] = set()
    for trial in trials:
        benchmark = get_benchmark(trial.benchmark)
        if not is_builtin(ARCHITECTURES.owner(trial.arch)):
            shapes.add((trial.arch, benchmark.n_tasks, trial.experts, trial.hidden_size))
        if not is_builtin(TREATMENTS.owner(trial.treatment)):
            treatments.add(trial.treatment)
        tasks.update(t for t in benchmark.tasks if not is_builtin(TASK_REGISTRY.owner(t)))
    if shapes:
        # Only here: torch loads for a sweep with a plugin architecture.
        from agents.network_check import check_network

        for arch, n_tasks, experts, hidden in sorted(shapes):
            check_network(arch, n_tasks, n_experts=experts, hidden=hidden)
    if treatments:
        from agents.treatments import treatment_class  # torch, for a sweep with a plugin treatment

        for name in sorted(treatments):
            try:
                treatment_class(name)
            except UserError:
                raise
            except Exception as exc:  # a "module:Class" that does not import
                raise UserError(f"treatment {name!r}: its implementation {TREATMENTS.get(name).implementation!r} "
                                f"cannot be loaded: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None
    for task in sorted(tasks):
        check_task_env(task)


def check_task_env(task: str) -> None:
    """Make ``task``'s environment once, as a trial does: a MiniGrid env with the registered ``max_steps``."""
    from envs.multitask import make_task_env  # gymnasium and MiniGrid, for a sweep with a plugin task

    try:
        make_task_env(task).close()
    except TaskEnvError:
        raise  # the env maker's own checks, one line naming the task
    except Exception as exc:
        raise UserError(f"task {task!r}: gymnasium cannot make {TASKS[task].env_id!r}: {type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:200]}") from None
