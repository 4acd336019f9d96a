"""Architectures whose networks do not follow mtrl_plasticity.NetworkInterface.

``lab_sequential`` builds a plain ``nn.Sequential``; ``lab_no_neurons`` a SharedTrunkNetwork
whose ``neuron_layers`` is not a method (so ReDo and the dormancy metric could not use it).
"""

from torch import nn

from agents.networks import SharedTrunkNetwork
from mtrl_plasticity import register_architecture


@register_architecture("lab_sequential")
def build_sequential(*, n_tasks: int, n_out: int, n_experts: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 7 * 7, n_out))


class NoNeuronLayers(SharedTrunkNetwork):
    neuron_layers = None


@register_architecture("lab_no_neurons")
def build_no_neurons(*, n_tasks: int, n_out: int, n_experts: int, hidden: int) -> nn.Module:
    return NoNeuronLayers(n_tasks, n_out, hidden=hidden)
