"""Odd but valid content in a results folder's logs, and text from the folder on the terminal (issue 29).

A real small sweep folder (one trial trained by ``run_trial``, one not started) is copied once
per case; one log of the copy gets a shape the tool never writes (wrong JSON types, lists where
mappings belong, null, NaN and Infinity, huge or negative counts, deep nesting, too large), and
the real ``mtrl status`` (with ``--trials`` and ``--json``) runs on it in a forked child
(:mod:`testkit.forked`). Each must succeed without a traceback, say at most one line about the
bad file (a warning naming it), and print exactly what it prints when that file is absent.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil

import pytest

from mtrl_plasticity.errors import FOLDER_TEXT_LIMIT
from orchestrator.checkpoint import DirectoryCheckpointer
from orchestrator.sink import ParquetSink
from orchestrator.spec import expand, validate_spec
from orchestrator.sweep_folder import SweepFolder, driver_lock, prepare
from orchestrator.trial import run_trial
from testkit.forked import run_forked
from testkit.sweep import tiny_spec_data

K0, K1 = "Empty-5x5-v0-single-dense-s00", "Empty-5x5-v0-single-dense-s01"
FAILURES = f"logs/{K1}.failures.json"
TUNE_STATE = "tune/run-20260101T000000Z-abcdef/experiment_state-2026-01-01_00-00-00.json"
PROGRESS = f"progress/{K1}.json"
DRIVER = "progress/driver.json"
DEEP = "[" * 5_000 + "]" * 5_000


def tune_state(trial: object = None, metadata: object = None, status: str = "RUNNING") -> str:
    """Tune's experiment state with K0 finished and K1 in ``status``; ``trial``/``metadata`` replace K1's parts."""
    def part(value: object, default: dict) -> object:
        return json.dumps(default) if value is None else value

    return json.dumps({"trial_data": [
        [json.dumps({"custom_trial_name": K0, "status": "TERMINATED"}), json.dumps({"num_failures": 0})],
        [part(trial, {"custom_trial_name": K1, "status": status}), part(metadata, {"num_failures": 1})]]})


GOOD_RECORD = {"run_key": json.dumps(K1), "state": '"running"', "step": "200", "total_steps": "400",
               "steps_per_second": "10.0", "eval_step": "200", "normalised_return": "0.5", "time": "1800000000.0"}


def record(**raw: str) -> str:
    """K1's progress record with fields replaced or added as raw JSON text (``NaN`` and the like included)."""
    return "{" + ", ".join(f'"{key}": {value}' for key, value in {**GOOD_RECORD, **raw}.items()) + "}"


ANY_FILE = {"null": "null", "a list": "[]", "a string": '"abc"', "a number": "5", "nested 5,000 deep": DEEP,
            "nested junk": '{"x": {"y": [[[[{"z": [1, {"w": null}]}]]]]}}', "not JSON": "{", "not UTF-8": b"\xff\xfe"}
