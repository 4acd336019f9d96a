"""Sweep files: validation (one clear line per mistake), --set overrides, expansion."""

from __future__ import annotations

import os

import pytest

from mtrl_plasticity.errors import SpecError
from orchestrator.spec import (
    apply_assignments,
    cells,
    expand,
    labels_of,
    load_spec,
    parse_assignments,
    validate_spec,
)
from orchestrator.sweep_history import config_changes
from testkit.sweep import SWEEPS, tiny_spec_data

PAPER_TREATMENTS = ("dense", "gmp80", "gmp95", "gmp99", "redo", "reset", "wd")


def spec(**changes):
    return validate_spec(tiny_spec_data(**changes), "test.yaml")


def error_of(**changes) -> str:
    with pytest.raises(SpecError) as info:
        expand(spec(**changes))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_smoke_file_is_a_small_real_grid():
    smoke = load_spec(os.path.join(SWEEPS, "smoke.yaml"))
    trials = expand(smoke)
    assert [t.run_key for t in trials] == ["MT3-mtppo-dense-s00", "MT3-mtppo-dense-s01",
                                           "MT3-moe-dense-s00", "MT3-moe-dense-s01"]
    assert {t.total_steps for t in trials} == {2000}
    assert all(t.sweep == "smoke" for t in trials)


def test_paper_file_is_the_draft_grid_with_baselines():
    paper = load_spec(os.path.join(SWEEPS, "paper.yaml"))
    trials = expand(paper)
    assert len(trials) == 2100
    multi = [t for t in trials if t.arch != "single"]
    assert len(multi) == 3 * 3 * 7 * 30
    baselines = [t for t in trials if t.arch == "single"]
    assert len({t.benchmark for t in baselines}) == 7 and {t.treatment for t in baselines} == {"dense"}
    assert {(t.total_steps, t.eval_interval_steps, t.eval_episodes) for t in trials} == {(200_000, 2000, 25)}
    assert len({t.run_key for t in trials}) == 2100
    # MOORE's reference: fresh episodes every epoch; the baselines' critic as its single-task script.
    assert {t.reset_episodes_each_epoch for t in trials} == {True}
    assert {(t.critic_epochs, t.critic_batch_size) for t in baselines} == {(10, 256)}
    assert {(t.critic_epochs, t.critic_batch_size) for t in multi} == {(1, 0)}


def test_tmlr_file_sets_the_published_numbers():
    trials = expand(load_spec(os.path.join(SWEEPS, "paper-tmlr.yaml")))
    assert len(trials) == 3 * 3 * 6 * 30 + 7 * 30
    by_treatment = {t.treatment: t for t in trials}
    assert by_treatment["redo"].treatment_params == {"tau": 0.001}
    assert by_treatment["reset"].treatment_params == {"every": 100_000, "max_resets": 2}
    assert by_treatment["wd"].treatment_params == {"coef": 1e-6}
    assert {t.total_steps for t in trials} == {400_000} and {t.eval_interval_steps for t in trials} == {10_000}
    assert {t.reset_episodes_each_epoch for t in trials} == {True}
    assert {(t.arch == "single", t.critic_epochs, t.critic_batch_size) for t in trials} == {(True, 10, 256),
                                                                                             (False, 1, 0)}
    # The file leaves the published parameters to `protocol: tmlr`; spelt out, the trials are the same.
    explicit = load_spec(os.path.join(SWEEPS, "paper-tmlr.yaml"), {"treatments": [
        "dense", "gmp95", "set95", {"redo": {"tau": 0.001}}, {"reset": {"every": 100_000, "max_resets": 2}},
        {"wd": {"coef": 1e-6}}]})
    assert [t.to_json() for t in expand(explicit)] == [t.to_json() for t in trials]


