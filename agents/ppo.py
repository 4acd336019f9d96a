"""Multi-task PPO with MOORE's semantics (mushroom-rl's PPO, made multi-task).

One update per epoch on the epoch's ``N x T`` lock-step samples:

1. Values of ``s`` and ``s'`` from the current critic; GAE per task (gamma, lambda),
   bootstrapping from ``V(s')`` on truncation and at the end of the epoch, not on
   termination (mushroom-rl's ``compute_gae`` applied to each task's samples).
2. Advantages normalised per task: ``(A - mean) / (std + 1e-8)``.
3. Old log-probabilities from the current actor (before any update).
4. Critic first: MSE to the GAE targets, ``critic_epochs`` passes of ``critic_batch_size``
   shuffled minibatches (MOORE's multi-task scripts: one full-batch Adam step; its
   single-task baseline, mushroom-rl's stock PPO: 10 epochs of 256).
5. Policy: ``policy_epochs`` passes of shuffled minibatches of ``256 x T`` samples (tasks
   mixed), loss ``-mean(min(r A, clip(r, 1-eps, 1+eps) A)) - c_ent * mean(entropy)``.

No gradient clipping, no value clipping, no learning-rate schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.nn import functional as F

from agents.agent import ActorCritic
from agents.networks import MultiTaskNetwork
from agents.treatments import Treatment

ADV_EPS = 1e-8


@dataclass
class Rollout:
    """One epoch of lock-step experience; leading axes are ``[N steps, T tasks]``."""

    obs: np.ndarray  # uint8 [N, T, 3, 7, 7]
    actions: np.ndarray  # int64 [N, T]
    rewards: np.ndarray  # float32 [N, T]
    next_obs: np.ndarray  # uint8 [N, T, 3, 7, 7], before any reset
    terminated: np.ndarray  # bool [N, T]: absorbing, no bootstrap
    truncated: np.ndarray  # bool [N, T]: time limit, bootstrap from V(next_obs)

    @property
    def n_steps(self) -> int:
        return self.actions.shape[0]

    @property
    def n_tasks(self) -> int:
        return self.actions.shape[1]


def compute_gae(values: np.ndarray, next_values: np.ndarray, rewards: np.ndarray,
                absorbing: np.ndarray, last: np.ndarray, gamma: float, lam: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """GAE over a time axis, for one task or many tasks at once.

    Arrays are ``[N]`` or ``[N, T]`` (time first; tasks independent). ``last`` marks the final
    transition of an episode (terminated or truncated); the final transition of the array is
    treated as last too. Returns ``(value_targets, advantages)``, as mushroom-rl does.
    """
    n = values.shape[0]
    adv = np.empty(values.shape, dtype=np.float64)
    not_absorbing = 1.0 - absorbing.astype(np.float64)
    boundary = last.astype(bool).copy()
    boundary[n - 1] = True
    delta = rewards + gamma * next_values * not_absorbing - values
    running = np.zeros(values.shape[1:], dtype=np.float64)
    for k in range(n - 1, -1, -1):
        running = np.where(boundary[k], delta[k], delta[k] + gamma * lam * running)
        adv[k] = running
    return adv + values, adv


def normalise_per_task(advantages: np.ndarray) -> np.ndarray:
    """``[N, T]`` advantages standardised within each task (population std, +1e-8)."""
    return (advantages - advantages.mean(axis=0)) / (advantages.std(axis=0) + ADV_EPS)


def log_prob_and_entropy(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    log_p = F.log_softmax(logits, dim=-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return log_p.gather(-1, actions[:, None]).squeeze(-1), entropy


def clipped_surrogate(log_p: torch.Tensor, old_log_p: torch.Tensor, adv: torch.Tensor, clip_eps: float
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped objective as a loss to minimise, and the probability ratios."""
    ratio = torch.exp(log_p - old_log_p)
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)
    return -torch.mean(torch.min(ratio * adv, clipped * adv)), ratio