FAILURES_SHAPES = {
    **ANY_FILE,
    **{f"failures: {label}": f'{{"failures": {raw}, "last_error": "boom"}}' for label, raw in {
        "a string": '"abc"', "a list": "[1]", "a mapping": '{"n": 1}', "null": "null", "true": "true",
        "1.5": "1.5", "-5": "-5", "1e400": "1e400", "NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity",
        "10^400": "1" + "0" * 400, "10^12": "1" + "0" * 12}.items()},
    **{f"last_error: {label}": f'{{"failures": 1, "last_error": {raw}}}' for label, raw in {
        "a number": "5", "a list": '["x"]', "a mapping": '{"a": "b"}', "true": "true"}.items()},
    "time: a list": '{"failures": 1, "last_error": "boom", "time": [1]}',
    "too large": '{"failures": 1, "last_error": "' + "x" * (64 << 10) + '"}',
}
TUNE_SHAPES = {
    **ANY_FILE,
    **{f"trial_data: {label}": f'{{"trial_data": {raw}}}' for label, raw in {
        "a string": '"abc"', "null": "null", "a mapping": '{"a": 1}', "a list of numbers": "[1]",
        "numbers for the JSON texts": "[[1, 2]]", "one part": '[["a"]]', "three parts": '[["{}", "{}", "{}"]]',
        }.items()},
    "trial: a list": tune_state(trial="[]"),
    "trial: a number": tune_state(trial="5"),
    "trial: not JSON": tune_state(trial="not json"),
    "trial: nested 5,000 deep": tune_state(trial=DEEP),
    "trial: NaN": tune_state(trial='{"custom_trial_name": NaN}'),
    "trial name: a list": tune_state(trial=json.dumps({"custom_trial_name": [K1], "status": "ERROR"})),
    "status: a list": tune_state(trial=json.dumps({"custom_trial_name": K1, "status": ["ERROR"]})),
    "status: a mapping": tune_state(trial=json.dumps({"custom_trial_name": K1, "status": {"a": 1}})),
    **{f"num_failures: {label}": tune_state(metadata=f'{{"num_failures": {raw}}}') for label, raw in {
        "a string": '"abc"', "NaN": "NaN", "1e400": "1e400", "a list": "[1]", "-3": "-3", "10^400": "1" + "0" * 400,
        "1.5": "1.5"}.items()},
    "metadata: a list": tune_state(metadata="[]"),
}
PROGRESS_SHAPES = {
    **ANY_FILE,
    "no run_key": '{"step": 100}',
    "run_key: a number": record(run_key="5"),
    **{f"{field}: {label}": record(**{field: raw}) for field, shapes in {
        "step": {"a string": '"abc"', "-1": "-1", "1e400": "1e400", "NaN": "NaN", "2^70": str(2**70), "a list": "[1]",
                 "null": "null", "1.5": "1.5"},
        "steps_per_second": {"a string": '"fast"', "-1": "-1", "Infinity": "Infinity", "a mapping": '{"a": 1}'},
        "eval_step": {"a string": '"x"', "1.5": "1.5", "-2": "-2"},
        "normalised_return": {"a string": '"x"', "NaN": "NaN", "a list": "[0.5]"},
        "time": {"a string": '"now"', "-Infinity": "-Infinity", "true": "true"},
    }.items() for label, raw in shapes.items()},
    "too large": record(host='"' + "h" * (64 << 10) + '"'),
}
DRIVER_SHAPES = {
    **ANY_FILE,
    "no slots": '{"cpus": 2}',
    **{f"slots: {label}": f'{{"slots": {raw}}}' for label, raw in {
        "10^12": "1" + "0" * 12, "10^400": "1" + "0" * 400, "a string": '"4"', "-3": "-3", "0": "0", "1.5": "1.5",
        "true": "true", "null": "null", "NaN": "NaN"}.items()},
}
HISTORY = "history/0002-20260101T000000Z.yaml"
HISTORY_SHAPES = {  # an earlier version of the grid that no longer reads: skipped (its trials are not listed)
    "a list": "[]", "null": "null", "a number": "5", "name: a list": "name: [1]", "a key twice": "name: a\nname: b\n",
    "nested 60 deep": "[" * 60 + "]" * 60, "seeds: 1e400": "name: tiny\nseeds: 1e400\nbenchmarks: [Empty-5x5-v0]\n"
    "archs: [single]\ntreatments: [dense]\n", "binary": "!!binary aGVsbG8=", "an escape sequence": '"\\e[2J"',
    "not UTF-8": b"name: \xff\n",
}
STATUS = ["status", "store/tiny"]
TRIALS, JSON = [*STATUS, "--trials"], [*STATUS, "--json"]
# kind: (its file, its shapes, the commands, whether K1 runs (a driver lock, Tune says so), good files);
# `--trials` prints the status table, then the trials.
KINDS = {
    "failures": (FAILURES, FAILURES_SHAPES, (TRIALS, JSON), False, {}),
    "tune state": (TUNE_STATE, TUNE_SHAPES, (TRIALS,), False, {}),
    "progress": (PROGRESS, PROGRESS_SHAPES, (TRIALS, JSON), True, {TUNE_STATE: tune_state()}),
    "driver": (DRIVER, DRIVER_SHAPES, (TRIALS,), True, {TUNE_STATE: tune_state(), PROGRESS: record()}),
    "history": (HISTORY, HISTORY_SHAPES, (TRIALS,), False, {}),
}
CASES = {f"{kind}: {shape}, {' '.join(argv[2:]) or 'status'}": (kind, shape, argv)
         for kind, (_, shapes, commands, _, _) in KINDS.items() for shape in shapes for argv in commands}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A real sweep folder ``<tmp>/store/tiny``: K0 trained to the end by ``run_trial``, K1 not started."""
    root = tmp_path_factory.mktemp("base")
    spec = validate_spec(tiny_spec_data(), "sweep.yaml")
    folder = SweepFolder.for_spec(spec, str(root / "store"))
    prepare(folder, spec)
    trial = expand(spec)[0]
    run_trial(trial, ParquetSink.for_config(folder.root, trial),
              DirectoryCheckpointer(os.path.join(folder.root, "checkpoints", trial.run_key)))
    return root / "store" / "tiny"


def make_case(base, cwd, files: dict[str, str | bytes]) -> SweepFolder:
    shutil.copytree(base, cwd / "store" / "tiny")
    for path, content in files.items():
        target = cwd / "store" / "tiny" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    return SweepFolder(str(cwd / "store" / "tiny"))


def run_cases(base, tmp_path_factory, cases: dict[str, tuple[dict, list[str], bool]]) -> dict[str, dict]:
    """``{name: (files, argv, running)}`` -> ``{name: outcome}``; ``running``: a driver lock is held (a live
    ``mtrl run``) while the command runs."""
    jobs, folders = [], []
    for i, (files, argv, running) in enumerate(cases.values()):
        cwd = tmp_path_factory.mktemp(f"logs{i}")
        folder = make_case(base, cwd, files)
        folders.append(folder if running else None)
        jobs.append({"cwd": str(cwd), "argv": argv})
    with contextlib.ExitStack() as stack:
        for folder in folders:
            if folder is not None:
                stack.enter_context(driver_lock(folder))
        reports = run_forked(jobs, HOME=str(tmp_path_factory.mktemp("home")))
    return {name: {**report, "cwd": job["cwd"]} for name, job, report in zip(cases, jobs, reports, strict=True)}


def comparable(outcome: dict, argv: list[str]) -> object:
    """The command's output without what differs between two runs: the folder, times and ages."""
    text = outcome["stdout"].replace(outcome["cwd"], "{dir}")
    if "--json" in argv:
        data = json.loads(text)
        data.pop("time")
        return data
    text = re.sub(r"Tune state saved [^;]*;", "Tune state saved;", text)
    return re.sub(r"\d+[smhd]( \d+[smhd])? ago", "ago", text)