def test_protocol_defaults_yield_to_the_sweep_and_stay_out_of_other_protocols():
    given = expand(spec(protocol="tmlr", treatments=[{"redo": {"tau": 0.05}}, "reset"], seeds=1))
    assert [t.treatment_params for t in given] == [{"tau": 0.05}, {"every": 100_000, "max_resets": 2}]
    draft = expand(spec(protocol="draft", treatments=["redo", "wd"], seeds=1))
    assert [t.treatment_params for t in draft] == [{}, {}]
    with pytest.raises(SpecError, match="give either steps or every"):
        expand(spec(protocol="tmlr", treatments=[{"reset": {"steps": [1000]}}], seeds=1))
    assert expand(spec(protocol="tmlr", treatments=[{"reset": {"steps": [1000], "every": None}}], seeds=1))[0] \
        .treatment_params == {"every": None, "max_resets": 2, "steps": [1000]}


def test_seeds_count_or_list():
    assert [t.seed for t in expand(spec(seeds=3))] == [0, 1, 2]
    assert [t.seed for t in expand(spec(seeds=[4, 9]))] == [4, 9]


def test_single_task_baselines_cover_every_task_once():
    s = spec(benchmarks=["MT3", "MT5"], archs=["mtppo"], single_task_baselines=True, seeds=1,
             defaults={"total_steps": 400, "steps_per_epoch": 100, "eval_interval_steps": 200})
    baselines = [c for c in cells(s) if c.arch == "single"]
    assert [c.benchmark for c in baselines] == ["LavaGapS7-v0", "RedBlueDoors-6x6-v0", "MemoryS11-v0",
                                                "DoorKey-6x6-v0", "DistShift1-v0"]
    assert len(expand(s)) == 2 + 5


def test_overrides_apply_to_matching_cells_only():
    s = spec(benchmarks=["MT3"], archs=["mtppo", "moe"], seeds=1,
             overrides=[{"match": {"arch": "moe"}, "set": {"n_experts": 3, "gamma": 0.9}}])
    by_arch = {t.arch: t for t in expand(s)}
    assert (by_arch["moe"].n_experts, by_arch["moe"].gamma) == (3, 0.9)
    assert (by_arch["mtppo"].n_experts, by_arch["mtppo"].gamma) == (0, 0.99)


def test_checkpoint_interval_comes_from_the_top_level():
    assert {t.checkpoint_interval_steps for t in expand(spec(checkpoint_interval_steps=400))} == {400}


def test_set_assignments_follow_dotted_paths():
    data = tiny_spec_data(overrides=[{"match": {"arch": "single"}, "set": {"gamma": 0.9}}])
    out = apply_assignments(data, {"defaults.total_steps": 800, "seeds": 3, "resources.gpu": 0.25,
                                   "overrides.0.set.gamma": 0.95, "new.nested.key": 1})
    assert out["defaults"]["total_steps"] == 800 and out["seeds"] == 3 and out["resources"]["gpu"] == 0.25
    assert out["overrides"][0]["set"]["gamma"] == 0.95 and out["new"] == {"nested": {"key": 1}}
    assert data["defaults"]["total_steps"] == 400  # the input is not modified
    with pytest.raises(SpecError, match="not an index"):
        apply_assignments(data, {"overrides.5.set.gamma": 1})


