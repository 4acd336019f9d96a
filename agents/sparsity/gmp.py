"""Gradual magnitude pruning (Zhu & Gupta 2017), the paper's main treatment.

Every ``frequency`` steps inside ``[start_fraction, end_fraction] * total_steps`` the
smallest-magnitude weights of each network are masked so that the network reaches the
cubic schedule's sparsity (:mod:`agents.sparsity.schedule`); masks only grow, and stay
applied after every optimizer step until the end of training.

``scope`` decides where "smallest" is ranked:

* ``global`` (default): one top-k over all prunable weights of the network (the actor and
  the critic each reach the target on their own). The paper states one network-level
  target and one magnitude rule, and global ranking is what lets the 192-weight first
  conv layer and the task heads' small output layers keep the few weights they need:
  per-layer pruning at 99% would leave conv1 with 2 weights.
* ``layer``: every layer pruned to the schedule's sparsity.
* ``erk``: per-layer sparsities from the Erdos-Renyi-Kernel split of the target.
"""

from __future__ import annotations

from typing import Any

import torch

from agents.agent import ActorCritic
from agents.plasticity_buffer import PlasticityBuffer
from agents.sparsity.distribution import erk_densities, pruned_counts, uniform_densities
from agents.sparsity.masked import MaskedTreatment
from agents.sparsity.masks import (
    global_magnitude_masks,
    layerwise_magnitude_masks,
    prunable_weights,
)
from agents.treatment_parameters import GmpParameters
from mtrl_plasticity.results import NETWORK_NAMES, NetworkName


class GradualMagnitudePruning(MaskedTreatment):
    """Parameters: :class:`~agents.treatment_parameters.GmpParameters` (registered there as ``gmp``)."""

    def __init__(self, params: GmpParameters, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.schedule = params.schedule(self.total_steps)
        self.scope = params.scope
        self.prune_task_encoder = params.prune_task_encoder

    def setup(self, agent: ActorCritic) -> None:
        # All-True masks from the start: checkpoints look the same before and after t_start.
        for network_name in NETWORK_NAMES:
            network = agent.networks()[network_name]
            weights = prunable_weights(network, self.prune_task_encoder)
            every_weight = {n: w.new_ones(w.shape, dtype=torch.bool) for n, w in weights.items()}
            self.install_masks(agent, network_name, every_weight)

    def on_step(self, step: int, agent: ActorCritic, buffer: PlasticityBuffer) -> None:
        if not self.schedule.is_pruning_step(step):
            return
        sparsity = self.schedule.sparsity_at(step)
        if sparsity <= 0.0:
            return
        for network_name in NETWORK_NAMES:
            self.install_masks(agent, network_name, self.target_masks(agent, network_name, sparsity))
        self.count("prune_events")

    def target_masks(self, agent: ActorCritic, network_name: NetworkName, sparsity: float) -> dict[str, torch.Tensor]:
        """The masks that bring ``network_name`` to ``sparsity`` under this ``scope``."""
        weights = prunable_weights(agent.networks()[network_name], self.prune_task_encoder)
        current = {n: m.to(weights[n].device) for n, m in self.masks_of(network_name).items()}
        if self.scope == "global":
            return global_magnitude_masks(weights, sparsity, current)
        shapes = {n: tuple(w.shape) for n, w in weights.items()}
        densities = erk_densities(shapes, sparsity) if self.scope == "erk" else uniform_densities(shapes, sparsity)
        counts = pruned_counts({n: w.numel() for n, w in weights.items()}, densities)
        return layerwise_magnitude_masks(weights, counts, current)
