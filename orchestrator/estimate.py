"""A rough cost model of a trial, for ``mtrl run --dry-run``: core-seconds from the config.

A trial's cost is a sum of per-step costs, each a constant below or the architecture's
own (its registration's ``update_ms_per_task_step``, ``mtrl_plasticity.architectures``):

* collection: the policy, buffers and loop per lock-step step per task
  (:data:`COLLECT_S_PER_TASK_STEP`), plus MiniGrid's step (:data:`MINIGRID_S_PER_STEP`, through
  MiniGrid's ``gen_obs`` or through ``envs.fast_obs``, by ``fast_observations``);
* the PPO update per lock-step step per task: the architecture's, growing with the expert
  count for MoE and MOORE, plus :data:`CRITIC_EPOCH_S_PER_TASK_STEP` for each critic epoch
  past the first (the single-task baseline's 10 epochs of 256-sample minibatches);
* evaluation: :data:`EVAL_S_PER_ENV_STEP` per environment step of the batched evaluator plus
  MiniGrid's step; untrained episodes run to ``max_steps``, trained ones end early, so an
  evaluation episode is taken to last :data:`EVAL_LENGTH_FRACTION` of its task's ``max_steps``;
* the plasticity metrics: :data:`PLASTICITY_S_PER_POINT` per evaluation point.

The constants were measured phase by phase on one trial thread of a 2-core machine with
``orchestrator.trial``'s own loop (``bench/bench_trial.py`` and ``bench/bench_obs.py`` print
the figures they come from). Expect +-30%: the estimate ignores learning speed and machine
differences. A GPU speeds up the update, not the environment steps.
"""

from __future__ import annotations

from collections.abc import Iterable

from mtrl_plasticity.architectures import architecture_spec
from mtrl_plasticity.benchmarks import TASKS, get_benchmark
from orchestrator.config import TrialConfig

MINIGRID_S_PER_STEP = {False: 0.35e-3, True: 0.035e-3}
"""MiniGrid's step, by ``TrialConfig.fast_observations``."""
COLLECT_S_PER_TASK_STEP = 0.35e-3  # policy, buffers and loop; MiniGrid's step comes on top
EVAL_S_PER_ENV_STEP = 0.15e-3  # batched policy and loop; MiniGrid's step comes on top
EVAL_LENGTH_FRACTION = 0.4
PLASTICITY_S_PER_POINT = 1.0


CRITIC_EPOCH_S_PER_TASK_STEP = 0.08e-3  # each critic epoch past the first


def update_s_per_task_step(arch: str, experts: int, critic_epochs: int = 1) -> float:
    """Seconds of PPO update per lock-step step per task (see the module docstring).

    The architecture's own part comes from its registration (``update_ms_per_task_step``);
    a plugin that gives none is priced as MTPPO.
    """
    extra_critic = (critic_epochs - 1) * CRITIC_EPOCH_S_PER_TASK_STEP
    return architecture_spec(arch).update_ms(experts) * 1e-3 + extra_critic


def trial_core_seconds(config: TrialConfig) -> float:
    """Estimated CPU-core seconds of one trial, start to finish."""
    benchmark = get_benchmark(config.benchmark)
    task_steps = config.total_steps * benchmark.n_tasks
    minigrid = MINIGRID_S_PER_STEP[config.fast_observations]
    update = update_s_per_task_step(config.arch, config.experts, config.critic_epochs)
    train = task_steps * (COLLECT_S_PER_TASK_STEP + minigrid + update)
    eval_points = config.total_steps // config.eval_interval_steps + 1  # and once before training
    episode_steps = sum(TASKS[t].max_steps for t in benchmark.tasks) * EVAL_LENGTH_FRACTION
    evaluation = eval_points * config.eval_episodes * episode_steps * (EVAL_S_PER_ENV_STEP + minigrid)
    plasticity = (eval_points - 1) * PLASTICITY_S_PER_POINT if config.measure_plasticity else 0.0
    return train + evaluation + plasticity


def core_hours(trials: Iterable[TrialConfig]) -> float:
    return sum(trial_core_seconds(t) for t in trials) / 3600.0


def eval_points(config: TrialConfig) -> int:
    """Evaluation points of a trial: before training and every ``eval_interval_steps``."""
    return config.total_steps // config.eval_interval_steps + 1


def expected_rows(config: TrialConfig) -> tuple[int, int]:
    """``(evals rows, train rows)`` a finished trial has in Parquet."""
    return eval_points(config) * get_benchmark(config.benchmark).n_tasks, config.n_epochs
