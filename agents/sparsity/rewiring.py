"""Sparse Evolutionary Training's topology update (Mocanu et al. 2018; RigL's ``SET``).

Per layer: drop the ``zeta`` fraction of the *active* weights with the smallest magnitude,
and grow as many connections at random positions that were empty before the drop, so the
layer's sparsity is unchanged. A layer denser than ``1 / (1 + zeta)`` has fewer empty
positions than connections to grow: it grows at all of them and draws the rest from the
just-dropped positions, which then start afresh like any other grown connection. Every
grown weight starts at exactly zero (the caller also zeroes its optimizer state).
Randomness comes from torch's global RNG, which the trial seeds and checkpoints, so a
resumed trial regrows the same connections.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Rewiring:
    mask: torch.Tensor
    """The new mask (same number of active weights as before)."""
    dropped: torch.Tensor
    """The ``k`` positions dropped (the smallest active magnitudes); their weights are set to zero."""
    grown: torch.Tensor
    """The ``k`` positions grown, at zero weight. They overlap ``dropped`` only where the layer
    had fewer than ``k`` empty positions: such a connection is re-initialised, not kept."""


def random_mask(shape: torch.Size | tuple[int, ...], n_active: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A mask with exactly ``n_active`` True entries at uniformly random positions."""
    numel = int(torch.Size(shape).numel())
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[torch.randperm(numel)[:n_active]] = True  # drawn on the CPU: same stream on any device
    return mask.view(shape).to(device)


@torch.no_grad()
def set_rewire(weight: torch.Tensor, mask: torch.Tensor, zeta: float) -> Rewiring:
    """Drop ``round(zeta * active)`` smallest active weights, regrow as many at random.

    ``weight`` is modified in place: dropped and grown positions become 0. A layer with no
    empty position (dense) is left as it is. Regrowth draws ``k`` positions uniformly among
    those empty before this update (so a dropped connection is not simply restored); a layer
    with only ``e < k`` of them grows at all ``e`` and at ``k - e`` just-dropped positions
    drawn uniformly, which count as grown (zero weight, fresh optimizer state), not as kept.
    """
    flat_mask = mask.flatten().to(weight.device)
    n_active = int(flat_mask.sum())
    n_empty = flat_mask.numel() - n_active
    k = min(int(round(zeta * n_active)), n_active)
    if k == 0 or n_empty == 0:
        none = torch.zeros_like(mask, dtype=torch.bool)
        return Rewiring(mask.clone(), none, none.clone())
    scores = weight.detach().abs().flatten().float()
    scores = torch.where(flat_mask, scores, torch.full_like(scores, float("inf")))
    drop_idx = torch.sort(scores, stable=True).indices[:k]
    new_mask = flat_mask.clone()
    new_mask[drop_idx] = False

    empty = (~flat_mask).nonzero(as_tuple=True)[0]
    if empty.numel() >= k:
        grow_idx = empty[torch.randperm(empty.numel())[:k].to(empty.device)]
    else:  # too few empty positions: all of them, then just-dropped ones, re-initialised
        redrawn = drop_idx[torch.randperm(k)[:k - empty.numel()].to(drop_idx.device)]
        grow_idx = torch.cat([empty, redrawn])
    new_mask[grow_idx] = True

    dropped = torch.zeros_like(flat_mask)
    dropped[drop_idx] = True
    grown = torch.zeros_like(flat_mask)
    grown[grow_idx] = True
    flat_weight = weight.view(-1)
    flat_weight[dropped | grown] = 0.0  # dropped: pruned; grown: zero-initialised
    return Rewiring(new_mask.view_as(mask), dropped.view_as(mask), grown.view_as(mask))
