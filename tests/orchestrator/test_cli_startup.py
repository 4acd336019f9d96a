"""`mtrl` starts light: building the parser (what `--help` and argument errors need) imports
neither torch nor the plotting and statistics stack; they load when a command needs them."""

import subprocess
import sys

HEAVY = ("torch", "matplotlib", "rliable", "pandas", "ray")


def test_building_the_cli_parser_imports_no_heavy_library():
    code = (
        "import sys\n"
        "from orchestrator.cli import build_parser\n"
        "build_parser()\n"
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
