"""Shared builders for the treatment and plasticity tests (not a test module)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.agent import build_agent
from agents.ppo import Rollout
from agents.treatments import build_treatment
from orchestrator.config import TrialConfig

N_TASKS = 3


@pytest.fixture(autouse=True)
def single_thread():
    """One intra-op thread, as a trial runs: on a busy 2-core CI box two threads contend.

    Test modules import this name, which makes it autouse for them.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def random_obs(n: int, seed: int = 0) -> torch.Tensor:
    """MiniGrid-like uint8 observations ``[n, 3, 7, 7]`` (object, colour, state codes)."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, 11, (n, 7, 7), generator=g),
                        torch.randint(0, 6, (n, 7, 7), generator=g),
                        torch.randint(0, 3, (n, 7, 7), generator=g)], dim=1).to(torch.uint8)


def random_tasks(n: int, n_tasks: int = N_TASKS, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, n_tasks, (n,), generator=torch.Generator().manual_seed(seed + 1))


def make_agent(arch: str = "mtppo", treatment: str = "dense", params: dict | None = None, *, total_steps: int = 2000,
               n_tasks: int = N_TASKS, n_experts: int = 2, seed: int = 0, setup: bool = True):
    torch.manual_seed(seed)
    tr = build_treatment(treatment, params, total_steps=total_steps)
    agent = build_agent(arch, n_tasks, n_experts, 128, 1e-3, 1e-3, tr.build_optimizer, torch.device("cpu"))
    if setup:
        tr.setup(agent)
    return agent, tr


def synthetic_rollout(n_steps: int, n_tasks: int = N_TASKS, seed: int = 0) -> Rollout:
    rng = np.random.default_rng(seed)
    obs = random_obs(n_steps * n_tasks, seed).numpy().reshape(n_steps, n_tasks, 3, 7, 7)
    next_obs = random_obs(n_steps * n_tasks, seed + 7).numpy().reshape(n_steps, n_tasks, 3, 7, 7)
    done = rng.random((n_steps, n_tasks)) < 0.05
    return Rollout(obs=obs, actions=rng.integers(0, 7, (n_steps, n_tasks)),
                   rewards=(rng.random((n_steps, n_tasks)) < 0.05).astype(np.float32),
                   next_obs=next_obs, terminated=done, truncated=np.zeros_like(done))


def ppo_config(**overrides) -> TrialConfig:
    """PPO settings as a TrialConfig (the fields ``ppo_update`` reads)."""
    return TrialConfig(benchmark="MT3", arch="mtppo", **overrides)


def make_alive(network):
    """Positive weights and biases in the ReLU conv layers: every channel fires on every input.

    At a random initialisation a few ReLU channels are already dead on MiniGrid's non-negative
    codes (weights mostly negative); a hand-built test net must not have any.
    """
    with torch.no_grad():
        for name, module in network.weight_layers().items():
            if name.endswith(("conv1", "conv2")):
                module.weight.abs_()
                module.bias.fill_(0.1)


def kill(network, dead):
    """Silence neurons exactly: zero incoming weights, and a bias that ReLU/Tanh maps to 0."""
    modules = network.weight_layers()
    with torch.no_grad():
        for layer, neurons in dead.items():
            module = modules[layer]
            module.weight[neurons] = 0.0
            module.bias[neurons] = -1.0 if layer.endswith(("conv1", "conv2")) else 0.0
