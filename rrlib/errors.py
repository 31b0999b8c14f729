"""User-facing errors.

Every problem a user can fix (a bad file, an unknown model, a wrong parameter)
raises a subclass of :class:`RRError`. Its message is one line that names the
problem and the fix; the ``rr`` command and the notebooks print that line
without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class RRError(Exception):
    """Base class for errors the user can fix; the message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class DataError(RRError):
    """A data file is missing, unreadable or does not match the schema."""


class ConfigError(RRError):
    """A configuration value or parameter is invalid."""


class ModelError(RRError):
    """A model cannot be resolved or loaded."""


class OverlapError(DataError):
    """Evaluation, attack or training sets share prompts."""
