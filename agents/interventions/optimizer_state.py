"""Resetting the optimizer's per-weight state (Adam moments) of chosen weights.

Masking, SET's regrowth, ReDo and Reset all need the optimizer to forget the history of
some weights, or a pruned weight's moments would push it back (and a re-initialised one
would move with its old momentum). The state is found generically: every tensor in
``optimizer.state[param]`` with the parameter's shape (Adam's ``exp_avg``/``exp_avg_sq``,
AMSGrad's ``max_exp_avg_sq``, SGD's ``momentum_buffer``); scalars such as ``step`` are
shared by the whole tensor and only reset with it.
"""

from __future__ import annotations

import torch


def moment_tensors(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> list[torch.Tensor]:
    """The per-element state tensors of ``param`` (empty before the first step)."""
    state = optimizer.state.get(param, {})
    return [value for key, value in state.items()
            if key != "step" and torch.is_tensor(value) and value.shape == param.shape]


@torch.no_grad()
def reset_optimizer_state(optimizer: torch.optim.Optimizer, param: torch.Tensor,
                          where: torch.Tensor | None = None) -> None:
    """Zero the moments of ``param`` where ``where`` is True, or all of it (and its step count).

    ``where`` is a bool tensor broadcastable to ``param`` (e.g. ``[n_out, 1]`` for rows).
    """
    if where is None:
        for value in moment_tensors(optimizer, param):
            value.zero_()
        step = optimizer.state.get(param, {}).get("step")
        if torch.is_tensor(step):
            step.zero_()  # fresh bias correction, as for a newly created parameter
        return
    for value in moment_tensors(optimizer, param):
        value.masked_fill_(where.to(value.device), 0.0)
