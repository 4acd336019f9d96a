"""Binary weight masks beside the networks, and the magnitude rules that set them.

A :class:`MaskSet` holds one bool mask per prunable weight, keyed ``"<network>.<param name>"``
(``"actor.heads.0.hidden.weight"``). :meth:`MaskSet.apply` zeroes the masked weights *and*
their optimizer moments; the treatments call it after every optimizer step, so Adam can
move a masked weight for one step at most before it is zeroed again, and no momentum
survives to carry it back (the moments are zero again before the next step reads them).

Magnitude rules (jaxpruner's ``MagnitudePruning`` without the framework): weights already
masked rank first (they are zero anyway, and this keeps masks nested as sparsity grows),
then by ``|w|``, ties broken by position (a stable sort), so the count of masked weights is
exact and the result deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from agents.interventions.optimizer_state import moment_tensors


def prunable_weights(network: nn.Module, include_task_encoder: bool = False,
                     kinds: tuple[type, ...] = (nn.Conv2d, nn.Linear)) -> dict[str, torch.Tensor]:
    """``{param name: weight}`` of every Conv2d/Linear layer (biases are never prunable).

    ``task_encoder`` (MoE/MOORE, ``Linear(T, k, bias=False)``) only when asked: it holds
    T*k weights that decide the expert mixture, and pruning them can switch experts off.
    ``kinds`` narrows the layer types (SET sparsifies only ``nn.Linear`` by default).
    """
    out: dict[str, torch.Tensor] = {}
    for name, module in network.named_modules():
        wanted = any(isinstance(module, kind) for kind in kinds)
        if isinstance(module, (nn.Conv2d, nn.Linear)) and wanted and (include_task_encoder or name != "task_encoder"):
            out[f"{name}.weight"] = module.weight
    return out


def count_zero_weights(network: nn.Module) -> tuple[int, int]:
    """``(exactly zero, total)`` over the weights of every Conv2d/Linear, task encoder included."""
    zeros = total = 0
    for weight in prunable_weights(network, include_task_encoder=True).values():
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros, total


def _ranking_scores(weight: torch.Tensor, current: torch.Tensor | None) -> torch.Tensor:
    scores = weight.detach().abs().flatten().float()  # a new tensor: safe to fill in place
    if current is not None:
        scores.masked_fill_(~current.flatten().to(scores.device), -1.0)
    return scores


def _smallest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool over ``scores``: its ``k`` smallest entries, ties taken in position order.

    The same set as the first ``k`` of a stable sort, found with one ``kthvalue`` (a
    selection, several times cheaper than sorting 400k weights at every pruning step).
    """
    if k <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    if k >= scores.numel():
        return torch.ones_like(scores, dtype=torch.bool)
    threshold = torch.kthvalue(scores, k).values
    below = scores < threshold
    at = (scores == threshold).nonzero(as_tuple=True)[0]
    below[at[: k - int(below.sum())]] = True
    return below


def magnitude_mask(weight: torch.Tensor, n_pruned: int, current: torch.Tensor | None = None) -> torch.Tensor:
    """A mask with exactly ``max(n_pruned, already masked)`` False entries (smallest first)."""
    scores = _ranking_scores(weight, current)
    already = 0 if current is None else int((~current).sum())
    n_pruned = min(max(n_pruned, already), scores.numel())
    return (~_smallest(scores, n_pruned)).view_as(weight)


def global_magnitude_masks(weights: Mapping[str, torch.Tensor], sparsity: float,
                           current: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """One top-k over all ``weights`` together: ``round(sparsity * total)`` masked in all."""
    names = list(weights)
    scores = torch.cat([_ranking_scores(weights[n], None if current is None else current.get(n)) for n in names])
    already = int((scores < 0).sum())
    n_pruned = min(max(int(round(sparsity * scores.numel())), already), scores.numel())
    flat = ~_smallest(scores, n_pruned)
    out, offset = {}, 0
    for n in names:
        size = weights[n].numel()
        out[n] = flat[offset:offset + size].view_as(weights[n])
        offset += size
    return out


def layerwise_magnitude_masks(weights: Mapping[str, torch.Tensor], n_pruned: Mapping[str, int],
                              current: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Per layer: the ``n_pruned[name]`` smallest-magnitude weights masked."""
    return {n: magnitude_mask(w, n_pruned[n], None if current is None else current.get(n))
            for n, w in weights.items()}


class MaskSet:
    """Bool masks of the actor's and critic's prunable weights, applied in place.

    Keys are ``"<network>.<param name>"``. Only masks with at least one False entry cost
    anything to apply; float copies for the multiplications are cached per key.
    """

    def __init__(self) -> None:
        self.masks: dict[str, torch.Tensor] = {}
        self._float: dict[str, torch.Tensor] = {}

    def __contains__(self, key: str) -> bool:
        return key in self.masks

    def __len__(self) -> int:
        return len(self.masks)

    def set(self, key: str, mask: torch.Tensor) -> None:
        self.masks[key] = mask.detach().to(torch.bool).clone()
        self._float.pop(key, None)

    def of_network(self, network_name: str) -> dict[str, torch.Tensor]:
        """``{param name: bool mask}`` of one network (the metrics' view)."""
        prefix = f"{network_name}."
        return {key[len(prefix):]: mask for key, mask in self.masks.items() if key.startswith(prefix)}

    def _float_mask(self, key: str, like: torch.Tensor) -> torch.Tensor | None:
        cached = self._float.get(key)
        if cached is None or cached.device != like.device or cached.dtype != like.dtype:
            mask = self.masks[key]
            if bool(mask.all()):
                self._float[key] = cached = torch.empty(0)  # nothing masked: skip
            else:
                self._float[key] = cached = mask.to(device=like.device, dtype=like.dtype)
        return cached if cached.numel() else None

    @torch.no_grad()
    def apply(self, network: nn.Module, network_name: str, optimizer: torch.optim.Optimizer | None) -> None:
        """``w *= mask`` for every masked weight of ``network``, and the same for its moments."""
        params = dict(network.named_parameters())
        targets: list[torch.Tensor] = []
        factors: list[torch.Tensor] = []
        for name, _ in self.of_network(network_name).items():
            param = params[name]
            factor = self._float_mask(f"{network_name}.{name}", param)
            if factor is None:
                continue
            targets.append(param.data)
            factors.append(factor)
            if optimizer is not None:
                for moment in moment_tensors(optimizer, param):
                    targets.append(moment)
                    factors.append(factor)
        if targets:
            # One fused call: masking runs after every optimizer step and must stay cheap.
            torch._foreach_mul_(targets, factors)

    def sparsity(self, keys: Iterable[str] | None = None) -> float:
        """Fraction of masked entries among ``keys`` (all masks by default)."""
        keys = list(self.masks if keys is None else keys)
        total = sum(self.masks[k].numel() for k in keys)
        return sum(int((~self.masks[k]).sum()) for k in keys) / total if total else 0.0

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {key: mask.cpu() for key, mask in self.masks.items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.masks = {}
        self._float = {}
        for key, mask in state.items():
            self.set(key, mask)