@pytest.fixture(scope="module")
def outcomes(base, tmp_path_factory) -> dict[str, dict]:
    cases = {}
    for name, (kind, shape, argv) in CASES.items():
        path, shapes, _, running, good = KINDS[kind]
        cases[name] = ({**good, path: shapes[shape]}, argv, running)
    for kind, (_, _, commands, running, good) in KINDS.items():  # the same without the file
        for argv in commands:
            cases[f"{kind}: absent, {' '.join(argv)}"] = (good, argv, running)
    return run_cases(base, tmp_path_factory, cases)


@pytest.mark.parametrize("name", list(CASES))
def test_an_odd_log_is_skipped_with_at_most_one_line(outcomes, name):
    kind, _, argv = CASES[name]
    outcome, absent = outcomes[name], outcomes[f"{kind}: absent, {' '.join(argv)}"]
    output = outcome["stdout"] + outcome["stderr"]
    assert "Traceback" not in output and outcome["returncode"] == 0, output[-3000:]
    lines = outcome["stderr"].splitlines()
    assert len(lines) <= 1, outcome["stderr"][-3000:]
    if lines:
        assert lines[0].startswith("mtrl: warning: skipped the log ") and os.path.basename(KINDS[kind][0]) in lines[0]
        assert len(lines[0]) < 2 * FOLDER_TEXT_LIMIT + len(outcome["cwd"]) + 100
    assert absent["returncode"] == 0 and not absent["stderr"], absent["stderr"]
    assert comparable(outcome, argv) == comparable(absent, argv)


