"""The architecture registry: the paper's four through it, a plugin's through the same door, and the interface check."""

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from agents.network_check import check_network
from agents.networks import SharedTrunkNetwork, build_network, count_parameters
from mtrl_plasticity.architectures import ARCHITECTURES, architecture_spec, register_architecture
from mtrl_plasticity.errors import NetworkInterfaceError, RegistryError
from orchestrator.config import TrialConfig
from orchestrator.estimate import update_s_per_task_step
from testkit.agents import single_thread  # noqa: F401


@pytest.fixture
def registered():
    names: list[str] = []
    yield names
    for name in names:
        ARCHITECTURES.remove(name)


def test_the_paper_architectures_are_registered_in_order_with_their_properties():
    assert ARCHITECTURES.names()[:4] == ["mtppo", "moe", "moore", "single"]
    props = {n: (s.display_name, s.uses_experts, s.single_task, dict(s.trial_defaults))
             for n, s in ARCHITECTURES.items() if n in ("mtppo", "moe", "moore", "single")}
    assert props == {"mtppo": ("MTPPO", False, False, {}), "moe": ("MoE", True, False, {}),
                     "moore": ("MOORE", True, False, {}),
                     "single": ("Single-task PPO", False, True, {"critic_epochs": 10, "critic_batch_size": 256})}
    assert architecture_spec("moore").long_name == "Mixture of Orthogonal Experts (MOORE)"
    for arch in ("mtppo", "moe", "moore", "single"):
        check_network(arch, 1 if arch == "single" else 3, n_experts=2)


def test_unknown_architecture_is_one_line_with_the_choices():
    with pytest.raises(ValueError, match=r"^unknown architecture 'mtpo'; choose one of: mtppo, moe, moore, single"):
        architecture_spec("mtpo")
    with pytest.raises(ValidationError, match="unknown architecture 'mtpo'"):
        TrialConfig(benchmark="MT3", arch="mtpo")


def test_a_registered_wide_trunk_trains_through_the_same_paths(registered):
    registered.append("wide-test")

    @register_architecture("wide-test", display_name="MTPPO x2", update_ms_per_task_step=1.25)
    def build(*, n_tasks, n_out, n_experts, hidden):
        return SharedTrunkNetwork(n_tasks, n_out, hidden=hidden, channels=(32, 64, 128))

    check_network("wide-test", 3)
    net = build_network("wide-test", 3, 7)
    # conv: 3*32*4+32, 32*64*4+64, 64*128*4+128; heads: 3 x (2048*128+128 + 128*7+7)
    assert count_parameters(net) == (384 + 32) + (8192 + 64) + (32768 + 128) + 3 * (2048 * 128 + 128 + 128 * 7 + 7)
    assert [(layer.name, layer.n_neurons) for layer in net.neuron_layers()][:3] == [
        ("trunk.conv1", 32), ("trunk.conv2", 64), ("trunk.conv3", 128)]
    config = TrialConfig(benchmark="MT3", arch="wide-test")
    assert (config.critic_epochs, config.experts) == (1, 2)
    assert update_s_per_task_step("wide-test", 2) == pytest.approx(1.25e-3)


def test_the_paper_networks_keep_their_initialisation():
    # Channels became a parameter: the default network draws the same weights as before.
    torch.manual_seed(0)
    net = build_network("moore", 3, 7, n_experts=2)
    assert net.channels == (16, 32, 64) and net.n_features == 1024
    assert [tuple(p.shape) for p in net.experts[0].parameters()] == [(16, 3, 2, 2), (16,), (32, 16, 2, 2), (32,),
                                                                      (64, 32, 2, 2), (64,)]


class _NoNeurons(nn.Module):
    def __init__(self, n_tasks: int, n_out: int) -> None:
        super().__init__()
        self.n_tasks = n_tasks
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(147, n_out))

    def forward(self, obs, task, record=None):
        return self.body(obs.float())


class _WrongShape(SharedTrunkNetwork):
    def forward(self, obs, task, record=None):
        return super().forward(obs, task, record)[:, :1].repeat(1, 2)


@pytest.mark.parametrize("builder,message", [
    (lambda **k: nn.Sequential(nn.Flatten(), nn.Linear(147, k["n_out"])),
     "its network has no features_from_record() method"),
    (lambda **k: "not a network", "the builder returned a str, not a torch.nn.Module"),
    (lambda **k: _NoNeurons(k["n_tasks"], k["n_out"]), "its network has no features_from_record() method"),
    (lambda **k: _WrongShape(k["n_tasks"], k["n_out"]), "forward gave shape (12, 2) for 12 samples, expected (12, 7)"),
    (lambda **k: 1 / 0, "its builder raised ZeroDivisionError: division by zero"),
])
def test_a_network_without_the_interface_is_refused_in_one_line(registered, builder, message):
    registered.append("broken-test")
    register_architecture("broken-test", builder)
    with pytest.raises(NetworkInterfaceError) as info:
        check_network("broken-test", 3)
    assert str(info.value).startswith(f"architecture 'broken-test': {message}")
    assert "\n" not in str(info.value)


def test_registrations_that_cannot_stand(registered):
    with pytest.raises(RegistryError, match="build must be a function"):
        register_architecture("bad-build", 42)
    namespace = {"__name__": "my_lab.networks"}
    with pytest.raises(RegistryError, match="architecture 'moe' from my_lab.networks clashes"):
        exec("from mtrl_plasticity import register_architecture\n"
             "register_architecture('moe', lambda **k: None)\n", namespace)
    assert architecture_spec("moe").display_name == "MoE"
    assert "bad-build" not in ARCHITECTURES


def test_trial_defaults_naming_no_trial_setting_are_refused_when_a_trial_is_configured(registered):
    # The ground floor knows no TrialConfig: the orchestrator checks the names where it applies them.
    registered.append("bad-defaults")
    register_architecture("bad-defaults", "agents.networks:build_mtppo", trial_defaults={"critic_epoch": 3})
    with pytest.raises(ValidationError, match=r"architecture 'bad-defaults': trial_defaults names unknown trial "
                                              r"setting\(s\) \['critic_epoch'\]"):
        TrialConfig(benchmark="MT3", arch="bad-defaults")


def test_single_task_and_expert_rules_come_from_the_registration(registered):
    registered += ["solo-test", "mix-test"]
    register_architecture("solo-test", "agents.networks:build_single", single_task=True,
                          trial_defaults={"critic_epochs": 4})
    register_architecture("mix-test", "agents.networks:build_moe", uses_experts=True)
    with pytest.raises(ValidationError, match="arch 'solo-test' needs a single-task benchmark"):
        TrialConfig(benchmark="MT3", arch="solo-test")
    assert TrialConfig(benchmark="DoorKey-6x6-v0", arch="solo-test").critic_epochs == 4
    assert TrialConfig(benchmark="DoorKey-6x6-v0", arch="solo-test", critic_epochs=2).critic_epochs == 2
    assert len(build_network("mix-test", 3, 7, n_experts=3).experts) == 3
