"""`mtrl run` treats SIGTERM like Ctrl-C while Tune runs (end to end: tests/integration/test_slurm.py)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from orchestrator.sweep_cli import sigterm_as_ctrl_c


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
