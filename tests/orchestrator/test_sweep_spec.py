"""Sweep files: validation (one clear line per mistake), --set overrides, expansion."""

from __future__ import annotations

import os

import pytest

from mtrl_plasticity.errors import SpecError
from orchestrator.spec import (
    apply_assignments,
    cells,
    expand,
    load_spec,
    parse_assignments,
    spec_differences,
    validate_spec,
)
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
    ({"treatments": ["dense", "dense"]}, "treatment 'dense' appears twice"),
    ({"treatments": [{"dense": {}, "wd": {}}]}, "one mapping"),
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


def test_spec_differences_name_the_changed_entries():
    a = spec().resolved()
    b = spec(seeds=3, defaults={**tiny_spec_data()["defaults"], "total_steps": 800}, storage="elsewhere").resolved()
    assert spec_differences(a, b) == ["defaults.total_steps: 400 -> 800", "seeds: 2 -> 3"]
    assert spec_differences(a, a) == []


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
