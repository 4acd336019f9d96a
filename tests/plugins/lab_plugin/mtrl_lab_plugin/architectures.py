"""``lab_wide``: MTPPO whose conv trunk has twice the paper's channels (32, 64, 128)."""

from __future__ import annotations

from agents.networks import SharedTrunkNetwork
from mtrl_plasticity import register_architecture

WIDE_CHANNELS = (32, 64, 128)


@register_architecture("lab_wide", display_name="Wide MTPPO", long_name="Multi-Task PPO, wide trunk (lab)")
def build_wide(*, n_tasks: int, n_out: int, n_experts: int, hidden: int) -> SharedTrunkNetwork:
    return SharedTrunkNetwork(n_tasks, n_out, hidden=hidden, channels=WIDE_CHANNELS)
