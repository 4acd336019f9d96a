"""The draft paper's Table 1 as data, display names, and the draft-protocol check.

Table 1 of ``sparsity-driven-plasticity.md`` (draft): final aggregate performance at epoch 100
(200k steps), IQM of normalised scores over 30 runs x tasks with 95% stratified bootstrap CIs.
The published (TMLR) version changed the protocol and its numbers are not held here, so the
paper column only appears for sweeps that follow the draft protocol (:func:`follows_draft_protocol`).
"""

from __future__ import annotations

from typing import Any, Mapping

from analysis.aggregate import Interval
from mtrl_plasticity.architectures import ARCHITECTURES
from mtrl_plasticity.benchmarks import MULTI_TASK_BENCHMARKS
from mtrl_plasticity.treatments import TREATMENTS

SPARSITY_TREATMENTS = ("dense", "gmp80", "gmp95", "gmp99")
"""The treatments of paper Figures 3, 5, 6 and 7 (pruning levels)."""

DRAFT_STEPS = 200_000
"""Training steps of the draft protocol (100 epochs x 2,000 steps)."""
DRAFT_EVAL_INTERVAL = 2_000
DRAFT_PROTOCOL_NAMES = frozenset({"draft", "paper", "paper-draft", "draft-paper", "arxiv-draft"})
"""``sweep.yaml`` ``protocol`` values taken to mean the draft paper's protocol."""

# arch treatment  MT3: IQM low,high   MT5: IQM low,high   MT7: IQM low,high
_TABLE_1 = """
mtppo  dense  0.57 0.50,0.65  0.59 0.51,0.66  0.62 0.56,0.67
mtppo  gmp80  0.58 0.50,0.65  0.66 0.61,0.71  0.64 0.59,0.70
mtppo  gmp95  0.61 0.55,0.66  0.64 0.60,0.69  0.71 0.66,0.75
mtppo  gmp99  0.62 0.57,0.66  0.68 0.61,0.73  0.67 0.62,0.72
mtppo  redo   0.57 0.53,0.60  0.68 0.62,0.73  0.68 0.64,0.73
mtppo  reset  0.56 0.51,0.60  0.71 0.67,0.74  0.69 0.65,0.73
mtppo  wd     0.55 0.49,0.62  0.55 0.48,0.61  0.64 0.58,0.70
moe    dense  0.70 0.63,0.74  0.74 0.69,0.79  0.70 0.65,0.75
moe    gmp80  0.69 0.63,0.73  0.74 0.69,0.80  0.68 0.63,0.73
moe    gmp95  0.71 0.66,0.73  0.78 0.70,0.83  0.74 0.72,0.77
moe    gmp99  0.60 0.57,0.64  0.71 0.63,0.76  0.74 0.69,0.79
moe    redo   0.67 0.64,0.70  0.72 0.67,0.78  0.77 0.74,0.80
moe    reset  0.61 0.54,0.67  0.70 0.66,0.73  0.70 0.66,0.74
moe    wd     0.71 0.64,0.76  0.72 0.67,0.78  0.71 0.67,0.75
moore  dense  0.75 0.67,0.77  0.81 0.76,0.85  0.81 0.76,0.84
moore  gmp80  0.54 0.47,0.58  0.81 0.76,0.83  0.80 0.77,0.83
moore  gmp95  0.47 0.44,0.52  0.82 0.78,0.84  0.82 0.79,0.86
moore  gmp99  0.47 0.42,0.53  0.69 0.64,0.73  0.70 0.68,0.72
moore  redo   0.67 0.62,0.70  0.79 0.75,0.81  0.82 0.80,0.84
moore  reset  0.58 0.53,0.66  0.72 0.66,0.76  0.75 0.71,0.79
moore  wd     0.75 0.70,0.77  0.83 0.79,0.85  0.78 0.74,0.82
"""


def _parse(text: str) -> dict[tuple[str, str, str], Interval]:
    table: dict[tuple[str, str, str], Interval] = {}
    for line in text.strip().splitlines():
        arch, treatment, *values = line.split()
        columns = zip(values[0::2], values[1::2], strict=True)
        for benchmark, (point, bounds) in zip(("MT3", "MT5", "MT7"), columns, strict=True):
            low, high = bounds.split(",")
            table[(arch, treatment, benchmark)] = Interval(float(point), float(low), float(high))
    return table


