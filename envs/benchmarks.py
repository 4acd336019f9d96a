"""The paper's tasks (Table 3) and benchmarks MT3/MT5/MT7, registered by name.

Each task registers with the numbers that normalise its returns (the optimal number of
steps, the environment's own ``max_steps``), each benchmark with its ordered tasks and the
expert count MoE/MOORE use on it, through the same functions a plugin calls
(:mod:`mtrl_plasticity.benchmarks`, ``docs/extending.md``). Pure data: no environment is made.
"""

from __future__ import annotations

from mtrl_plasticity.benchmarks import TASKS, register_benchmark, register_task

for _name, _optimal, _max in (
    ("DoorKey-6x6-v0", 11, 360),
    ("DistShift1-v0", 11, 252),
    ("RedBlueDoors-6x6-v0", 8, 720),
    ("LavaGapS7-v0", 8, 196),
    ("MemoryS11-v0", 15, 605),
    ("SimpleCrossingS9N2-v0", 15, 324),
    ("MultiRoom-N2-S4-v0", 5, 40),
    # Not in the paper: an easy task for learning tests and quick demos.
    # The agent starts at (1,1) facing east, the goal is at (3,3): 2 forward, turn, 2 forward.
    ("Empty-5x5-v0", 5, 100),
):
    register_task(_name, optimal_steps=_optimal, max_steps=_max)

PAPER_TASKS = tuple(list(TASKS)[:7])
"""The paper's Table 3 tasks, in its order."""

_MT3 = ("LavaGapS7-v0", "RedBlueDoors-6x6-v0", "MemoryS11-v0")
_MT5 = _MT3 + ("DoorKey-6x6-v0", "DistShift1-v0")
_MT7 = _MT5 + ("SimpleCrossingS9N2-v0", "MultiRoom-N2-S4-v0")
register_benchmark("MT3", _MT3, n_experts=2)
register_benchmark("MT5", _MT5, n_experts=3)
register_benchmark("MT7", _MT7, n_experts=4)
