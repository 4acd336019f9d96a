"""``LAB2``: DoorKey-5x5 (a MiniGrid task the paper does not use) with Empty-5x5."""

from mtrl_plasticity import register_benchmark, register_task

# max_steps is MiniGrid's own limit for this env (10 * 5 * 5); optimal_steps an estimate:
# the layout is random, about 10 steps to fetch the key, open the door and reach the goal.
register_task("DoorKey-5x5-v0", optimal_steps=10, max_steps=250)
register_benchmark("LAB2", ["DoorKey-5x5-v0", "Empty-5x5-v0"], n_experts=2)
