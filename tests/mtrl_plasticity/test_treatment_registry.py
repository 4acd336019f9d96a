"""The registry: names a sweep file can use, parameter overrides and their validation."""

import pytest
import torch
from pydantic import Field

from agents.treatment_parameters import GmpParameters
from agents.treatments import Treatment, build_treatment
from mtrl_plasticity.errors import RegistryError
from mtrl_plasticity.treatments import (
    TREATMENTS,
    TreatmentParameters,
    Variant,
    parse_parameters,
    register_treatment,
    treatment_spec,
)
from orchestrator.schema import CORE_COUNTERS
from testkit.agents import make_agent, single_thread  # noqa: F401

NAMES = ["dense", "gmp", "gmp80", "gmp95", "gmp99", "set", "set95", "redo", "reset", "wd"]
DECLARED = {"dense": (), "gmp": ("prune_events",), "set": ("set_rewires",), "redo": ("neurons_recycled",),
            "reset": ("resets_done",), "wd": ()}


def test_every_paper_treatment_is_registered_with_draft_defaults():
    assert TREATMENTS.names()[:len(NAMES)] == NAMES
    for name in NAMES:
        tr = build_treatment(name, total_steps=200_000)
        assert isinstance(tr, Treatment) and tr.name == name
        assert list(tr.counters()) == list(CORE_COUNTERS)  # the paper's treatments add no column
        assert treatment_spec(name).counters == DECLARED[treatment_spec(name).base]
    assert build_treatment("gmp80", total_steps=10).schedule.final_sparsity == 0.8
    assert build_treatment("gmp95", total_steps=10).schedule.final_sparsity == 0.95
    assert build_treatment("gmp99", total_steps=10).schedule.final_sparsity == 0.99
    assert build_treatment("gmp", total_steps=10).schedule.final_sparsity == 0.95
    assert build_treatment("set95", total_steps=10).target == 0.95
    redo = build_treatment("redo", total_steps=10)
    assert (redo.tau, redo.every, redo.batch_size, redo.networks) == (0.01, 5000, 1024, ("actor", "critic"))
    assert build_treatment("reset", total_steps=10).steps == {60_000, 120_000}
    wd = build_treatment("wd", total_steps=10)
    assert (wd.coef, wd.decoupled) == (1e-3, False)
    s = build_treatment("gmp95", total_steps=200_000).schedule
    assert (s.start_step, s.end_step, s.frequency) == (10_000, 160_000, 500)


def test_variants_pin_their_parameter_and_carry_display_names():
    assert [(n, treatment_spec(n).base, dict(treatment_spec(n).pinned)) for n in ("gmp80", "gmp95", "set95")] == [
        ("gmp80", "gmp", {"final_sparsity": 0.8}), ("gmp95", "gmp", {"final_sparsity": 0.95}),
        ("set95", "set", {"sparsity": 0.95})]
    assert [treatment_spec(n).display_name for n in NAMES] == [
        "Dense", "GMP", "80% Sparsity", "95% Sparsity", "99% Sparsity", "SET", "SET 95%", "ReDo", "Reset",
        "Weight Decay"]


def test_published_protocol_defaults_and_overrides():
    assert treatment_spec("redo").protocol_defaults("tmlr") == {"tau": 0.001}
    assert treatment_spec("reset").protocol_defaults("tmlr") == {"every": 100_000, "max_resets": 2}
    assert treatment_spec("wd").protocol_defaults("tmlr") == {"coef": 1e-6}
    assert treatment_spec("gmp95").protocol_defaults("tmlr") == {} == treatment_spec("redo").protocol_defaults("draft")
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


