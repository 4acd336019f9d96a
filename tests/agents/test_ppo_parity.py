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
        target, adv = mushroom_gae(lambda idx, table=table: table[idx], np.arange(n), np.arange(n, 2 * n),
                                   rewards[:, task], terminated[:, task], (terminated | truncated)[:, task], 0.99, 0.95)
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
    for a, b in zip(net.parameters(), ours.parameters(), strict=True):
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


class _SingleTaskNetwork(torch.nn.Module):
    """Our ``single`` network in mushroom's constructor convention (the one task implied)."""

    def __init__(self, input_shape, output_shape, **kwargs):
        super().__init__()
        from agents.networks import build_network

        self.net = build_network("single", 1, output_shape[0])

    def forward(self, state):
        # The critic's [B, 1] is what mushroom's PPO expects: values, targets and advantages
        # then keep that shape, and its policy loss multiplies [B, 1] ratios by [B, 1] advantages.
        return self.net(state, torch.zeros(len(state), dtype=torch.long))


def test_single_task_update_matches_mushroom_ppo_as_moores_single_task_script_runs_it():
    # MOORE's run_minigrid_ppo_st.py: mushroom-rl's PPO, critic_fit_params=None (10 critic
    # epochs), critic and policy minibatches of 256, 8 policy epochs, eps 0.2, entropy 0.01,
    # lambda 0.95, Adam lr 1e-3. Our arch "single" must run the same update by default.
    from mushroom_rl.algorithms.actor_critic import PPO as MushroomPPO
    from mushroom_rl.core.environment import MDPInfo
    from mushroom_rl.utils.spaces import Box, Discrete
    from torch.nn import functional as F

    from agents.ppo import ppo_update
    from orchestrator.config import TrialConfig
    from orchestrator.trial import _Trial

    n = 600  # 3 minibatches of 256, 256 and 88
    config = TrialConfig(benchmark="DistShift1-v0", arch="single", seed=0, total_steps=n, steps_per_epoch=n,
                         eval_interval_steps=n, checkpoint_interval_steps=n)
    assert (config.critic_epochs, config.critic_batch_size, config.policy_batch_per_task) == (10, 256, 256)
    given = TrialConfig(benchmark="DistShift1-v0", arch="single", critic_epochs=1, critic_batch_size=0)
    assert (given.critic_epochs, given.critic_batch_size) == (1, 0)  # a default, not a rule
    torch.set_num_threads(1)
    trial = _Trial(config)
    rollout, _ = trial.collect()
    assert rollout.terminated.any() and rollout.truncated.any()  # both kinds of episode end

    adam = {"class": torch.optim.Adam, "params": {"lr": 1e-3, "betas": (0.9, 0.999)}}
    policy = BoltzmannTorchPolicy(_SingleTaskNetwork, (3, 7, 7), (7,), beta=1.0)
    critic_params = dict(network=_SingleTaskNetwork, optimizer=adam, loss=F.mse_loss, batch_size=256,
                         input_shape=(3, 7, 7), output_shape=(1,))
    mdp_info = MDPInfo(Box(0, 255, (3, 7, 7)), Discrete(7), gamma=0.99, horizon=252)
    reference = MushroomPPO(mdp_info, policy, actor_optimizer=adam, critic_params=critic_params, n_epochs_policy=8,
                            batch_size=256, eps_ppo=0.2, lam=0.95, ent_coeff=0.01, critic_fit_params=None)
    policy._logits.model.network.net.load_state_dict(trial.agent.actor.state_dict())
    reference._V.model.network.net.load_state_dict(trial.agent.critic.state_dict())
    dataset = [(rollout.obs[i, 0].astype(np.float32), rollout.actions[i, :1], float(rollout.rewards[i, 0]),
                rollout.next_obs[i, 0].astype(np.float32), bool(rollout.terminated[i, 0]),
                bool(rollout.terminated[i, 0] or rollout.truncated[i, 0])) for i in range(n)]

    # The same minibatch order on both sides: mushroom shuffles with numpy's global RNG, and a
    # RandomState seeded alike gives the same permutations (critic epochs first, then policy).
    before = {net: [p.detach().clone() for p in getattr(trial.agent, net).parameters()] for net in ("actor", "critic")}
    np.random.seed(7)
    reference.fit(dataset)
    ppo_update(trial.agent, rollout, config, np.random.RandomState(7), trial.treatment)

    for net, theirs, steps in [("critic", reference._V.model.network.net, 10 * 3),
                               ("actor", policy._logits.model.network.net, 8 * 3)]:
        ours, optimizer = getattr(trial.agent, net), trial.agent.optimizer_of(net)
        assert all(int(optimizer.state[p]["step"]) == steps for p in ours.parameters())  # Adam steps
        for (name, a), b, a0 in zip(ours.named_parameters(), theirs.parameters(), before[net], strict=True):
            # Float summation order differs (we sort minibatch indices; fused Adam), so the two
            # updates agree to a small fraction of their own size, not bit for bit.
            gap = float(((a - b).norm() / (a - a0).norm()).detach())
            assert gap < 1e-4, (net, name, gap)
