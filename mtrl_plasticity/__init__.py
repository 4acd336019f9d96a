"""mtrl-plasticity's ground floor: the vocabulary every other package of the project stands on.

It holds the error types (:mod:`.errors`), the registries of treatments, architectures, tasks
and benchmarks with the functions that add to them, plugin loading (:mod:`.plugins`) and the
shared names of the results (:mod:`.results`). It imports no other package of the project and
no torch, so a plugin registers its names with::

    from mtrl_plasticity import register_treatment, TreatmentParameters, Variant   # treatments
    from mtrl_plasticity import register_architecture, NeuronLayer                  # architectures
    from mtrl_plasticity import register_task, register_benchmark                   # benchmarks

and builds its code on the science packages (``agents.treatments.Treatment``,
``agents.sparsity.MaskedTreatment``, ``agents.networks``). Walk-through: ``docs/extending.md``.
"""

from mtrl_plasticity.architectures import NetworkInterface, NeuronLayer, register_architecture
from mtrl_plasticity.benchmarks import register_benchmark, register_task
from mtrl_plasticity.errors import UserError
from mtrl_plasticity.treatments import NoParameters, TreatmentParameters, Variant, register_treatment

__all__ = [
    "NetworkInterface",
    "NeuronLayer",
    "NoParameters",
    "TreatmentParameters",
    "UserError",
    "Variant",
    "register_architecture",
    "register_benchmark",
    "register_task",
    "register_treatment",
]
