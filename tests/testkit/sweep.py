"""Helpers for the orchestrator's unit tests (no Ray started here)."""

from __future__ import annotations

import os

import pytest
import yaml

from testkit.spec import tiny_spec_data  # noqa: F401  (re-exported for the unit tests)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
"""The repository's root (``tests/testkit/`` is two folders down)."""
SWEEPS = os.path.join(REPO, "sweeps")


@pytest.fixture
def write_sweep(tmp_path):
    """``write_sweep(data_or_text, name="s.yaml") -> path`` of a sweep file in tmp_path."""

    def write(data, filename: str = "sweep.yaml") -> str:
        path = tmp_path / filename
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return str(path)

    return write