BAD_PARAMETERS = [
    ("dense", {"tau": 1}, "has no parameter"),
    ("gmp", {"final_sparsity": 1.0}, "final_sparsity: Input should be less than 1"),
    ("gmp", {"scope": "row"}, "scope: Input should be 'global', 'layer' or 'erk'"),
    ("gmp", {"start_fraction": 0.5, "end_fraction": 0.4}, "end_fraction 0.4 is before start_fraction 0.5"),
    ("gmp", {"prune_task_encoder": 1}, "prune_task_encoder: Input should be a valid boolean"),
    ("gmp", {"final_sparsity": "0.9"}, "final_sparsity: Input should be a valid number"),
    ("gmp", {"frequency": True}, "frequency: Input should be a valid integer"),
    ("gmp95", {"final_sparsity": 0.8}, "fixes ['final_sparsity']; use the parametrised form 'gmp'"),
    ("set", {"sparsity": 0.9, "epsilon": 11}, "give either sparsity or epsilon"),
    ("set", {"layers": "conv"}, "layers: Input should be 'linear' or 'all'"),
    ("set", {"distribution": "er"}, "distribution"), ("set95", {"epsilon": 11}, "give either sparsity or epsilon"),
    ("set", {"zeta": 1.5}, "zeta: Input should be less than or equal to 1"),
    ("redo", {"tau": 0}, "tau: Input should be greater than 0 (got 0)"), ("redo", {"tau": -1.0}, "tau"),
    ("redo", {"every": 2.5}, "every: Input should be a valid integer"), ("redo", {"batch_size": 0}, "batch_size"),
    ("redo", {"networks": "actor"}, "networks: Input should be a valid list"),
    ("redo", {"networks": ["actor", "policy"]}, "networks.1: Input should be 'actor' or 'critic'"),
    ("reset", {"every": 100, "steps": [5]}, "give either steps or every"),
    ("reset", {"steps": [0]}, "steps.0: Input should be greater than 0"),
    ("reset", {"max_resets": -1}, "max_resets"), ("wd", {"coef": -1e-3}, "coef"),
    ("wd", {"decoupled": "no"}, "decoupled: Input should be a valid boolean"),
]


@pytest.mark.parametrize("name,params,expected", BAD_PARAMETERS)
def test_check_refuses_what_build_refuses_with_the_same_line(name, params, expected):
    # The sweep driver checks with parse_parameters (no torch); the trial builds: same verdict.
    with pytest.raises(ValueError) as built:
        build_treatment(name, params, total_steps=1000)
    with pytest.raises(ValueError) as checked:
        parse_parameters(name, params, total_steps=1000)
    assert str(checked.value) == str(built.value)
    assert "\n" not in str(built.value) and f"treatment {name!r}" in str(built.value)
    assert expected in str(built.value)


def test_unknown_name_and_bad_budget():
    with pytest.raises(ValueError, match="unknown treatment 'prune'; choose one of: dense, gmp"):
        build_treatment("prune", total_steps=10)
    with pytest.raises(ValueError, match="unknown treatment"):
        parse_parameters("prune", total_steps=10)
    with pytest.raises(ValueError, match="total_steps"):
        build_treatment("gmp95", total_steps=0)


def test_trial_config_validates_treatments_up_front():
    from pydantic import ValidationError

    from orchestrator.config import TrialConfig

    TrialConfig(benchmark="MT3", arch="moe", treatment="redo", treatment_params={"tau": 0.001})
    with pytest.raises(ValidationError, match="tau"):
        TrialConfig(benchmark="MT3", arch="moe", treatment="redo", treatment_params={"tau": -1})


class NoisyParameters(TreatmentParameters):
    sigma: float = Field(0.1, gt=0)
    """Noise scale."""


class Noisy(Treatment):
    def on_step(self, step, agent, buffer) -> None:
        self.count("noise_events")


@pytest.fixture
def cleanup():
    names: list[str] = []
    yield names
    for name in names:
        TREATMENTS.remove(name)


def test_register_treatment_adds_names_counters_and_variants(cleanup):
    cleanup += ["noisy-test", "noisy-test-big"]
    register_treatment("noisy-test", NoisyParameters, implementation=Noisy, counters=["noise_events"],
                       display_name="Noisy", variants={"noisy-test-big": Variant({"sigma": 1.0}, "Noisy 1.0")})
    built = build_treatment("noisy-test", {"sigma": 0.2}, total_steps=5)
    assert built.params.sigma == 0.2 and built.params.model_fields_set == {"sigma"}
    assert build_treatment("noisy-test-big", total_steps=5).params.sigma == 1.0
    with pytest.raises(ValueError, match="has no parameter"):
        parse_parameters("noisy-test", {"tau": 0.2}, total_steps=5)
    built.on_step(1, None, None)
    assert built.counters() == {**{c: 0.0 for c in CORE_COUNTERS}, "noise_events": 1.0}
    assert treatment_spec("noisy-test").extra_counters() == ("noise_events",)
    assert treatment_spec("noisy-test-big").display_name == "Noisy 1.0"
    # The same module registering the name again replaces its own entry (a re-import).
    register_treatment("noisy-test", NoisyParameters, implementation=Noisy, display_name="Noisy again")
    assert treatment_spec("noisy-test").display_name == "Noisy again"


