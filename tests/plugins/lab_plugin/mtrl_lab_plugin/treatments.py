"""``lab_prune``: at step ``at_step``, mask a random ``sparsity`` fraction of every weight tensor."""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt

from agents.sparsity.masked import MaskedTreatment
from mtrl_plasticity import TreatmentParameters, Variant, register_treatment


class RandomPruneParameters(TreatmentParameters):
    """Random pruning at one step."""

    sparsity: float = Field(0.5, gt=0.0, lt=1.0, allow_inf_nan=False)
    """Fraction of each weight tensor masked (rounded down per tensor)."""
    at_step: PositiveInt = 150
    """The lock-step training step at which the weights are pruned."""


@register_treatment("lab_prune", RandomPruneParameters, counters=["weights_pruned"],
                    display_name="Lab Random Pruning", description="random pruning at one step",
                    variants={"lab_prune80": Variant({"sparsity": 0.8}, "Lab Random 80%")})
class RandomPruning(MaskedTreatment):
    """Masks ``floor(sparsity * n)`` weights of each of the ``n``-weight tensors of
    ``weight_layers()``, drawn from torch's global RNG (seeded and checkpointed by the trial)."""

    def setup(self, agent) -> None:
        # All-True masks from the start: a checkpoint has the same keys before and after pruning.
        for network_name, network in agent.networks().items():
            self.install_masks(agent, network_name, {name: w.new_ones(w.shape, dtype=torch.bool)
                                                     for name, w in self._weights(network).items()})

    def on_step(self, step: int, agent, buffer) -> None:
        if step != self.params.at_step:
            return
        for network_name, network in agent.networks().items():
            masks = {}
            for name, weight in self._weights(network).items():
                n_pruned = int(self.params.sparsity * weight.numel())
                mask = torch.ones(weight.numel(), dtype=torch.bool, device=weight.device)
                mask[torch.randperm(weight.numel(), device=weight.device)[:n_pruned]] = False
                masks[name] = mask.view_as(weight)
                self.count("weights_pruned", n_pruned)
            self.install_masks(agent, network_name, masks)

    @staticmethod
    def _weights(network) -> dict[str, torch.nn.Parameter]:
        return {f"{name}.weight": module.weight for name, module in network.weight_layers().items()}
