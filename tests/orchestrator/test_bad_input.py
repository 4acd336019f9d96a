"""Bad input through the real `mtrl` command: one line, exit code 2, nothing started, bounded time and memory.

The cases of issue 19 (YAML bombs, out-of-range settings, paths that cannot be used, corrupt
``sweep.yaml`` files) run ``analysis.cli.mtrl`` (what ``mtrl`` runs) in child processes
capped at 4 GiB of address space and 60 s. To pay the command's import time (1-2 s) once,
one driver process imports it and forks one child per case; each child gets its own folder,
stdout and stderr, and reports an uncaught exception with its traceback as Python would.
Disk full and the traceback of a bug run ``python -m orchestrator.cli`` itself.
"""

from __future__ import annotations

import glob
import os
import resource
import subprocess
import sys
from dataclasses import dataclass, field

import pytest
import yaml

from testkit.forked import MEMORY_CAP, TIMEOUT_S, run_forked
from testkit.sweep import REPO, tiny_spec_data

# "Billion laughs": 9 levels of 9 aliases, 9^9 strings once expanded, under 800 bytes.
BOMB = "bomb: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"l{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9))
FLOW_BOMB = "[&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol], " + ", ".join(
    f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)) + "]"


def sweep_text(**changes) -> str:
    return yaml.safe_dump(tiny_spec_data(**changes), sort_keys=False)


@dataclass
class Case:
    """One refused command: its arguments, what its line must say, the files it starts from.

    ``{dir}`` in ``argv`` and ``expected`` is the case's own folder (the working directory).
    """

    argv: list[str]
    expected: str
    files: dict[str, str | bytes] = field(default_factory=dict)
    sweep_folder: bool = False
    """Start from a prepared sweep folder ``store/tiny`` of the tiny spec (``files`` may overwrite it)."""
    absent: tuple[str, ...] = ("store", "r", "results/analysis")
    """Paths that must still not exist afterwards."""


RUN = ["run", "sweep.yaml", "--storage", "store", "--num-cpus", "1"]
TRIAL = ["trial", "--benchmark", "Empty-5x5-v0", "--arch", "single", "--results", "r"]
TINY = {"sweep.yaml": sweep_text()}
CORRUPT_SPECS = {
    "malformed": ("name: tiny\nbenchmarks: [Empty-5x5-v0\n", "malformed YAML (line 3"),
    "bomb": (BOMB + sweep_text().replace("name: tiny", "name: *a8"), "refused: more than 100,000 values"),
    "latin1": (b"name: caf\xe9\n", "not UTF-8 text (byte 9 is 0xe9)"),
    "duplicate key": (sweep_text() + "name: tiny\n", "the key 'name' appears twice, on lines 1 and 21; keep one"),
}
MARKER_ERROR = "{dir}/store/tiny"
ODD_MARKERS = {  # valid JSON of other shapes than the marker's
    "a list": ("[]", "/mtrl-results.json was not written by this tool"),
    "a list for kind": ('{"kind": ["mtrl-results"], "layout": "sweep", "schema_version": 2}',
                        "/mtrl-results.json was not written by this tool"),
    "a mapping for layout": ('{"kind": "mtrl-results", "layout": {"sweep": 1}, "schema_version": 2}',
                             "/mtrl-results.json was not written by this tool"),
    "nested 2,000 deep": ("[" * 2000 + "]" * 2000, "/mtrl-results.json is unreadable (nested too deeply)"),
    "an infinite version": ('{"kind": "mtrl-results", "layout": "sweep", "schema_version": 1e400}',
                            " holds results of schema version inf, this tool reads versions 1, 2"),
    "true for the version": ('{"kind": "mtrl-results", "layout": "sweep", "schema_version": true}',
                             " holds results of schema version True, this tool reads versions 1, 2"),
    "1.0 for the version": ('{"kind": "mtrl-results", "layout": "sweep", "schema_version": 1.0}',
                            " holds results of schema version 1.0, this tool reads versions 1, 2"),
}

