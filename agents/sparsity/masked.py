"""The part every mask-based treatment shares: masks in checkpoints, applied after each step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from agents.agent import ActorCritic, NetworkName
from agents.interventions.optimizer_state import reset_optimizer_state
from agents.sparsity.masks import MaskSet
from agents.treatments import Treatment
from mtrl_plasticity.treatments import TreatmentParameters


class MaskedTreatment(Treatment):
    """A treatment whose networks carry weight masks (:class:`~agents.sparsity.masks.MaskSet`).

    After every optimizer step the masked weights and their optimizer moments are zeroed
    (``after_optimizer_step``); whenever masks change, the same happens at once, so a
    masked weight is exactly zero at every forward pass. Masks are part of ``state_dict``
    as bool tensors keyed ``"actor.<param name>"`` / ``"critic.<param name>"``.
    """

    def __init__(self, params: TreatmentParameters | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.mask_set = MaskSet()

    def install_masks(self, agent: ActorCritic, network_name: NetworkName, masks: Mapping[str, torch.Tensor]) -> None:
        """Replace ``network_name``'s masks for these weights and enforce them now.

        Masked weights and their optimizer moments are zeroed by ``apply``; a weight that
        becomes active again (SET's regrowth) gets its moments zeroed here, so it starts
        with a fresh optimizer state.
        """
        network = agent.networks()[network_name]
        optimizer = agent.optimizer_of(network_name)
        params = dict(network.named_parameters())
        for name, mask in masks.items():
            key = f"{network_name}.{name}"
            old = self.mask_set.masks.get(key)
            if old is not None:
                grown = mask & ~old.to(mask.device)
                if bool(grown.any()):
                    reset_optimizer_state(optimizer, params[name], where=grown)
            self.mask_set.set(key, mask)
        self.mask_set.apply(network, network_name, optimizer)

    def after_optimizer_step(self, agent: ActorCritic, network_name: NetworkName) -> None:
        self.mask_set.apply(agent.networks()[network_name], network_name, agent.optimizer_of(network_name))

    def masks_of(self, network_name: NetworkName) -> dict[str, torch.Tensor]:
        return self.mask_set.of_network(network_name)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "masks": self.mask_set.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.mask_set.load_state_dict(state.get("masks", {}))
