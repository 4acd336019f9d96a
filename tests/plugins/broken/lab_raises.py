"""A plugin whose import fails with its own error."""

raise RuntimeError("lab settings file not found")
