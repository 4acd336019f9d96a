"""MiniGrid for the trials: the paper's benchmarks, the lock-step multi-task env, batched evaluation,
and the exact fast observation path."""