CASES: dict[str, Case] = {
    # --- the command line itself: argparse's usage block is not printed above the error ---
    "missing sweep file": Case(["run"],
                               "error: the following arguments are required: SWEEP.yaml (see mtrl run --help)"),
    "bad number": Case(RUN[:-1] + ["many"], "argument --num-cpus: invalid int value: 'many'"),
    # --- sweep files ---
    "bomb in a treatment": Case(RUN, "error: sweep.yaml: refused: more than 100,000 values once its aliases",
                                {"sweep.yaml": BOMB + sweep_text().replace("- dense", "- {redo: {tau: *a8}}")}),
    "bomb under name": Case(RUN, "error: sweep.yaml: refused: more than 100,000 values",
                            {"sweep.yaml": BOMB + sweep_text().replace("name: tiny", "name: *a8")}),
    "nested 10,000 deep": Case(RUN, "error: sweep.yaml: refused: nested deeper than 32 levels",
                               {"sweep.yaml": "x: " + "[" * 10_000 + "]" * 10_000 + "\n" + sweep_text()}),
    "larger than 1 MiB": Case(RUN, "error: sweep.yaml: larger than the 1 MiB limit",
                              {"sweep.yaml": sweep_text() + "description: " + "x" * (1 << 20) + "\n"}),
    "not UTF-8": Case(RUN + ["--dry-run"], "error: sweep.yaml: not UTF-8 text (byte",
                      {"sweep.yaml": sweep_text().encode() + b"description: caf\xe9\n"}),
    "/dev/zero": Case(["run", "/dev/zero"], "/dev/zero: is not a regular file, so not a sweep file"),
    "seeds: true": Case(RUN, "seeds: expected a count", {"sweep.yaml": sweep_text(seeds=True)}),
    "seed beyond int32": Case(RUN, "every seed must be <= 2147483647 (the seed column is int32)",
                              {"sweep.yaml": sweep_text(seeds=[0, 2**31])}),
    "name ending in a newline": Case(RUN, "name: 'tiny\\n' is not folder-safe",
                                     {"sweep.yaml": sweep_text(name="tiny\n")}),
    "cpu beyond any machine": Case(RUN, "resources.cpu: Input should be less than or equal to 1024",
                                   {"sweep.yaml": sweep_text(resources={"cpu": 10_000})}),
    "non-finite cpu": Case(RUN, "resources.cpu: Input should be a finite number",
                           {"sweep.yaml": sweep_text().replace("cpu: 1", "cpu: .inf")}),
    # --- --set ---
    "--set seeds=100000000": Case(RUN + ["--set", "seeds=100000000"], "at most 1,000 seeds per cell, got 100,000,000",
                                  TINY),
    "--set gamma=.nan": Case(RUN + ["--set", "defaults.gamma=.nan"], "gamma: Input should be a finite number", TINY),
    "--set gamma=-0.5": Case(RUN + ["--set", "defaults.gamma=-0.5"], "gamma: Input should be greater than 0", TINY),
    "--set actor_lr=1e30": Case(RUN + ["--set", "defaults.actor_lr=1e30"],
                                "actor_lr: Input should be less than or equal to 1", TINY),
    "--set plasticity_buffer_size=1e12": Case(RUN + ["--set", "defaults.plasticity_buffer_size=1e12"],
                                              "plasticity_buffer_size: Input should be less than or equal to", TINY),
    "--set malformed": Case(RUN + ["--set", "seeds=[1"], "--set seeds=...: malformed YAML (line 1, column 3)", TINY),
    "--set python tag": Case(RUN + ["--set", "seeds=!!python/object/apply:os.system [ls]"],
                             "--set seeds=...: malformed YAML", TINY),
    "--set bomb": Case(RUN + ["--set", "description=" + FLOW_BOMB], "--set description=...: refused", TINY),
    "--set cpu the local Ray lacks": Case(RUN + ["--set", "resources.cpu=2"],
                                          "resources.cpu is 2 per trial but the local Ray instance has 1 CPUs", TINY),
    # --- names and storage ---
    **{f"--name {label}{' --dry-run' if dry else ''}": Case(
        RUN + ["--name", name] + (["--dry-run"] if dry else []), expected, TINY)
       for label, name, expected in (("of 300 characters", "x" * 300, "(300 characters) is not folder-safe"),
                                     ("with a slash", "a/b", "'a/b' is not folder-safe"),
                                     ("ending in a newline", "tiny\n", "'tiny\\n' is not folder-safe"))
       for dry in (False, True)},
    "storage is a file": Case(RUN, "storage store is not writable", {**TINY, "store": "x"}, absent=()),
    "the sweep's folder is a file": Case(RUN, "{dir}/store/tiny is a file, not a sweep folder",
                                         {**TINY, "store/tiny": "x"},
                                         absent=()),
    # --- a results folder's sweep.yaml, for status, run and --dry-run ---
    **{f"{kind} sweep.yaml, {' '.join(argv[:1] + argv[4:])}": Case(
        argv, "{dir}/store/tiny/sweep.yaml: " + expected, {**TINY, "store/tiny/sweep.yaml": content},
        sweep_folder=True, absent=())
       for kind, (content, expected) in CORRUPT_SPECS.items()
       for argv in (["status", "store/tiny"], RUN, RUN + ["--dry-run"])},
    # --- a key given twice (PyYAML keeps the last one) ---
    "duplicate key": Case(RUN, "error: sweep.yaml: the key 'seeds' appears twice, on lines 8 and 21; keep one",
                          {"sweep.yaml": sweep_text() + "seeds: 3\n"}),
    "duplicate key in defaults, --dry-run": Case(
        RUN + ["--dry-run"], "error: sweep.yaml: the key 'total_steps' appears twice, on lines 10 and 11; keep one",
        {"sweep.yaml": sweep_text().replace("  total_steps: 400\n", "  total_steps: 400\n  total_steps: 800\n")}),
    "--set duplicate key": Case(RUN + ["--set", "resources={cpu: 1, cpu: 2}"],
                                "error: --set resources=...: the key 'cpu' appears twice, on lines 1 and 1; keep one",
                                TINY),
    # --- a results folder's marker of another shape, for status, run and --dry-run ---
    **{f"marker: {kind}, {' '.join(argv[:1] + argv[4:])}": Case(
        argv, MARKER_ERROR + expected, {**TINY, "store/tiny/mtrl-results.json": content}, sweep_folder=True,
        absent=())
       for kind, (content, expected) in ODD_MARKERS.items()
       for argv in (["status", "store/tiny"], RUN, RUN + ["--dry-run"])},
    # --- mtrl trial ---
    "--seed 2^31": Case(TRIAL + ["--seed", str(2**31)], "seed must be in 0..2147483647"),
    "trial --set gamma=.nan": Case(TRIAL + ["--set", "gamma=.nan"], "gamma: Input should be a finite number"),
    "trial --set actor_lr=1e30": Case(TRIAL + ["--set", "actor_lr=1e30"], "actor_lr: Input should be less than"),
    "trial --set plasticity_buffer_size=1e12": Case(TRIAL + ["--set", "plasticity_buffer_size=1e12"],
                                                    "plasticity_buffer_size: Input should be less than"),
    "trial --set total_steps=true": Case(TRIAL + ["--set", "total_steps=true"],
                                         "total_steps: expected a number, got true"),
    "trial --set malformed": Case(TRIAL + ["--set", "gamma=[0.9"], "--set gamma=...: malformed YAML"),
    "trial --treatment-param malformed": Case(TRIAL + ["--treatment", "wd", "--treatment-param", "coef={a: "],
                                              "--treatment-param coef=...: malformed YAML"),
    "trial --treatment-param tag": Case(TRIAL + ["--treatment", "wd", "--treatment-param", "coef=!!timestamp nope"],
                                        "--treatment-param coef=...: malformed YAML"),
    "trial --set bomb": Case(TRIAL + ["--set", "gamma=" + FLOW_BOMB], "--set gamma=...: refused"),
    "trial --results naming a file": Case(TRIAL, "--results r is a file, not a folder", {"r": "x"}, absent=()),
    "trial --results of 300 characters": Case(TRIAL[:-1] + ["r" * 300], f"{'r' * 300}: File name too long"),
    # --- mtrl analyze ---
    "analyze --out naming a file": Case(["analyze", "results", "--out", "results/report", "--quiet"],
                                        "--out results/report is a file; give a folder", {"results/report": "x"}),
    "analyze --out under a file": Case(["analyze", "results", "--out", "results/report/sub", "--quiet"],
                                       "--out results/report/sub lies under the file results/report",
                                       {"results/report": "x"}),
    "analyze bomb in sweep.yaml": Case(["analyze", "results", "--quiet"], "error: results/sweep.yaml: refused",
                                       {"results/sweep.yaml": BOMB + "name: *a8\n"}),
}

