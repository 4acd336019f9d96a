"""Plasticity metrics (paper appendix C) for the ``plasticity/*`` columns of the train rows.

At every evaluation point the trial draws a batch (1024) from the plasticity buffer (the
last 100k training observations with their task ids) and calls :func:`measure_plasticity`:

* ``dormant_actor`` / ``dormant_critic``: tau-dormant ratio over the hidden post-activation
  layers of each network, masked neurons excluded (:mod:`.dormant`);
* ``srank_actor`` / ``srank_critic``: ``srank_delta`` of each network's shared feature
  extractor output ``features(obs, task)`` ``[1024, 1024]`` (:mod:`.srank`);
* ``fisher_trace``: trace of the actor's Fisher information with actions sampled from the
  current policy and per-sample gradients (:mod:`.fisher`).

``docs/treatments.md`` lists, per architecture, exactly which tensors each metric reads.
"""

from __future__ import annotations

import torch

from agents.metrics.dormant import dormant_ratio_of, scores_from_record
from agents.metrics.fisher import fisher_trace, fisher_trace_functorch, sample_actions
from agents.metrics.srank import srank

PLASTICITY_COLUMNS = (
    "plasticity/dormant_actor",
    "plasticity/dormant_critic",
    "plasticity/srank_actor",
    "plasticity/srank_critic",
    "plasticity/fisher_trace",
)

FISHER_METHODS = {"layerwise": fisher_trace, "functorch": fisher_trace_functorch}


def measure_plasticity(agent, treatment, obs: torch.Tensor, task: torch.Tensor, *, dormant_tau: float,
                       srank_delta: float, generator: torch.Generator,
                       fisher_method: str = "layerwise") -> dict[str, float]:
    """Every ``plasticity/*`` column on one batch.

    ``obs`` uint8 ``[B, 3, 7, 7]`` and ``task`` int64 ``[B]`` on ``agent.device``;
    ``generator`` (CPU) draws the Fisher trace's actions. Torch's global RNG is not touched.
    """
    out: dict[str, float] = {}
    actor_logits = None
    with torch.no_grad():
        for name, network in agent.networks().items():
            record: dict[str, torch.Tensor] = {}
            logits = network(obs, task, record=record)
            if name == "actor":
                actor_logits = logits
            masks = treatment.masks_of(name)
            scores = scores_from_record(network, record, masks)
            out[f"plasticity/dormant_{name}"] = dormant_ratio_of(scores, dormant_tau)
            out[f"plasticity/srank_{name}"] = float(srank(network.features_from_record(record), srank_delta))
    actions = sample_actions(agent.actor, obs, task, generator, logits=actor_logits)
    out["plasticity/fisher_trace"] = FISHER_METHODS[fisher_method](
        agent.actor, obs, task, actions, masks=treatment.masks_of("actor"))
    return {name: out[name] for name in PLASTICITY_COLUMNS}
