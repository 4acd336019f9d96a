"""A rough cost model of a trial, for ``mtrl run --dry-run``: core-seconds from the config.

Measured on the 2-core development machine (one torch thread per trial, torch 2.13 CPU,
MiniGrid 3.2), phase by phase with ``orchestrator.trial._Trial`` on MT3/MT7/a single task:

* MiniGrid's own step (observation included, resets amortised): ~0.35 ms through MiniGrid's
  ``gen_obs``; ~0.035 ms through ``envs.fast_obs`` (``fast_observations``, the default): the
  lock-step env over the seven tasks, with resets, ran 10.5-11x faster side by side
  (``python bench/bench_obs.py`` prints per-task figures). It counts in collection and
  evaluation below;
* collection: about 0.35 ms per lock-step step per task besides the MiniGrid step (0.55-1.0 ms
  in all through MiniGrid's ``gen_obs``, across architectures and MT3/MT7);
* PPO update, per lock-step step per task: 0.5 ms for MTPPO and single-task, growing with the
  expert count k for MoE (0.4 k ms) and MOORE (0.5 k ms: k conv trunks and the Gram-matrix
  mixture; MT3 1.2 ms, MT7 1.9 ms measured); each critic epoch past the first adds about
  0.08 ms (the single-task baseline's 10 epochs of 256-sample minibatches made one 2,000-sample
  update 2.4x as long as one full-batch critic step, side by side on a loaded machine);
* evaluation: about 0.15 ms per environment step of the batched evaluator besides the MiniGrid
  step (0.5 ms in all through MiniGrid's ``gen_obs``). Untrained
  episodes run to ``max_steps``, trained ones end early; the model assumes an evaluation
  episode lasts ``EVAL_LENGTH_FRACTION`` of its task's ``max_steps`` on average over training
  (0.46 was measured on untrained MT3 agents);
* plasticity metrics: about 1 s per evaluation point.

Expect +-30%: the estimate ignores learning speed and machine differences. A GPU speeds up
the update, not the environment steps.
"""

from __future__ import annotations

from collections.abc import Iterable

from envs.benchmarks import TASKS, get_benchmark
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

    The architecture's own part comes from its registration (``update_ms_per_task_step``,
    :mod:`agents.architectures`): 0.5 ms for MTPPO and single-task, 0.4 k ms for MoE and
    0.5 k ms for MOORE with k experts; a plugin that gives none is priced as MTPPO.
    """
    from agents.architectures import architecture_spec

    extra_critic = (critic_epochs - 1) * CRITIC_EPOCH_S_PER_TASK_STEP
    return architecture_spec(arch).update_ms(experts) * 1e-3 + extra_critic


def trial_core_seconds(config: TrialConfig) -> float:
    """Estimated CPU-core seconds of one trial, start to finish."""
    benchmark = get_benchmark(config.benchmark)
    task_steps = config.total_steps * benchmark.n_tasks
    minigrid = MINIGRID_S_PER_STEP[config.fast_observations]
    train = task_steps * (COLLECT_S_PER_TASK_STEP + minigrid + update_s_per_task_step(config.arch, config.experts, config.critic_epochs))
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
