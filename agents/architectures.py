"""The paper's architectures, registered by name: MTPPO, MoE, MOORE and single-task PPO.

Torch-free: each registration names its builder in :mod:`agents.networks` as a
``"module:function"`` string, imported when a trial builds its networks, so checking a sweep
imports no torch. A plugin registers its own architectures through the same
:func:`mtrl_plasticity.register_architecture` (``docs/extending.md``).
"""

from __future__ import annotations

from mtrl_plasticity.architectures import register_architecture


def _moe_update_ms(experts: int) -> float:
    return 0.4 * experts  # k conv trunks


def _moore_update_ms(experts: int) -> float:
    return 0.5 * experts  # k conv trunks and the Gram-matrix mixture


register_architecture("mtppo", "agents.networks:build_mtppo", display_name="MTPPO",
                      long_name="Multi-Task PPO (MTPPO)")
register_architecture("moe", "agents.networks:build_moe", display_name="MoE", long_name="Mixture of Experts (MoE)",
                      uses_experts=True, update_ms_per_task_step=_moe_update_ms)
register_architecture("moore", "agents.networks:build_moore", display_name="MOORE",
                      long_name="Mixture of Orthogonal Experts (MOORE)", uses_experts=True,
                      update_ms_per_task_step=_moore_update_ms)
register_architecture("single", "agents.networks:build_single", display_name="Single-task PPO",
                      long_name="Single-task PPO", single_task=True,
                      # MOORE's single-task baseline (run_minigrid_ppo_st.py) is mushroom-rl's stock PPO
                      # with critic_fit_params=None: 10 epochs of shuffled 256-sample minibatches per update.
                      trial_defaults={"critic_epochs": 10, "critic_batch_size": 256})
