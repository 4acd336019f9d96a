"""Gradual magnitude pruning: exact sparsity per prune, masks that hold through training,
optimizer state and checkpoints."""

import io

import numpy as np
import pytest
import torch

from agents.interventions.optimizer_state import moment_tensors
from agents.ppo import ppo_update
from agents.sparsity.distribution import erk_densities
from agents.sparsity.masks import global_magnitude_masks, magnitude_mask, prunable_weights
from testkit.agents import make_agent, ppo_config, single_thread, synthetic_rollout  # noqa: F401

TOTAL = 2000  # t_start = 100, t_end = 1600, prune at 500, 1000, 1500, 1600


def _masked_counts(tr, agent, network):
    return {n: int((~m).sum()) for n, m in tr.masks_of(network).items()}


def test_magnitude_mask_masks_the_smallest_and_keeps_old_masks_first():
    w = torch.tensor([[0.5, -0.1, 0.3], [-0.2, 0.05, 0.9]])
    m = magnitude_mask(w, 2)
    assert m.tolist() == [[True, False, True], [True, False, True]]
    # An already masked weight ranks first, even if it grew back (it is zeroed anyway).
    current = torch.tensor([[True, True, True], [True, True, False]])
    assert magnitude_mask(w, 2, current).tolist() == [[True, True, True], [True, False, False]]
    # Ties: position order, so the count is exact.
    assert int((~magnitude_mask(torch.zeros(10), 3)).sum()) == 3
    g = global_magnitude_masks({"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.5, 3.0, 0.1])}, 0.6)
    assert g["a"].tolist() == [False, True] and g["b"].tolist() == [False, True, False]


@pytest.mark.parametrize("arch", ["mtppo", "moore"])
@pytest.mark.parametrize("scope", ["global", "layer", "erk"])
def test_achieved_sparsity_after_each_prune_equals_the_schedule(arch, scope):
    agent, tr = make_agent(arch, "gmp", {"final_sparsity": 0.95, "scope": scope}, total_steps=TOTAL)
    schedule = tr.schedule
    prune_steps = []
    previous = {name: tr.masks_of(name) for name in ("actor", "critic")}
    for step in range(1, TOTAL + 1):
        tr.on_step(step, agent, None)
        if not schedule.is_pruning_step(step) or schedule.sparsity_at(step) == 0:
            continue
        prune_steps.append(step)
        rho = schedule.sparsity_at(step)
        for name, network in agent.networks().items():
            weights = prunable_weights(network)
            masks = tr.masks_of(name)
            assert set(masks) == set(weights)  # task encoder excluded by default
            counts = {n: int((~m).sum()) for n, m in masks.items()}
            if scope == "global":
                assert sum(counts.values()) == round(rho * sum(w.numel() for w in weights.values()))
            else:
                shapes = {n: tuple(w.shape) for n, w in weights.items()}
                dens = erk_densities(shapes, rho) if scope == "erk" else {n: 1 - rho for n in shapes}
                for n, w in weights.items():
                    assert abs(counts[n] - (1 - dens[n]) * w.numel()) <= 1  # within one weight per layer
            for n, m in masks.items():
                assert torch.all(weights[n][~m] == 0)
                assert not torch.any(m & ~previous[name][n])  # masks only grow (nested)
            previous[name] = masks
    assert prune_steps == [500, 1000, 1500, 1600]
    assert tr.counters()["prune_events"] == 4
    final = tr.sparsity(agent)
    # Actual zeros are counted over every conv/linear weight, task encoder included (dense).
    for name, network in agent.networks().items():
        n_enc = network.task_encoder.weight.numel() if arch == "moore" else 0
        pruned_total = sum(w.numel() for w in prunable_weights(network).values())
        expected = round(0.95 * pruned_total) / (pruned_total + n_enc) if scope == "global" else None
        if expected is not None:
            assert final[name] == pytest.approx(expected)
        assert final[name] == pytest.approx(0.95 * pruned_total / (pruned_total + n_enc), abs=1e-3)


def test_biases_are_never_pruned_and_task_encoder_is_a_setting():
    agent, tr = make_agent("moe", "gmp99", total_steps=TOTAL)
    tr.on_step(1600, agent, None)
    for name, network in agent.networks().items():
        assert all(k.endswith(".weight") for k in tr.masks_of(name))
        assert "task_encoder.weight" not in tr.masks_of(name)
        for pname, p in network.named_parameters():
            if pname.endswith(".bias"):
                assert torch.count_nonzero(p) == p.numel()
    agent, tr = make_agent("moe", "gmp", {"final_sparsity": 0.99, "prune_task_encoder": True}, total_steps=TOTAL)
    tr.on_step(1600, agent, None)
    assert "task_encoder.weight" in tr.masks_of("actor")


def _assert_masked_weights_and_moments_zero(agent, tr):
    for name, network in agent.networks().items():
        params = dict(network.named_parameters())
        opt = agent.optimizer_of(name)
        for pname, mask in tr.masks_of(name).items():
            assert torch.all(params[pname][~mask] == 0), pname
            for moment in moment_tensors(opt, params[pname]):
                assert torch.all(moment[~mask] == 0), pname


def _train(agent, tr, steps, first_step, seed):
    """Env-step hooks, then one PPO update per 500 steps, as the trial does."""
    cfg = ppo_config(policy_batch_per_task=64, policy_epochs=2)
    rng = np.random.default_rng(seed)
    for step in range(first_step, first_step + steps):
        tr.on_step(step, agent, None)
        if step % 500 == 0:
            ppo_update(agent, synthetic_rollout(64, seed=step), cfg, rng, tr)
            _assert_masked_weights_and_moments_zero(agent, tr)


def test_masked_weights_stay_zero_through_training_checkpoint_and_resume():
    agent, tr = make_agent("mtppo", "gmp95", total_steps=TOTAL)
    _train(agent, tr, 1000, 1, seed=0)
    assert tr.sparsity(agent)["actor"] > 0.5

    # Checkpoint as the trial does (weights_only load), then resume in fresh objects.
    buf = io.BytesIO()
    torch.save({"agent": agent.state_dict(), "treatment": tr.state_dict(), "rng": torch.get_rng_state()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert all(m.dtype == torch.bool for m in state["treatment"]["masks"].values())
    assert any(k.startswith("actor.") for k in state["treatment"]["masks"])

    resumed, tr2 = make_agent("mtppo", "gmp95", total_steps=TOTAL, seed=123)
    resumed.load_state_dict(state["agent"])
    tr2.load_state_dict(state["treatment"])
    torch.set_rng_state(state["rng"])
    _train(resumed, tr2, 1000, 1001, seed=1)
    torch.set_rng_state(state["rng"])
    _train(agent, tr, 1000, 1001, seed=1)
    _assert_masked_weights_and_moments_zero(resumed, tr2)
    assert tr2.sparsity(resumed)["actor"] == pytest.approx(tr.sparsity(agent)["actor"])
    for a, b in zip(agent.actor.parameters(), resumed.actor.parameters(), strict=True):
        assert torch.equal(a, b)
    assert tr2.counters() == tr.counters()


def test_adam_moments_of_masked_weights_do_not_leak_back():
    """Without zeroing the moments, a masked weight's momentum would keep pushing it."""
    agent, tr = make_agent("mtppo", "gmp95", total_steps=TOTAL)
    _train(agent, tr, 600, 1, seed=3)  # pruned at 500, one update after
    name = "heads.0.hidden.weight"
    mask = tr.masks_of("actor")[name]
    state = agent.actor_optimizer.state[dict(agent.actor.named_parameters())[name]]
    assert torch.all(state["exp_avg"][~mask] == 0) and torch.all(state["exp_avg_sq"][~mask] == 0)
    assert torch.any(state["exp_avg"][mask] != 0)


@pytest.mark.parametrize("name,params,message", [
    ("gmp", {"final_sparsity": 1.0}, "final_sparsity"),
    ("gmp", {"final_sparsity": -0.1}, "final_sparsity"),
    ("gmp", {"scope": "block"}, "scope"),
    ("gmp", {"start_fraction": 0.9, "end_fraction": 0.5}, "end_fraction"),
    ("gmp", {"frequency": 0}, "frequency"),
    ("gmp", {"prune_task_encoder": "yes"}, "prune_task_encoder"),
    ("gmp95", {"final_sparsity": 0.8}, "fixes"),
    ("gmp80", {"sparsity": 0.8}, "no parameter"),
])
def test_invalid_gmp_parameters_raise_one_line_errors(name, params, message):
    from agents.treatments import build_treatment

    with pytest.raises(ValueError, match=message) as info:
        build_treatment(name, params, total_steps=TOTAL)
    assert "\n" not in str(info.value)
