"""Architectures whose networks do not follow agents.architectures.NetworkInterface.

``lab_sequential`` builds a plain ``nn.Sequential``; ``lab_no_neurons`` a MultiTaskNetwork
whose ``neuron_layers`` is not a method (so ReDo and the dormancy metric could not use it).
"""

from torch import nn

from mtrl import MultiTaskNetwork, register_architecture


@register_architecture("lab_sequential")
def build_sequential(*, n_tasks: int, n_out: int, n_experts: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 7 * 7, n_out))


class NoNeuronLayers(MultiTaskNetwork):
    neuron_layers = None


@register_architecture("lab_no_neurons")
def build_no_neurons(*, n_tasks: int, n_out: int, n_experts: int, hidden: int) -> nn.Module:
    return NoNeuronLayers("mtppo", n_tasks, n_out, hidden=hidden)
