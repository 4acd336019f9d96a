"""Reset (Nikishin et al. 2022): re-initialise the task heads' output layers.

At the chosen steps every task head's output layer of the chosen networks (actor and critic
by default) is re-initialised with PyTorch's default initialiser (``reset_parameters``, the
same draw as at construction) and its whole optimizer state is reset (moments and step
count, so Adam's bias correction starts afresh for it).

Draft protocol: ``steps=[60000, 120000]`` (the default). Published: every 100k steps, at
most twice: ``{"every": 100000, "max_resets": 2}``. With ``every``, a reset falls on each
multiple of it strictly before the end of training.
"""

from __future__ import annotations

from typing import Any

from agents.agent import ActorCritic
from agents.interventions.optimizer_state import reset_optimizer_state
from agents.plasticity_buffer import PlasticityBuffer
from agents.treatment_parameters import ResetParameters
from agents.treatments import Treatment


class OutputLayerReset(Treatment):
    """Parameters: :class:`~agents.treatment_parameters.ResetParameters` (registered there as ``reset``)."""

    def __init__(self, params: ResetParameters, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.steps = frozenset(params.steps)
        self.every, self.max_resets = params.every, params.max_resets
        self.networks = tuple(dict.fromkeys(params.networks))

    def is_reset_step(self, step: int) -> bool:
        done = self._counters["resets_done"]
        if self.max_resets is not None and done >= self.max_resets:
            return False
        if self.every is not None:
            return step % self.every == 0 and step < self.total_steps
        return step in self.steps

    def on_step(self, step: int, agent: ActorCritic, buffer: PlasticityBuffer) -> None:
        if not self.is_reset_step(step):
            return
        for name in self.networks:
            optimizer = agent.optimizer_of(name)
            for layer in agent.networks()[name].output_layers():
                layer.reset_parameters()
                for param in layer.parameters():
                    reset_optimizer_state(optimizer, param)
        self.count("resets_done")
