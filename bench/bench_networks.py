"""Network kernels: the fast paths of MoE/MOORE against the plain ones, side by side.

Two comparisons, each timed in alternating rounds (fastest round kept, this VM drifts):

* gradient-free forward of a whole actor (collection: 3 samples, evaluation: up to 75),
  experts one by one vs one grouped trunk (``agents.networks.experts_as_one_trunk``);
* MOORE's mixture forward + backward at PPO minibatch size (256 per task, k experts as in
  MT3/MT5/MT7): Gram-Schmidt on the vectors then the weighted sum, vs the Gram-matrix
  mixture (``agents.networks.orthonormal_mixture``).

    python bench/bench_networks.py            # about a minute
    python bench/bench_networks.py --small    # a few seconds
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

import agents.networks as networks
from agents.networks import build_network, gram_schmidt, orthonormal_mixture
from orchestrator.trial import SMALL_BATCH, onednn


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
    torch.manual_seed(0)
    net = build_network(arch, 3, 7, n_experts=experts)
    obs = torch.randint(0, 11, (batch, 3, 7, 7), dtype=torch.uint8)
    task = torch.arange(3).repeat_interleave(batch // 3)
    grouped = networks.experts_as_one_trunk

    def one_by_one(experts_, x):
        return torch.stack([expert(x) for expert in experts_], dim=1)

    def run(trunk):
        def call():
            networks.experts_as_one_trunk = trunk
            try:
                net(obs, task)
            finally:
                networks.experts_as_one_trunk = grouped
        return call

    with torch.inference_mode(), onednn(enabled=batch >= SMALL_BATCH):  # as the trial's policy does
        return fastest({"one by one": run(one_by_one), "grouped": run(grouped)}, calls, rounds)


def mixture(experts: int, batch: int, calls: int, rounds: int) -> dict[str, float]:
    torch.manual_seed(0)
    vectors = torch.randn(batch, experts, 1024, requires_grad=True)
    weights = torch.randn(batch, experts, requires_grad=True)

    def basis_then_sum():
        out = torch.einsum("bk,bkd->bd", weights, gram_schmidt(vectors))
        out.backward(torch.ones_like(out))

    def gram_matrix():
        out = orthonormal_mixture(vectors, weights)
        out.backward(torch.ones_like(out))

    return fastest({"Gram-Schmidt + sum": basis_then_sum, "Gram matrix": gram_matrix}, calls, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fewer calls and rounds: checks the script runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    calls, rounds = (5, 1) if args.small else (100, 5)
    print("gradient-free actor forward, us per call (1 torch thread)")
    print(f"{'arch':6} {'k':>2} {'batch':>6} {'one by one':>11} {'grouped':>9} {'speed-up':>9}")
    for arch in ("moe", "moore"):
        for experts in (2, 4):
            for batch in (3, 36, 75):
                r = inference(arch, experts, batch, calls, rounds)
                print(f"{arch:6} {experts:2} {batch:6} {r['one by one']:11.0f} {r['grouped']:9.0f} "
                      f"{r['one by one'] / r['grouped']:8.2f}x")
    print("\nMOORE mixture forward + backward at PPO minibatch size, ms per call")
    print(f"{'benchmark':9} {'k':>2} {'batch':>6} {'Gram-Schmidt + sum':>19} {'Gram matrix':>12} {'speed-up':>9}")
    for benchmark, experts, tasks in (("MT3", 2, 3), ("MT5", 3, 5), ("MT7", 4, 7)):
        r = mixture(experts, 256 * tasks, max(1, calls // 20), rounds)
        print(f"{benchmark:9} {experts:2} {256 * tasks:6} {r['Gram-Schmidt + sum'] / 1e3:19.1f} "
              f"{r['Gram matrix'] / 1e3:12.1f} {r['Gram-Schmidt + sum'] / r['Gram matrix']:8.2f}x")


if __name__ == "__main__":
    main()