@pytest.mark.parametrize("changes, expected", [
    ({"benchmarkz": ["MT3"]}, "unknown key 'benchmarkz' (did you mean 'benchmarks'?)"),
    ({"resources": {"cpus": 1}}, "unknown key 'resources.cpus' (did you mean 'cpu'?)"),
    ({"benchmarks": ["MT4"]}, "unknown benchmark 'MT4'"),
    ({"archs": ["mlp"]}, "unknown architecture 'mlp'"),
    ({"treatments": ["gmp90"]}, "unknown treatment 'gmp90'"),
    ({"treatments": ["dense", "dense"]}, "entries 0 and 1 are the same treatment: 'dense' without parameters"),
    ({"treatments": [{"dense": {}, "wd": {}}]}, "a treatment entry is a name, {name: {param: value}} or"),
    ({"seeds": 0}, "seeds: must be a count >= 1"),
    ({"seeds": -3}, "seeds: must be a count >= 1"),
    ({"seeds": []}, "seeds: must be a count >= 1"),
    ({"seeds": [1, -1]}, "every seed must be >= 0"),
    ({"seeds": [1, 1]}, "seed 1 appears twice"),
    ({"defaults": {"total_step": 10}}, "unknown trial setting 'total_step' (did you mean 'total_steps'?)"),
    ({"defaults": {"seed": 1}}, "'seed' is set by the grid"),
    ({"defaults": {"checkpoint_interval_steps": 100}}, "top level"),
    ({"defaults": {"device": "cuda"}}, "resources.gpu is 0"),
    ({"resources": {"cpu": 1, "gpu": 1.5}}, "fraction of one GPU or whole GPUs"),
    ({"resources": {"cpu": 0}}, "resources.cpu"),
    ({"max_failures": -1}, "max_failures"),
    ({"name": "a/b"}, "folder-safe"),
    ({"overrides": [{"match": {"arch": "moe"}, "set": {}}]}, "'moe' is not in this sweep's grid"),
    ({"overrides": [{"match": {"arch": "single"}, "set": {"gama": 1}}]}, "did you mean 'gamma'?"),
    ({"benchmarks": ["MT3"], "archs": ["mtppo"], "single_task_baselines": True,
      "overrides": [{"match": {"benchmark": "LavaGapS7-v0", "arch": "mtppo"}, "set": {}}]}, "selects no cell"),
])
def test_spec_mistakes_are_one_line_each(changes, expected):
    with pytest.raises(SpecError) as info:
        validate_spec(tiny_spec_data(**changes), "s.yaml")
    message = str(info.value)
    assert message.startswith("s.yaml: ") and "\n" not in message
    assert expected in message


def test_trial_level_mistakes_name_the_cell():
    assert "cell Empty-5x5-v0 / single / dense: " in error_of(defaults={"total_steps": 450, "steps_per_epoch": 100})
    assert "has no parameter" in error_of(treatments=[{"dense": {"tau": 1}}])
    assert "device 'cuda' but resources.gpu is 0" in error_of(
        overrides=[{"match": {"arch": "single"}, "set": {"device": "cuda"}}])


def test_yaml_problems(write_sweep):
    with pytest.raises(SpecError, match=r"malformed YAML \(line 3, column \d+\)"):
        load_spec(write_sweep("name: x\nbenchmarks: [MT3\narchs: [mtppo]\n"))
    with pytest.raises(SpecError, match="a sweep file is a YAML mapping"):
        load_spec(write_sweep("- just\n- a list\n"))
    with pytest.raises(SpecError, match="no such sweep file"):
        load_spec("/nonexistent/sweep.yaml")


def test_config_changes_name_the_changed_fields():
    [a, _] = expand(spec())
    [b, _] = expand(spec(defaults={**tiny_spec_data()["defaults"], "total_steps": 800, "gamma": 0.9},
                         overrides=[{"match": {"arch": "single"}, "set": {"treatment_params": {}}}]))
    assert config_changes(a, b) == ["gamma: 0.99 -> 0.9", "total_steps: 400 -> 800"]
    assert config_changes(a, a) == []


def test_scientific_notation_is_a_number(write_sweep):
    """PyYAML reads `1e-6` as a string (YAML 1.1); sweep files read it as YAML 1.2 does."""
    override = "overrides:\n  - match: {arch: single}\n    set: {actor_lr: 3e-4}\n"
    text = open(write_sweep(tiny_spec_data())).read() + override
    s = load_spec(write_sweep(text, "sci.yaml"), parse_assignments(["defaults.critic_lr=2e-4"]))
    trial = expand(s)[0]
    assert (trial.actor_lr, trial.critic_lr) == (3e-4, 2e-4)


