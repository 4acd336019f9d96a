"""Sparse Evolutionary Training: ERK layout, constant layer sparsity, zero-initialised regrowth."""

import numpy as np
import pytest
import torch

from agents.interventions.optimizer_state import moment_tensors
from agents.ppo import ppo_update
from agents.sparsity.distribution import erk_densities
from agents.sparsity.masks import prunable_weights
from agents.sparsity.rewiring import set_rewire
from agents.treatments import build_treatment
from testkit.agents import make_agent, ppo_config, single_thread, synthetic_rollout  # noqa: F401


def test_set_rewire_keeps_the_count_drops_the_smallest_and_grows_zeros():
    torch.manual_seed(0)
    weight = torch.randn(20, 30)
    mask = torch.rand(20, 30) < 0.2
    weight[~mask] = 0
    before = weight.clone()
    n_active = int(mask.sum())
    k = round(0.3 * n_active)
    out = set_rewire(weight, mask, 0.3)
    assert int(out.mask.sum()) == n_active
    assert int(out.dropped.sum()) == k and int(out.grown.sum()) == k
    # Dropped: the k smallest magnitudes among the active weights.
    active_mags = before[mask].abs()
    assert before[out.dropped].abs().max() <= active_mags.sort().values[k]
    assert torch.all(before[out.dropped].abs() <= before[out.mask & mask].abs().min())
    # Grown: positions that were empty, weights exactly zero.
    assert not torch.any(out.grown & mask)
    assert torch.all(weight[out.grown] == 0) and torch.all(weight[out.dropped] == 0)
    # Everything else untouched.
    kept = out.mask & mask
    assert torch.equal(weight[kept], before[kept])


def test_set_rewire_at_density_0_9_regrows_all_empty_then_reinitialises_just_dropped_ones():
    # 90 active, 10 empty, k = round(0.3 * 90) = 27: grow at the 10 empty positions and at 17
    # just-dropped ones, which start at zero like the others (not kept with their old values).
    torch.manual_seed(0)
    mask = torch.zeros(100, dtype=torch.bool)
    mask[torch.randperm(100)[:90]] = True
    mask = mask.view(10, 10)
    weight = torch.randn(10, 10) * mask
    before = weight.clone()
    out = set_rewire(weight, mask, 0.3)
    assert int(out.mask.sum()) == 90  # density preserved
    assert int(out.dropped.sum()) == 27 and int(out.grown.sum()) == 27
    assert int((out.grown & ~mask).sum()) == 10  # every position empty before the drop
    assert int((out.grown & out.dropped).sum()) == 17  # just-dropped, drawn again
    assert torch.equal(out.mask, (mask & ~out.dropped) | out.grown)
    # The dropped ones are the 27 smallest active magnitudes.
    assert torch.equal(before[out.dropped].abs().sort().values, before[mask].abs().sort().values[:27])
    # 27 rewired (30% of the layer's connections), all at zero; the other 63 untouched.
    rewired = out.dropped | out.grown
    assert int(rewired.sum()) == 37 and torch.all(weight[rewired] == 0)
    kept = mask & ~out.dropped
    assert int(kept.sum()) == 63 and torch.equal(weight[kept], before[kept])


def test_set_treatment_at_density_0_9_zeroes_every_regrown_weight_and_its_adam_moments():
    agent, tr = make_agent("mtppo", "set", {"sparsity": 0.1, "distribution": "uniform", "rewire_every": 10},
                           total_steps=100)
    ppo_update(agent, synthetic_rollout(32), ppo_config(policy_batch_per_task=64, policy_epochs=1),
               np.random.default_rng(0), tr)  # Adam moments exist and are nonzero on active weights
    snapshots = {}
    for network in ("actor", "critic"):
        params = dict(agent.networks()[network].named_parameters())
        optimizer = agent.optimizer_of(network)
        snapshots[network] = {n: (m.clone(), params[n].detach().clone(),
                                  [v.clone() for v in moment_tensors(optimizer, params[n])])
                              for n, m in tr.masks_of(network).items()}
    tr.on_step(10, agent, None)
    for network, layers in snapshots.items():
        params = dict(agent.networks()[network].named_parameters())
        optimizer = agent.optimizer_of(network)
        for n, (old, weight_before, moments_before) in layers.items():
            new, weight, moments = tr.masks_of(network)[n], params[n].detach(), moment_tensors(optimizer, params[n])
            n_active, n_empty = int(old.sum()), int((~old).sum())
            k = round(0.3 * n_active)
            assert int(new.sum()) == n_active, n  # density preserved
            assert n_empty < k, n  # this layer is denser than 1 / (1 + zeta)
            grown = new & ~old
            assert int(grown.sum()) == n_empty  # every empty position grown, at zero, fresh moments
            assert torch.all(weight[grown] == 0) and all(torch.all(m[grown] == 0) for m in moments)
            # Just-dropped and drawn again: k - n_empty of them, at zero with zeroed moments.
            fresh = new & old & (weight == 0)
            assert int(fresh.sum()) == k - n_empty, n
            assert all(torch.all(m[fresh] == 0) for m in moments)
            assert all(bool(m[fresh].any()) for m in moments_before)  # the reset had work to do
            kept = new & old & ~fresh
            assert int(kept.sum()) == n_active - k
            assert torch.equal(weight[kept], weight_before[kept])
            assert all(torch.equal(m[kept], b[kept]) for m, b in zip(moments, moments_before, strict=True))