# --- odd but valid records the tool could write ------------------------------------------------------------------
def test_a_return_without_its_step_and_a_step_past_the_end(base, tmp_path_factory):
    """A record with a normalised return but no evaluation step, and a step past the trial's end: shown, no crash."""
    files = {TUNE_STATE: tune_state(), PROGRESS: record(eval_step="null", step=str(10**6))}
    out = run_cases(base, tmp_path_factory, {"trials": (files, TRIALS, True)})["trials"]
    assert out["returncode"] == 0 and not out["stderr"], out["stdout"] + out["stderr"]
    assert "400/400" in out["stdout"]


# --- text from the folder on the terminal ------------------------------------------------------------------------
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
"""Control characters (C0 but the line feed, DEL, C1): none may reach the terminal from the folder."""
ERROR = ("\x1b[2J\x1b[H\x1b]0;pwned\x07" + "#" * 2_500 + "\x9b31m\r\x00\x08\x1bc\ttab\u202e" + "#" * 2_500 +
         "\x1b[0m")
ERROR_LENGTH = f"({len(ERROR):,} characters)"
ANALYZE = ["analyze", "store/tiny", "--quiet", "--out", "analysis"]


@pytest.fixture(scope="module")
def loud(base, tmp_path_factory) -> dict[str, dict]:
    """A failed trial whose last error is 5,000 characters with escape sequences and control bytes, and a
    damaged Parquet file in a folder whose name holds an escape sequence."""
    files = {FAILURES: json.dumps({"failures": 3, "last_error": ERROR, "time": "2026-01-01T00:00:00Z"}),
             TUNE_STATE: tune_state(status="ERROR"),
             f"metrics/evals/benchmark=Empty-5x5-v0/arch=single/treatment=x\x1b[2J\x07/{K1}.parquet": b"not parquet"}
    return run_cases(base, tmp_path_factory, {" ".join(argv): (files, argv, False)
                                              for argv in (STATUS, TRIALS, JSON, ANALYZE)})


@pytest.mark.parametrize("argv", [STATUS, TRIALS], ids=" ".join)
def test_folder_text_reaches_the_terminal_printable_and_bounded(loud, argv):
    out = loud[" ".join(argv)]
    output = out["stdout"] + out["stderr"]
    assert out["returncode"] == 0 and "Traceback" not in output, output[-3000:]
    assert not CONTROL.findall(output), sorted(set(CONTROL.findall(output)))
    joined = re.sub(r"[\s│]", "", output)  # the lines rich wrapped, joined again
    assert ERROR_LENGTH.replace(" ", "") in joined  # the original length is said
    shown = output.count("#")
    assert 0 < shown <= 2 * FOLDER_TEXT_LIMIT, shown  # at most once in the list, once in the --trials table
    assert "unreadablePar" in joined and f"treatment=x/{K1}.parquet" in joined


def test_json_keeps_the_characters_escaped_and_bounds_the_length(loud):
    out = loud[" ".join(JSON)]
    assert out["returncode"] == 0 and not CONTROL.findall(out["stdout"])  # JSON escapes them
    error = next(t["last_error"] for t in json.loads(out["stdout"])["trial_states"] if t["run_key"] == K1)
    assert error.startswith("\x1b[2J\x1b[H\x1b]0;pwned\x07###") and error.endswith(f"... {ERROR_LENGTH}")
    assert len(error) <= FOLDER_TEXT_LIMIT + 30


