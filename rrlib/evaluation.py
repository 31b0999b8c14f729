"""Evaluate a model, or an attack's adapters: generate, judge, measure. Computes and returns; writes nothing.

One generate-then-judge loop (:func:`judge_at_steps`) serves Day 5 (one
attack, every grid step, harmful and benign sets) and Day 7 (the grid of
ranks and seeds), and both get the same judged-response format: the
generation columns plus ``refused``, ``score`` and ``parsed``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

from rrlib.config import GenerationConfig, ModelSpec
from rrlib.generate import generate
from rrlib.correction import corrected_rate
from rrlib.errors import DataError
from rrlib.judges import Verdicts, get_judge
from rrlib.judges.validation import error_counts
from rrlib.metrics import (Estimate, bootstrap_interval, compliance_error, over_refusal_rate,
                           refusal_robustness_rate, response_drift, wilson_interval)
from rrlib.models import LoadedModel, check_adapter_base
from rrlib.utility import reference_answers, utility_loss

if TYPE_CHECKING:
    from rrlib.attack import AttackResult
    from rrlib.data import PromptSets


def generation_config(spec: ModelSpec, max_new_tokens: int | None, batch_size: int | None,
                      seed: int = 0, backend: str = "hf") -> GenerationConfig:
    """Greedy generation settings from notebook parameters (``None`` = the model's default).

    Parameters
    ----------
    spec : ModelSpec
        The model's registry entry (default token budget and batch size).
    max_new_tokens, batch_size : int or None
        Overrides from the notebook parameters.
    seed : int
        Seed (used only when sampling).
    backend : str
        ``hf`` or ``vllm`` (see :mod:`rrlib.vllm_backend`).

    Returns
    -------
    GenerationConfig
        Greedy decoding settings.
    """
    return GenerationConfig(max_new_tokens=int(max_new_tokens or spec.max_new_tokens),
                            batch_size=int(batch_size or spec.batch_size), seed=int(seed), backend=backend)


def judge_responses(responses: pd.DataFrame, judge: str) -> tuple[pd.DataFrame, Verdicts]:
    """Add the judge's verdicts to a response table.

    Parameters
    ----------
    responses : pandas.DataFrame
        From :func:`rrlib.generate.generate`.
    judge : str
        Judge name.

    Returns
    -------
    tuple of (pandas.DataFrame, rrlib.judges.Verdicts)
        The table with ``refused``, ``score``, ``parsed`` and ``verdict`` columns, and the verdicts.
    """
    verdicts = get_judge(judge).judge(responses["response"].tolist())
    out = responses.copy()
    out["refused"] = verdicts.refused
    out["score"] = verdicts.score
    out["parsed"] = verdicts.parsed  # an LLM judge may give no verdict
    out["verdict"] = verdicts.verdict  # refusal, compliance, partial, degenerate or unknown
    return out, verdicts


def judged_flags(judged: pd.DataFrame) -> np.ndarray:
    """Refusal flags of the responses the judge gave a verdict on (unparsed LLM answers are left out of n)."""
    if "parsed" in judged:
        judged = judged[judged["parsed"].astype(bool)]
    return judged["refused"].to_numpy()


def rate_estimates(harmful: pd.DataFrame, benign: pd.DataFrame | None, judge: str | None = None,
                   domain: str | None = None) -> list[Estimate]:
    """RRR, CE, over-refusal, the partial and degenerate shares, and the judge-corrected RRR.

    Parameters
    ----------
    harmful : pandas.DataFrame
        Judged responses to harmful prompts (``refused`` and, when the judge gives one, ``verdict``).
    benign : pandas.DataFrame, optional
        Judged responses to benign prompts.
    judge : str, optional
        The judge behind the verdicts; with ``domain``, adds ``RRR_corrected``.
    domain : str, optional
        The label domain whose held-out labels measure the judge's error (:func:`label_domain`).

    Returns
    -------
    list of Estimate
        ``[RRR, CE, over_refusal, partial, degenerate]`` and, with a judge and domain,
        ``RRR_corrected`` (over-refusal missing with a reason if no benign set). ``partial`` and
        ``degenerate`` are shares of the harmful responses, so a collapse into babble shows as such.
    """
    rrr = refusal_robustness_rate(judged_flags(harmful))
    over = (over_refusal_rate(judged_flags(benign)) if benign is not None
            else Estimate.missing("over_refusal", "no benign control set was given"))
    corrected = [corrected_rrr(harmful, judge, domain)] if judge and domain else []
    return [rrr, compliance_error(rrr), over, *verdict_shares(harmful), *corrected]


def label_domain(spec: ModelSpec) -> str:
    """Which hand-labelled domain measures a judge's error on this model's text: ``organism`` or ``fluent``."""
    return "organism" if spec.is_organism else "fluent"


def corrected_rrr(harmful: pd.DataFrame, judge: str, domain: str) -> Estimate:
    """RRR corrected for the judge's error (Rogan-Gladen), its interval carrying that error.

    The judge's sensitivity and specificity come from the held-out labels of
    ``domain`` (:func:`rrlib.judges.validation.error_counts`);
    :func:`rrlib.correction.corrected_rate` propagates their uncertainty and
    the observed rate's into the interval.

    Parameters
    ----------
    harmful : pandas.DataFrame
        Judged responses to harmful prompts.
    judge : str
        The judge behind the verdicts.
    domain : str
        ``organism`` or ``fluent``.

    Returns
    -------
    Estimate
        ``metric='RRR_corrected'``; missing with the reason in words when the labels are absent or the
        judge is no better than chance on them.
    """
    flags = judged_flags(harmful)
    try:
        sensitivity, specificity = error_counts(judge, domain)
    except DataError as error:
        return Estimate.missing("RRR_corrected", f"no {domain} labels to measure {judge}'s error: {error}",
                                len(flags), "rogan-gladen")
    result = corrected_rate(int(np.sum(flags)), len(flags), sensitivity, specificity)
    method = (f"rogan-gladen bootstrap95 ({domain} labels: sensitivity {result.sensitivity:.3f}, "
              f"specificity {result.specificity:.3f})")
    if not np.isfinite(result.value):
        return Estimate.missing("RRR_corrected", result.reason, len(flags), method)
    return Estimate("RRR_corrected", float(result.value), float(result.ci_low), float(result.ci_high), len(flags),
                    method, result.reason)


def verdict_shares(judged: pd.DataFrame) -> list[Estimate]:
    """The shares of ``partial`` and ``degenerate`` verdicts among judged responses, with Wilson intervals."""
    if "parsed" in judged:
        judged = judged[judged["parsed"].astype(bool)]
    estimates = []
    for name in SHARED_VERDICTS:
        if "verdict" not in judged or judged.empty:
            estimates.append(Estimate.missing(name, "the judge gives no four-way verdict"))
            continue
        k, n = int((judged["verdict"] == name).sum()), len(judged)
        low, high = wilson_interval(k, n)
        estimates.append(Estimate(name, k / n, low, high, n, "wilson95"))
    return estimates


WIDE_METRICS = ("RRR", "RRR_corrected", "CE", "over_refusal", "partial", "degenerate", "RD", "RD_mean", "changed",
                "utility_loss", "degenerate_benign")
SHARED_VERDICTS = ("partial", "degenerate")  # verdict classes reported as shares beside RRR at every step


def by_category(judged: pd.DataFrame, prompts: pd.DataFrame) -> pd.DataFrame:
    """Refusal rate per category with Wilson intervals.

    Parameters
    ----------
    judged : pandas.DataFrame
        Responses with ``id`` and ``refused``.
    prompts : pandas.DataFrame
        The prompt set (for ``category``).

    Returns
    -------
    pandas.DataFrame
        ``category, n, refused, value, ci_low, ci_high`` sorted by rate.
    """
    merged = judged.merge(prompts[["id", "category"]], on="id")
    rows = []
    for category, rows_c in merged.groupby("category", sort=True):
        n, k = len(rows_c), int(rows_c["refused"].sum())
        low, high = wilson_interval(k, n)
        rows.append({"category": category, "n": n, "refused": k, "value": k / n, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows).sort_values(["value", "category"]).reset_index(drop=True)


def judge_all(responses: pd.DataFrame, benign: pd.DataFrame | None, judges: Sequence[str],
              domain: str | None = None) -> pd.DataFrame:
    """RRR, CE and over-refusal under several judges side by side.

    Parameters
    ----------
    responses : pandas.DataFrame
        Responses to harmful prompts.
    benign : pandas.DataFrame, optional
        Responses to benign prompts.
    judges : sequence of str
        Judge names.
    domain : str, optional
        Label domain for each judge's ``RRR_corrected`` (:func:`label_domain`); none without it.

    Returns
    -------
    pandas.DataFrame
        One row per (judge, metric) with ``value, ci_low, ci_high, n, method, reason``.
    """
    rows = []
    for name in judges:
        harmful_j, _ = judge_responses(responses, name)
        benign_j = judge_responses(benign, name)[0] if benign is not None else None
        rows += [{"judge": name, **e.row()} for e in rate_estimates(harmful_j, benign_j, name, domain)]
    return pd.DataFrame(rows)


def judge_at_steps(lm: LoadedModel, prompts: pd.DataFrame, adapters: Mapping[int, str | Path | None],
                   gen: GenerationConfig, judge: str, progress: bool = True, desc: str = "") -> dict[int, pd.DataFrame]:
    """Generate and judge the prompts at every step: the one generate-then-judge loop.

    Step 0 (or any step whose adapter is ``None``) runs the base model with
    adapters off, so it shares the baseline's cached generations.

    Parameters
    ----------
    lm : LoadedModel
        The base model.
    prompts : pandas.DataFrame
        The prompt set.
    adapters : mapping
        Step to adapter folder (``None`` = the base model).
    gen : GenerationConfig
        Decoding settings.
    judge : str
        Judge name.
    progress : bool
        Show progress bars.
    desc : str
        Progress-bar label.

    Returns
    -------
    dict
        Step to judged responses (:func:`judge_responses`).
    """
    judged = {}
    for step in sorted(adapters):
        adapter = None if step == 0 else adapters[step]
        responses = generate(lm, prompts, gen, adapter_dir=adapter, progress=progress,
                             desc=f"step {step} {desc}".strip())
        judged[step] = judge_responses(responses, judge)[0]
    return judged


@dataclass
class AttackEvaluation:
    """Metrics and judged responses at every grid step of one attack run.

    ``steps`` is long: one row per (step, metric, judge): every judge's RRR,
    CE, over-refusal and partial and degenerate shares at every step, and the
    response drift (judge ``sbert``: RD, its mean ``RD_mean`` and the share of
    responses that changed, ``changed``) at every step, and utility at every
    step: the held-out benign reference-answer loss (judge ``reference``:
    ``utility_loss``) and the share of benign answers judged degenerate
    (``degenerate_benign``). ``judged`` holds every
    judge's per-prompt verdicts on the harmful prompts at every step, so that
    Day 6 can be rerun under any judge without generating again.
    """

    steps: pd.DataFrame
    responses: dict[int, pd.DataFrame]
    benign: dict[int, pd.DataFrame]
    distances: dict[int, pd.DataFrame]
    judge: str
    judged: dict[str, dict[int, pd.DataFrame]] = field(default_factory=dict)

    def primary(self) -> pd.DataFrame:
        """The rows of the primary judge and RD: one value per (step, metric)."""
        return self.steps[self.steps["judge"].isin([self.judge, "sbert", "reference"])]

    def wide(self) -> pd.DataFrame:
        """One row per step: each metric's value and interval as columns."""
        table = self.primary().pivot_table(index="step", columns="metric", values=["value", "ci_low", "ci_high"],
                                           aggfunc="first")
        out = pd.DataFrame(index=table.index)
        for metric in WIDE_METRICS:
            if ("value", metric) in table:
                out[metric] = table[("value", metric)]
                out[f"{metric} 95% CI"] = [f"[{lo:.3f}, {hi:.3f}]" if pd.notna(lo) else ""
                                           for lo, hi in zip(table[("ci_low", metric)], table[("ci_high", metric)])]
        return out.reset_index()


def evaluate_attack(lm: LoadedModel, sets: "PromptSets", attack: "AttackResult", gen: GenerationConfig, judge: str,
                    seed: int = 0, judges: Sequence[str] = (), progress: bool = True) -> AttackEvaluation:
    """Generate, judge and measure at every saved grid step of an attack.

    Responses are generated once per step; every judge then judges the same
    responses. RD at each step compares that step's responses with step 0's,
    prompt by prompt.

    Parameters
    ----------
    lm : LoadedModel
        The base model.
    sets : PromptSets
        Harmful and benign sets.
    attack : AttackResult
        From :func:`rrlib.attack.run_attack` or :func:`rrlib.attack.load_attack`.
    gen : GenerationConfig
        Decoding settings (the same as the baseline's).
    judge : str
        The primary judge.
    seed : int
        Bootstrap seed of RD's interval.
    judges : sequence of str
        Extra judges, measured at every step on the same responses.
    progress : bool
        Show progress bars.

    Returns
    -------
    AttackEvaluation
        The long metrics table and per-step judged responses.
    """
    for step, folder in attack.adapters.items():  # a mismatched adapter fails before anything is generated
        if step:
            check_adapter_base(lm, folder)
    harmful = judge_at_steps(lm, sets.harmful, attack.adapters, gen, judge, progress, "harmful")
    benign = judge_at_steps(lm, sets.benign, attack.adapters, gen, judge, progress, "benign")
    references = reference_answers(sets.benign, lm.spec)
    extras = [j for j in dict.fromkeys(judges) if j != judge]
    judged = {judge: harmful}
    first = min(attack.adapters)
    rows, distances = [], {}
    for step in sorted(attack.adapters):
        drift, distances[step] = response_drift(harmful[first], harmful[step], seed=seed)
        rows += [{**e.row(), "step": step, "judge": judge}
                 for e in rate_estimates(harmful[step], benign[step], judge, label_domain(lm.spec))]
        rows += [{**e.row(), "step": step, "judge": "sbert"} for e in drift_estimates(drift, distances[step])]
        checkpoint = None if step == 0 else attack.adapters[step]
        rows.append({**utility_loss(lm, references, checkpoint, seed).row(), "step": step, "judge": "reference"})
        degenerate_benign = dataclasses.replace(verdict_shares(benign[step])[1], metric="degenerate_benign")
        rows.append({**degenerate_benign.row(), "step": step, "judge": judge})
        for extra in extras:
            judged.setdefault(extra, {})[step] = judge_responses(harmful[step], extra)[0]
            benign_extra = judge_responses(benign[step], extra)[0]
            rows += [{**e.row(), "step": step, "judge": extra}
                     for e in rate_estimates(judged[extra][step], benign_extra, extra, label_domain(lm.spec))
                     if e.metric != "CE"]
    return AttackEvaluation(pd.DataFrame(rows), harmful, benign, distances, judge, judged)


def drift_estimates(rd: Estimate, distances: pd.DataFrame) -> list[Estimate]:
    """RD (the median distance), beside it the mean distance and the share of responses that changed.

    The median stays 0 until half the responses change; the mean and the
    changed share show a partial change that the median hides.

    Parameters
    ----------
    rd : Estimate
        From :func:`rrlib.metrics.response_drift`.
    distances : pandas.DataFrame
        Its per-prompt distances (``before, after, distance``).

    Returns
    -------
    list of Estimate
        ``[RD, RD_mean, changed]``.
    """
    if rd.value is None or distances.empty:
        return [rd, Estimate.missing("RD_mean", rd.reason, 0, "bootstrap95"),
                Estimate.missing("changed", rd.reason, 0, "wilson95")]
    values = distances["distance"].to_numpy()
    low, high = bootstrap_interval(values, np.mean)
    k = int((distances["before"] != distances["after"]).sum())
    c_low, c_high = wilson_interval(k, len(distances))
    return [rd, Estimate("RD_mean", float(values.mean()), low, high, len(values), "bootstrap95"),
            Estimate("changed", k / len(distances), c_low, c_high, len(distances), "wilson95")]
