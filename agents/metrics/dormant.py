"""Neuron scores and the dormant-neuron ratio (Sokar et al. 2023; paper appendix C.1).

A neuron's score is its mean ``|activation|`` over the batch (conv: per channel, averaged
over spatial positions too) divided by the mean score of the *unmasked* neurons of its
layer; it is tau-dormant when the score is ``<= tau``. The ratio is the number of dormant
neurons over the number of neurons, summed over every hidden layer (never the output).

Which layers count is the network's business (:meth:`MultiTaskNetwork.neuron_layers`):
post-activation values of the trunk's/experts' conv layers, the shared features and every
task head's hidden layer, a head seeing only its own task's samples. A *masked* neuron
(all its incoming weights masked) is left out of the layer mean, the numerator and the
denominator. ReDo (:mod:`agents.interventions.redo`) uses the same scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from agents.networks import MultiTaskNetwork, NeuronLayer

SCORE_EPS = 1e-9
"""Added to the layer mean, as Sokar et al. do: a layer that is silent everywhere is all dormant."""


@dataclass
class LayerScores:
    layer: NeuronLayer
    scores: torch.Tensor
    """Normalised score per neuron ``[n_neurons]``."""
    masked: torch.Tensor
    """Neurons whose incoming weights are all masked ``[n_neurons]`` (bool)."""

    def dormant(self, tau: float) -> torch.Tensor:
        """Dormant and not masked ``[n_neurons]`` (bool)."""
        return (self.scores <= tau) & ~self.masked


def masked_neurons(layer: NeuronLayer, masks: Mapping[str, torch.Tensor] | None,
                   device: torch.device | None = None) -> torch.Tensor:
    """Neurons of ``layer`` whose incoming weights (in every producer) are all masked."""
    masked = torch.ones(layer.n_neurons, dtype=torch.bool, device=device)
    for producer in layer.producers:
        mask = None if masks is None else masks.get(f"{producer}.weight")
        if mask is None:
            return torch.zeros(layer.n_neurons, dtype=torch.bool, device=device)
        masked &= ~mask.to(device).reshape(layer.n_neurons, -1).any(dim=1)
    return masked


def mean_abs_activation(values: torch.Tensor, n_neurons: int) -> torch.Tensor:
    """``E|h_i|`` per neuron from ``[B, n, ...]`` or channel-major ``[B, n * positions]``."""
    return values.detach().abs().reshape(values.shape[0], n_neurons, -1).mean(dim=(0, 2))


def scores_from_record(network: MultiTaskNetwork, record: Mapping[str, torch.Tensor],
                       masks: Mapping[str, torch.Tensor] | None = None) -> list[LayerScores]:
    """Scores of every neuron layer recorded by ``network.forward(..., record=record)``.

    A head whose task has no sample in the batch is skipped (it was not evaluated).
    """
    out = []
    for layer in network.neuron_layers():
        values = record.get(layer.name)
        if values is None or values.shape[0] == 0:
            continue
        mean_abs = mean_abs_activation(values, layer.n_neurons)
        masked = masked_neurons(layer, masks, mean_abs.device)
        active = ~masked
        layer_mean = mean_abs[active].mean() if bool(active.any()) else mean_abs.new_zeros(())
        out.append(LayerScores(layer, mean_abs / (layer_mean + SCORE_EPS), masked))
    return out


@torch.no_grad()
def neuron_scores(network: MultiTaskNetwork, obs: torch.Tensor, task: torch.Tensor,
                  masks: Mapping[str, torch.Tensor] | None = None) -> list[LayerScores]:
    """One forward pass of ``network`` on ``(obs, task)`` and the scores of its neurons."""
    record: dict[str, torch.Tensor] = {}
    network(obs, task, record=record)
    return scores_from_record(network, record, masks)


def dormant_ratio_of(layer_scores: list[LayerScores], tau: float) -> float:
    """``sum_l dormant_l / sum_l neurons_l`` over unmasked neurons (NaN if there are none)."""
    dormant = sum(int(s.dormant(tau).sum()) for s in layer_scores)
    total = sum(int((~s.masked).sum()) for s in layer_scores)
    return dormant / total if total else float("nan")

