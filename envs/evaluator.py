"""Evaluation: all episodes of an evaluation point run together, one policy call per step.

Untrained agents run most episodes to ``max_steps`` (up to 720 on RedBlueDoors), so
evaluation dominates a trial's cost. Stepping the T x E episodes of a point in lock-step and
batching their observations into a single forward pass per step leaves MiniGrid's own step
as the cost, instead of T x E x steps tiny forward passes.

Episode layouts come from ``episode_seeds`` (``[T, E]`` ints), so an evaluation is a pure
function of the policy, the seeds and the policy's own sampling RNG.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from envs.fast_obs import FAST_OBSERVATIONS, ObservationPath
from envs.multitask import EnvClock, TaskEnv
from mtrl_plasticity.benchmarks import TASKS

Policy = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``policy(obs [N, 3, 7, 7] uint8, task [N] int64) -> actions [N]``."""


@dataclass(frozen=True)
class TaskEvaluation:
    """Summary of the evaluation episodes of one task at one evaluation point."""

    task: str
    task_index: int
    returns: np.ndarray  # [E] undiscounted raw returns
    lengths: np.ndarray  # [E]
    discounted_returns: np.ndarray  # [E] sum_t gamma^t r_t of each episode (t = 0 at its first step)

    @property
    def episodes(self) -> int:
        return len(self.returns)

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.returns > 0))

    @property
    def normalised_return_mean(self) -> float:
        return float(np.mean(self.returns)) / TASKS[self.task].best_reward


def discounted(gamma: float, t: int, reward: float) -> float:
    """``gamma^t * reward``: step ``t``'s share of an episode's discounted return.

    Python's float power, as mushroom-rl's ``compute_J`` (MOORE's ``AverageDiscountedReturn``)
    takes it, so the sums agree to the last bit.
    """
    return float(gamma) ** int(t) * float(reward)


class BatchedEvaluator:
    """Keeps ``T x episodes_per_task`` environments alive across evaluation points.

    ``gamma`` discounts the returns of :attr:`TaskEvaluation.discounted_returns` (the trial's
    discount factor).
    """

    def __init__(self, tasks: tuple[str, ...], episodes_per_task: int, clock: EnvClock | None = None,
                 observations: ObservationPath = FAST_OBSERVATIONS, gamma: float = 1.0) -> None:
        self.tasks = tasks
        self.gamma = gamma
        self.episodes_per_task = episodes_per_task
        self.clock = clock or EnvClock()
        self.envs = [[TaskEnv(t, self.clock, observations) for _ in range(episodes_per_task)] for t in tasks]

    def evaluate(self, policy: Policy, episode_seeds: np.ndarray) -> list[TaskEvaluation]:
        T, E = len(self.tasks), self.episodes_per_task
        if episode_seeds.shape != (T, E):
            raise ValueError(f"episode_seeds must have shape {(T, E)}, got {episode_seeds.shape}")
        flat = [env for row in self.envs for env in row]
        task_of = np.repeat(np.arange(T, dtype=np.int64), E)
        obs = np.stack([env.reset(seed) for env, seed in zip(flat, episode_seeds.ravel(), strict=True)])
        returns = np.zeros(T * E)
        discounted_returns = np.zeros(T * E)
        lengths = np.zeros(T * E, dtype=np.int64)
        active = np.arange(T * E)
        while active.size:
            actions = policy(obs[active], task_of[active])
            still_active = []
            for j, env_index in enumerate(active):
                env = flat[env_index]
                obs[env_index], reward, terminated, truncated = env.step(actions[j])
                returns[env_index] += reward
                discounted_returns[env_index] += discounted(self.gamma, lengths[env_index], reward)
                lengths[env_index] += 1
                if not (terminated or truncated):
                    still_active.append(env_index)
            active = np.asarray(still_active, dtype=np.int64)
        return [
            TaskEvaluation(task, i, returns[i * E:(i + 1) * E].copy(), lengths[i * E:(i + 1) * E].copy(),
                           discounted_returns[i * E:(i + 1) * E].copy())
            for i, task in enumerate(self.tasks)
        ]


def evaluate_sequentially(tasks: tuple[str, ...], policy: Policy, episode_seeds: np.ndarray,
                          clock: EnvClock | None = None, observations: ObservationPath = FAST_OBSERVATIONS,
                          gamma: float = 1.0) -> list[TaskEvaluation]:
    """One episode at a time, one policy call per environment step: the slow reference."""
    results = []
    for i, task in enumerate(tasks):
        env = TaskEnv(task, clock, observations)
        returns, lengths, discounted_returns = [], [], []
        for seed in episode_seeds[i]:
            obs = env.reset(seed)
            total, total_discounted, length, done = 0.0, 0.0, 0, False
            while not done:
                action = policy(obs[None], np.array([i], dtype=np.int64))[0]
                obs, reward, terminated, truncated = env.step(action)
                total += reward
                total_discounted += discounted(gamma, length, reward)
                length += 1
                done = terminated or truncated
            returns.append(total)
            lengths.append(length)
            discounted_returns.append(total_discounted)
        results.append(TaskEvaluation(task, i, np.asarray(returns), np.asarray(lengths),
                                      np.asarray(discounted_returns)))
    return results
