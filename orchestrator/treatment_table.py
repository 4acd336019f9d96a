"""The table of treatments in ``docs/treatments.md``, generated from the treatment registry.

    python -m orchestrator.treatment_table                            # print it
    python -m orchestrator.treatment_table --write docs/treatments.md  # rewrite it between the markers

What each column comes from:

* **name**, **what**: the registered names (:data:`mtrl_plasticity.treatments.TREATMENTS`, in
  registration order) and their ``description``;
* **parameters**: the fields of the parameter model with their defaults (the draft
  protocol); a variant (``gmp95``) shows what it pins instead of repeating its base's list;
* **published protocol**: the sweep files of ``sweeps/`` that declare ``protocol: tmlr``
  and run the name, with the parameters their trials get (each treatment's
  ``protocol_defaults["tmlr"]``, then the file's own), or ``protocol_defaults["tmlr"]``
  alone for a name no such file runs; then :data:`NOTES`.

Below the table, every parametrised treatment's parameters with their field docstrings
(``use_attribute_docstrings``) and bounds. Torch-free: it reads registrations and sweep
files, builds nothing. ``tests/docs/test_treatment_table.py`` keeps the committed file
equal to this output.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import typing
from collections.abc import Sequence
from typing import Any

from mtrl_plasticity.treatments import TREATMENTS, TreatmentSpec
from orchestrator.preflight import is_builtin
from orchestrator.spec import cell_fields, load_spec, treatment_cells

START = "<!-- treatment-table:start -->"
END = "<!-- treatment-table:end -->"
REGENERATE = "python -m orchestrator.treatment_table --write docs/treatments.md"

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEPS_DIR = os.path.join(REPO, "sweeps")
PUBLISHED_PROTOCOL = "tmlr"

NOTES: dict[str, str] = {
    "set": "`{epsilon: 11}`: the published text's other reading, Mocanu's fixed-epsilon layout "
           "(see [SET](#set))",
}
"""What neither the registry nor the sweep files can say, by treatment name, written by hand.

The published protocol lists SET at "95%" *and* "epsilon 11", which cannot both hold; the
sweep file runs the first reading (``set95``) and the second is only a parameter choice of
``set``, so no registration or sweep file records it. Keep this to such readings of the
paper: everything a registration or a sweep file states is derived, not written here."""


def format_value(value: Any) -> str:
    """A parameter value as a sweep file would write it (YAML flow style)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return re.sub(r"e([+-])0+(?=\d)", r"e\1", repr(value))  # 1e-06 -> 1e-6, as sweep files write it
    return str(value)


def _assignments(values: dict[str, Any]) -> str:
    return ", ".join(f"`{k}: {format_value(v)}`" for k, v in values.items())


def _defaults(spec: TreatmentSpec) -> dict[str, Any]:
    return {name: field.get_default(call_default_factory=True)
            for name, field in spec.parameters.model_fields.items()}


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def published_runs(sweeps_dir: str = SWEEPS_DIR) -> dict[str, list[tuple[str, str, dict[str, Any]]]]:
    """``{treatment: [(sweep name, file name, parameters its trials get), ...]}`` over the sweep
    files of ``sweeps_dir`` whose ``protocol`` is the published one, in file-name order."""
    runs: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    if not os.path.isdir(sweeps_dir):
        return runs
    for file_name in sorted(os.listdir(sweeps_dir)):
        if not file_name.endswith((".yaml", ".yml")):
            continue
        spec = load_spec(os.path.join(sweeps_dir, file_name))
        if spec.protocol != PUBLISHED_PROTOCOL:
            continue
        for benchmark, arch, choice in treatment_cells(spec):
            params = cell_fields(spec, benchmark, arch, choice)["treatment_params"]
            entry = (spec.name, file_name, params)
            if entry not in runs.setdefault(choice.name, []):
                runs[choice.name].append(entry)
    return runs


def _published(spec: TreatmentSpec, runs: list[tuple[str, str, dict[str, Any]]]) -> str:
    parts = []
    for sweep, file_name, params in runs:
        shown = f"[`{sweep}`](../sweeps/{file_name})"
        parts.append(f"{shown}: {_assignments(params)}" if params else shown)
    if not runs and spec.protocol_defaults(PUBLISHED_PROTOCOL):
        parts.append(f"{_assignments(spec.protocol_defaults(PUBLISHED_PROTOCOL))} (`protocol: {PUBLISHED_PROTOCOL}`)")
    if spec.name in NOTES:
        parts.append(NOTES[spec.name])
    return "; ".join(parts) or "–"


def _parameters(spec: TreatmentSpec) -> str:
    if spec.name != spec.base:
        return f"as `{spec.base}`, with {_assignments(dict(spec.pinned))} pinned"
    return _assignments(_defaults(spec)) or "–"


def _bounds(field) -> str:
    symbols = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    bounds = [f"{symbols[attr]} {getattr(m, attr)}" for m in field.metadata for attr in symbols if hasattr(m, attr)]
    annotation = field.annotation
    if typing.get_origin(annotation) is typing.Literal:
        bounds.append("one of " + ", ".join(f"`{c}`" for c in typing.get_args(annotation)))
    return f" ({', '.join(bounds)})" if bounds else ""


def builtin_names() -> list[str]:
    """The treatments this package registers (a plugin imported in the same process is left out)."""
    return [name for name in TREATMENTS.names() if is_builtin(TREATMENTS.owner(name))]


def render_table(names: Sequence[str] | None = None, sweeps_dir: str = SWEEPS_DIR) -> str:
    """The Markdown table of ``names`` (default: the built-ins) and their parameter lists."""
    names = list(names) if names is not None else builtin_names()
    runs = published_runs(sweeps_dir)
    specs = [TREATMENTS.get(name) for name in names]
    lines = [
        "| name | what | parameters (draft defaults) | published protocol |",
        "|---|---|---|---|",
    ]
    for spec in specs:
        lines.append(f"| `{spec.name}` | {_cell(spec.description)} | {_cell(_parameters(spec))} | "
                     f"{_cell(_published(spec, runs.get(spec.name, [])))} |")
    lines += ["", "Parameters, with their draft defaults (the published values are in the table):"]
    for spec in specs:
        fields = spec.parameters.model_fields
        if spec.name != spec.base or not fields:
            continue
        lines += ["", f"* `{spec.name}`:"]
        for name, field in fields.items():
            doc = " ".join((field.description or "").replace("``", "`").split())
            default = format_value(field.get_default(call_default_factory=True))
            lines.append(f"  * `{name}` = `{default}`{_bounds(field)}: {doc}")
    return "\n".join(lines) + "\n"


def replace_table(text: str, table: str) -> str:
    """``text`` with everything between the two markers replaced by ``table``."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the file has no {START} ... {END} markers, in this order")
    return text[: start + len(START)] + "\n" + table + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.treatment_table", description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="FILE", help="rewrite the table between the markers of FILE")
    args = parser.parse_args(argv)
    table = render_table()
    if not args.write:
        sys.stdout.write(table)
        return 0
    with open(args.write, encoding="utf-8") as f:
        text = f.read()
    try:
        updated = replace_table(text, table)
    except ValueError as exc:
        print(f"{args.write}: {exc}", file=sys.stderr)
        return 2
    if updated != text:
        with open(args.write, "w", encoding="utf-8") as f:
            f.write(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
