"""Refusal judges with one interface: ``get_judge(name).judge(responses)``.

Judges see only the decoded response, never the prompt. :func:`available`
lists the judges that run offline here, in this order: the keyword presets in
:data:`PRESETS` (``gcg29``, ``jbb13``, ``arditi12``, ``xstest``), then the
calibrated classifier ``sbert-lr`` (:mod:`rrlib.judges.classifier`). LLM judges
(:mod:`rrlib.judges.llm`) run only when named: ``llm:<model>`` or
``llm:<rubric>:<model>``. :mod:`rrlib.judges.validation` measures every judge
on the held-out split of the hand labels (:mod:`rrlib.judges.labels`).
"""

from __future__ import annotations

import functools

from rrlib.errors import ConfigError
from rrlib.judges.base import UNCERTAIN_BAND, Judge, Verdicts
from rrlib.judges.classifier import SbertLRJudge
from rrlib.judges.keywords import PRESETS, KeywordJudge, normalise_quotes
from rrlib.judges.llm import DEFAULT_RUBRIC, RUBRICS, LLMJudge, Rubric

DEFAULT_JUDGE = "arditi12"
SBERT_LR = SbertLRJudge()
CLASSIFIERS: dict[str, SbertLRJudge] = {SBERT_LR.name: SBERT_LR}

__all__ = ["CLASSIFIERS", "DEFAULT_JUDGE", "Judge", "KeywordJudge", "LLMJudge", "PRESETS", "RUBRICS", "Rubric",
           "SBERT_LR", "SbertLRJudge", "UNCERTAIN_BAND", "Verdicts", "available", "get_judge", "normalise_quotes"]


def _key(name: str) -> str:
    return str(name).lower().replace("-", "").replace("_", "")


def available() -> list[str]:
    """Names of the judges that can run here, offline: keyword presets, then classifiers."""
    return [*PRESETS, *CLASSIFIERS]


def get_judge(name: str) -> Judge:
    """Return a judge by name.

    Parameters
    ----------
    name : str
        A preset such as ``arditi12``, the classifier ``sbert-lr``, or an LLM
        judge ``llm:<model>`` / ``llm:<rubric>:<model>`` (rubric ``strongreject``
        or ``harmbench``; the model is anything :func:`rrlib.models.load` accepts).

    Returns
    -------
    Judge
        An object with ``judge(responses) -> Verdicts``.

    Raises
    ------
    ConfigError
        If the name is unknown.
    """
    name = str(name).strip()
    if name.lower().startswith("llm:"):
        rest = name[4:]
        rubric, _, model = rest.partition(":")
        if rubric.lower() in RUBRICS and model:
            return _llm_judge(model, rubric.lower())
        return _llm_judge(rest, DEFAULT_RUBRIC)
    key = _key(name)
    known = {_key(n): j for n, j in [*PRESETS.items(), *CLASSIFIERS.items()]}
    if key in known:
        return known[key]
    raise ConfigError(f"unknown judge {name!r}; available judges: {', '.join(available())}, "
                      "or an LLM judge as llm:<model>")


@functools.lru_cache(maxsize=4)
def _llm_judge(model: str, rubric: str) -> LLMJudge:
    """One LLM judge per (model, rubric) per process, so its model loads once."""
    if not model.strip():
        raise ConfigError("an LLM judge needs a model: use llm:<model> or llm:<rubric>:<model>, "
                          "e.g. llm:qwen2.5-1.5b-instruct")
    return LLMJudge(model.strip(), rubric)
