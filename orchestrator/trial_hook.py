"""The one hook inside a sweep's trials, for tests and benchmarks (Ray-free, torch-free).

``MTRL_TRIAL_HOOK=module:function`` in the environment of ``mtrl run``: the driver checks
that it imports (:func:`trial_hook_from_environment`) and hands it to every trial, which then
calls ``function(config, sweep_root, checkpointer, sink, train)`` in place of
``train(checkpointer, sink)`` (which runs :func:`orchestrator.trial.run_trial`). A hook may
wrap the checkpointer or the sink (the tests' fault injection, ``tests/testkit/faults.py``) or
train otherwise (``bench/bench_scale.py``'s stand-in trial); the trial's files are checked
before it runs and after it returns, as for any trial. The module must import on every
worker (``PYTHONPATH``). Unset, nothing changes: a sweep file cannot set it, so it never
changes what a sweep computes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from mtrl_plasticity.errors import UserError
from mtrl_plasticity.registry import resolve
from orchestrator.checkpoint import Checkpointer
from orchestrator.config import TrialConfig
from orchestrator.sink import ParquetSink

TRIAL_HOOK_VARIABLE = "MTRL_TRIAL_HOOK"
"""The environment variable that names the hook."""

Train = Callable[[Checkpointer, ParquetSink], Any]
"""``train(checkpointer, sink)``: a trial's training from its last checkpoint to its budget."""
TrialHook = Callable[[TrialConfig, str, Checkpointer, ParquetSink, Train], Any]


def trial_hook_from_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """The :data:`TRIAL_HOOK_VARIABLE` of this process, checked to import (one line if it does not)."""
    reference = (os.environ if environ is None else environ).get(TRIAL_HOOK_VARIABLE) or None
    if reference is None:
        return None
    if ":" not in reference:
        raise UserError(f"{TRIAL_HOOK_VARIABLE}={reference!r} must name a function as module:function")
    try:
        hook = resolve(reference)
    except Exception as exc:
        raise UserError(f"{TRIAL_HOOK_VARIABLE}={reference!r} does not import: {type(exc).__name__}: {exc}") from None
    if not callable(hook):
        raise UserError(f"{TRIAL_HOOK_VARIABLE}={reference!r} is not a function")
    return reference


def run_with_hook(hook: str | None, config: TrialConfig, sweep_root: str, checkpointer: Checkpointer,
                  sink: ParquetSink, train: Train) -> None:
    """``train(checkpointer, sink)``, or the hook in its place when one is set."""
    if hook is None:
        train(checkpointer, sink)
    else:
        in_place: TrialHook = resolve(hook)
        in_place(config, sweep_root, checkpointer, sink, train)
