"""`mtrl` starts light: building the parser (what `--help` and argument errors need) imports
neither torch nor the plotting and statistics stack; they load when a command needs them."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
HEAVY = ("torch", "matplotlib", "rliable", "pandas", "ray")


def test_building_the_cli_parser_imports_no_heavy_library():
    code = (
        "import sys\n"
        "from analysis.cli import register\n"
        "from orchestrator.cli import COMMANDS, build_parser\n"
        "build_parser((*COMMANDS, register))\n"  # the whole mtrl command's parser, analyze included
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_analysis_names_resolve_lazily_to_their_functions():
    code = (
        "import sys, analysis\n"
        "assert 'matplotlib' not in sys.modules\n"
        "import analysis.pipeline\n"  # loads the `coverage` submodule: the name must stay the function
        "from analysis import iqm, coverage\n"
        "from analysis.aggregate import iqm as direct\n"
        "assert iqm is direct and callable(coverage) and not isinstance(coverage, type(sys))\n"
        "assert sorted(analysis.__all__) == sorted(n for n in dir(analysis) if n in analysis.__all__)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_checking_a_sweep_and_its_status_import_no_torch(tmp_path):
    # The driver, `--dry-run` and `mtrl status` check every trial's treatment parameters with
    # the torch-free parameter models (agents.treatment_parameters).
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nbenchmarks: [MT3]\narchs: [mtppo]\ntreatments: [{redo: {tau: -1}}]\nseeds: 1\n")
    code = (
        "import sys\n"
        "from orchestrator.cli import main\n"
        "from orchestrator.spec import load_spec\n"
        "from orchestrator.sweep_folder import SweepFolder, prepare\n"
        f"assert main(['run', 'sweeps/paper.yaml', '--dry-run', '--storage', {str(tmp_path)!r}]) == 0\n"
        f"assert main(['run', 'sweeps/paper-tmlr.yaml', '--dry-run', '--storage', {str(tmp_path)!r}]) == 0\n"
        f"assert main(['run', {str(bad)!r}, '--dry-run']) == 2\n"
        "spec = load_spec('sweeps/smoke.yaml')\n"
        f"folder = SweepFolder.for_spec(spec, {str(tmp_path)!r})\n"
        "prepare(folder, spec)\n"
        "assert main(['status', folder.root]) == 0\n"
        "print('imported:', 'torch' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "2,100 trials" in run.stdout
    assert "treatment 'redo': tau: Input should be greater than 0 (got -1)" in run.stderr
    assert run.stdout.strip().endswith("imported: False")
