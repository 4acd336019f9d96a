"""The registry: names a sweep file can use, parameter overrides and their validation."""

import pytest
import torch

from _agents_testlib import make_agent, single_thread  # noqa: F401
from agents.treatment_parameters import TreatmentParameters
from agents.treatments import (
    COUNTER_NAMES,
    Treatment,
    build_treatment,
    check_treatment,
    register,
    treatment_names,
)

NAMES = ["dense", "gmp", "gmp80", "gmp95", "gmp99", "set", "set95", "redo", "reset", "wd"]


def test_every_paper_treatment_is_registered_with_draft_defaults():
    assert set(NAMES) <= set(treatment_names())
    for name in NAMES:
        tr = build_treatment(name, total_steps=200_000)
        assert isinstance(tr, Treatment) and tr.name == name
        assert set(tr.counters()) == set(COUNTER_NAMES)
    assert build_treatment("gmp80", total_steps=10).schedule.final_sparsity == 0.8
    assert build_treatment("gmp95", total_steps=10).schedule.final_sparsity == 0.95
    assert build_treatment("gmp99", total_steps=10).schedule.final_sparsity == 0.99
    assert build_treatment("gmp", total_steps=10).schedule.final_sparsity == 0.95
    assert build_treatment("set95", total_steps=10).target == 0.95
    redo = build_treatment("redo", total_steps=10)
    assert (redo.tau, redo.every, redo.batch_size) == (0.01, 5000, 1024)
    assert build_treatment("reset", total_steps=10).steps == {60_000, 120_000}
    wd = build_treatment("wd", total_steps=10)
    assert (wd.coef, wd.decoupled) == (1e-3, False)
    s = build_treatment("gmp95", total_steps=200_000).schedule
    assert (s.start_step, s.end_step, s.frequency) == (10_000, 160_000, 500)


def test_published_protocol_overrides():
    assert build_treatment("redo", {"tau": 0.001}, total_steps=400_000).tau == 0.001
    reset = build_treatment("reset", {"every": 100_000, "max_resets": 2}, total_steps=400_000)
    assert (reset.every, reset.max_resets) == (100_000, 2)
    assert build_treatment("wd", {"coef": 1e-6}, total_steps=400_000).coef == 1e-6
    set95 = build_treatment("set95", {"zeta": 0.3, "rewire_every": 2000}, total_steps=400_000)
    assert (set95.zeta, set95.rewire_every) == (0.3, 2000)
    assert build_treatment("set", {"epsilon": 11}, total_steps=400_000).epsilon == 11


@pytest.mark.parametrize("name", NAMES)
def test_unknown_parameters_raise_a_one_line_value_error(name):
    with pytest.raises(ValueError, match="has no parameter") as info:
        build_treatment(name, {"no_such_knob": 1}, total_steps=1000)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name,params", [
    ("redo", {"tau": 0}), ("redo", {"tau": -1.0}), ("redo", {"every": 2.5}), ("redo", {"batch_size": 0}),
    ("redo", {"networks": "actor"}), ("gmp", {"final_sparsity": "0.9"}), ("gmp", {"frequency": True}),
])
def test_invalid_values_raise_one_line_value_errors(name, params):
    with pytest.raises(ValueError) as info:
        build_treatment(name, params, total_steps=1000)
    assert "\n" not in str(info.value) and name in str(info.value)


BAD_PARAMETERS = [
    ("dense", {"tau": 1}), ("gmp", {"final_sparsity": 1.0}), ("gmp", {"scope": "row"}),
    ("gmp", {"start_fraction": 0.5, "end_fraction": 0.4}), ("gmp", {"prune_task_encoder": 1}),
    ("gmp95", {"final_sparsity": 0.8}), ("set", {"sparsity": 0.9, "epsilon": 11}), ("set", {"layers": "conv"}),
    ("set", {"distribution": "er"}), ("set95", {"epsilon": 11}), ("set", {"zeta": 1.5}), ("redo", {"tau": 0}),
    ("redo", {"networks": ["actor", "policy"]}), ("reset", {"every": 100, "steps": [5]}),
    ("reset", {"steps": [0]}), ("reset", {"max_resets": -1}), ("wd", {"coef": -1e-3}), ("wd", {"decoupled": "no"}),
]