PAPER_TABLE_1: dict[tuple[str, str, str], Interval] = _parse(_TABLE_1)
"""``(arch, treatment, benchmark) -> Interval``: the draft paper's Table 1 (two decimals)."""


# Display names and orders come from the registries (mtrl_plasticity.architectures, .treatments):
# a plugin's names appear in tables and figures as it registered them.
def arch_name(arch: str) -> str:
    """Display name of an architecture (unregistered names pass through)."""
    return ARCHITECTURES.get(arch).display_name if arch in ARCHITECTURES else arch


def arch_long_name(arch: str) -> str:
    """Long display name of an architecture, for captions (unregistered names pass through)."""
    return ARCHITECTURES.get(arch).long_name if arch in ARCHITECTURES else arch


def treatment_name(treatment: str) -> str:
    """Display name of a treatment as in the paper (unregistered names pass through)."""
    return TREATMENTS.get(treatment).display_name if treatment in TREATMENTS else treatment


def variant_long_name(name: str, params: Mapping[str, Any]) -> str:
    """A treatment entry's long form for captions and legends: the registry's display name and the
    entry's parameters, ``"ReDo (tau=0.001)"``."""
    shown = ", ".join(f"{key}={value}" for key, value in sorted(params.items()))
    return f"{treatment_name(name)} ({shown})" if shown else treatment_name(name)


def arch_sort_key(arch: str) -> tuple[int, str]:
    """Registration order (the paper's first), unregistered names after, by name."""
    order = ARCHITECTURES.names()
    return (order.index(arch), arch) if arch in order else (len(order), arch)


def treatment_sort_key(treatment: str) -> tuple[int, str]:
    """Registration order (the paper's first), unregistered names after, by name."""
    order = TREATMENTS.names()
    return (order.index(treatment), treatment) if treatment in order else (len(order), treatment)


def task_sort_key(task: str) -> tuple[int, str]:
    """Tasks in MT7's order (MT3's first, then MT5's, then MT7's), other names after."""
    order = list(MULTI_TASK_BENCHMARKS["MT7"].tasks)
    return (order.index(task), task) if task in order else (len(order), task)


def follows_draft_protocol(meta: Mapping[str, Any], last_step: int | None, eval_steps: list[int] | None = None,
                           at_step: int | None = None) -> tuple[bool, str]:
    """Whether the sweep's Table 1 is comparable with the draft paper's, and why.

    ``sweep.yaml``'s ``protocol`` decides when it is a string (one of
    :data:`DRAFT_PROTOCOL_NAMES` means yes, anything else no). Otherwise the data decides:
    the last evaluation is at 200,000 steps with evaluations every 2,000 steps. A Table 1 at an
    explicit ``at_step`` other than 200,000 is never compared.
    """
    if at_step is not None and at_step != DRAFT_STEPS:
        return False, f"the table is at step {at_step:,}, the paper's at {DRAFT_STEPS:,}"
    protocol = meta.get("protocol")
    if isinstance(protocol, str):
        if protocol.strip().lower() in DRAFT_PROTOCOL_NAMES:
            return True, f"sweep.yaml names the draft protocol ({protocol!r})"
        if protocol.strip().lower() in {"tmlr", "published"}:
            return False, "the sweep follows the published (TMLR) protocol, whose numbers are not held here"
        return False, f"sweep.yaml's protocol is {protocol!r}, not the draft paper's"
    if last_step is None:
        return False, "there are no evaluations"
    if last_step != DRAFT_STEPS:
        return False, f"the last evaluation is at step {last_step:,}, the draft paper's at {DRAFT_STEPS:,}"
    if eval_steps is not None and len(eval_steps) > 1:
        gaps = {b - a for a, b in zip(eval_steps, eval_steps[1:], strict=False)}
        if gaps != {DRAFT_EVAL_INTERVAL}:
            return False, f"evaluations are not every {DRAFT_EVAL_INTERVAL:,} steps as in the draft paper"
    return True, (f"the budget matches the draft protocol ({DRAFT_STEPS:,} steps, evaluation every "
                  f"{DRAFT_EVAL_INTERVAL:,})")