@pytest.mark.parametrize("arch", ["mtppo", "moe"])
def test_set_layout_is_erk_on_linear_layers_and_sparsity_is_constant_across_rewiring(arch):
    agent, tr = make_agent(arch, "set95", {"rewire_every": 100}, total_steps=1000)
    for name, network in agent.networks().items():
        weights = prunable_weights(network, kinds=(torch.nn.Linear,))
        masks = tr.masks_of(name)
        assert set(masks) == set(weights)  # linear layers only, task encoder dense
        dens = erk_densities({n: tuple(w.shape) for n, w in weights.items()}, 0.95)
        for n, w in weights.items():
            assert abs(int(masks[n].sum()) - dens[n] * w.numel()) <= 0.5
            assert torch.all(w[~masks[n]] == 0)
        total = sum(w.numel() for w in weights.values())
        assert sum(int((~m).sum()) for m in masks.values()) / total == pytest.approx(0.95, abs=1e-4)
    counts = {name: {n: int(m.sum()) for n, m in tr.masks_of(name).items()} for name in ("actor", "critic")}
    cfg = ppo_config(policy_batch_per_task=64, policy_epochs=1)
    rng = np.random.default_rng(0)
    for step in range(1, 301):
        if step % 100 == 0:
            before = {n: m.clone() for n, m in tr.masks_of("actor").items()}
            weights_before = {n: p.detach().clone() for n, p in agent.actor.named_parameters()}
        tr.on_step(step, agent, None)
        if step % 100 == 0:
            after = tr.masks_of("actor")
            params = dict(agent.actor.named_parameters())
            for n, m in after.items():
                grown = m & ~before[n]
                if not before[n].all():
                    assert grown.any(), n  # every sparse layer rewired
                # Layers denser than 1 / (1 + zeta) (the heads' output layers, ~0.77) also regrow
                # just-dropped positions: those start afresh too, so zeta of every layer is rewired.
                grown = grown | (m & before[n] & (params[n] == 0))
                if not before[n].all():
                    assert int(grown.sum()) == round(0.3 * int(before[n].sum())), n
                assert torch.all(params[n][grown] == 0)  # regrown weights start at zero
                for moment in moment_tensors(agent.actor_optimizer, params[n]):
                    assert torch.all(moment[grown] == 0)  # with a fresh optimizer state
                assert torch.all(params[n][~m] == 0)
                unchanged = m & before[n] & ~grown
                assert torch.equal(params[n][unchanged], weights_before[n][unchanged])
            ppo_update(agent, synthetic_rollout(32, seed=step), cfg, rng, tr)
        for name in ("actor", "critic"):
            assert {n: int(m.sum()) for n, m in tr.masks_of(name).items()} == counts[name]
    assert tr.counters()["set_rewires"] == 3


def test_set_with_epsilon_uses_mocanus_layout_and_rejects_a_sparsity_too():
    agent, tr = make_agent("mtppo", "set", {"epsilon": 11.0}, total_steps=1000)
    mask = tr.masks_of("actor")["heads.0.hidden.weight"]
    assert int(mask.sum()) == round(11 * (1024 + 128) / (1024 * 128) * mask.numel())
    assert bool(tr.masks_of("actor")["heads.0.out.weight"].all())  # epsilon 11 makes it dense
    for name, params in [("set", {"epsilon": 11, "sparsity": 0.9}), ("set95", {"epsilon": 11}),
                         ("set", {"zeta": 1.5}), ("set", {"rewire_every": 0}), ("set", {"layers": "conv"}),
                         ("set", {"sparsity": 1.0})]:
        with pytest.raises(ValueError) as info:
            build_treatment(name, params, total_steps=1000)
        assert "\n" not in str(info.value)
