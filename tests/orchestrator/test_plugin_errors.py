"""A broken plugin stops `mtrl run` (and `--dry-run`) in one line, exit 2, before any work.

The plugins are the modules of ``tests/plugins/broken`` (each breaks one rule), copied into
the folder the command runs in, as a user would keep them beside the sweep file. Each case
runs the real command line (``orchestrator.cli.main`` in a child process, which records
whether Ray was imported: an import of Ray is the least that starting it needs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import yaml

from testkit.spec import tiny_spec_data

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BROKEN = os.path.join(REPO, "tests", "plugins", "broken")

# `main` as the console script calls it, and whether this process imported Ray by the end.
# `python -P`: the working folder is not put first on sys.path, as for the console script.
DRIVER = """
import sys
from orchestrator.cli import main
try:
    code = main(sys.argv[2:])
finally:
    with open(sys.argv[1], "w") as f:
        f.write("ray imported" if "ray" in sys.modules else "no ray")
sys.exit(code)
"""


@dataclass(frozen=True)
class Case:
    plugin: str
    expected: str
    """What the one line says after ``mtrl run: error: ``."""
    arch: str = "single"
    treatment: str = "dense"


INTERFACE = " (the interface: mtrl_plasticity.NetworkInterface, docs/extending.md)"
CASES = {
    "missing module": Case("lab_not_there", "sweep.yaml: plugin 'lab_not_there': no module named 'lab_not_there' "
                           "(install it, or run mtrl from the folder that holds it, or add that folder to PYTHONPATH)"),
    "treatment named as a built-in": Case(
        "lab_clash", "sweep.yaml: plugin 'lab_clash': treatment 'redo' from lab_clash clashes with the treatment of "
        "that name registered by agents.treatment_parameters; choose another name"),
    "default outside its constraint": Case(
        "lab_bad_defaults", "sweep.yaml: plugin 'lab_bad_defaults': treatment 'lab_overfull': invalid parameter "
        "defaults: sparsity: Input should be less than or equal to 1 (got 1.5)"),
    "network is an nn.Sequential": Case(
        "lab_bad_arch",
        f"sweep.yaml: architecture 'lab_sequential': its network has no features_from_record() method{INTERFACE}",
        arch="lab_sequential"),
    "network without neuron_layers": Case(
        "lab_bad_arch",
        f"sweep.yaml: architecture 'lab_no_neurons': its network has no neuron_layers() method{INTERFACE}",
        arch="lab_no_neurons"),
    "import raises": Case(
        "lab_raises", "sweep.yaml: plugin 'lab_raises' failed to import: RuntimeError: lab settings file not found "
        "(lab_raises.py:3)"),
}
FLAGS = {"run": [], "dry run": ["--dry-run"]}
DRY_RUN_TOO = ("missing module", "network is an nn.Sequential")
"""Cases also run with ``--dry-run``: one refused while the sweep file is read, one at the network check."""
RUNS = [(name, flag) for name in CASES for flag in FLAGS if flag == "run" or name in DRY_RUN_TOO]

# An installed package whose mtrl.plugins entry point fails: mtrl stops at startup, before parsing its command.
ENTRY_POINT_DIST = "lab_broken_ep-0.1.dist-info"
ENTRY_POINT_FILES = {
    f"{ENTRY_POINT_DIST}/METADATA": "Metadata-Version: 2.1\nName: lab-broken-ep\nVersion: 0.1\n",
    f"{ENTRY_POINT_DIST}/entry_points.txt": "[mtrl_plasticity.plugins]\nlab = lab_ep_raises\n",
    "lab_ep_raises.py": 'raise RuntimeError("lab settings file not found")\n',
}
ENTRY_POINT_LINE = ("mtrl: error: plugin 'lab' (entry point 'lab_ep_raises' of package lab-broken-ep) failed to "
                    "import: RuntimeError: lab settings file not found (lab_ep_raises.py:1)")


def run_case(folder, plugin: str | None, arch: str, treatment: str, flags: list[str],
             pythonpath: list[str] = ()) -> dict:
    """``mtrl run sweep.yaml --storage <folder>/store FLAGS`` in ``folder``, beside the broken modules."""
    os.makedirs(folder)
    for name in os.listdir(BROKEN):
        if name.endswith(".py"):
            shutil.copy(os.path.join(BROKEN, name), folder)
    data = tiny_spec_data("broken", archs=[arch], treatments=[treatment], seeds=1)
    if plugin is not None:
        data = {"name": "broken", "plugins": [plugin], **data}
    with open(os.path.join(folder, "sweep.yaml"), "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    before = sorted(os.listdir(folder))
    marker = f"{folder}.ray"
    home = f"{folder}.home"  # beside the folder, so "nothing made" is about the command's own files
    os.makedirs(home)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, *pythonpath]), "HOME": home,
           "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-P", "-c", DRIVER, marker, "run", "sweep.yaml", "--storage",
                           os.path.join(folder, "store"), *flags], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=120)
    return {"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr, "ray": open(marker).read(),
            "before": before, "after": sorted(os.listdir(folder))}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict:
    """Every case (some also with ``--dry-run``) and the broken entry point, run side by side."""
    base = tmp_path_factory.mktemp("plugin-errors")
    site = base / "site"
    for path, text in ENTRY_POINT_FILES.items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_text(text)
    jobs = {(name, flag): (str(base / f"case{i}"), CASES[name].plugin, CASES[name].arch, CASES[name].treatment,
                           FLAGS[flag]) for i, (name, flag) in enumerate(RUNS)}
    jobs[("entry point", "run")] = (str(base / "entry-point"), None, "single", "dense", [], [str(site)])
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {key: pool.submit(run_case, *args) for key, args in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


def assert_refused_before_any_work(outcome: dict, line: str) -> None:
    """Exactly ``line`` on stderr, nothing on stdout, exit 2; Ray never imported, no file made."""
    shown = json.dumps({k: outcome[k] for k in ("code", "stdout", "stderr")})[-3000:]
    assert outcome["code"] == 2, shown
    assert outcome["stderr"].splitlines() == [line], shown
    assert outcome["stdout"] == "", shown
    assert outcome["ray"] == "no ray"
    assert outcome["after"] == outcome["before"]  # no sweep folder (store/), nothing else either


@pytest.mark.parametrize("name, flag", RUNS)
def test_broken_plugin_is_one_line_before_anything_starts(outcomes, name, flag):
    assert_refused_before_any_work(outcomes[(name, flag)], f"mtrl run: error: {CASES[name].expected}")


def test_broken_installed_entry_point_stops_mtrl_at_startup(outcomes):
    assert_refused_before_any_work(outcomes[("entry point", "run")], ENTRY_POINT_LINE)

