"""The learner's state: actor, critic and their optimizers, built for one trial."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agents.networks import N_ACTIONS, MultiTaskNetwork, build_network


@dataclass
class ActorCritic:
    """Separate actor and critic networks (each with its own trunk) and their Adam optimizers."""

    actor: MultiTaskNetwork
    critic: MultiTaskNetwork
    actor_optimizer: torch.optim.Optimizer
    critic_optimizer: torch.optim.Optimizer
    device: torch.device

    def networks(self) -> dict[str, MultiTaskNetwork]:
        return {"actor": self.actor, "critic": self.critic}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    def optimizer_of(self, network_name: str) -> torch.optim.Optimizer:
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
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])


def build_agent(arch: str, n_tasks: int, n_experts: int, hidden: int, actor_lr: float,
                critic_lr: float, treatment, device: torch.device) -> ActorCritic:
    """Networks in a fixed order (actor, then critic) so one seed gives one initialisation."""
    actor = build_network(arch, n_tasks, N_ACTIONS, n_experts=n_experts, hidden=hidden).to(device)
    critic = build_network(arch, n_tasks, 1, n_experts=n_experts, hidden=hidden).to(device)
    return ActorCritic(
        actor=actor,
        critic=critic,
        actor_optimizer=treatment.build_optimizer(actor.parameters(), actor_lr),
        critic_optimizer=treatment.build_optimizer(critic.parameters(), critic_lr),
        device=device,
    )
