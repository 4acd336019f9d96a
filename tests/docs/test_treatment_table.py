"""docs/treatments.md's table of treatments is the one the registry generates."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from agents.treatments import Treatment
from mtrl_plasticity.treatments import TREATMENTS, TreatmentParameters, Variant, register_treatment
from orchestrator.treatment_table import END, REGENERATE, START, builtin_names, render_table, replace_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "treatments.md"


def test_the_committed_table_is_the_generated_one():
    text = DOC.read_text(encoding="utf-8")
    assert replace_table(text, render_table()) == text, f"docs/treatments.md is out of date: run {REGENERATE}"


def test_the_table_derives_each_column():
    table = render_table()
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in table.splitlines() if line.startswith("| `")}
    assert list(rows) == [f"`{name}`" for name in builtin_names()]
    assert builtin_names() == ["dense", "gmp", "gmp80", "gmp95", "gmp99", "set", "set95", "redo", "reset", "wd"]
    # A variant shows what it pins; published protocol: the tmlr sweep files that run it, with their values.
    assert rows["`gmp80`"] == ("| `gmp80` | gradual magnitude pruning to 80% | as `gmp`, with `final_sparsity: 0.8` "
                               "pinned | [`paper-tmlr-gmp-ablation`](../sweeps/paper-tmlr-gmp-ablation.yaml) |")
    assert rows["`wd`"] == ("| `wd` | weight decay | `coef: 0.001`, `decoupled: false` | "
                            "[`paper-tmlr`](../sweeps/paper-tmlr.yaml): `coef: 1e-6` |")
    assert rows["`gmp`"].endswith("| – |")
    assert "  * `tau` = `0.01` (> 0.0): A neuron is dormant when its normalised mean activation is at most this." \
        in table.splitlines()


class _ExtraParameters(TreatmentParameters):
    protocol_defaults = {"tmlr": {"rate": 0.5}}

    rate: float = Field(0.25, gt=0.0, le=1.0)
    """How much ``extra`` does."""


def test_a_plugin_treatment_is_left_out_of_the_paper_table_and_can_render_its_own():
    register_treatment("extra", _ExtraParameters, implementation=Treatment, description="an extra",
                       variants={"extra1": Variant({"rate": 1.0})})
    try:
        assert "`extra`" not in render_table()
        own = render_table(["extra", "extra1"])
        assert own.splitlines()[2:4] == [
            "| `extra` | an extra | `rate: 0.25` | `rate: 0.5` (`protocol: tmlr`) |",
            "| `extra1` | an extra | as `extra`, with `rate: 1.0` pinned | – |",  # the pin wins over the protocol
        ]
        assert "  * `rate` = `0.25` (> 0.0, ≤ 1.0): How much `extra` does." in own.splitlines()
    finally:
        TREATMENTS.remove("extra")
        TREATMENTS.remove("extra1")


def test_replace_table_needs_both_markers_in_order():
    assert replace_table(f"a\n{START}\nold\n{END}\nb\n", "new\n") == f"a\n{START}\nnew\n{END}\nb\n"
    for text in ("no markers", f"{END}\n{START}\n", f"{START} only"):
        with pytest.raises(ValueError, match="markers"):
            replace_table(text, "new\n")
