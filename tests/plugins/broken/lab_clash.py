"""Registers a treatment under a built-in's name ("redo"): a plugin may not replace the paper's."""

from mtrl import Treatment, register_treatment

register_treatment("redo", implementation=Treatment, display_name="Not ReDo")
