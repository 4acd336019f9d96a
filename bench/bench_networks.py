"""Network kernels: the fast paths of MoE/MOORE against the plain ones, side by side.

Four comparisons, each timed in alternating rounds (fastest round kept, this VM drifts), each
also on both sides of the batch size where ``agents.networks`` switches paths
(``GROUPED_EXPERTS_MAX_BATCH``, ``GRAM_MIXTURE_MIN_BATCH``, ``ONEDNN_MIN_BATCH``,
``FROZEN_PRODUCT_MIN_ROWS``), so the output shows each switch pays where it is taken:

* gradient-free forward of a whole actor (collection: 3 samples, evaluation: up to 75),
  experts one by one vs one grouped trunk (``agents.networks.experts_as_one_trunk``);
* MOORE's mixture forward + backward at PPO minibatch size (256 per task, k experts as in
  MT3/MT5/MT7): Gram-Schmidt on the vectors then the weighted sum, vs the Gram-matrix
  mixture (``agents.networks.orthonormal_mixture``);
* a task head's ``Linear(1024, 128)`` without autograd, ``F.linear`` vs the frozen
  ``HeadLinear`` (a stored ``W^T``), at evaluation row counts, and a whole MTPPO actor's
  evaluation forward (75 samples, 25 per task) with and without ``frozen_weights``;
* a gradient-free CPU forward of a whole actor with oneDNN's convolutions on and off;
* one Adam step over an MT3 actor's parameters: torch's default for CPU tensors (a loop of
  per-tensor operations) vs ``agents.treatments.OPTIMIZER_KERNEL`` (``fused=True``).

    python bench/bench_networks.py            # about a minute
    python bench/bench_networks.py --small    # a few seconds
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch.nn import functional as F

import agents.networks as networks
from agents.networks import ONEDNN_MIN_BATCH, build_network, gram_schmidt, onednn, orthonormal_mixture
from agents.treatments import OPTIMIZER_KERNEL


def fastest(fns: dict[str, Callable[[], object]], calls: int, rounds: int) -> dict[str, float]:
    """Microseconds per call of each function: alternating rounds, fastest round kept."""
    for fn in fns.values():  # warm-up: first calls allocate and pick kernels
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            started = time.perf_counter()
            for _ in range(calls):
                fn()
            best[name] = min(best[name], (time.perf_counter() - started) / calls * 1e6)
    return best


def inference(arch: str, experts: int, batch: int, calls: int, rounds: int) -> dict[str, float]:
    """The k expert trunks of an actor without autograd: one by one, and as one grouped trunk."""
    torch.manual_seed(0)
    net = build_network(arch, 3, 7, n_experts=experts)
    x = torch.randint(0, 11, (batch, 3, 7, 7), dtype=torch.uint8).float()

    def one_by_one():
        return torch.stack([expert(x) for expert in net.experts], dim=1)

    def grouped():
        return networks.experts_as_one_trunk(net.experts, x)

    with torch.inference_mode(), onednn(enabled=batch >= ONEDNN_MIN_BATCH):  # as the trial's policy does
        return fastest({"one by one": one_by_one, "grouped": grouped}, calls, rounds)


def mixture(experts: int, batch: int, calls: int, rounds: int, backward: bool = True) -> dict[str, float]:
    """MOORE's mixture both ways: forward and backward (training), or forward alone (no autograd)."""
    torch.manual_seed(0)
    vectors = torch.randn(batch, experts, 1024, requires_grad=backward)
    weights = torch.randn(batch, experts, requires_grad=backward)

    def basis_then_sum():
        out = torch.einsum("bk,bkd->bd", weights, gram_schmidt(vectors))
        if backward:
            out.backward(torch.ones_like(out))

    def gram_matrix():
        out = orthonormal_mixture(vectors, weights)
        if backward:
            out.backward(torch.ones_like(out))

    with torch.set_grad_enabled(backward):
        return fastest({"Gram-Schmidt + sum": basis_then_sum, "Gram matrix": gram_matrix}, calls, rounds)


