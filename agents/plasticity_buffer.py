"""The plasticity buffer: the most recent training observations, with their task ids.

The plasticity metrics (paper appendix C) are expectations over the training input
distribution; this ring buffer holds the last ``capacity`` observations of every task
(100k by default) as uint8, 147 bytes each.
"""

from __future__ import annotations

import numpy as np
import torch


class PlasticityBuffer:
    """A ring buffer of ``[3, 7, 7]`` uint8 observations and int64 task ids."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.obs = np.zeros((capacity, 3, 7, 7), dtype=np.uint8)
        self.task = np.zeros(capacity, dtype=np.int64)
        self.position = 0  # next slot to write
        self.size = 0

    def add(self, obs: np.ndarray, task: np.ndarray) -> None:
        """Append a batch ``obs [B, 3, 7, 7]``, ``task [B]`` (oldest entries are overwritten)."""
        n = len(task)
        idx = (self.position + np.arange(n)) % self.capacity
        self.obs[idx] = obs
        self.task[idx] = task
        self.position = int((self.position + n) % self.capacity)
        self.size = int(min(self.size + n, self.capacity))

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``batch_size`` entries drawn uniformly without replacement (all if fewer)."""
        if self.size == 0:
            raise ValueError("the plasticity buffer is empty")
        idx = rng.choice(self.size, size=min(batch_size, self.size), replace=False)
        return self.obs[idx], self.task[idx]

    def state_dict(self) -> dict:
        return {"obs": torch.from_numpy(self.obs[: self.size].copy()),
                "task": torch.from_numpy(self.task[: self.size].copy()),
                "position": self.position, "size": self.size}

    def load_state_dict(self, state: dict) -> None:
        size = int(state["size"])
        self.obs[:size] = state["obs"].numpy()
        self.task[:size] = state["task"].numpy()
        self.position, self.size = int(state["position"]), size
