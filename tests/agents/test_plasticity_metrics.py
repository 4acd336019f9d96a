"""Plasticity metrics on inputs with known answers: srank, dormant ratio, Fisher trace."""

import pytest
import torch
from torch.nn import functional as F

from agents.metrics import PLASTICITY_COLUMNS, measure_plasticity
from agents.metrics.dormant import dormant_ratio_of, neuron_scores
from agents.metrics.fisher import fisher_trace, fisher_trace_functorch, sample_actions
from agents.metrics.srank import singular_values, srank, srank_from_singular_values
from agents.networks import build_network
from testkit.agents import kill, make_agent, make_alive, random_obs, random_tasks, single_thread  # noqa: F401


def dormant_ratio(network, obs, task, tau, masks=None) -> float:
    """The tau-dormant ratio of a network on one batch, as measure_plasticity takes it."""
    return dormant_ratio_of(neuron_scores(network, obs, task, masks), tau)


def _with_singular_values(sigma, n=64, d=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    s = torch.zeros(n, d, dtype=torch.float64)
    s[range(len(sigma)), range(len(sigma))] = torch.tensor(sigma, dtype=torch.float64)
    return (u @ s @ v.T).float()


SIGMA = [10.0, 5.0, 3.0, 1.0, 0.6, 0.4]  # sum 20: cumulative .5 .75 .9 .95 .98 1


@pytest.mark.parametrize("delta,expected", [(0.01, 6), (0.03, 5), (0.07, 4), (0.2, 3), (0.3, 2), (0.6, 1)])
def test_srank_of_a_matrix_with_known_singular_values(delta, expected):
    x = _with_singular_values(SIGMA)
    computed = singular_values(x)
    assert computed[:6].tolist() == pytest.approx(SIGMA, abs=1e-5)
    assert computed[6:].abs().max() < 1e-3  # float32 entries: a tiny floor, as an SVD shows too
    assert torch.allclose(computed, torch.linalg.svdvals(x.double()), atol=1e-4)
    assert srank(x, delta) == expected
    assert srank(x.T, delta) == expected  # either Gram side


@pytest.mark.parametrize("delta,expected", [(0.0, 6), (0.02, 5), (0.05, 4), (0.1, 3), (0.25, 2), (0.5, 1)])
def test_srank_threshold_is_inclusive(delta, expected):
    """``>= 1 - delta``: a cumulative share exactly on the threshold stops there."""
    assert srank_from_singular_values(torch.tensor(SIGMA, dtype=torch.float64), delta) == expected


def test_srank_edge_cases():
    assert srank(torch.zeros(8, 5), 0.01) == 0
    assert srank(torch.eye(7), 0.01) == 7
    assert srank(torch.ones(10, 10), 0.01) == 1  # rank one
    assert srank(3.7 * _with_singular_values([4.0, 4.0, 2.0]), 0.01) == 3  # scale-free


def test_dormant_ratio_of_a_hand_built_network():
    net = build_network("mtppo", 3, 7)
    obs, task = random_obs(512), random_tasks(512)
    make_alive(net)
    assert dormant_ratio(net, obs, task, 0.01) == 0.0
    kill(net, {"trunk.conv1": [2, 5], "trunk.conv3": [7], "heads.1.hidden": [3, 100]})
    neurons = 16 + 32 + 64 + 3 * 128
    assert dormant_ratio(net, obs, task, 0.01) == pytest.approx(5 / neurons)
    # Masked neurons (all incoming weights masked) leave numerator and denominator.
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in net.named_parameters() if n.endswith("weight")}
    masks["trunk.conv1.weight"][[2, 9]] = False  # 2: dead and masked, 9: masked
    masks["heads.1.hidden.weight"][3, :5] = False  # partly masked: still a neuron
    with torch.no_grad():
        net.trunk.conv1.weight[9] = 0
    assert dormant_ratio(net, obs, task, 0.01, masks) == pytest.approx(4 / (neurons - 2))
    # A head whose task has no sample in the batch is not counted.
    only01 = task != 2
    assert dormant_ratio(net, obs[only01], task[only01], 0.01) == pytest.approx(5 / (neurons - 128))
    # tau is a threshold on the normalised score: a huge tau makes everything dormant.
    assert dormant_ratio(net, obs, task, 1e6) == 1.0


