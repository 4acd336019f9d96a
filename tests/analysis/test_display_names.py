"""Tables and figures name architectures and treatments as their registrations do."""

from analysis.paper import arch_long_name, arch_name, arch_sort_key, treatment_name, treatment_sort_key
from mtrl_plasticity.architectures import ARCHITECTURES, register_architecture
from mtrl_plasticity.treatments import TREATMENTS, NoParameters, register_treatment


def test_display_names_and_order_come_from_the_registries():
    assert [arch_name(a) for a in ("mtppo", "moe", "moore", "single")] == ["MTPPO", "MoE", "MOORE", "Single-task PPO"]
    assert arch_long_name("moe") == "Mixture of Experts (MoE)"
    assert [treatment_name(t) for t in ("dense", "gmp80", "set95", "wd")] == ["Dense", "80% Sparsity", "SET 95%",
                                                                            "Weight Decay"]
    assert sorted(["wd", "zzz", "dense", "gmp95", "redo"], key=treatment_sort_key) == ["dense", "gmp95", "redo", "wd",
                                                                                       "zzz"]
    register_treatment("lab-names", NoParameters, implementation="agents.treatments:Treatment", display_name="Lab")
    register_architecture("lab-arch", "agents.networks:build_mtppo", display_name="Lab net", long_name="Lab network")
    try:
        assert (treatment_name("lab-names"), arch_name("lab-arch"), arch_long_name("lab-arch")) == (
            "Lab", "Lab net", "Lab network")
        assert sorted(["lab-arch", "unregistered", "moore"], key=arch_sort_key) == ["moore", "lab-arch", "unregistered"]
        assert (treatment_name("unregistered"), arch_name("unregistered")) == ("unregistered", "unregistered")
    finally:
        TREATMENTS.remove("lab-names")
        ARCHITECTURES.remove("lab-arch")
