"""Fixtures of the orchestrator's unit tests (helpers live in _sweep_testlib)."""

from _sweep_testlib import write_sweep  # noqa: F401  (a fixture)