def test_an_error_line_naming_a_file_of_the_folder_is_printable(loud):
    """``mtrl analyze`` refuses the damaged Parquet file in one line, without the escape sequence in its path."""
    out = loud[" ".join(ANALYZE)]
    lines = out["stderr"].splitlines()
    assert out["returncode"] == 2 and len(lines) == 1, out["stdout"] + out["stderr"]
    assert lines[0].startswith("mtrl analyze: error: cannot read Parquet file ") and f"treatment=x/{K1}" in lines[0]
    assert not CONTROL.findall(lines[0])


def test_a_line_of_a_failed_trial_is_printable_and_bounded():
    """The line ``mtrl run`` prints and records for a failed attempt (from the trial's error text)."""
    from orchestrator.trial_logs import last_line

    line = last_line("Traceback (most recent call last):\n  ...\nValueError: " + ERROR.replace("\r", ""))
    assert not CONTROL.findall(line) and len(line) <= FOLDER_TEXT_LIMIT + 30
    assert line.startswith("ValueError: ###") and line.endswith(f"... ({len('ValueError: ' + ERROR) - 1:,} characters)")


def test_each_case_took_little_time(outcomes):
    assert max(o["seconds"] for o in outcomes.values()) < 30


@pytest.mark.parametrize("shape", ["failures: a string", "failures: NaN", "failures: 10^400", "a list",
                                   "nested 5,000 deep"])
def test_mtrl_run_records_a_failed_attempt_over_an_odd_failures_file(tmp_path, capsys, shape):
    """The driver's record of a failed attempt (``mtrl run``'s ``FailureLog``): the odd file is skipped with
    one line and replaced, counting from this attempt; the attempt's line is printable and bounded."""
    from orchestrator.trial_logs import read_failures
    from orchestrator.tune_glue import FailureLog  # imports Ray (no Ray is started)

    (tmp_path / "logs").mkdir()
    (tmp_path / FAILURES).write_text(FAILURES_SHAPES[shape])
    error_file = tmp_path / "error.txt"
    error_file.write_text("Failure # 1 (occurred at 2026-01-01)\nTraceback ...\nValueError: " + ERROR.replace("\r", ""))
    trial = type("Trial", (), {"config": {"trial": {"run_key": K1}}, "error_file": str(error_file),
                               "num_failures": 1})()
    FailureLog(str(tmp_path), max_failures=2).on_trial_recover(0, [], trial)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("mtrl: warning: skipped the log ") and FAILURES in err[0], err
    assert err[1].startswith(f"{K1}: attempt 1 of 3 failed: ValueError: ###") and not CONTROL.findall(err[1])
    assert len(err[1]) < FOLDER_TEXT_LIMIT + len(str(tmp_path)) + 200  # not its 5,000 characters
    recorded = read_failures(str(tmp_path), K1)
    assert recorded is not None and recorded.failures == 1 and not CONTROL.findall(recorded.last_error or "")


def test_mtrl_run_names_a_damaged_file_printably(tmp_path_factory):
    """The resume check's line about a junk file named like a segment, with an escape sequence in its name."""
    import yaml

    root = tmp_path_factory.mktemp("run")
    data = tiny_spec_data(seeds=1)
    (root / "sweep.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    spec = validate_spec(data, "sweep.yaml")
    folder = SweepFolder.for_spec(spec, str(root / "store"))
    prepare(folder, spec)
    trial = expand(spec)[0]
    run_trial(trial, ParquetSink.for_config(folder.root, trial),
              DirectoryCheckpointer(os.path.join(folder.root, "checkpoints", trial.run_key)))
    junk = f"{K0}__\x1b]0;pwned\x07\x1b[2J.parquet"
    (root / "store" / "tiny" / "metrics" / "evals" / "benchmark=Empty-5x5-v0" / "arch=single" / "treatment=dense" /
     junk).write_bytes(b"junk")
    out = run_forked([{"cwd": str(root), "argv": ["run", "sweep.yaml", "--storage", "store"]}],
                     HOME=str(root))[0]
    assert out["returncode"] == 0 and "all 1 trials done" in out["stdout"], out["stdout"] + out["stderr"]
    lines = out["stderr"].splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{K0}: evals file {K0}__.parquet "), lines
    assert not CONTROL.findall(out["stdout"] + out["stderr"])
