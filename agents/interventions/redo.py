"""ReDo: recycle dormant neurons (Sokar et al. 2023).

Every ``every`` steps, on ``batch_size`` observations from the plasticity buffer, each
network's neurons are scored as for the dormant ratio (:mod:`agents.metrics.dormant`);
every tau-dormant neuron of a recyclable layer gets

* fresh incoming weights, drawn from the layer's own initialiser (PyTorch's default
  ``kaiming_uniform_(a=sqrt(5))`` for Conv2d/Linear), and a zero bias;
* zero outgoing weights in every consumer (after the conv->linear flatten a channel owns
  16 consecutive input columns of each task head, all zeroed);
* zeroed Adam moments for all of those entries.

Layers are processed in forward order (as in Sokar et al.'s code): when neuron ``j`` of one
layer and neuron ``i`` of the next are both dormant, the weight ``i <- j`` is first zeroed as
``j``'s outgoing weight and then redrawn with ``i``'s fresh incoming row; the network's
output is unchanged either way, since ``i``'s own outgoing weights are zero.

The task heads' output layers are never recycled (they are not hidden layers). With masks,
a fresh incoming weight at a masked position stays zero and fully masked neurons are not
scored. Which layers are recyclable per architecture: :meth:`MultiTaskNetwork.neuron_layers`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from agents.agent import ActorCritic
from agents.interventions.optimizer_state import reset_optimizer_state
from agents.metrics.dormant import neuron_scores
from agents.networks import MultiTaskNetwork, WeightLayer
from agents.plasticity_buffer import PlasticityBuffer
from agents.treatment_parameters import ReDoParameters
from agents.treatments import Treatment


def _fresh_weight(module: WeightLayer) -> torch.Tensor:
    """A new draw of ``module.weight`` from the initialiser ``reset_parameters`` uses."""
    fresh = torch.empty_like(module.weight)
    nn.init.kaiming_uniform_(fresh, a=math.sqrt(5))
    return fresh


def _neuron_selector(shape: torch.Size, neurons: torch.Tensor, dim: int, positions: int = 1) -> torch.Tensor:
    """Bool tensor over ``shape``: entries whose index along ``dim`` belongs to ``neurons``."""
    hit = torch.zeros(shape[dim], dtype=torch.bool, device=neurons.device)
    if positions == 1:
        hit[neurons] = True
    else:
        hit[(neurons[:, None] * positions + torch.arange(positions, device=neurons.device)).flatten()] = True
    view = [1] * len(shape)
    view[dim] = shape[dim]
    return hit.view(view).expand(shape)


@torch.no_grad()
def recycle_dormant(network: MultiTaskNetwork, optimizer: torch.optim.Optimizer | None, obs: torch.Tensor,
                    task: torch.Tensor, tau: float, masks: Mapping[str, torch.Tensor] | None = None) -> int:
    """Recycle the tau-dormant neurons of ``network`` on ``(obs, task)``; returns how many.

    All scores come from one forward pass before any weight changes, as in Sokar et al.
    """
    modules = network.weight_layers()
    masks = masks or {}
    recycled = 0
    for scores in neuron_scores(network, obs, task, masks):
        layer = scores.layer
        if not layer.recyclable:
            continue
        neurons = scores.dormant(tau).nonzero(as_tuple=True)[0]
        if neurons.numel() == 0:
            continue
        (producer_name,) = layer.producers
        producer = modules[producer_name]
        rows = _neuron_selector(producer.weight.shape, neurons, 0)
        fresh = _fresh_weight(producer)
        mask = masks.get(f"{producer_name}.weight")
        if mask is not None:
            fresh = fresh * mask.to(fresh.device, fresh.dtype)  # a masked weight stays masked
        producer.weight.data.copy_(torch.where(rows, fresh, producer.weight.data))
        if optimizer is not None:
            reset_optimizer_state(optimizer, producer.weight, where=rows)
        if producer.bias is not None:
            producer.bias.data[neurons] = 0.0
            if optimizer is not None:
                reset_optimizer_state(optimizer, producer.bias, where=_neuron_selector(producer.bias.shape, neurons, 0))
        for consumer_name, positions in layer.consumers:
            consumer = modules[consumer_name]
            cols = _neuron_selector(consumer.weight.shape, neurons, 1, positions)
            consumer.weight.data.masked_fill_(cols, 0.0)
            if optimizer is not None:
                reset_optimizer_state(optimizer, consumer.weight, where=cols)
        recycled += int(neurons.numel())
    return recycled


class ReDo(Treatment):
    """Recycle dormant neurons of the actor and the critic every ``every`` steps.

    Parameters: :class:`~agents.treatment_parameters.ReDoParameters` (registered there as ``redo``).
    """

    def __init__(self, params: ReDoParameters, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.tau, self.every, self.batch_size = params.tau, params.every, params.batch_size
        self.networks = tuple(dict.fromkeys(params.networks))

    def on_step(self, step: int, agent: ActorCritic, buffer: PlasticityBuffer) -> None:
        if step % self.every or buffer is None or buffer.size == 0:
            return
        # torch's global RNG (seeded and checkpointed by the trial) picks the batch.
        idx = torch.randperm(buffer.size)[: self.batch_size].numpy()
        obs = torch.from_numpy(buffer.obs[idx]).to(agent.device)
        task = torch.from_numpy(buffer.task[idx]).to(agent.device)
        for name in self.networks:
            self.count("neurons_recycled", recycle_dormant(
                agent.networks()[name], agent.optimizer_of(name), obs, task, self.tau, self.masks_of(name)))