def _batched(fn: Callable[..., torch.Tensor], *tensors: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    return torch.cat([fn(*(t[i:i + chunk] for t in tensors)) for i in range(0, tensors[0].shape[0], chunk)])


def _task_major(a: np.ndarray) -> np.ndarray:
    """``[N, T, ...] -> [T * N, ...]``: a task's samples contiguous, in time order."""
    return np.ascontiguousarray(a.swapaxes(0, 1)).reshape(a.shape[0] * a.shape[1], *a.shape[2:])


def task_major_batch(rollout: Rollout, device: torch.device | str = "cpu"
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``obs``, ``next_obs``, ``task`` and ``actions`` of a rollout, flat and task-major.

    Index ``t * N + n`` is task ``t`` at step ``n``, so any sorted index set is sorted by
    task and the networks route it to the heads without gathering.
    """
    N, T = rollout.n_steps, rollout.n_tasks
    return (torch.from_numpy(_task_major(rollout.obs)).to(device),
            torch.from_numpy(_task_major(rollout.next_obs)).to(device),
            torch.arange(T, device=device).repeat_interleave(N),
            torch.from_numpy(_task_major(rollout.actions)).to(device))


@torch.no_grad()
def state_values(critic: MultiTaskNetwork, rollout: Rollout, obs: torch.Tensor, next_obs: torch.Tensor,
                 task: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``V(s)`` and ``V(s')`` as float64 ``[N, T]`` from task-major ``obs``/``next_obs``/``task``.

    The ``s'`` of a step is the next step's ``s`` unless an episode ended in between (or the
    epoch did), so the critic runs only on the ``s'`` that appear nowhere else: about half
    the forward passes of evaluating every ``s'``.
    """
    N, T = rollout.n_steps, rollout.n_tasks

    def value_of(o: torch.Tensor, c: torch.Tensor) -> np.ndarray:
        return _batched(lambda oo, cc: critic(oo, cc).squeeze(-1), o, c).double().cpu().numpy()

    values = value_of(obs, task).reshape(T, N).T
    next_values = np.empty_like(values)
    next_values[:-1] = values[1:]
    fresh = np.ones((N, T), dtype=bool)
    fresh[:-1] = (rollout.next_obs[:-1] != rollout.obs[1:]).reshape(N - 1, T, -1).any(axis=-1)
    fresh_task_major = fresh.T.copy()
    idx = torch.from_numpy(np.flatnonzero(fresh_task_major)).to(obs.device)
    if idx.numel():
        next_values.T[fresh_task_major] = value_of(next_obs[idx], task[idx])
    return values, next_values


class PPOSettings(Protocol):
    """What :func:`ppo_update` reads of a trial's configuration (``orchestrator.config.TrialConfig`` has it all)."""

    @property
    def gamma(self) -> float: ...
    @property
    def gae_lambda(self) -> float: ...
    @property
    def clip_eps(self) -> float: ...
    @property
    def ent_coef(self) -> float: ...
    @property
    def policy_epochs(self) -> int: ...
    @property
    def policy_batch_per_task(self) -> int: ...
    @property
    def critic_epochs(self) -> int: ...
    @property
    def critic_batch_size(self) -> int: ...


def ppo_update(agent: ActorCritic, rollout: Rollout, cfg: PPOSettings, rng: np.random.Generator,
               treatment: Treatment) -> dict[str, float]:
    """One PPO update (critic, then policy) on an epoch; returns the ``losses/*`` columns.

    The treatment's ``after_optimizer_step`` runs after every optimizer step (masks re-applied).
    """
    device = agent.device
    N, T = rollout.n_steps, rollout.n_tasks
    obs, next_obs, task, actions = task_major_batch(rollout, device)  # minibatches below sort their indices

    values_np, next_values_np = state_values(agent.critic, rollout, obs, next_obs, task)
    v_target, adv = compute_gae(
        values_np, next_values_np, rollout.rewards.astype(np.float64),
        rollout.terminated, rollout.terminated | rollout.truncated, cfg.gamma, cfg.gae_lambda)
    adv = normalise_per_task(adv)
    target_t = torch.as_tensor(_task_major(v_target), dtype=torch.float32, device=device)
    adv_t = torch.as_tensor(_task_major(adv), dtype=torch.float32, device=device)
    with torch.no_grad():
        old_log_p = _batched(lambda o, c, a: log_prob_and_entropy(agent.actor(o, c), a)[0], obs, task, actions)

    # --- critic first -------------------------------------------------------------
    value_losses = []
    critic_batch = cfg.critic_batch_size or N * T
    for _ in range(cfg.critic_epochs):
        order = rng.permutation(N * T) if critic_batch < N * T else np.arange(N * T)
        for start in range(0, N * T, critic_batch):
            idx = torch.as_tensor(np.sort(order[start:start + critic_batch]), device=device)
            loss = F.mse_loss(agent.critic(obs[idx], task[idx]).squeeze(-1), target_t[idx])
            agent.critic_optimizer.zero_grad()
            loss.backward()
            agent.critic_optimizer.step()
            treatment.after_optimizer_step(agent, "critic")
            value_losses.append(loss.item())

    # --- then the policy ----------------------------------------------------------
    stats: dict[str, list[float]] = {"policy_loss": [], "entropy": [], "approx_kl": [], "clip_fraction": []}
    batch = cfg.policy_batch_per_task * T
    for _ in range(cfg.policy_epochs):
        order = rng.permutation(N * T)
        for start in range(0, N * T, batch):
            idx = torch.as_tensor(np.sort(order[start:start + batch]), device=device)
            log_p, entropy = log_prob_and_entropy(agent.actor(obs[idx], task[idx]), actions[idx])
            surrogate, ratio = clipped_surrogate(log_p, old_log_p[idx], adv_t[idx], cfg.clip_eps)
            loss = surrogate - cfg.ent_coef * entropy.mean()
            agent.actor_optimizer.zero_grad()
            loss.backward()
            agent.actor_optimizer.step()
            treatment.after_optimizer_step(agent, "actor")
            with torch.no_grad():
                log_ratio = log_p - old_log_p[idx]
                stats["policy_loss"].append(surrogate.item())
                stats["entropy"].append(entropy.mean().item())
                stats["approx_kl"].append(((ratio - 1) - log_ratio).mean().item())
                stats["clip_fraction"].append(((ratio - 1).abs() > cfg.clip_eps).float().mean().item())

    residual_var = np.var(v_target - values_np)
    target_var = np.var(v_target)
    return {
        "losses/policy_loss": float(np.mean(stats["policy_loss"])),
        "losses/value_loss": float(np.mean(value_losses)),
        "losses/entropy": float(np.mean(stats["entropy"])),
        "losses/approx_kl": float(np.mean(stats["approx_kl"])),
        "losses/clip_fraction": float(np.mean(stats["clip_fraction"])),
        "losses/explained_variance": float(1 - residual_var / target_var) if target_var > 0 else float("nan"),
    }