def test_dormant_ratio_counts_the_mixed_features_for_moe_and_moore():
    for arch in ("moe", "moore"):
        net = build_network(arch, 3, 7, n_experts=2)
        make_alive(net)
        obs, task = random_obs(256), random_tasks(256)
        kill(net, {"experts.0.conv1": [1], "experts.0.conv3": [4], "experts.1.conv3": [4]})
        neurons = 2 * (16 + 32) + 64 + 3 * 128
        assert dormant_ratio(net, obs, task, 0.01) == pytest.approx(2 / neurons), arch


def _brute_force_fisher(net, obs, task, actions, masks):
    total = 0.0
    params = dict(net.named_parameters())
    for i in range(obs.shape[0]):
        log_p = F.log_softmax(net(obs[i:i + 1], task[i:i + 1]), -1)[0, actions[i]]
        grads = torch.autograd.grad(log_p, list(params.values()), allow_unused=True)
        for (name, _), g in zip(params.items(), grads, strict=True):
            if g is not None:
                if name in masks:
                    g = g * masks[name]
                total += float(g.double().square().sum())
    return total / obs.shape[0]


@pytest.mark.parametrize("arch", ["mtppo", "moe", "moore"])
def test_fisher_trace_equals_a_brute_force_per_sample_loop(arch):
    torch.manual_seed(0)
    net = build_network(arch, 3, 7, n_experts=2, hidden=16)
    obs, task = random_obs(40), random_tasks(40)
    actions = sample_actions(net, obs, task, torch.Generator().manual_seed(3))
    masks = {n: torch.rand(p.shape) > 0.4 for n, p in net.named_parameters() if n.endswith("weight")}
    with torch.no_grad():
        for n, p in net.named_parameters():
            if n in masks:
                p.mul_(masks[n])
    for m in ({}, masks):
        expected = _brute_force_fisher(net, obs, task, actions, m)
        assert fisher_trace(net, obs, task, actions, m, chunk_size=16) == pytest.approx(expected, rel=1e-5)
        assert fisher_trace_functorch(net, obs, task, actions, m, chunk_size=16) == pytest.approx(expected, rel=1e-5)
    # Per-sample, not the squared norm of the mean gradient (which is far smaller).
    log_p = F.log_softmax(net(obs, task), -1).gather(1, actions[:, None]).mean()
    mean_grad_sq = sum(float(g.square().sum()) for g in torch.autograd.grad(log_p, list(net.parameters())))
    assert mean_grad_sq < 0.5 * fisher_trace(net, obs, task, actions)


def test_fisher_actions_come_from_the_policy_and_the_generator():
    net = build_network("mtppo", 3, 7)
    obs, task = random_obs(300), random_tasks(300)
    a1 = sample_actions(net, obs, task, torch.Generator().manual_seed(5))
    a2 = sample_actions(net, obs, task, torch.Generator().manual_seed(5))
    assert torch.equal(a1, a2)
    with torch.no_grad():
        net.heads[0].out.bias.copy_(torch.tensor([0, 0, 50.0, 0, 0, 0, 0]))  # task 0 always picks 2
    a3 = sample_actions(net, obs, task, torch.Generator().manual_seed(5))
    assert torch.all(a3[task == 0] == 2)


@pytest.mark.parametrize("arch,treatment", [("mtppo", "dense"), ("moore", "gmp95")])
def test_measure_plasticity_fills_every_column_and_leaves_the_global_rng_alone(arch, treatment):
    agent, tr = make_agent(arch, treatment)
    tr.on_step(1600, agent, None)  # fully pruned for gmp
    obs, task = random_obs(256), random_tasks(256)
    rng = torch.get_rng_state()
    out = measure_plasticity(agent, tr, obs, task, dormant_tau=0.01, srank_delta=0.01,
                             generator=torch.Generator().manual_seed(0))
    assert torch.equal(rng, torch.get_rng_state())
    assert tuple(out) == PLASTICITY_COLUMNS
    assert all(isinstance(v, float) and v == v for v in out.values())
    assert 0 <= out["plasticity/dormant_actor"] <= 1 and 1 <= out["plasticity/srank_actor"] <= 256
    again = measure_plasticity(agent, tr, obs, task, dormant_tau=0.01, srank_delta=0.01,
                               generator=torch.Generator().manual_seed(0))
    assert again == out
    via_func = measure_plasticity(agent, tr, obs, task, dormant_tau=0.01, srank_delta=0.01,
                                  generator=torch.Generator().manual_seed(0), fisher_method="functorch")
    assert via_func["plasticity/fisher_trace"] == pytest.approx(out["plasticity/fisher_trace"], rel=1e-5)