def test_union_fields_say_what_they_accept():
    for changes, expected in (({"treatments": [123]}, "treatments: expected a list of treatment names"),
                              ({"seeds": ["a"]}, "seeds: expected a count")):
        with pytest.raises(SpecError, match=expected):
            validate_spec(tiny_spec_data(**changes), "s.yaml")


# --- variants of a treatment, grid axes (issue 27) ------------------------------------------------
def test_variants_are_labelled_by_the_user_or_by_the_parameters_that_differ():
    s = spec(treatments=["redo", {"redo": {"tau": 0.001}}, {"redo": {"tau": 0.1, "every": 100}},
                         {"redo": {"tau": 0.5}, "label": "redo-high"}, {"gmp": {"final_sparsity": 0.9}}])
    assert [c.label for c in s.treatment_choices] == [
        "redo", "redo.tau-0.001", "redo.every-100.tau-0.1", "redo-high", "gmp.final_sparsity-0.9"]
    # the resolved spec (sweep.yaml) writes every label out; a bare name stays a name
    assert s.resolved()["treatments"][:2] == ["redo", {"redo": {"tau": 0.001}, "label": "redo.tau-0.001"}]
    assert validate_spec(s.resolved(), "sweep.yaml", stored=True).treatment_choices == s.treatment_choices
    keys = [t.run_key for t in expand(s)]
    assert keys[:3] == ["Empty-5x5-v0-single-redo-s00", "Empty-5x5-v0-single-redo-s01",
                        "Empty-5x5-v0-single-redo.tau-0.001-s00"]
    # a parameter equal to the default is no difference: {redo: {tau: 0.01}} is redo
    assert spec(treatments=[{"redo": {"tau": 0.01}}]).treatment_choices[0].label == "redo"
    # what a protocol fills in is a default too: tau 0.001 is the published protocol's
    assert spec(protocol="tmlr", treatments=[{"redo": {"tau": 0.001}}]).treatment_choices[0].label == "redo"


def test_a_value_without_a_folder_safe_spelling_gives_a_hashed_label():
    [choice] = spec(treatments=[{"reset": {"steps": [100, 200]}}]).treatment_choices
    assert choice.label.startswith("reset.") and len(choice.label) == len("reset.") + 8
    assert choice.label == spec(treatments=[{"reset": {"steps": [100, 200]}}]).treatment_choices[0].label


@pytest.mark.parametrize("treatments, expected", [
    (["redo", {"redo": {"tau": 0.01}}], "entries 0 and 1 are the same treatment: 'redo' with"),
    (["gmp95", {"gmp": {"final_sparsity": 0.95}}], "entries 0 and 1 are the same treatment: 'gmp' with"),
    ([{"redo": {"tau": 0.1}, "label": "x"}, {"redo": {"tau": 0.2}, "label": "x"}], "both labelled 'x'"),
    ([{"redo": {"tau": 0.1}, "label": "gmp95"}], "'gmp95' of 'redo' is the name of another registered treatment"),
    ([{"redo": {"tau": 0.1}, "label": "a__b"}], "no '__'"),
    ([{"redo": {"tau": 0.1}, "label": 3}], "the label of 'redo' is a name, got 3"),
    ([{"redo": {"taux": 0.1}}], "treatment 'redo' has no parameter(s) ['taux']"),
])
def test_treatment_entry_mistakes(treatments, expected):
    with pytest.raises(SpecError) as info:
        spec(treatments=treatments)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_a_folder_without_labels_keeps_its_names_and_a_sweep_file_adopts_them():
    """A sweep.yaml of a tool before labels: its one entry per treatment is named by the treatment."""
    legacy = tiny_spec_data(treatments=[{"redo": {"tau": 0.001}}])
    stored = validate_spec(legacy, "sweep.yaml", stored=True)
    assert stored.treatment_choices[0].label == "redo"
    assert expand(stored)[0].run_key == "Empty-5x5-v0-single-redo-s00"
    given = validate_spec(legacy, "s.yaml", known_labels=labels_of(stored))
    assert [t.run_key for t in expand(given)] == [t.run_key for t in expand(stored)]
    assert validate_spec(legacy, "s.yaml").treatment_choices[0].label == "redo.tau-0.001"  # a new folder


