"""Does a registered architecture's network follow the network interface? Checked by building one.

``mtrl run`` and ``mtrl trial`` run :func:`check_network` on every plugin architecture a sweep
uses, once per shape, before anything starts (``orchestrator.preflight``); the paper's own
architectures are covered by the test suite.
"""

from __future__ import annotations

from typing import NoReturn

import torch
from torch import nn

from agents.networks import N_ACTIONS, OBS_SHAPE, Record, build_network
from mtrl_plasticity.architectures import NeuronLayer
from mtrl_plasticity.errors import NetworkInterfaceError, UserError, brief


def check_network(arch: str, n_tasks: int, n_experts: int = 1, hidden: int = 128) -> None:
    """Build ``arch``'s actor and critic for ``n_tasks`` tasks and check them against the interface.

    Runs a forward pass on a small batch covering every task, with and without ``record``.
    Raises :class:`~mtrl_plasticity.errors.NetworkInterfaceError` naming the architecture and
    the first problem. Uses its own torch generator for the check batch; the networks'
    initialisation draws from torch's global RNG, so call it before a trial seeds that, never
    inside one.
    """

    def fail(problem: str) -> NoReturn:
        raise NetworkInterfaceError(f"architecture {arch!r}: {problem} (the interface: mtrl_plasticity."
                                    f"NetworkInterface, docs/extending.md)")

    generator = torch.Generator().manual_seed(0)
    batch = 4 * n_tasks
    obs = torch.randint(0, 6, (batch, *OBS_SHAPE), generator=generator, dtype=torch.uint8)
    task = torch.arange(n_tasks).repeat_interleave(4)
    for n_out in (N_ACTIONS, 1):
        try:
            network = build_network(arch, n_tasks, n_out, n_experts=n_experts, hidden=hidden)
        except UserError:
            raise
        except Exception as exc:  # a plugin's builder: its error, in one line
            fail(f"its builder raised {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
        if not isinstance(network, nn.Module):
            fail(f"the builder returned a {type(network).__name__}, not a torch.nn.Module")
        for method in ("features_from_record", "neuron_layers", "weight_layers", "output_layers"):
            if not callable(getattr(network, method, None)):
                fail(f"its network has no {method}() method")
        if getattr(network, "n_tasks", None) != n_tasks:
            fail(f"its network's n_tasks is {brief(getattr(network, 'n_tasks', None))}, not {n_tasks}")
        try:
            with torch.no_grad():
                out = network(obs, task)
                record: Record = {}
                out_recorded = network(obs, task, record=record)
                features = network.features_from_record(record)
            layers = network.neuron_layers()
            weights = network.weight_layers()
            outputs = network.output_layers()
        except Exception as exc:
            fail(f"its network raised {type(exc).__name__} on a forward pass of obs uint8 [B, 3, 7, 7] and "
                 f"task int64 [B]: {' '.join(str(exc).split())[:200]}")
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (batch, n_out):
            fail(f"forward gave shape {tuple(getattr(out, 'shape', ()))} for {batch} samples, "
                 f"expected ({batch}, {n_out})")
        if not torch.equal(out, out_recorded):
            fail("forward(record=...) gives other outputs than forward()")
        if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[0] != batch:
            fail("features_from_record(record) must give the [B, F] shared features")
        if not all(isinstance(layer, NeuronLayer) for layer in layers) or not layers:
            fail("neuron_layers() must return a non-empty list of mtrl_plasticity.NeuronLayer")
        if not isinstance(weights, dict) or not all(isinstance(m, nn.Module) and isinstance(getattr(m, "weight", None),
                                                                                            nn.Parameter)
                                                    for m in weights.values()):
            fail("weight_layers() must return {module name: module with a weight parameter}")
        if not outputs or not all(isinstance(m, nn.Linear) for m in outputs):
            fail("output_layers() must return a non-empty list of torch.nn.Linear")
        modules = dict(network.named_modules())
        for layer in layers:
            if layer.name not in record:
                fail(f"neuron layer {layer.name!r} is not in the record of forward(record=...)")
            for name in (*layer.producers, *(c for c, _ in layer.consumers)):
                if name not in modules:
                    fail(f"neuron layer {layer.name!r} names module {name!r}, which the network lacks")
            if record[layer.name].shape[0] and record[layer.name].shape[1] % layer.n_neurons:
                fail(f"neuron layer {layer.name!r} records {record[layer.name].shape[1]} values per sample, "
                     f"not a multiple of its {layer.n_neurons} neurons")