@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, dict]:
    """Run every case once; ``{case: {"returncode", "stdout", "stderr", "seconds", "cwd"}}``."""
    from orchestrator.spec import validate_spec
    from orchestrator.sweep_folder import SweepFolder, prepare
    from testkit.synthetic import write_synthetic_sweep

    jobs = []
    for i, case in enumerate(CASES.values()):
        cwd = tmp_path_factory.mktemp(f"case{i}")
        if case.argv[0] == "analyze":
            write_synthetic_sweep(cwd / "results", archs=("mtppo",), treatments=("dense",), seeds=range(2),
                                  single_task=False, total_steps=4_000)
        if case.sweep_folder:
            spec = validate_spec(tiny_spec_data(), "sweep.yaml")
            prepare(SweepFolder.for_spec(spec, str(cwd / "store")), spec)
        for path, content in case.files.items():
            target = cwd / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content if isinstance(content, bytes) else content.encode())
        jobs.append({"cwd": str(cwd), "argv": [a.replace("{dir}", str(cwd)) for a in case.argv],
                     "memory": MEMORY_CAP, "timeout": TIMEOUT_S})
    reports = run_forked(jobs, HOME=str(tmp_path_factory.mktemp("home")))
    return {name: {**report, "cwd": job["cwd"]} for name, job, report in zip(CASES, jobs, reports, strict=True)}


