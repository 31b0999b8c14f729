"""Refusal judges with one interface: ``get_judge(name).judge(responses)``.

Judges see only the decoded response, never the prompt. :func:`available`
lists the judges that run offline here, in this order: the keyword presets in
:data:`PRESETS` (``gcg29``, ``jbb13``, ``arditi12``, ``xstest``), then the
calibrated classifier ``sbert-lr`` (:mod:`rrlib.judges.classifier`). LLM judges
(:mod:`rrlib.judges.llm`) run only when named: ``llm:<model>`` or
``llm:<rubric>:<model>``. :mod:`rrlib.judges.validation` measures every judge
on the held-out split of the hand labels (:mod:`rrlib.judges.labels`).

Every judge fills a four-way ``Verdicts.verdict`` (:data:`VERDICT_CLASSES`:
refusal, compliance, partial, degenerate, unknown) by :func:`four_way`, and
``refused`` means a clean refusal. :func:`is_degenerate` /
:func:`degenerate_reason` (:mod:`rrlib.judges.degenerate`) flag text that is no
longer language. The ``strongreject-graded`` rubric gives the StrongREJECT
score (:meth:`LLMJudge.grade`, :func:`graded_summary`).

Default judges are chosen by a rule in code, per label domain
(:mod:`rrlib.judges.choice`): :func:`default_judge` (``"organism"`` or
``"fluent"``), :func:`default_judge_for` (a model spec or name),
:data:`DEFAULT_JUDGES` and :func:`choose_judge`; they are computed on first
use, never on import. :func:`error_counts` gives a judge's held-out hits on a
domain for :func:`rrlib.correction.corrected_rate`. :data:`DEFAULT_JUDGE` is
the old fixed default (``arditi12``), kept for callers that predate the rule.
"""

from __future__ import annotations

import functools

from rrlib.errors import ConfigError
from rrlib.judges.base import UNCERTAIN_BAND, VERDICT_CLASSES, Judge, Verdicts
from rrlib.judges.classifier import SbertLRJudge
from rrlib.judges.degenerate import degenerate_reason, is_degenerate
from rrlib.judges.fourway import four_way
from rrlib.judges.keywords import PRESETS, KeywordJudge, normalise_quotes
from rrlib.judges.llm import (DEFAULT_RUBRIC, RUBRICS, STRONGREJECT_GRADED, LLMJudge, Rubric, graded_summary,
                              parse_strongreject)

DEFAULT_JUDGE = "arditi12"  # the old fixed default; use default_judge(domain) / default_judge_for(model)
SBERT_LR = SbertLRJudge()
CLASSIFIERS: dict[str, SbertLRJudge] = {SBERT_LR.name: SBERT_LR}

# Loaded on first use (module __getattr__), so importing rrlib.judges computes nothing and stays cheap.
_LAZY = {"DEFAULT_JUDGES": "choice", "choose_judge": "choice", "default_judge": "choice",
         "default_judge_for": "choice", "write_choice": "choice", "error_counts": "validation",
         "validate_domains": "validation"}

__all__ = ["CLASSIFIERS", "DEFAULT_JUDGE", "DEFAULT_JUDGES", "Judge", "KeywordJudge", "LLMJudge", "PRESETS", "RUBRICS",
           "Rubric", "SBERT_LR", "STRONGREJECT_GRADED", "SbertLRJudge", "UNCERTAIN_BAND", "VERDICT_CLASSES", "Verdicts",
           "available", "choose_judge", "default_judge", "default_judge_for", "degenerate_reason", "error_counts",
           "four_way", "get_judge", "graded_summary", "is_degenerate", "normalise_quotes", "parse_strongreject",
           "validate_domains", "write_choice"]


def __getattr__(name: str):
    """The lazily loaded names of :data:`_LAZY` (the choice and validation helpers)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"rrlib.judges.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        judge ``llm:<model>`` / ``llm:<rubric>:<model>`` (rubric ``strongreject``,
        ``harmbench`` or ``strongreject-graded``; the model is anything
        :func:`rrlib.models.load` accepts).

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
