"""`mtrl run` treats SIGTERM like Ctrl-C while Tune runs (end to end: tests/integration/test_slurm.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib

import pytest

from orchestrator.interrupts import sigterm_as_ctrl_c
from testkit.sweep import REPO


def test_first_sigterm_interrupts_like_ctrl_c_later_ones_are_ignored_and_the_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    # Python's own SIGINT handler (what Ctrl-C raises outside Tune): an in-process Tune run of
    # another test leaves its handler installed.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with pytest.raises(KeyboardInterrupt):
        with sigterm_as_ctrl_c():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)  # the handler runs here at the latest
            pytest.fail("SIGTERM did not interrupt")
    with sigterm_as_ctrl_c():
        seen = []
        signal.signal(signal.SIGINT, lambda *_: seen.append("SIGINT"))
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        assert seen == ["SIGINT"]
    assert signal.getsignal(signal.SIGTERM) == before


# The `mtrl` console script's entry, run in a child that sends itself SIGTERM the moment the
# commands begin to load (the slow part of start-up): deterministic, no sleeps.
SIGTERM_WHILE_LOADING = """
import os, signal, sys

class SigtermOnLoad:
    def find_spec(self, name, path=None, target=None):
        if name == "orchestrator.cli":
            os.kill(os.getpid(), signal.SIGTERM)
        return None

sys.meta_path.insert(0, SigtermOnLoad())
sys.argv = ["mtrl", "run", "never-read.yaml"]
from analysis.console import mtrl
mtrl()
"""


def test_a_sigterm_while_the_commands_load_ends_in_the_rerun_line():
    done = subprocess.run([sys.executable, "-c", SIGTERM_WHILE_LOADING], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert (done.returncode, done.stderr.splitlines()) == (130, ["mtrl run: interrupted; rerun the same command to "
                                                                  "resume"])


def test_the_console_script_passes_on_the_exit_code(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import sys; from analysis.console import mtrl; sys.exit(mtrl())",
                           "status", str(tmp_path / "nothing-here")], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr


def test_the_console_script_is_the_entry_that_handles_sigterm_first():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        assert tomllib.load(f)["project"]["scripts"]["mtrl"] == "analysis.console:mtrl"
