"""Refusal judges with one interface: ``get_judge(name).judge(responses)``.

Judges see only the decoded response, never the prompt. Available judges:
the keyword presets in :data:`PRESETS` (``gcg29``, ``jbb13``, ``arditi12``,
``xstest``).
"""

from __future__ import annotations

from rrlib.errors import ConfigError
from rrlib.judges.base import Judge, Verdicts
from rrlib.judges.keywords import PRESETS, KeywordJudge, normalise_quotes

DEFAULT_JUDGE = "arditi12"

__all__ = ["DEFAULT_JUDGE", "Judge", "KeywordJudge", "PRESETS", "Verdicts", "available", "get_judge",
           "normalise_quotes"]


def available() -> list[str]:
    """Names of the judges that can run here."""
    return list(PRESETS)


def get_judge(name: str) -> Judge:
    """Return a judge by name.

    Parameters
    ----------
    name : str
        A preset name such as ``arditi12``.

    Returns
    -------
    Judge
        An object with ``judge(responses) -> Verdicts``.

    Raises
    ------
    ConfigError
        If the name is unknown.
    """
    key = str(name).lower().replace("-", "").replace("_", "")
    if key in PRESETS:
        return PRESETS[key]
    raise ConfigError(f"unknown judge {name!r}; available judges: {', '.join(available())}")
