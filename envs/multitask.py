"""MiniGrid tasks as the trial sees them: lock-step multi-task training and replayable state.

Observations are the 7x7x3 ``image`` only, as uint8 integer codes, channels first
(``[3, 7, 7]``); the task identity travels separately as an index. We step MiniGrid's
unwrapped env directly: gymnasium's checker wrappers add per-step cost and nothing
else (MiniGrid itself truncates at its ``max_steps``).

Checkpointing an environment without pickling it: every episode starts from
``reset(seed=episode_seed)`` and MiniGrid's dynamics are a deterministic function of that
seed and the actions since, so ``(episode_seed, actions so far)`` is the whole state. A
restore replays those actions (at most ``max_steps`` of them).
"""

from __future__ import annotations

import time

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid-* ids)
import numpy as np
from minigrid.minigrid_env import MiniGridEnv

import envs.benchmarks  # noqa: F401  (registers the paper's tasks)
from envs.fast_obs import FAST_OBSERVATIONS, ObservationMismatch, ObservationPath
from mtrl_plasticity.benchmarks import TASKS
from mtrl_plasticity.errors import TaskEnvError

_SEED_HIGH = 2**31 - 1


def make_task_env(task: str, observations: ObservationPath = FAST_OBSERVATIONS) -> MiniGridEnv:
    """The unwrapped MiniGrid environment of ``task`` (a name from :data:`TASKS`).

    Its observations come through ``observations`` (by default :mod:`envs.fast_obs`'s exact
    fast path; MiniGrid keeps the game).
    """
    spec = TASKS[task]
    env = gym.make(spec.env_id).unwrapped
    if not isinstance(env, MiniGridEnv):
        raise TaskEnvError(f"task {task!r}: {spec.env_id!r} is a {type(env).__name__}, not a MiniGrid env")
    if env.max_steps != spec.max_steps:  # the scores are normalised with the registered value
        raise TaskEnvError(f"task {task!r}: registered with max_steps={spec.max_steps} but {spec.env_id!r} has "
                         f"max_steps={env.max_steps}; the scores would be normalised wrongly")
    return observations.apply(env)


def image_of(obs: dict) -> np.ndarray:
    return np.ascontiguousarray(obs["image"].transpose(2, 0, 1))


class EnvClock:
    """Seconds spent inside MiniGrid's reset/step, the floor of a trial's cost."""

    def __init__(self) -> None:
        self.seconds = 0.0


class TaskEnv:
    """One task's environment with the seed and action log that make its state replayable."""

    def __init__(self, task: str, clock: EnvClock | None = None,
                 observations: ObservationPath = FAST_OBSERVATIONS) -> None:
        self.task = task
        self.env = make_task_env(task, observations)
        self.clock = clock or EnvClock()
        self.episode_seed = 0
        self.actions: list[int] = []
        self.episode_return = 0.0
        self.obs: np.ndarray | None = None

    def reset(self, episode_seed: int) -> np.ndarray:
        start = time.perf_counter()
        try:
            obs, _ = self.env.reset(seed=int(episode_seed))
        except ObservationMismatch as exc:
            raise ObservationMismatch(f"{exc} (reset, episode seed {int(episode_seed)})") from None
        self.clock.seconds += time.perf_counter() - start
        self.episode_seed = int(episode_seed)
        self.actions = []
        self.episode_return = 0.0
        self.obs = image_of(obs)
        return self.obs

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool]:
        start = time.perf_counter()
        try:
            obs, reward, terminated, truncated, _ = self.env.step(int(action))
        except ObservationMismatch as exc:
            raise ObservationMismatch(
                f"{exc} (episode seed {self.episode_seed}, after actions {self.actions + [int(action)]})") from None
        self.clock.seconds += time.perf_counter() - start
        self.actions.append(int(action))
        self.episode_return += float(reward)
        self.obs = image_of(obs)
        return self.obs, float(reward), bool(terminated), bool(truncated)

    def current_obs(self) -> np.ndarray:
        """The observation the last ``reset`` or ``step`` returned."""
        if self.obs is None:
            raise RuntimeError(f"{self.task}: no observation before the first reset")
        return self.obs

    def state_dict(self) -> dict:
        return {"episode_seed": self.episode_seed, "actions": list(self.actions)}

    def load_state_dict(self, state: dict) -> None:
        self.reset(state["episode_seed"])
        for action in state["actions"]:
            _, _, terminated, truncated = self.step(action)
            if terminated or truncated:
                raise RuntimeError(f"replay of {self.task} ended its episode early: not the same environment")


class LockStepEnv:
    """Every task's environment advances once per step; finished episodes restart at once.

    Episode seeds come from ``rng`` (the trial's numpy Generator), so one trial seed fixes
    every layout the agent trains on.
    """

    def __init__(self, tasks: tuple[str, ...], rng: np.random.Generator, clock: EnvClock | None = None,
                 observations: ObservationPath = FAST_OBSERVATIONS) -> None:
        self.tasks = tasks
        self.rng = rng
        self.clock = clock or EnvClock()
        self.envs = [TaskEnv(t, self.clock, observations) for t in tasks]

    @property
    def n_tasks(self) -> int:
        return len(self.envs)

    def reset(self) -> np.ndarray:
        for env in self.envs:
            env.reset(self._episode_seed())
        return self.observations()

    def reset_where(self, which: np.ndarray) -> None:
        """Start a fresh episode in the tasks where ``which`` (bool ``[T]``) is True, in task order."""
        for env, fresh in zip(self.envs, which, strict=True):
            if fresh:
                env.reset(self._episode_seed())

    def observations(self) -> np.ndarray:
        """Current observation of every task, ``[T, 3, 7, 7]`` uint8."""
        return np.stack([env.current_obs() for env in self.envs])

    def step(self, actions: np.ndarray) -> dict[str, np.ndarray | list]:
        """Advance every task once.

        Returns ``next_obs`` (the observation each action led to, before any reset: what
        GAE bootstraps from), ``reward``, ``terminated``, ``truncated`` (each ``[T]``) and
        ``finished`` (``(task_index, return, length)`` of episodes that ended here).
        """
        T = self.n_tasks
        next_obs = np.empty((T, 3, 7, 7), dtype=np.uint8)
        reward = np.zeros(T, dtype=np.float32)
        terminated = np.zeros(T, dtype=bool)
        truncated = np.zeros(T, dtype=bool)
        finished = []
        for i, env in enumerate(self.envs):
            next_obs[i], reward[i], terminated[i], truncated[i] = env.step(actions[i])
            if terminated[i] or truncated[i]:
                finished.append((i, env.episode_return, len(env.actions)))
                env.reset(self._episode_seed())
        return {"next_obs": next_obs, "reward": reward, "terminated": terminated,
                "truncated": truncated, "finished": finished}

    def _episode_seed(self) -> int:
        return int(self.rng.integers(_SEED_HIGH))

    def state_dict(self) -> list[dict]:
        return [env.state_dict() for env in self.envs]

    def load_state_dict(self, states: list[dict]) -> None:
        for env, state in zip(self.envs, states, strict=True):
            env.load_state_dict(state)
