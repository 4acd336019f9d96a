"""Weight decay on the dense agent (draft 1e-3, published 1e-6).

Default: L2 regularisation inside Adam (``torch.optim.Adam(weight_decay=coef)``, the
gradient gets ``coef * w`` added before the moment estimates). The paper builds on MOORE's
mushroom-rl code, where an optimizer is a ``{'class': optim.Adam, 'params': {...}}`` dict,
so a weight decay there is Adam's own ``weight_decay``; the paper says nothing of AdamW.
``decoupled=True`` gives AdamW (``w -= lr * coef * w`` outside the adaptive step). Decay
applies to every parameter, biases included, as an optimizer-level setting does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from agents.treatment_parameters import WeightDecayParameters
from agents.treatments import OPTIMIZER_KERNEL, Treatment


class WeightDecay(Treatment):
    """Parameters: :class:`~agents.treatment_parameters.WeightDecayParameters` (registered there as ``wd``)."""

    def __init__(self, params: WeightDecayParameters, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.coef, self.decoupled = params.coef, params.decoupled

    def build_optimizer(self, params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
        if self.decoupled:
            return torch.optim.AdamW(params, lr=lr, weight_decay=self.coef, **OPTIMIZER_KERNEL)
        return torch.optim.Adam(params, lr=lr, weight_decay=self.coef, **OPTIMIZER_KERNEL)
