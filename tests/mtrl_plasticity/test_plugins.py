"""mtrl.plugins: importing the user's modules, one-line errors, and what a cluster's workers get."""

from __future__ import annotations

import sys

import pytest

from mtrl_plasticity.errors import PluginError, SpecError
from mtrl_plasticity.plugins import check_module_names, load_plugins, module_source, runtime_env_for
from mtrl_plasticity.treatments import TREATMENTS
from orchestrator.spec import expand, validate_spec
from testkit.sweep import tiny_spec_data

PLUGIN = '''
from pydantic import Field
from mtrl_plasticity import register_treatment, TreatmentParameters
from agents.treatments import Treatment


class HalfParameters(TreatmentParameters):
    share: float = Field(0.5, gt=0, le=1)
    """A share."""


@register_treatment("{name}", HalfParameters, counters=["halvings"], display_name="Half")
class Half(Treatment):
    pass
'''


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path for throw-away plugin packages; their modules and registrations go afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    names = set(TREATMENTS.names())
    yield tmp_path
    for module in set(sys.modules) - before:
        del sys.modules[module]
    for name in set(TREATMENTS.names()) - names:
        TREATMENTS.remove(name)


def write_package(root, package: str, modules: dict[str, str]) -> None:
    (root / package).mkdir()
    (root / package / "__init__.py").write_text("")
    for name, text in modules.items():
        (root / package / f"{name}.py").write_text(text)


def test_a_plugin_module_registers_its_names(plugin_dir):
    write_package(plugin_dir, "lab_a", {"treatments": PLUGIN.format(name="half-a")})
    assert load_plugins(["lab_a.treatments", "lab_a.treatments"]) == ["lab_a.treatments"]
    assert TREATMENTS.get("half-a").display_name == "Half"
    assert TREATMENTS.owner("half-a") == "lab_a.treatments"


@pytest.mark.parametrize("modules,message", [
    ("lab.x", "plugins must be a list of module names, e.g. [my_lab.treatments], got 'lab.x'"),
    (["lab x"], "plugin 'lab x' is not a dotted module name"),
    ([3], "plugin 3 is not a dotted module name"),
])
def test_plugin_lists_that_are_not_module_names(modules, message):
    with pytest.raises(PluginError) as info:
        check_module_names(modules)
    assert str(info.value).startswith(message)


def test_broken_plugins_are_one_line_naming_the_module(plugin_dir):
    write_package(plugin_dir, "lab_b", {
        "raises": "x = 1\nraise RuntimeError('no GPU driver here')\n",
        "needs": "import no_such_dependency_xyz\n",
        "clash": PLUGIN.format(name="redo"),
        "bad_default": PLUGIN.format(name="half-b").replace("Field(0.5", "Field(1.5"),
    })
    cases = {
        "lab_missing.treatments": "plugin 'lab_missing.treatments': no module named 'lab_missing' (install it, or run "
                                  "mtrl from the folder that holds it, or add that folder to PYTHONPATH)",
        "lab_b.nothing": "plugin 'lab_b.nothing': no module named 'lab_b.nothing'",
        "lab_b.raises": "plugin 'lab_b.raises' failed to import: RuntimeError: no GPU driver here (raises.py:2)",
        "lab_b.needs": "plugin 'lab_b.needs' failed to import: ModuleNotFoundError: No module named "
                       "'no_such_dependency_xyz' (needs.py:1)",
        "lab_b.clash": "plugin 'lab_b.clash': treatment 'redo' from lab_b.clash clashes with the treatment of that "
                       "name registered by agents.treatment_parameters; choose another name",
        "lab_b.bad_default": "plugin 'lab_b.bad_default': treatment 'half-b': invalid parameter defaults: share: Input "
                             "should be less than or equal to 1 (got 1.5)",
    }
    for module, message in cases.items():
        with pytest.raises(PluginError) as info:
            load_plugins([module])
        assert str(info.value).startswith(message), str(info.value)
        assert "\n" not in str(info.value)
    assert TREATMENTS.owner("redo") == "agents.treatment_parameters" and "half-b" not in TREATMENTS


def test_a_sweep_file_lists_its_plugins_before_the_names_they_register(plugin_dir):
    write_package(plugin_dir, "lab_c", {"treatments": PLUGIN.format(name="half-c")})
    data = tiny_spec_data(plugins=["lab_c.treatments"], treatments=["dense", {"half-c": {"share": 0.25}}])
    spec = validate_spec(data, "lab.yaml")
    assert [t.treatment_params for t in expand(spec)][-1] == {"share": 0.25}
    assert spec.resolved()["plugins"] == ["lab_c.treatments"]
    with pytest.raises(SpecError, match="^lab.yaml: plugin 'lab_nope': no module named 'lab_nope'"):
        validate_spec(tiny_spec_data(plugins=["lab_nope"]), "lab.yaml")
    with pytest.raises(SpecError, match="^lab.yaml: .*unknown treatment 'half-z'"):
        validate_spec(tiny_spec_data(treatments=["half-z"]), "lab.yaml")


def test_workers_get_the_plugins_that_are_not_installed(plugin_dir):
    write_package(plugin_dir, "lab_d", {"treatments": PLUGIN.format(name="half-d")})
    (plugin_dir / "lab_single.py").write_text(PLUGIN.format(name="half-single"))
    load_plugins(["lab_d.treatments", "lab_single"])
    assert module_source("lab_d.treatments") == str((plugin_dir / "lab_d").resolve())
    assert module_source("lab_single") == str((plugin_dir / "lab_single.py").resolve())
    assert module_source("yaml") is None  # installed: the nodes have it as the driver does
    assert runtime_env_for(["lab_d.treatments", "lab_single", "yaml"]) == {
        "py_modules": sorted([str((plugin_dir / "lab_d").resolve()), str((plugin_dir / "lab_single.py").resolve())])}
    assert runtime_env_for(["yaml"]) is None
