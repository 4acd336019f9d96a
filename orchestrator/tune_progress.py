"""The live progress table of ``mtrl run``: a Ray Tune callback on the driver.

On a terminal it redraws the per-cell table (trials done / running / pending / failed,
retries, lock-step steps done of total, steps per second over the last few minutes) and the
sweep's time left about once a second; otherwise (a log file, ``ray job submit``, SLURM) it
prints one summary line when the counts change, at most every ``log_interval_s`` seconds,
and at least every ``heartbeat_s`` seconds even when nothing changed. The final table is
printed once at the end either way. Steps and throughput come from the trials' reports to
Tune (one per epoch, with the trial's step), time left from them and the slots the cluster
has (:func:`orchestrator.progress.time_left`); the slots also go to ``progress/driver.json``
for ``mtrl status``. Tune pickles its callbacks into the experiment state: only the settings
travel, the console is rebuilt in ``setup``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.live import Live

from orchestrator.progress import (
    TrialWork,
    format_duration,
    format_rate,
    slots_for,
    time_left,
    trim,
    window_rate,
    write_driver_record,
)
from orchestrator.sweep_progress import CellCounts, make_console, render_table, state_of, summary_line, tally


class ProgressTable(Callback):
    """Tune callback drawing the per-cell table; picklable (Tune stores its callbacks)."""

    def __init__(self, sweep_name: str = "sweep", cell_order: Sequence[str] = (), refresh_s: float = 1.0,
                 log_interval_s: float = 30.0, done_before: dict[str, int] | None = None,
                 work: Sequence[TrialWork] = (), sweep_root: str | None = None,
                 resources: tuple[float, float, int | None] = (1.0, 0.0, None), heartbeat_s: float = 60.0) -> None:
        """``work``: every trial of the sweep with the steps it had when this run started; ``resources``:
        CPUs and GPUs per trial and the cap on concurrent trials (for the slots); ``sweep_root``: where
        ``progress/driver.json`` goes (None: nowhere)."""
        self.sweep_name, self.refresh_s, self.log_interval_s = sweep_name, refresh_s, log_interval_s
        self.heartbeat_s = heartbeat_s
        self.cell_order = list(cell_order)
        self.done_before = dict(done_before or {})
        self.work = {w.run_key: w for w in work}
        self.sweep_root, self.resources = sweep_root, resources
        self._reset()

    def _reset(self) -> None:
        self._console: Console | None = None
        self._live: Live | None = None
        self._last_draw = 0.0
        self._last_line = ""
        self._last_counts = ""
        self._last_slots_check = 0.0
        self._started = time.monotonic()
        self._samples: dict[str, list[tuple[float, int]]] = {}
        self.slots = 1
        self.final: dict[str, CellCounts] = {}

    def __getstate__(self) -> dict:
        return {"sweep_name": self.sweep_name, "cell_order": self.cell_order, "refresh_s": self.refresh_s,
                "log_interval_s": self.log_interval_s, "done_before": self.done_before, "work": self.work,
                "sweep_root": self.sweep_root, "resources": self.resources, "heartbeat_s": self.heartbeat_s}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    def _title(self) -> str:
        return f"sweep {self.sweep_name}  ({time.monotonic() - self._started:,.0f} s; ETA {self._eta()})"

    # --- steps, throughput, time left -----------------------------------------------------
    def on_trial_result(self, iteration: int, trials, trial, result: dict, **info) -> None:
        run_key, step = trial.config["trial"]["run_key"], result.get("step")
        if run_key not in self.work or not isinstance(step, int):
            return
        now = time.time()
        samples = self._samples.setdefault(run_key, [])
        if samples and step < samples[-1][1]:  # the trial went back to a checkpoint: a new run of it
            samples.clear()
        samples.append((now, step))
        self._samples[run_key] = trim(samples)
        work = self.work[run_key]
        work.steps_done = step
        work.steps_per_second = window_rate(self._samples[run_key], now)

    def _update_work(self, trials) -> None:
        for trial in trials:
            work = self.work.get(trial.config["trial"]["run_key"])
            if work is None:
                continue
            state = state_of(trial)
            work.running = state == "running"
            if state == "done":
                work.steps_done, work.steps_per_second = work.total_steps, None
            elif not work.running:
                work.steps_per_second = None
        now = time.monotonic()
        if now - self._last_slots_check >= self.heartbeat_s or not self._last_slots_check:
            self._last_slots_check = now
            self._check_slots()

    def _check_slots(self) -> None:
        """The slots of the cluster as it is now (an autoscaler may add nodes), kept in ``progress/driver.json``."""
        import ray  # the driver has started or joined Ray before Tune calls back

        try:
            found = ray.cluster_resources()
            cpu, gpu, cap = self.resources
            self.slots = slots_for(cpu, gpu, float(found.get("CPU", 0)), float(found.get("GPU", 0)), cap)
            if self.sweep_root is not None:
                write_driver_record(self.sweep_root, self.slots, float(found.get("CPU", 0)), float(found.get("GPU", 0)))
        except Exception:  # a log: the table goes on with the slots it knew
            pass

    def _eta(self) -> str:
        return format_duration(time_left(list(self.work.values()), self.slots)) if self.work else "-"

    def _steps(self) -> dict[str, tuple[str, str]]:
        """Per cell label (and ``"all"``): steps done/total and steps per second."""
        per_cell: dict[str, list[TrialWork]] = {}
        for work in self.work.values():
            per_cell.setdefault(work.cell, []).append(work)
        per_cell["all"] = list(self.work.values())
        out = {}
        for label, group in per_cell.items():
            rates = [w.steps_per_second for w in group if w.running and w.steps_per_second is not None]
            out[label] = (f"{sum(w.steps_done for w in group):,}/{sum(w.total_steps for w in group):,}",
                          format_rate(sum(rates) if rates else None))
        return out

    def _progress_line(self) -> str:
        done, rate = self._steps()["all"]
        return f"steps {done}, {rate} steps/s, ETA {self._eta()}"

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
        self._update_work(trials)
        cells = tally(trials, self.cell_order, self.done_before)
        if self._live is not None:
            self._live.update(render_table(cells, self._title(), self._steps() if self.work else None), refresh=True)
            return
        counts = summary_line(cells)
        due = not self._last_counts or now - self._last_print >= self.log_interval_s
        changed = counts != self._last_counts and due
        if changed or now - self._last_print >= self.heartbeat_s:  # a heartbeat in logs, even with nothing new
            self._last_counts, self._last_print = counts, now
            line = f"{counts}; {self._progress_line()}" if self.work else counts
            self._last_line = line
            print(f"[{time.strftime('%H:%M:%S')}] {self.sweep_name}: {line}", flush=True)

    def on_experiment_end(self, trials, **info) -> None:
        self._update_work(trials)
        self.final = tally(trials, self.cell_order, self.done_before)
        if self._live is not None:
            self._live.stop()
            self._live = None
        console = self._console or make_console()
        console.print(render_table(self.final, self._title(), self._steps() if self.work else None))

    _last_print = 0.0