def nothing_started(root: str) -> None:
    """No results were written under ``root``: no Parquet, no checkpoint, no Tune folder."""
    for _, dirs, files in os.walk(root):
        assert not {"tune", "checkpoints", "trials"} & set(dirs)
        assert not any(f.endswith(".pt") for f in files)
    assert not os.path.exists(os.path.join(root, "store", "tiny", "metrics"))


def one_error_line(outcome: dict, command: str) -> str:
    """The single line of a refused command: exit 2, no traceback, within the time limit."""
    output = outcome["stdout"] + outcome["stderr"]
    assert "Traceback" not in output and "MemoryError" not in output, output[-3000:]
    assert outcome["returncode"] == 2, output[-3000:]
    lines = outcome["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mtrl {command}: error: "), output[-3000:]
    assert len(lines[0]) <= 1100 and outcome["seconds"] < TIMEOUT_S
    return lines[0]


@pytest.mark.parametrize("name", list(CASES))
def test_refused_in_one_line(outcomes, name):
    case, outcome = CASES[name], outcomes[name]
    line = one_error_line(outcome, case.argv[0])
    assert case.expected.replace("{dir}", outcome["cwd"]) in line
    nothing_started(outcome["cwd"])
    for path in case.absent:
        assert not os.path.exists(os.path.join(outcome["cwd"], path)), path
    for path, content in case.files.items():  # the user's files are left as they were
        written = content if isinstance(content, bytes) else content.encode()
        assert open(os.path.join(outcome["cwd"], path), "rb").read() == written


def test_cases_stay_bounded(outcomes):
    """The whole table ran within the caps (a bomb that slipped through would take minutes or fail)."""
    slowest = max(outcomes, key=lambda n: outcomes[n]["seconds"])
    assert outcomes[slowest]["seconds"] < 30, slowest


# --- through `python -m analysis.cli` (the whole mtrl command) itself --------------------------------------------
def mtrl(args: list[str], cwd, file_size: int | None = None) -> subprocess.CompletedProcess:
    """The real command in a child capped at :data:`MEMORY_CAP` bytes (and ``file_size`` bytes per file)."""

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
        if file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))

    env = {**os.environ, "PYTHONPATH": REPO, "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-m", "analysis.cli", *args], cwd=cwd, env=env,
                          preexec_fn=limits, capture_output=True, text=True, timeout=TIMEOUT_S * 3)


