"""Fixtures of the orchestrator's unit tests (helpers live in testkit.sweep)."""

from testkit.sweep import write_sweep  # noqa: F401  (a fixture)
