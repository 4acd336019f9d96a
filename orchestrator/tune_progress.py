"""The live progress table of ``mtrl run``: a Ray Tune callback on the driver.

On a terminal it redraws the per-cell table (trials done / running / pending / failed,
retries) about once a second; otherwise (a log file, ``ray job submit``) it prints one
summary line when the counts change, at most every ``log_interval_s`` seconds. The final
table is printed once at the end either way. Tune pickles its callbacks into the
experiment state: only the settings travel, the console is rebuilt in ``setup``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.live import Live

from orchestrator.sweep_progress import CellCounts, make_console, render_table, summary_line, tally


class ProgressTable(Callback):
    """Tune callback drawing the per-cell table; picklable (Tune stores its callbacks)."""

    def __init__(self, sweep_name: str = "sweep", cell_order: Sequence[str] = (), refresh_s: float = 1.0,
                 log_interval_s: float = 30.0, done_before: dict[str, int] | None = None) -> None:
        self.sweep_name, self.refresh_s, self.log_interval_s = sweep_name, refresh_s, log_interval_s
        self.cell_order = list(cell_order)
        self.done_before = dict(done_before or {})
        self._reset()

    def _reset(self) -> None:
        self._console: Console | None = None
        self._live: Live | None = None
        self._last_draw = 0.0
        self._last_line = ""
        self._started = time.monotonic()
        self.final: dict[str, CellCounts] = {}

    def __getstate__(self) -> dict:
        return {"sweep_name": self.sweep_name, "cell_order": self.cell_order, "refresh_s": self.refresh_s,
                "log_interval_s": self.log_interval_s, "done_before": self.done_before}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    def _title(self) -> str:
        return f"sweep {self.sweep_name}  ({time.monotonic() - self._started:,.0f} s)"

    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        self._console = make_console()
        self._started = time.monotonic()
        if self._console.is_terminal:
            self._live = Live(console=self._console, auto_refresh=False, transient=True)
            self._live.start()

    def on_step_end(self, iteration: int, trials, **info) -> None:
        now = time.monotonic()
        if now - self._last_draw < self.refresh_s or not trials:
            return
        self._last_draw = now
        cells = tally(trials, self.cell_order, self.done_before)
        if self._live is not None:
            self._live.update(render_table(cells, self._title()), refresh=True)
            return
        line = summary_line(cells)
        if line != self._last_line and (not self._last_line or now - self._last_print >= self.log_interval_s):
            self._last_line, self._last_print = line, now
            print(f"[{time.strftime('%H:%M:%S')}] {self.sweep_name}: {line}", flush=True)

    def on_experiment_end(self, trials, **info) -> None:
        self.final = tally(trials, self.cell_order, self.done_before)
        if self._live is not None:
            self._live.stop()
            self._live = None
        console = self._console or make_console()
        console.print(render_table(self.final, self._title()))

    _last_print = 0.0
