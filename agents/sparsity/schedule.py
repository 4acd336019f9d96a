"""The gradual magnitude pruning schedule of Zhu & Gupta (2017), as the paper uses it.

``rho_t = rho_F * (1 - (1 - (t - t_start) / (t_end - t_start)) ** 3)`` inside
``[t_start, t_end]``, 0 before, ``rho_F`` after (paper eq. 1 and Table 4). ``t`` counts
lock-step training steps; ``t_start``/``t_end`` are fractions of the trial's budget.
"""

from __future__ import annotations

from dataclasses import dataclass


def cubic_sparsity(step: int, final_sparsity: float, start_step: int, end_step: int) -> float:
    """The target sparsity ``rho_t`` at ``step``."""
    if step < start_step:
        return 0.0
    if step >= end_step:
        return float(final_sparsity)
    progress = (step - start_step) / (end_step - start_step)
    return float(final_sparsity * (1.0 - (1.0 - progress) ** 3))


@dataclass(frozen=True)
class PruningSchedule:
    """When to prune and to which sparsity.

    Pruning happens at every multiple of ``frequency`` inside ``[start_step, end_step]``,
    and also at ``end_step`` itself when it is not such a multiple, so that the final
    sparsity is always reached. After ``end_step`` the masks stay fixed.
    """

    final_sparsity: float
    start_step: int
    end_step: int
    frequency: int

    @classmethod
    def from_fractions(cls, total_steps: int, final_sparsity: float, start_fraction: float,
                       end_fraction: float, frequency: int) -> "PruningSchedule":
        start = int(round(start_fraction * total_steps))
        end = int(round(end_fraction * total_steps))
        return cls(final_sparsity, start, max(end, start), frequency)

    def sparsity_at(self, step: int) -> float:
        if self.end_step == self.start_step:  # degenerate budget: one-shot at start_step
            return float(self.final_sparsity) if step >= self.start_step else 0.0
        return cubic_sparsity(step, self.final_sparsity, self.start_step, self.end_step)

    def is_pruning_step(self, step: int) -> bool:
        if step < self.start_step or step > self.end_step:
            return False
        return step % self.frequency == 0 or step == self.end_step