def test_axes_are_grid_axes_over_trial_fields():
    s = spec(axes={"n_experts": [2, 4], "actor_lr": [1e-3, 3e-4]}, archs=["single"])
    assert s.axes == {"actor_lr": [0.001, 0.0003], "n_experts": [2, 4]}  # sorted fields, typed values
    trials = expand(s)
    assert len(trials) == 2 * 2 * 2  # seeds x actor_lr x n_experts
    assert trials[0].run_key == "Empty-5x5-v0-single-dense-actor_lr-0.001.n_experts-2-s00"
    assert [(t.actor_lr, t.n_experts) for t in trials[::2]] == [(0.001, 2), (0.001, 4), (0.0003, 2), (0.0003, 4)]
    assert [str(c) for c in cells(s)][:2] == ["Empty-5x5-v0/single/dense/actor_lr-0.001.n_experts-2",
                                              "Empty-5x5-v0/single/dense/actor_lr-0.001.n_experts-4"]
    assert cells(s)[0].label() == "Empty-5x5-v0 / single / dense / actor_lr=0.001, n_experts=2"
    assert spec(axes={"actor_lr": [1]}).axes == {"actor_lr": [1.0]}  # one spelling per value


@pytest.mark.parametrize("changes, expected", [
    ({"axes": {"seed": [1]}}, "'seed' cannot be a grid axis"),
    ({"axes": {"treatment_params": [{}]}}, "'treatment_params' cannot be a grid axis"),
    ({"axes": {"actor_lrr": [0.1]}}, "'actor_lrr' is not a trial setting (did you mean 'actor_lr'?)"),
    ({"axes": {"actor_lr": []}}, "actor_lr: give a non-empty list of values"),
    ({"axes": {"actor_lr": [0.1, 0.1]}}, "actor_lr value 0.1 appears twice"),
    ({"axes": {"actor_lr": [True]}}, "actor_lr: expected a number, got true"),
    ({"axes": {"n_experts": [2.5]}}, "n_experts: 2.5 is not a valid value"),
    ({"axes": {"gamma": [0.9]}, "defaults": {"gamma": 0.9}}, "defaults.gamma is also a grid axis"),
    ({"axes": {"gamma": [0.9]}, "overrides": [{"match": {"arch": "single"}, "set": {"gamma": 0.8}}]},
     "overrides.0.set.gamma is a grid axis"),
    ({"axes": {"gamma": [0.5, 2.0]}}, "cell Empty-5x5-v0 / single / dense / gamma=2.0: gamma"),
])
def test_axis_mistakes(changes, expected):
    if "defaults" in changes:
        changes["defaults"] = {**tiny_spec_data()["defaults"], **changes["defaults"]}
    with pytest.raises(SpecError) as info:
        expand(spec(**changes))
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_an_override_matches_a_variant_by_label_or_all_of_a_treatment_by_name():
    treatments = ["redo", {"redo": {"tau": 0.1}}]
    by_label = expand(spec(treatments=treatments,
                           overrides=[{"match": {"treatment": "redo.tau-0.1"}, "set": {"gamma": 0.9}}]))
    assert [t.gamma for t in by_label] == [0.99, 0.99, 0.9, 0.9]
    by_name = expand(spec(treatments=treatments, overrides=[{"match": {"treatment": "redo"}, "set": {"gamma": 0.9}}]))
    assert [t.gamma for t in by_name] == [0.9] * 4
