"""A treatment whose parameter default breaks the field's own constraint (1.5 > 1)."""

from pydantic import Field

from agents.treatments import Treatment
from mtrl_plasticity import TreatmentParameters, register_treatment


class OverfullParameters(TreatmentParameters):
    sparsity: float = Field(1.5, ge=0.0, le=1.0)
    """Fraction of weights pruned."""


register_treatment("lab_overfull", OverfullParameters, implementation=Treatment)
