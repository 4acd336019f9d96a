"""The tiny sweep spec both the orchestrator unit tests and the Ray integration tests start from.

Importable from every test folder: pytest puts ``tests/`` on ``sys.path`` for its conftest.
"""

from __future__ import annotations


def tiny_spec_data(name: str = "tiny", **changes) -> dict:
    """A sweep of Empty-5x5 single-task trials that train in about a second each."""
    data = {
        "name": name,
        "benchmarks": ["Empty-5x5-v0"],
        "archs": ["single"],
        "treatments": ["dense"],
        "seeds": 2,
        "defaults": {"total_steps": 400, "steps_per_epoch": 100, "eval_interval_steps": 200,
                     "eval_episodes": 2, "measure_plasticity": False},
        "resources": {"cpu": 1, "gpu": 0},
        "checkpoint_interval_steps": 200,
        "max_failures": 1,
        "storage": "results",
    }
    data.update(changes)
    return data
