"""Trace of the policy's Fisher information (paper appendix C.2).

``Tr(F) = E_s E_{a ~ pi(.|s)} ||grad_theta log pi(a|s)||^2``, estimated on a batch of states
with one action per state sampled from the current policy, as the mean over samples of the
*per-sample* squared gradient norm (the squared norm of the batch-mean gradient would be a
different, much smaller quantity). ``theta`` is every actor parameter; coordinates of masked
weights are left out (they are not degrees of freedom of a pruned network).

Two exact implementations, cross-checked against a brute-force loop in the tests:

* :func:`fisher_trace` (used by the trial): one batched forward/backward per chunk, with
  per-sample gradients rebuilt layer by layer from the layer inputs and output gradients
  (Goodfellow 2015). A linear layer's per-sample weight gradient is the outer product
  ``g_s a_s^T``, so its squared norm is ``||g_s||^2 ||a_s||^2`` (with a mask:
  ``(g_s^2)^T M (a_s^2)``) and is never materialised; a conv layer's per-sample gradient
  ``sum_p g_{s,p} u_{s,p}^T`` (``u`` the unfolded input patches) is small and is. Exact
  because no operation mixes samples (no batch norm; Gram-Schmidt and the task heads act
  per sample).
* :func:`fisher_trace_functorch`: ``torch.func`` (``functional_call`` + ``vmap`` + ``grad``)
  per-sample gradients of all parameters, grouped by task so each sample differentiates only
  the trunk/experts/encoder and its own head, in chunks. It materialises every parameter's
  gradient for every sample, so it is the reference the tests compare with, not the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from agents.networks import MultiTaskNetwork


@torch.no_grad()
def sample_actions(actor: MultiTaskNetwork, obs: torch.Tensor, task: torch.Tensor,
                   generator: torch.Generator, logits: torch.Tensor | None = None) -> torch.Tensor:
    """One action per state from the current policy, drawn on the CPU with ``generator``."""
    if logits is None:
        logits = actor(obs, task)
    probs = torch.softmax(logits.detach().float().cpu(), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(obs.device)


def _log_probs(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits, dim=-1).gather(-1, actions[:, None]).squeeze(-1)


def _layer_sq_norm(module: nn.Module, inputs: torch.Tensor, grad_out: torch.Tensor,
                   mask: torch.Tensor | None) -> torch.Tensor:
    """Sum over samples of the squared per-sample gradient norm of ``module``'s parameters."""
    g = grad_out.detach()
    x = inputs.detach().to(g.dtype)
    if isinstance(module, nn.Linear):
        g2, x2 = g.square(), x.square()
        if mask is None:
            total = (g2.sum(1) * x2.sum(1)).sum()
        else:
            total = ((g2 @ mask.to(g2.dtype)) * x2).sum()
        if module.bias is not None:
            total = total + g2.sum()
        return total
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            raise NotImplementedError("grouped convolutions are not supported")
        padding = cast(tuple[int, ...], module.padding)  # the paper's convolutions: no padding, never "same"
        patches = F.unfold(x, module.kernel_size, module.dilation, padding, module.stride)  # [B, Cin*k*k, L]
        g = g.flatten(2)  # [B, Cout, L]
        per_sample = torch.bmm(g, patches.transpose(1, 2))  # [B, Cout, Cin*k*k]
        if mask is not None:
            per_sample = per_sample * mask.reshape(1, mask.shape[0], -1).to(per_sample.dtype)
        total = per_sample.square().sum()
        if module.bias is not None:
            total = total + g.sum(2).square().sum()
        return total
    raise NotImplementedError(f"no per-sample gradient rule for {type(module).__name__}")


def fisher_trace(actor: MultiTaskNetwork, obs: torch.Tensor, task: torch.Tensor, actions: torch.Tensor,
                 masks: Mapping[str, torch.Tensor] | None = None, chunk_size: int = 256) -> float:
    """Mean over samples of ``||grad_theta log pi(a_s|s)||^2`` (masked coordinates left out)."""
    layers = actor.weight_layers()
    own = {p for m in layers.values() for p in m.parameters(recurse=False)}
    if any(p not in own for p in actor.parameters()):
        raise NotImplementedError("the actor has parameters outside Conv2d/Linear layers")
    masks = masks or {}
    total = torch.zeros((), dtype=torch.float64, device=obs.device)
    for start in range(0, obs.shape[0], chunk_size):
        captured: list[tuple[nn.Module, str, torch.Tensor, torch.Tensor]] = []
        hooks = [module.register_forward_hook(
            lambda mod, inp, out, name=name, into=captured: into.append((mod, name, inp[0], out)))
            for name, module in layers.items()]
        try:
            with torch.enable_grad():
                logits = actor(obs[start:start + chunk_size], task[start:start + chunk_size])
                log_p = _log_probs(logits, actions[start:start + chunk_size])
                outputs = [out for _, _, _, out in captured]
                grads = torch.autograd.grad(log_p.sum(), outputs, allow_unused=True)
        finally:
            for hook in hooks:
                hook.remove()
        for (module, name, inputs, _), grad_out in zip(captured, grads, strict=True):
            if grad_out is not None:
                mask = masks.get(f"{name}.weight")
                mask = None if mask is None else mask.to(grad_out.device)
                total += _layer_sq_norm(module, inputs, grad_out, mask).double()
    return float(total / obs.shape[0])


def fisher_trace_functorch(actor: MultiTaskNetwork, obs: torch.Tensor, task: torch.Tensor,
                           actions: torch.Tensor, masks: Mapping[str, torch.Tensor] | None = None,
                           chunk_size: int = 128) -> float:
    """The same quantity from ``torch.func`` per-sample gradients (reference implementation)."""

    masks = masks or {}
    params = {name: p.detach() for name, p in actor.named_parameters()}
    total = torch.zeros((), dtype=torch.float64, device=obs.device)
    for t in torch.unique(task).tolist():
        idx = (task == t).nonzero(as_tuple=True)[0]
        # A sample reaches the shared parameters and its own head only.
        own = {n: p for n, p in params.items() if not n.startswith("heads.") or n.startswith(f"heads.{t}.")}
        task_t = torch.tensor([t], device=obs.device)

        def log_prob(p, o, a, task_t=task_t):
            logits = functional_call(actor, p, (o[None], task_t))
            return F.log_softmax(logits, dim=-1)[0].gather(0, a[None])[0]

        per_sample_grad = vmap(grad(log_prob), in_dims=(None, 0, 0))
        for start in range(0, idx.numel(), chunk_size):
            rows = idx[start:start + chunk_size]
            grads = per_sample_grad(own, obs[rows], actions[rows])
            for name, g in grads.items():
                mask = masks.get(name)
                if mask is not None:
                    g = g * mask.to(g.device, g.dtype)
                total += g.double().square().sum()
    return float(total / obs.shape[0])
