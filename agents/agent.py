"""The learner's state: actor, critic and their optimizers, built for one trial."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from agents.networks import N_ACTIONS, MultiTaskNetwork, build_network
from mtrl_plasticity.results import NetworkName

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter], float], torch.optim.Optimizer]
"""``factory(parameters, lr)``: how a treatment builds each network's optimizer."""


@dataclass
class ActorCritic:
    """Separate actor and critic networks (each with its own trunk) and their Adam optimizers."""

    actor: MultiTaskNetwork
    critic: MultiTaskNetwork
    actor_optimizer: torch.optim.Optimizer
    critic_optimizer: torch.optim.Optimizer
    device: torch.device

    def networks(self) -> dict[NetworkName, MultiTaskNetwork]:
        return {"actor": self.actor, "critic": self.critic}

    def optimizers(self) -> dict[NetworkName, torch.optim.Optimizer]:
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    def optimizer_of(self, network_name: NetworkName) -> torch.optim.Optimizer:
        return self.optimizers()[network_name]

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        load_optimizer_state(self.actor_optimizer, state["actor_optimizer"])
        load_optimizer_state(self.critic_optimizer, state["critic_optimizer"])


KERNEL_CHOICES = ("fused", "foreach")
"""Optimizer settings that pick an implementation, not the update: the running code decides them."""


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """``optimizer.load_state_dict(state)``, keeping ``optimizer``'s own kernel choice.

    torch restores every param-group setting from the state dict, ``fused`` included, so a
    checkpoint written before the optimizers were fused would silently resume on the
    per-tensor kernels (and, for CUDA, keep ``step`` where the fused kernel cannot use it).
    """
    state = {**state, "param_groups": [
        {**saved, **{key: live[key] for key in KERNEL_CHOICES if key in live}}
        for saved, live in zip(state["param_groups"], optimizer.param_groups, strict=True)]}
    optimizer.load_state_dict(state)


def build_agent(arch: str, n_tasks: int, n_experts: int, hidden: int, actor_lr: float,
                critic_lr: float, build_optimizer: OptimizerFactory, device: torch.device) -> ActorCritic:
    """Networks in a fixed order (actor, then critic) so one seed gives one initialisation.

    ``build_optimizer`` is the trial's treatment's (``Treatment.build_optimizer``).
    """
    actor = build_network(arch, n_tasks, N_ACTIONS, n_experts=n_experts, hidden=hidden).to(device)
    critic = build_network(arch, n_tasks, 1, n_experts=n_experts, hidden=hidden).to(device)
    return ActorCritic(
        actor=actor,
        critic=critic,
        actor_optimizer=build_optimizer(actor.parameters(), actor_lr),
        critic_optimizer=build_optimizer(critic.parameters(), critic_lr),
        device=device,
    )