def onednn_forward(arch: str, batch: int, calls: int, rounds: int) -> dict[str, float]:
    """A gradient-free actor forward with oneDNN's convolutions on and off."""
    torch.manual_seed(0)
    net = build_network(arch, 3, 7, n_experts=2)
    obs = torch.randint(0, 11, (batch, 3, 7, 7), dtype=torch.uint8)
    task = torch.arange(3).repeat_interleave(-(-batch // 3))[:batch]

    def forward(enabled: bool):
        def call():
            with onednn(enabled=enabled):
                net(obs, task)
        return call

    with torch.inference_mode():
        return fastest({"on": forward(True), "off": forward(False)}, calls, rounds)


def head_product(rows: int, calls: int, rounds: int) -> dict[str, float]:
    """A task head's product without autograd: ``F.linear`` on ``W``, and ``addmm`` on a stored ``W^T``."""
    torch.manual_seed(0)
    layer = networks.HeadLinear(1024, 128)
    x = torch.randn(rows, 1024)
    weight_t = layer.weight.detach().t().contiguous()
    with torch.inference_mode():
        if not torch.equal(torch.addmm(layer.bias, x, weight_t), F.linear(x, layer.weight, layer.bias)):
            print(f"  (rows={rows}: the two products differ in the last bits on this machine)")
        return fastest({"F.linear": lambda: F.linear(x, layer.weight, layer.bias),
                        "frozen": lambda: torch.addmm(layer.bias, x, weight_t)}, calls, rounds)


def evaluation_forward(calls: int, rounds: int) -> dict[str, float]:
    """MTPPO actor forward at 75 samples: plain, frozen, and the cost of freezing (3 transposes)."""
    torch.manual_seed(0)
    net = build_network("mtppo", 3, 7)
    obs = torch.randint(0, 11, (75, 3, 7, 7), dtype=torch.uint8)
    task = torch.arange(3).repeat_interleave(25)

    def freeze():
        with networks.frozen_weights(net):
            pass

    with torch.inference_mode(), onednn(enabled=True):
        plain = fastest({"plain": lambda: net(obs, task), "freeze": freeze}, calls, rounds)
        with networks.frozen_weights(net):  # once per evaluation in a trial, not per call
            frozen = fastest({"frozen": lambda: net(obs, task)}, calls, rounds)
    return {**plain, **frozen}


def adam_step(arch: str, calls: int, rounds: int) -> dict[str, float]:
    """One optimizer step over an MT3 actor's parameters (gradients set once), each kernel."""
    steps = {}
    for kernel, options in (("per tensor", {}), ("fused", OPTIMIZER_KERNEL)):
        torch.manual_seed(0)
        net = build_network(arch, 3, 7, n_experts=2)
        for p in net.parameters():
            p.grad = torch.randn_like(p)
        steps[kernel] = torch.optim.Adam(net.parameters(), lr=1e-3, **options).step
    return fastest(steps, calls, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fewer calls and rounds: checks the script runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    calls, rounds = (5, 1) if args.small else (100, 5)
    print("gradient-free actor forward, us per call (1 torch thread)")
    print(f"{'arch':6} {'k':>2} {'batch':>6} {'one by one':>11} {'grouped':>9} {'speed-up':>9}")
    limit = networks.GROUPED_EXPERTS_MAX_BATCH
    for arch in ("moe", "moore"):
        for experts in (2, 4):
            for batch in (3, 36, 75, limit, 2 * limit, 8 * limit):
                r = inference(arch, experts, batch, max(1, calls * 36 // batch), rounds)
                print(f"{arch:6} {experts:2} {batch:6} {r['one by one']:11.0f} {r['grouped']:9.0f} "
                      f"{r['one by one'] / r['grouped']:8.2f}x" + ("  (above the limit: one by one)"
                                                                  if batch > limit else ""))
    print("\nMOORE mixture forward + backward at PPO minibatch size, ms per call")
    print(f"{'benchmark':9} {'k':>2} {'batch':>6} {'Gram-Schmidt + sum':>19} {'Gram matrix':>12} {'speed-up':>9}")
    for benchmark, experts, tasks in (("MT3", 2, 3), ("MT5", 3, 5), ("MT7", 4, 7)):
        r = mixture(experts, 256 * tasks, max(1, calls // 20), rounds)
        print(f"{benchmark:9} {experts:2} {256 * tasks:6} {r['Gram-Schmidt + sum'] / 1e3:19.1f} "
              f"{r['Gram matrix'] / 1e3:12.1f} {r['Gram-Schmidt + sum'] / r['Gram matrix']:8.2f}x")
    print(f"\nMOORE mixture forward without autograd (collection, evaluation), us per call; the Gram matrix "
          f"from {networks.GRAM_MIXTURE_MIN_BATCH} samples")
    print(f"{'k':>2} {'batch':>6} {'Gram-Schmidt + sum':>19} {'Gram matrix':>12} {'speed-up':>9}")
    for experts in (2, 4):
        for batch in (3, 8, networks.GRAM_MIXTURE_MIN_BATCH // 2, networks.GRAM_MIXTURE_MIN_BATCH, 75):
            r = mixture(experts, batch, calls, rounds, backward=False)
            print(f"{experts:2} {batch:6} {r['Gram-Schmidt + sum']:19.0f} {r['Gram matrix']:12.0f} "
                  f"{r['Gram-Schmidt + sum'] / r['Gram matrix']:8.2f}x")
    print(f"\ngradient-free actor forward with oneDNN on and off, us per call; on from {networks.ONEDNN_MIN_BATCH} "
          f"samples")
    print(f"{'arch':6} {'batch':>6} {'on':>8} {'off':>8} {'on/off':>8}")
    for arch in ("mtppo", "moe"):
        for batch in (3, 8, networks.ONEDNN_MIN_BATCH, 36, 75):
            r = onednn_forward(arch, batch, calls, rounds)
            print(f"{arch:6} {batch:6} {r['on']:8.0f} {r['off']:8.0f} {r['on'] / r['off']:7.2f}x")
    print(f"\ntask head Linear(1024, 128) without autograd, us per call; the stored W^T from "
          f"{networks.FROZEN_PRODUCT_MIN_ROWS} rows")
    print(f"{'rows':>6} {'F.linear':>9} {'frozen W^T':>11} {'speed-up':>9}")
    for rows in (1, 3, networks.FROZEN_PRODUCT_MIN_ROWS, 8, 16, 25, 75):
        r = head_product(rows, calls, rounds)
        print(f"{rows:6} {r['F.linear']:9.0f} {r['frozen']:11.0f} {r['F.linear'] / r['frozen']:8.2f}x")
    r = evaluation_forward(calls, rounds)
    print(f"MTPPO actor forward, 75 samples: plain {r['plain']:.0f} us, frozen {r['frozen']:.0f} us "
          f"({r['plain'] / r['frozen']:.2f}x); freezing (3 transposes, once per evaluation) {r['freeze']:.0f} us")
    print("\nAdam step over an MT3 actor's parameters, us per step (65 steps per PPO update)")
    print(f"{'arch':6} {'params':>8} {'per tensor':>11} {'fused':>7} {'speed-up':>9}")
    for arch in ("mtppo", "moe", "moore"):
        r = adam_step(arch, calls, rounds)
        params = networks.count_parameters(build_network(arch, 3, 7, n_experts=2))
        print(f"{arch:6} {params:8} {r['per tensor']:11.0f} {r['fused']:7.0f} {r['per tensor'] / r['fused']:8.2f}x")


if __name__ == "__main__":
    main()
