"""Helpers for the orchestrator's unit tests (no Ray started here)."""

from __future__ import annotations

import os

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SWEEPS = os.path.join(REPO, "sweeps")


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


@pytest.fixture
def write_sweep(tmp_path):
    """``write_sweep(data_or_text, name="s.yaml") -> path`` of a sweep file in tmp_path."""

    def write(data, filename: str = "sweep.yaml") -> str:
        path = tmp_path / filename
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return str(path)

    return write


def treatments_available(*names: str) -> bool:
    """True when every named treatment can be built (another package may still be landing)."""
    from agents.treatments import build_treatment, treatment_names

    try:
        return all(n in treatment_names() and build_treatment(n, total_steps=1000) is not None for n in names)
    except ImportError:
        return False