def test_cuda_without_cuda_is_refused(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = mtrl(TRIAL + ["--set", "device=cuda"], tmp_path)
    line = one_error_line({**vars(result), "seconds": 0}, "trial")
    assert "device 'cuda' but this machine has no CUDA device" in line
    assert not (tmp_path / "r").exists()


SMALL_TRIAL = TRIAL + ["--total-steps", "400", "--steps-per-epoch", "100", "--eval-interval", "200",
                       "--eval-episodes", "2", "--checkpoint-interval", "200", "--quiet",
                       "--set", "measure_plasticity=false"]


@pytest.mark.slow
@pytest.mark.parametrize("file_size, failing", [(8 << 10, ".parquet"), (200 << 10, ".pt")])
def test_disk_full_is_one_line_and_a_rerun_resumes(tmp_path, file_size, failing):
    """A file-size limit (what ``ulimit -f`` sets; Python ignores SIGXFSZ, so writes fail with EFBIG)
    stops the trial at a Parquet segment or at a checkpoint; the line names that file, and the
    rerun it asks for completes every row exactly once."""
    import pyarrow.dataset as ds

    result = mtrl(SMALL_TRIAL, tmp_path, file_size=file_size)
    line = one_error_line({**vars(result), "seconds": 0}, "trial")
    written = line.split("could not write ", 1)[1].split(": ", 1)[0]
    assert os.path.abspath(os.path.join(tmp_path, written)).startswith(f"{tmp_path / 'r'}/")
    assert written.endswith(failing)
    assert line.endswith("; nothing written before was lost: rerun the same command with --resume once there "
                         "is room; it continues from the last checkpoint")
    # The partial file of the failed write keeps no space.
    assert glob.glob(str(tmp_path / "r" / "**" / ".*.tmp"), recursive=True) == []
    # What a killed write leaves (no cleanup ran) is removed by the rerun; a user's file stays.
    run_key = "Empty-5x5-v0-single-dense-s00"
    checkpoints = tmp_path / "r" / "trials" / run_key / "checkpoints"
    partition = tmp_path / "r" / "metrics" / "train" / "benchmark=Empty-5x5-v0" / "arch=single" / "treatment=dense"
    stale = [checkpoints / ".step-000000400.pt.tmp", partition / f".{run_key}__000000200-000000400.parquet.tmp"]
    users = [checkpoints / ".notes.tmp", partition / ".notes.parquet.tmp"]
    for path in stale + users:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    assert mtrl(SMALL_TRIAL + ["--resume"], tmp_path).returncode == 0
    assert [p for p in stale if p.exists()] == [] and all(p.exists() for p in users)
    for dataset, rows in (("evals", [0, 200, 400]), ("train", [100, 200, 300, 400])):
        steps = ds.dataset(tmp_path / "r" / "metrics" / dataset, partitioning="hive").to_table()["step"]
        assert sorted(steps.to_pylist()) == rows


def test_a_bug_keeps_its_traceback(tmp_path):
    """Only user errors are one line: a ValueError raised by numpy (here in place of the config
    check) is a bug, shown with its traceback and exit status 1."""
    code = ("import sys\nimport numpy as np\nfrom orchestrator import cli, local_trial\n"
            "local_trial.build_config = lambda args: np.zeros(3).reshape(2)\n"
            f"sys.exit(cli.main({TRIAL!r}))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": REPO}, timeout=TIMEOUT_S)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ValueError: cannot reshape array of size 3" in result.stderr
    assert "mtrl trial: error" not in result.stderr


def test_one_parser_reads_1e_minus_6_as_a_float():
    """``--treatment-param``, ``--set`` and sweep files share one YAML reader (YAML 1.2 floats)."""
    from orchestrator.cli import build_parser
    from orchestrator.local_trial import build_config
    from orchestrator.spec import parse_assignments

    args = build_parser().parse_args(TRIAL + ["--treatment", "wd", "--treatment-param", "coef=1e-6",
                                              "--set", "critic_lr=2e-4"])
    config = build_config(args)
    assert config.treatment_params == {"coef": 1e-6} and config.critic_lr == 2e-4
    assert parse_assignments(["treatments=[{wd: {coef: 1e-6}}]"]) == {"treatments": [{"wd": {"coef": 1e-6}}]}


def test_a_remote_trial_write_failure_is_recognised_in_its_text(tmp_path):
    """Ray hands the driver a failed trial's traceback as text: a real EFBIG from pyarrow is recognised
    in it (the sweep summary then says "could not write its results"), and another error is not."""
    from mtrl_plasticity.errors import write_failure_in

    code = ("import resource, traceback, pyarrow as pa, pyarrow.parquet as pq\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
            "try:\n    pq.write_table(pa.table({'x': list(range(100_000))}), 'big.parquet')\n"
            "except OSError:\n    print(traceback.format_exc())\n")
    text = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=True).stdout
    assert "Traceback" in text
    assert write_failure_in(text) == "File too large"
    assert write_failure_in("Traceback ...\nValueError: cannot reshape array of size 3 into shape (2,)") is None
