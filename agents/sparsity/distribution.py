"""How a network-level sparsity is split over layers (jaxpruner's "sparsity distributions").

* ``uniform``: every layer gets the same sparsity.
* ``erk`` (Erdos-Renyi-Kernel, Evci et al. 2020, RigL's ``get_sparsities_erdos_renyi``):
  a layer's density is proportional to ``sum(shape) / prod(shape)``, i.e.
  ``(n_in + n_out) / (n_in * n_out)`` for a linear layer and
  ``(n_in + n_out + kh + kw) / (n_in * n_out * kh * kw)`` for a conv layer, scaled so that
  the total matches the target; layers whose density would exceed 1 are dense and the
  others are rescaled.
* ``er_epsilon``: Mocanu et al.'s (2018) Erdos-Renyi layout with a fixed ``epsilon``:
  ``density = min(1, epsilon * sum(shape) / prod(shape))``; the overall sparsity follows.

A global (one top-k over the whole network) split needs no distribution: see
:func:`agents.sparsity.masks.global_magnitude_masks`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

Shape = Sequence[int]


def uniform_densities(shapes: Mapping[str, Shape], sparsity: float) -> dict[str, float]:
    return {name: 1.0 - sparsity for name in shapes}


def _erk_raw(shape: Shape, power_scale: float = 1.0) -> float:
    return (sum(shape) / math.prod(shape)) ** power_scale


def erk_densities(shapes: Mapping[str, Shape], sparsity: float, power_scale: float = 1.0) -> dict[str, float]:
    """Per-layer densities whose parameter-weighted mean is ``1 - sparsity``."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if sparsity == 0.0:
        return {name: 1.0 for name in shapes}
    dense: set[str] = set()
    while True:
        rhs, divisor, raw = 0.0, 0.0, {}
        for name, shape in shapes.items():
            n = math.prod(shape)
            if name in dense:
                rhs -= n * sparsity  # a dense layer's zeros must be found elsewhere
            else:
                rhs += n * (1.0 - sparsity)
                raw[name] = _erk_raw(shape, power_scale)
                divisor += raw[name] * n
        if not raw:  # cannot happen for sparsity < 1, kept as a guard
            return {name: 1.0 for name in shapes}
        eps = rhs / divisor
        max_raw = max(raw.values())
        if max_raw * eps <= 1.0:
            return {name: (1.0 if name in dense else eps * raw[name]) for name in shapes}
        dense.update(name for name, value in raw.items() if value == max_raw)


def er_epsilon_densities(shapes: Mapping[str, Shape], epsilon: float) -> dict[str, float]:
    """Mocanu et al.'s fixed-epsilon Erdos-Renyi(-Kernel) densities, capped at 1."""
    return {name: min(1.0, epsilon * _erk_raw(shape)) for name, shape in shapes.items()}


def pruned_counts(sizes: Mapping[str, int], densities: Mapping[str, float]) -> dict[str, int]:
    """Weights to mask per layer: ``round((1 - density) * size)`` (within one weight)."""
    return {name: int(round((1.0 - densities[name]) * sizes[name])) for name in sizes}
