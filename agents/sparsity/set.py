"""Sparse Evolutionary Training (Mocanu et al. 2018), as in the published paper.

At ``setup`` each network's sparse layers get a random layout at ``sparsity`` whose per-layer
densities follow ERK (or Mocanu's fixed-``epsilon`` Erdos-Renyi when ``epsilon`` is set, or
``uniform``); every ``rewire_every`` steps each sparse layer drops the ``zeta`` fraction of its
active weights with the smallest magnitude and regrows as many at random empty positions
(just-dropped ones only where too few are empty), at zero and with fresh optimizer state
(:mod:`agents.sparsity.rewiring`). Layer sparsity never changes. By default only ``Linear``
layers are sparse (the published protocol); the task encoder is left dense unless
``prune_task_encoder``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from agents.agent import ActorCritic
from agents.interventions.optimizer_state import reset_optimizer_state
from agents.plasticity_buffer import PlasticityBuffer
from agents.sparsity.distribution import er_epsilon_densities, erk_densities, uniform_densities
from agents.sparsity.masked import MaskedTreatment
from agents.sparsity.masks import prunable_weights
from agents.sparsity.rewiring import random_mask, set_rewire
from agents.treatment_parameters import SetParameters
from mtrl_plasticity.results import NETWORK_NAMES

LAYER_KINDS = {"linear": (nn.Linear,), "all": (nn.Conv2d, nn.Linear)}
"""The module types each ``layers`` choice (:data:`~agents.treatment_parameters.LAYER_CHOICES`) makes sparse."""


class SparseEvolutionaryTraining(MaskedTreatment):
    """Parameters: :class:`~agents.treatment_parameters.SetParameters` (registered there as ``set``)."""

    def __init__(self, params: SetParameters, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.target = params.sparsity
        self.zeta, self.rewire_every, self.epsilon = params.zeta, params.rewire_every, params.epsilon
        self.distribution, self.layers = params.distribution, params.layers
        self.prune_task_encoder = params.prune_task_encoder

    @property
    def layer_kinds(self) -> tuple[type[nn.Module], ...]:
        return LAYER_KINDS[self.layers]

    def _weights(self, agent, network_name: str) -> dict:
        return prunable_weights(agent.networks()[network_name], self.prune_task_encoder, self.layer_kinds)

    def densities(self, weights: dict) -> dict[str, float]:
        shapes = {n: tuple(w.shape) for n, w in weights.items()}
        if self.epsilon is not None:
            return er_epsilon_densities(shapes, self.epsilon)
        if self.distribution == "uniform":
            return uniform_densities(shapes, self.target)
        return erk_densities(shapes, self.target)

    def setup(self, agent: ActorCritic) -> None:
        for network_name in NETWORK_NAMES:
            weights = self._weights(agent, network_name)
            densities = self.densities(weights)
            masks = {n: random_mask(w.shape, int(round(densities[n] * w.numel())), w.device)
                     for n, w in weights.items()}
            self.install_masks(agent, network_name, masks)

    def on_step(self, step: int, agent: ActorCritic, buffer: PlasticityBuffer) -> None:
        if step % self.rewire_every or self.zeta == 0.0:
            return
        for network_name in NETWORK_NAMES:
            params = dict(agent.networks()[network_name].named_parameters())
            new_masks = {}
            for name, mask in self.masks_of(network_name).items():
                if bool(mask.all()):
                    continue  # an ERK-dense layer has nowhere to regrow
                rewiring = set_rewire(params[name].data, mask, self.zeta)
                redrawn = rewiring.grown & rewiring.dropped
                if bool(redrawn.any()):  # active before and after: install_masks would keep its moments
                    reset_optimizer_state(agent.optimizer_of(network_name), params[name], where=redrawn)
                new_masks[name] = rewiring.mask
            self.install_masks(agent, network_name, new_masks)
        self.count("set_rewires")