@pytest.mark.parametrize("name,params", BAD_PARAMETERS)
def test_check_refuses_what_build_refuses_with_the_same_line(name, params):
    # The sweep driver checks with check_treatment (no torch); the trial builds: same verdict.
    with pytest.raises(ValueError) as built:
        build_treatment(name, params, total_steps=1000)
    with pytest.raises(ValueError) as checked:
        check_treatment(name, params, total_steps=1000)
    assert str(checked.value) == str(built.value)
    assert "\n" not in str(built.value) and name in str(built.value)


@pytest.mark.parametrize("name", NAMES)
def test_each_treatment_reads_its_parameters_through_its_parameter_class(name):
    params = {"set": {"epsilon": 11}, "reset": {"every": 100_000, "max_resets": 2}}.get(name, {})
    treatment = build_treatment(name, params, total_steps=200_000)
    assert check_treatment(name, params, total_steps=200_000) is None
    parameter_classes = [c for c in type(treatment).__mro__
                         if issubclass(c, TreatmentParameters) and not issubclass(c, Treatment)]
    assert len(parameter_classes) in (1, 2)  # its own (if any) and the shared base
    alone = parameter_classes[0](200_000, _name=treatment.name, _fixed=treatment.fixed, **params)
    assert vars(alone) == {k: getattr(treatment, k) for k in vars(alone)}


def test_unknown_name_and_bad_budget():
    with pytest.raises(ValueError, match="unknown treatment"):
        build_treatment("prune", total_steps=10)
    with pytest.raises(ValueError, match="unknown treatment"):
        check_treatment("prune", total_steps=10)
    with pytest.raises(ValueError, match="total_steps"):
        build_treatment("gmp95", total_steps=0)


def test_trial_config_validates_treatments_up_front():
    from pydantic import ValidationError

    from orchestrator.config import TrialConfig

    TrialConfig(benchmark="MT3", arch="moe", treatment="redo", treatment_params={"tau": 0.001})
    with pytest.raises(ValidationError, match="tau"):
        TrialConfig(benchmark="MT3", arch="moe", treatment="redo", treatment_params={"tau": -1})


def test_register_adds_a_name():
    class Noisy(Treatment):
        name = "noisy-test"
        defaults = {"sigma": 0.1}

    register("noisy-test", Noisy)
    try:
        assert build_treatment("noisy-test", {"sigma": 0.2}, total_steps=5).params["sigma"] == 0.2
        with pytest.raises(ValueError, match="has no parameter"):  # checked by building it
            check_treatment("noisy-test", {"tau": 0.2}, total_steps=5)
    finally:
        from agents import treatments

        treatments._REGISTRY.pop("noisy-test")


def test_dense_sparsity_counts_exact_zeros_over_all_conv_and_linear_weights():
    agent, tr = make_agent("moe", "dense")
    assert tr.sparsity(agent) == {"actor": 0.0, "critic": 0.0}
    with torch.no_grad():
        agent.actor.task_encoder.weight.zero_()  # counted although never pruned
        agent.actor.heads[0].hidden.bias.zero_()  # biases are not counted
    total = sum(m.weight.numel() for m in agent.actor.weight_layers().values())
    assert tr.sparsity(agent)["actor"] == pytest.approx(agent.actor.task_encoder.weight.numel() / total)
    assert tr.state_dict() == {"counters": {n: 0.0 for n in COUNTER_NAMES}}


def test_set_layer_choices_each_name_module_types():
    from agents.sparsity.set import LAYER_KINDS
    from agents.treatment_parameters import LAYER_CHOICES

    assert sorted(LAYER_KINDS) == sorted(LAYER_CHOICES)
    assert build_treatment("set", {"layers": "all"}, total_steps=10).layer_kinds == (torch.nn.Conv2d, torch.nn.Linear)
