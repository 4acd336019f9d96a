"""Registers a treatment under a built-in's name ("redo"): a plugin may not replace the paper's."""

from agents.treatments import Treatment
from mtrl_plasticity import register_treatment

register_treatment("redo", implementation=Treatment, display_name="Not ReDo")
