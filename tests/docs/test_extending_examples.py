"""docs/extending.md's examples, written out as the files they name and run for real.

Every fenced block of the page whose first line is ``# <path>`` is a whole file of the example
package ``my_lab`` (or its sweep file, or its ``pyproject.toml``). The tests write them into a
temporary folder and run them as a researcher would: ``mtrl trial --plugin``, ``mtrl run`` on
local Ray (the plugins reach the workers through Ray's runtime_env), ``mtrl analyze``, and an
install through the entry points. The numbers the page quotes are checked exactly.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest

from mtrl_plasticity import benchmarks
from mtrl_plasticity.architectures import ARCHITECTURES
from mtrl_plasticity.treatments import TREATMENTS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))  # the Ray test helpers
from testkit.ray import kill_ray_processes  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "extending.md"
FILE_BLOCK = re.compile(r"^```[a-z]*\n# ([\w./-]+\.(?:py|yaml|toml))\n(.*?)^```\n", re.M | re.S)
EXPECTED_FILES = {"my_lab/__init__.py", "my_lab/random_pruning.py", "my_lab/wide_mtppo.py", "my_lab/doorkey_pair.py",
                  "my_lab/shortest_solutions.py", "sweeps/my_lab.yaml", "pyproject.toml"}

# Prunable weights (Conv2d and Linear weights) of the DoorKeyPair networks (2 task heads):
# mtppo:      conv 3*16*4 + 16*32*4 + 32*64*4 = 10,560; heads 2 * (1024*128 + 128*n_out)
# wide_mtppo: conv 3*32*4 + 32*64*4 + 64*128*4 = 41,344; heads 2 * (2048*128 + 128*n_out)
PRUNABLE = {("mtppo", "actor"): 274_368, ("mtppo", "critic"): 272_832,
            ("wide_mtppo", "actor"): 567_424, ("wide_mtppo", "critic"): 565_888}


def example_files() -> dict[str, str]:
    return {m.group(1): f"# {m.group(1)}\n{m.group(2)}" for m in FILE_BLOCK.finditer(DOC.read_text())}


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    """The example project: ``my_lab/``, ``sweeps/my_lab.yaml`` and ``pyproject.toml`` from the page."""
    root = tmp_path_factory.mktemp("my-lab")
    for path, text in example_files().items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


@pytest.fixture
def ray_tmp():
    """A private RAY_TMPDIR (short: Ray's socket paths must fit) for the local Ray of `mtrl run`;
    afterwards every process whose command line names it is stopped (a failed run may leave Ray behind)."""
    path = f"/tmp/mtrl-ext-{uuid.uuid4().hex[:8]}"
    os.makedirs(path)
    yield path
    kill_ray_processes(path)
    shutil.rmtree(path, ignore_errors=True)


def mtrl(*args: str, cwd: Path, home: Path, extra_path: str | None = None, timeout: float = 240,
         env: dict | None = None) -> subprocess.CompletedProcess:
    """``mtrl ARGS`` in ``cwd`` with this checkout's code; a fresh HOME keeps a stray ~/.ray out."""
    python_path = os.pathsep.join([str(REPO)] + ([extra_path] if extra_path else []))
    full_env = {**os.environ, "PYTHONPATH": python_path, "HOME": str(home), **(env or {})}
    full_env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "analysis.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout


@contextlib.contextmanager
def registered_from(folder: Path, *packages: str):
    """``folder`` on ``sys.path``; afterwards, forget every module of ``packages`` and what they registered."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))
        ours = lambda owner: owner.split(".")[0] in packages  # noqa: E731
        for registry in (TREATMENTS, ARCHITECTURES):
            for name in registry.names():
                if ours(registry.owner(name)):
                    registry.remove(name)
        for registry in (benchmarks.BENCHMARK_REGISTRY, benchmarks.TASK_REGISTRY):
            for name in registry.names():
                if ours(registry.owner(name)):
                    benchmarks.unregister(name)
        for name in [m for m in sys.modules if m.split(".")[0] in packages]:
            del sys.modules[name]


@contextlib.contextmanager
def imported(folder: Path, *modules: str):
    """Import ``modules`` from ``folder`` in this process; forget everything they registered afterwards."""
    with registered_from(folder, *{m.split(".")[0] for m in modules}):
        for module in modules:
            importlib.import_module(module)
        yield


def test_the_page_holds_every_example_file():
    assert set(example_files()) == EXPECTED_FILES


def test_random_pruning_with_mtrl_trial_plugin(lab, tmp_path):
    results = tmp_path / "random50"
    ok(mtrl("trial", "--plugin", "my_lab.random_pruning", "--plugin", "my_lab.doorkey_pair",
            "--benchmark", "DoorKeyPair", "--arch", "mtppo",
            "--treatment", "random", "--treatment-param", "sparsity=0.5",
            "--results", str(results), "--total-steps", "1000", "--steps-per-epoch", "500", "--eval-episodes", "1",
            "--set", "measure_plasticity=false", "--quiet", cwd=lab, home=tmp_path))
    train = pd.read_parquet(results / "metrics" / "train")
    assert train["step"].tolist() == [500, 1000]
    # Half of each network's weights, drawn at setup: 137,184 + 136,416, and not one more zero.
    assert train["interventions/weights_pruned"].tolist() == [273_600.0, 273_600.0]
    assert train["sparsity/actor"].tolist() == [0.5, 0.5] and train["sparsity/critic"].tolist() == [0.5, 0.5]
    assert (train[["interventions/prune_events", "interventions/neurons_recycled", "interventions/resets_done",
                   "interventions/set_rewires"]] == 0.0).all().all()
    # The counter sits after the core counters, before the perf/ columns.
    columns = list(train.columns)
    assert columns.index("interventions/weights_pruned") == columns.index("interventions/set_rewires") + 1
    assert columns[columns.index("interventions/weights_pruned") + 1].startswith("perf/")

    evals = pd.read_parquet(results / "metrics" / "evals").sort_values(["step", "task_index"])
    assert evals["task"].tolist() == ["DoorKey-5x5-v0", "DoorKey-6x6-v0"] * 2
    best = {"DoorKey-5x5-v0": 1 - 0.9 * 9 / 250, "DoorKey-6x6-v0": 1 - 0.9 * 11 / 360}
    expected = evals["return_mean"] / evals["task"].map(best)
    assert (evals["normalised_return_mean"] - expected).abs().max() < 1e-12
    # A failed episode runs to the env's own limit: 250 steps on the 5x5, 360 on the 6x6.
    failed = evals[evals["return_mean"] == 0.0]
    limits = failed["task"].map({"DoorKey-5x5-v0": 250.0, "DoorKey-6x6-v0": 360.0})
    assert (failed["episode_length_mean"] == limits).all()


def test_sweep_file_on_local_ray_then_analysis_shows_display_names(lab, tmp_path, ray_tmp):
    dry = ok(mtrl("run", "sweeps/my_lab.yaml", "--dry-run", cwd=lab, home=tmp_path))
    assert "sweep my-lab (custom protocol): 18 trials" in dry
    assert "\nplugins: my_lab.random_pruning, my_lab.wide_mtppo, my_lab.doorkey_pair\n" in dry

    storage = tmp_path / "runs"
    narrowed = ["--set", "archs=[wide_mtppo]", "--set", "treatments=[random90]", "--set", "seeds=1",
                "--set", "defaults.total_steps=1000", "--set", "defaults.steps_per_epoch=500",
                "--set", "defaults.eval_interval_steps=1000", "--set", "defaults.eval_episodes=1",
                "--set", "defaults.measure_plasticity=false", "--set", "checkpoint_interval_steps=1000"]
    out = ok(mtrl("run", "sweeps/my_lab.yaml", "--storage", str(storage), "--num-cpus", "1", *narrowed,
                  cwd=lab, home=tmp_path, env={"RAY_TMPDIR": ray_tmp}, timeout=300))
    assert "all 1 trials done" in out
    # The worker imported the plugins (it had them from the runtime_env): the rows are random90's.
    train = pd.read_parquet(storage / "my-lab" / "metrics" / "train")
    assert train["treatment"].astype(str).tolist() == ["random90", "random90"]
    actor, critic = PRUNABLE[("wide_mtppo", "actor")], PRUNABLE[("wide_mtppo", "critic")]
    assert (round(0.9 * actor), round(0.9 * critic)) == (510_682, 509_299)
    assert train["interventions/weights_pruned"].tolist() == [1_019_981.0] * 2
    assert train["sparsity/actor"].tolist() == [510_682 / actor] * 2
    assert train["sparsity/critic"].tolist() == [509_299 / critic] * 2
    doc = DOC.read_text()
    assert "510,682 of the actor's 567,424" in doc and "509,299 of the critic's 565,888" in doc
    assert "`weights_pruned` = 1,019,981" in doc and "510,682 / 567,424 = 0.9000007" in doc
    assert round(510_682 / actor, 7) == 0.9000007

    # The analysis imports the plugins sweep.yaml lists and labels rows with their display names.
    ok(mtrl("analyze", str(storage / "my-lab"), "--no-figures", "--reps", "50", "--band-reps", "20", "--jobs", "1",
            "--quiet", cwd=lab, home=tmp_path))
    table = (storage / "my-lab" / "analysis" / "table1.md").read_text()
    labelled = [line.split(" | ")[:2] for line in table.splitlines() if "Random" in line]
    assert labelled == [["| Wide MTPPO", "Random 90%"]]
    assert "| Wide MTPPO | Random 90% | ...`" in doc


def test_entry_points_replace_the_plugins_line(lab, tmp_path):
    site = tmp_path / "site"
    build = tmp_path / "build"
    shutil.copytree(lab, build, ignore=shutil.ignore_patterns("results"))
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                                "--no-index", "--quiet", "--target", str(site), str(build)],
                               capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sweep = (lab / "sweeps" / "my_lab.yaml").read_text()
    assert sweep.count("\nplugins: ") == 1
    (elsewhere / "my_lab.yaml").write_text(re.sub(r"\nplugins: .*\n", "\n", sweep))
    # Without the package: the names are unknown. Installed: the entry points bring them.
    refused = mtrl("run", "my_lab.yaml", "--dry-run", cwd=elsewhere, home=tmp_path)
    assert refused.returncode == 2 and "unknown benchmark 'DoorKeyPair'" in refused.stderr
    dry = ok(mtrl("run", "my_lab.yaml", "--dry-run", cwd=elsewhere, home=tmp_path, extra_path=str(site)))
    assert "sweep my-lab (custom protocol): 18 trials" in dry
    assert "\nplugins: my_lab.doorkey_pair (installed), my_lab.random_pruning (installed), " \
           "my_lab.wide_mtppo (installed)\n" in dry


def test_wide_mtppo_parameter_counts(lab):
    from agents.network_check import check_network
    from agents.networks import build_network, count_parameters

    with imported(lab, "my_lab.wide_mtppo"):
        counts = {(arch, n_tasks): count_parameters(build_network(arch, n_tasks, 7))
                  for arch in ("mtppo", "wide_mtppo") for n_tasks in (2, 3)}
        # conv 3*32*4+32 + 32*64*4+64 + 64*128*4+128 = 41,568; a head 2048*128+128 + 128*7+7 = 263,175
        assert counts[("wide_mtppo", 3)] == 41_568 + 3 * 263_175 == 831_093
        assert counts == {("mtppo", 2): 274_750, ("mtppo", 3): 406_853,
                          ("wide_mtppo", 2): 567_918, ("wide_mtppo", 3): 831_093}
        check_network("wide_mtppo", n_tasks=3)  # what `mtrl run` checks before starting
        spec = ARCHITECTURES.get("wide_mtppo")
        assert (spec.display_name, spec.update_ms(0), spec.uses_experts) == ("Wide MTPPO", 1.0, False)
    assert "wide_mtppo" not in ARCHITECTURES
    doc = DOC.read_text()
    assert "831,093 parameters against MTPPO's 406,853" in doc and "567,918\nagainst 274,750" in doc


def test_doorkey_pair_normalisation_and_the_shortest_solutions(lab):
    import gymnasium as gym

    with imported(lab, "my_lab.doorkey_pair", "my_lab.shortest_solutions"):
        from my_lab.shortest_solutions import shortest_solution

        pair = benchmarks.get_benchmark("DoorKeyPair")
        assert (pair.tasks, pair.n_experts) == (("DoorKey-5x5-v0", "DoorKey-6x6-v0"), 2)
        task = benchmarks.TASKS["DoorKey-5x5-v0"]
        assert (task.optimal_steps, task.max_steps, task.env_id) == (9, 250, "MiniGrid-DoorKey-5x5-v0")
        assert gym.make(task.env_id).unwrapped.max_steps == 250
        assert task.best_reward == pytest.approx(0.9676, abs=1e-12)
        lengths = [len(shortest_solution(task.env_id, seed)) for seed in range(10)]
        assert lengths == [11, 7, 13, 12, 7, 10, 14, 9, 9, 9]
        # Replayed, a 9-step shortest solution earns exactly the best reward: a normalised score of 1.
        env = gym.make(task.env_id)
        env.reset(seed=7)
        rewards = [env.step(action)[1] for action in shortest_solution(task.env_id, 7)]
        assert rewards[:-1] == [0.0] * 8 and rewards[-1] == pytest.approx(task.best_reward, abs=1e-12)
        assert benchmarks.normalise_return(sum(rewards), "DoorKey-5x5-v0") == pytest.approx(1.0, abs=1e-12)
        # A 7-step layout scores above 1, as the page says.
        assert benchmarks.normalise_return(1 - 0.9 * 7 / 250, "DoorKey-5x5-v0") == pytest.approx(1.0074, abs=1e-4)
    assert "DoorKeyPair" not in benchmarks.MULTI_TASK_BENCHMARKS and "DoorKey-5x5-v0" not in benchmarks.TASKS


BAD_PLUGINS = {
    "slash": "from mtrl_plasticity import register_architecture\n"
             "register_architecture('wide/mtppo', 'my_lab.wide_mtppo:build_wide_mtppo')\n",
    "clash": "from agents.sparsity.masked import MaskedTreatment\n"
             "from mtrl_plasticity import register_treatment\n"
             "@register_treatment('gmp95')\n"
             "class MyGmp(MaskedTreatment):\n"
             "    pass\n",
    "defaults": "from pydantic import Field\n"
                "from agents.treatments import Treatment\n"
                "from mtrl_plasticity import TreatmentParameters, Variant, register_treatment\n"
                "class RndParameters(TreatmentParameters):\n"
                "    sparsity: float = Field(0.9, ge=0.0, lt=1.0)\n"
                "register_treatment('rnd', RndParameters, implementation=Treatment,\n"
                "                   variants={'rnd100': Variant({'sparsity': 1.0})})\n",
    "optimal": "from mtrl_plasticity import register_task\n"
               "register_task('X', optimal_steps=300, max_steps=250)\n",
}
"""Plugins refused when imported (each is a module ``bad``)."""

BAD_PARTS = {
    "network": "from torch import nn\n"
               "from mtrl_plasticity import register_architecture\n"
               "@register_architecture('flat')\n"
               "def build_flat(*, n_tasks, n_out, n_experts, hidden):\n"
               "    return nn.Sequential(nn.Flatten(), nn.Linear(147, n_out))\n",
    "max_steps": "from mtrl_plasticity import register_task\n"
                 "register_task('DoorKey-5x5-v0', optimal_steps=9, max_steps=200)\n",
    "trial_defaults": "from mtrl_plasticity import register_architecture\n"
                      "register_architecture('wide', 'agents.networks:build_mtppo',\n"
                      "                      trial_defaults={'critic_epoch': 3})\n",
    "implementation": "from mtrl_plasticity import register_treatment\n"
                      "register_treatment('random', implementation='my_lab.nowhere:Random')\n",
}
"""Plugins that import, and whose part fails the check ``mtrl run`` makes when it configures or builds it."""


def check_part(case: str) -> None:
    """What ``mtrl run`` checks of the part, before anything starts."""
    from agents.network_check import check_network
    from orchestrator.config import TrialConfig
    from orchestrator.preflight import check_plugin_parts, check_task_env
    from orchestrator.registered import arch_trial_defaults

    if case == "network":
        check_network("flat", n_tasks=1)
    elif case == "max_steps":
        check_task_env("DoorKey-5x5-v0")
    elif case == "trial_defaults":
        arch_trial_defaults("wide", TrialConfig.model_fields)
    else:
        check_plugin_parts([TrialConfig(benchmark="MT3", arch="mtppo", treatment="random")])


def test_the_error_messages_on_the_page_are_the_real_ones(lab, tmp_path):
    from analysis.paper import treatment_name
    from mtrl_plasticity.errors import PluginError, UserError
    from mtrl_plasticity.plugins import load_plugins
    from mtrl_plasticity.treatments import parse_parameters

    produced = []
    for case, source in {**BAD_PLUGINS, **BAD_PARTS}.items():
        folder = tmp_path / case
        folder.mkdir()
        (folder / "bad.py").write_text(source)
        with registered_from(folder, "bad"), pytest.raises(UserError) as info:
            load_plugins(["bad"])
            check_part(case)
        assert isinstance(info.value, PluginError) == (case in BAD_PLUGINS)
        produced.append(str(info.value))
    with imported(lab, "my_lab.random_pruning"):
        assert (treatment_name("random"), treatment_name("random90")) == ("Random pruning", "Random 90%")
        with pytest.raises(PluginError) as info:
            load_plugins(["my_lab.nope"])
        produced.append(str(info.value))
        for name, params in (("random90", {"sparsity": 0.5}), ("random", {"density": 1}), ("random", {"sparsity": 1})):
            with pytest.raises(UserError) as info:
                parse_parameters(name, params, total_steps=1000)
            produced.append(str(info.value))
    assert "gmp95" in TREATMENTS and TREATMENTS.owner("gmp95") == "agents.treatment_parameters"
    assert not {"rnd", "rnd100", "random"} & set(TREATMENTS) and not {"flat", "wide"} & set(ARCHITECTURES)

    doc = DOC.read_text()
    section = doc[doc.index("## What a plugin is checked for"):doc.index("## Results: counters")]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| check ")]
    quoted = [message for row in rows for message in re.findall(r"`([^`]+)`", row.split(" | ")[2])]
    assert sorted(quoted) == sorted(produced)
