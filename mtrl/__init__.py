"""The extension API: what a plugin imports to add treatments, architectures and benchmarks.

    from mtrl import register_treatment, TreatmentParameters, Variant   # treatments
    from mtrl import register_architecture                               # architectures
    from mtrl import register_task, register_benchmark                   # benchmarks

Each name is the same object as in its home module (``agents.treatments``,
``agents.architectures``, ``envs.benchmarks``); they are loaded on first use, so
``import mtrl`` imports no torch. Walk-through: ``docs/extending.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "register_treatment": "agents.treatments",
    "Treatment": "agents.treatments",
    "TreatmentParameters": "agents.treatments",
    "Variant": "agents.treatments",
    "register_architecture": "agents.architectures",
    "NetworkInterface": "agents.architectures",
    "register_task": "envs.benchmarks",
    "register_benchmark": "envs.benchmarks",
    "MaskedTreatment": "agents.sparsity.masked",
    "MultiTaskNetwork": "agents.networks",
    "NeuronLayer": "agents.networks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mtrl' has no attribute {name!r}")
