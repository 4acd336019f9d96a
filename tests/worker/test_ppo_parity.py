"""Parity with mushroom-rl, the library the paper's (MOORE's) PPO is built on."""

import numpy as np
import pytest
import torch
from mushroom_rl.algorithms.actor_critic.deep_actor_critic.ppo import PPO
from mushroom_rl.policy import BoltzmannTorchPolicy
from mushroom_rl.utils.parameters import to_parameter
from mushroom_rl.utils.value_functions import compute_gae as mushroom_gae

from agents.ppo import clipped_surrogate, compute_gae, log_prob_and_entropy, normalise_per_task


def _episode_flags(rng, n, t):
    terminated = rng.random((n, t)) < 0.05
    truncated = (rng.random((n, t)) < 0.05) & ~terminated
    return terminated, truncated


def test_gae_matches_mushroom_per_task():
    rng = np.random.default_rng(0)
    n, t = 300, 3
    values, next_values = rng.normal(size=(n, t)), rng.normal(size=(n, t))
    rewards = rng.random((n, t)) * (rng.random((n, t)) < 0.1)
    terminated, truncated = _episode_flags(rng, n, t)
    ours_target, ours_adv = compute_gae(values, next_values, rewards, terminated, terminated | truncated, 0.99, 0.95)
    for task in range(t):
        table = np.concatenate([values[:, task], next_values[:, task]])
        target, adv = mushroom_gae(lambda idx: table[idx], np.arange(n), np.arange(n, 2 * n), rewards[:, task],
                                   terminated[:, task], (terminated | truncated)[:, task], 0.99, 0.95)
        np.testing.assert_allclose(ours_adv[:, task], adv, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ours_target[:, task], target, rtol=1e-12, atol=1e-12)


def test_truncation_bootstraps_and_termination_does_not():
    values = np.array([0.5, 0.5])
    next_values = np.array([2.0, 2.0])
    rewards = np.zeros(2)
    last = np.array([True, True])
    _, adv_trunc = compute_gae(values, next_values, rewards, np.array([False, False]), last, 0.9, 0.95)
    _, adv_term = compute_gae(values, next_values, rewards, np.array([True, True]), last, 0.9, 0.95)
    np.testing.assert_allclose(adv_trunc, 0.9 * 2.0 - 0.5)
    np.testing.assert_allclose(adv_term, -0.5)


def test_per_task_advantage_normalisation():
    adv = np.array([[1.0, 10.0], [3.0, 30.0]])
    np.testing.assert_allclose(normalise_per_task(adv), [[-1, -1], [1, 1]], atol=1e-7)


class _Logits(torch.nn.Module):
    """A network in mushroom's constructor convention."""

    def __init__(self, input_shape, output_shape, **kwargs):
        super().__init__()
        self.linear = torch.nn.Linear(input_shape[0], output_shape[0])

    def forward(self, state):
        return self.linear(state.float())


@pytest.mark.parametrize("clip_eps,ent_coef", [(0.2, 0.01), (0.05, 0.0)])
def test_clipped_objective_matches_mushroom_ppo(clip_eps, ent_coef):
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    batch, n_in, n_act = 64, 10, 7
    obs = torch.as_tensor(rng.normal(size=(batch, n_in)), dtype=torch.float32)
    act = torch.as_tensor(rng.integers(n_act, size=(batch, 1)), dtype=torch.float32)
    adv = torch.as_tensor(rng.normal(size=(batch, 1)), dtype=torch.float32)

    policy = BoltzmannTorchPolicy(_Logits, (n_in,), (n_act,), beta=1.0)
    net = policy._logits.model.network
    with torch.no_grad():  # old policy: perturbed weights, so ratios leave the clip range
        old_log_p = torch.log_softmax(net(obs) + torch.randn(batch, n_act) * 0.5, -1).gather(
            1, act.long()).detach()
    ours = _Logits((n_in,), (n_act,))
    ours.load_state_dict(net.state_dict())

    # mushroom-rl's own update loop (one epoch, one full batch, plain SGD step).
    stub = type("Stub", (), {})()
    stub.policy = policy
    stub._n_epochs_policy = to_parameter(1)
    stub._batch_size = to_parameter(batch)
    stub._eps_ppo = to_parameter(clip_eps)
    stub._ent_coeff = to_parameter(ent_coef)
    stub._optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)
    PPO._update_policy(stub, obs, act, adv, old_log_p)

    optimizer = torch.optim.SGD(ours.parameters(), lr=0.5)
    log_p, entropy = log_prob_and_entropy(ours(obs), act.long().squeeze(1))
    surrogate, ratio = clipped_surrogate(log_p, old_log_p.squeeze(1), adv.squeeze(1), clip_eps)
    assert ((ratio - 1).abs() > clip_eps).any()  # the clip is exercised
    loss = surrogate - ent_coef * entropy.mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    for a, b in zip(net.parameters(), ours.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_state_values_reuse_the_next_steps_values_exactly_where_valid():
    # V(s') is taken from the next step's V(s) except across episode ends and at the end of
    # the epoch; it must equal the critic run on every s'.
    from agents.ppo import state_values, task_major_batch
    from orchestrator.config import TrialConfig
    from orchestrator.trial import _Trial

    config = TrialConfig(benchmark="MT3", arch="mtppo", seed=3, total_steps=60, steps_per_epoch=60,
                         eval_interval_steps=60, checkpoint_interval_steps=60)
    trial = _Trial(config)
    rollout, finished = trial.collect()
    assert finished, "the rollout should cross an episode end"
    N, T = rollout.n_steps, rollout.n_tasks
    obs, next_obs, task, _ = task_major_batch(rollout)
    assert task.tolist() == [t for t in range(T) for _ in range(N)]
    values, next_values = state_values(trial.agent.critic, rollout, obs, next_obs, task)
    with torch.no_grad():
        brute_values = trial.agent.critic(obs, task).squeeze(-1).double().numpy().reshape(T, N).T
        brute_next = trial.agent.critic(next_obs, task).squeeze(-1).double().numpy().reshape(T, N).T
    np.testing.assert_allclose(values, brute_values, rtol=0, atol=1e-6)
    np.testing.assert_allclose(next_values, brute_next, rtol=0, atol=1e-6)
    assert values.shape == next_values.shape == (N, T)
