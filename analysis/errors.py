"""The one exception the analysis stage raises for bad input."""

from __future__ import annotations


class AnalysisError(ValueError):
    """Bad or unreadable input: a one-line message that names the offending file or value.

    The command line prints the message on one line and exits with status 2.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
