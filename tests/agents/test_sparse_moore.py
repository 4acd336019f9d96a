"""A 99%-sparse MOORE trains without NaN (Gram-Schmidt meets pruned, all-zero experts)."""

import numpy as np
import pytest
import torch

from agents.ppo import ppo_update
from testkit.agents import make_agent, ppo_config, single_thread, synthetic_rollout  # noqa: F401


@pytest.mark.parametrize("params", [{"final_sparsity": 0.99},
                                    {"final_sparsity": 0.99, "scope": "layer", "prune_task_encoder": True}])
def test_99_percent_sparse_moore_trains_without_nan(params):
    agent, tr = make_agent("moore", "gmp", params, n_experts=3)
    tr.on_step(1600, agent, None)  # t_end of a 2000-step budget: final sparsity
    assert tr.sparsity(agent)["actor"] >= 0.985
    # One expert of the actor silenced entirely: its Gram-Schmidt residual is exactly zero.
    with torch.no_grad():
        for p in agent.actor.experts[1].parameters():
            p.zero_()
    cfg = ppo_config(policy_batch_per_task=64, policy_epochs=2)
    rng = np.random.default_rng(0)
    for epoch in range(2):
        losses = ppo_update(agent, synthetic_rollout(128, seed=epoch), cfg, rng, tr)
        assert all(np.isfinite(v) for k, v in losses.items() if k != "losses/explained_variance"), losses
    for network in agent.networks().values():
        for name, p in network.named_parameters():
            assert torch.isfinite(p).all(), name
    for name, mask in tr.masks_of("actor").items():
        assert torch.all(dict(agent.actor.named_parameters())[name][~mask] == 0)