def test_an_undeclared_counter_is_a_bug_of_the_treatment():
    with pytest.raises(KeyError, match="did not declare"):
        Noisy(NoisyParameters(), name="noisy", total_steps=5).on_step(1, None, None)


def test_registrations_that_cannot_stand_are_refused_in_one_line(cleanup):
    class BadDefault(TreatmentParameters):
        sparsity: float = Field(1.5, ge=0, lt=1)
        """Out of its own range."""

    cases = [
        (lambda: register_treatment("bad-default", BadDefault, implementation=Noisy),
         "treatment 'bad-default': invalid parameter defaults: sparsity: Input should be less than 1 (got 1.5)"),
        (lambda: register_treatment("bad-variant", GmpParameters, implementation=Noisy,
                                    variants={"bad-variant-2": Variant({"final_sparsity": 2.0})}),
         "treatment 'bad-variant-2': invalid parameter defaults: final_sparsity"),
        (lambda: register_treatment("bad name", NoisyParameters, implementation=Noisy), "is not folder-safe"),
        (lambda: register_treatment("bad-counter", NoisyParameters, implementation=Noisy, counters=["Bad Counter"]),
         "is not a lower_snake_case name"),
        (lambda: register_treatment("bad-impl", NoisyParameters, implementation=object),
         "must be a Treatment subclass"),
        (lambda: register_treatment("bad-params", dict, implementation=Noisy), "must be a TreatmentParameters"),
    ]
    for register, message in cases:
        with pytest.raises(RegistryError) as info:
            register()
        assert message in str(info.value) and "\n" not in str(info.value)
    assert not {"bad-default", "bad-variant", "bad-variant-2", "bad name", "bad-counter"} & set(TREATMENTS.names())


def test_a_name_registered_by_another_module_is_a_clash():
    namespace = {"__name__": "my_lab.treatments"}
    code = ("from mtrl_plasticity import register_treatment, NoParameters\n"
            "register_treatment('redo', NoParameters, implementation='agents.treatments:Treatment')\n")
    with pytest.raises(RegistryError) as info:
        exec(compile(code, "my_lab/treatments.py", "exec"), namespace)
    assert str(info.value) == ("treatment 'redo' from my_lab.treatments clashes with the treatment of that name "
                               "registered by agents.treatment_parameters; choose another name")
    assert treatment_spec("redo").parameters.__name__ == "ReDoParameters"


def test_dense_sparsity_counts_exact_zeros_over_all_conv_and_linear_weights():
    agent, tr = make_agent("moe", "dense")
    assert tr.sparsity(agent) == {"actor": 0.0, "critic": 0.0}
    with torch.no_grad():
        agent.actor.task_encoder.weight.zero_()  # counted although never pruned
        agent.actor.heads[0].hidden.bias.zero_()  # biases are not counted
    total = sum(m.weight.numel() for m in agent.actor.weight_layers().values())
    assert tr.sparsity(agent)["actor"] == pytest.approx(agent.actor.task_encoder.weight.numel() / total)
    assert tr.state_dict() == {"counters": {n: 0.0 for n in CORE_COUNTERS}}


def test_set_layer_choices_each_name_module_types():
    from agents.sparsity.set import LAYER_KINDS
    from agents.treatment_parameters import LAYER_CHOICES

    assert sorted(LAYER_KINDS) == sorted(LAYER_CHOICES)
    assert build_treatment("set", {"layers": "all"}, total_steps=10).layer_kinds == (torch.nn.Conv2d, torch.nn.Linear)
