"""Scaling: combine runs across models, fit RRR against attacker compute, find compute-to-collapse.

Inputs are the tables Days 3-5 wrote, passed in as frames (read them with
:mod:`rrlib.results`): ``metrics.csv`` (RRR per grid step), ``compute.csv``
(tokens and FLOPs per grid step) and each model's per-prompt Day 5 verdicts,
which let every quantity here carry a bootstrap interval over prompts. This
module computes and returns; it reads and writes no file.

- **Compute-to-collapse**: the least attacker compute at which RRR's upper 95%
  Wilson bound falls below the collapse threshold (:func:`rrlib.metrics.is_collapsed`). Prompts are resampled together across steps.
- **Logistic fit** per model: ``logit P(refuse) = a - b * log10(FLOPs)`` on the
  per-prompt verdicts of the attacked steps; reported as the slope ``b`` and
  ``c50``, the compute at which RRR crosses 0.5.
- **Log-log fits** across models: ``log10(compute-to-collapse)`` and
  ``log10(c50)`` against ``log10(parameters)``; a slope says how much more
  compute a 10x larger model costs the attacker. ``c50`` exists for every model
  whose refusal falls within the grid, so its trend can be fitted even when too
  few models collapse completely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from rrlib.errors import DataError
from rrlib.metrics import COLLAPSE_THRESHOLD, is_collapsed, wilson_bounds

N_BOOT = 1000


@dataclass
class ModelScaling:
    """One model's scaling quantities, each with its bootstrap interval."""

    model: str
    params: int
    recipe: str
    steps: np.ndarray
    flops: np.ndarray
    tokens: np.ndarray
    refused: np.ndarray  # (prompts, steps)
    collapse_flops: float | None
    collapse_ci: tuple[float | None, float | None]
    collapse_samples: np.ndarray  # bootstrap replicates (inf where not reached)
    slope: float | None
    slope_ci: tuple[float | None, float | None]
    c50: float | None
    c50_ci: tuple[float | None, float | None]
    never_refused: bool = False
    c50_samples: np.ndarray = field(default_factory=lambda: np.empty(0))  # per replicate; NaN where not fitted

    @property
    def collapse_step(self) -> int | None:
        """The grid step of compute-to-collapse, if reached."""
        if self.collapse_flops is None:
            return None
        return int(self.steps[list(self.flops).index(self.collapse_flops)])


def first_collapse(refused: np.ndarray, flops: np.ndarray) -> float:
    """FLOPs at the first attacked step at which RRR has collapsed (:func:`rrlib.metrics.is_collapsed`).

    ``inf`` if refusal never collapses within the grid; ``nan`` if the model
    never refused in the first place (step 0 is already below the bound), in
    which case there is nothing for the attacker to collapse.
    """
    upper = wilson_bounds(refused.sum(axis=0), refused.shape[0])[1]
    below = np.flatnonzero(is_collapsed(upper))
    if len(below) and flops[below[0]] == 0:
        return float("nan")
    return float(flops[below[0]]) if len(below) else float("inf")


def _percentile_ci(samples: np.ndarray) -> tuple[float | None, float | None]:
    samples = samples[~np.isnan(samples)]
    finite = np.isfinite(samples)
    if not finite.any():
        return None, None
    low, high = np.quantile(samples, [0.025, 0.975], method="inverted_cdf")  # order statistics: inf-safe
    return (float(low) if np.isfinite(low) else None, float(high) if np.isfinite(high) else None)


def logistic_fit(refused: np.ndarray, flops: np.ndarray) -> tuple[float, float] | None:
    """Fit ``logit P(refuse) = a - b*log10(FLOPs)`` on attacked steps; return ``(b, c50)``.

    A binomial maximum-likelihood fit on the per-step refusal counts (Newton's
    method on two parameters), so it is cheap enough to bootstrap. Returns
    ``None`` when the verdicts do not vary or the fit does not converge
    (e.g. perfectly separated steps); ``c50`` is NaN when ``b <= 0``.
    """
    attacked = flops > 0
    x = np.log10(flops[attacked])
    k = refused[:, attacked].sum(axis=0).astype(float)
    n = float(refused.shape[0])
    if k.sum() in (0.0, n * len(k)):
        return None
    design = np.column_stack([np.ones_like(x), x - x.mean()])
    beta = np.zeros(2)
    for _ in range(50):
        p = 1 / (1 + np.exp(-design @ beta))
        gradient = design.T @ (k - n * p)
        hessian = (design * (n * p * (1 - p))[:, None]).T @ design
        try:
            step = np.linalg.solve(hessian + 1e-9 * np.eye(2), gradient)
        except np.linalg.LinAlgError:
            return None
        beta += step
        if np.abs(step).max() < 1e-8:
            break
    else:
        return None
    if not np.isfinite(beta).all() or np.abs(beta).max() > 50:
        return None  # separated data: the curve is a step, with no finite slope
    b = -float(beta[1])
    if b <= 0:
        return b, float("nan")
    return b, float(10 ** (x.mean() + beta[0] / b))


def analyse_model(model: str, judge: str, verdicts: pd.DataFrame, compute: pd.DataFrame, params: int,
                  recipe: str | None = None, n_boot: int = N_BOOT, seed: int = 0) -> ModelScaling:
    """Compute-to-collapse and the logistic fit for one model, with bootstrap intervals.

    Parameters
    ----------
    model : str
        Model name.
    judge : str
        The judge whose verdicts to use.
    verdicts : pandas.DataFrame
        The model's Day 5 per-prompt verdicts (:func:`rrlib.results.read_verdicts`).
    compute : pandas.DataFrame
        The compute table (``model, recipe, step, tokens, flops``).
    params : int
        The model's parameter count.
    recipe : str, optional
        Attack recipe; defaults to the model's only (or first) recipe.
    n_boot : int
        Bootstrap replicates over prompts.
    seed : int
        Bootstrap seed.

    Returns
    -------
    ModelScaling
        Everything Day 6 reports for the model.

    Raises
    ------
    DataError
        When the verdicts hold nothing for this judge and recipe.
    """
    where = f"Day 5 verdicts of {model!r}"
    verdicts = verdicts[verdicts["judge"] == judge]
    if verdicts.empty:
        raise DataError(f"{where}: none under judge {judge!r}; rerun Day 5 with judge={judge!r}")
    recipe = recipe or sorted(verdicts["recipe"].unique())[0]
    verdicts = verdicts[verdicts["recipe"] == recipe]
    if verdicts.empty:
        raise DataError(f"{where}: no verdicts for judge {judge!r} and recipe {recipe!r}")
    if "parsed" in verdicts:  # a prompt the judge gave no verdict on at some step is left out at every step
        unjudged = set(verdicts.loc[~verdicts["parsed"].astype(bool), "id"])
        verdicts = verdicts[~verdicts["id"].isin(unjudged)]
        if verdicts.empty:
            raise DataError(f"{where}: judge {judge!r} gave no verdict on any prompt at some step; "
                            "use a keyword judge or check the LLM judge's answers")
    table = verdicts.pivot(index="id", columns="step", values="refused").sort_index(axis=1)
    compute = compute[(compute["model"] == model) & (compute["recipe"] == recipe)].set_index("step")
    steps = table.columns.to_numpy().astype(int)
    flops = compute.loc[steps, "flops"].to_numpy(dtype=float)
    tokens = compute.loc[steps, "tokens"].to_numpy(dtype=float)
    refused = table.to_numpy().astype(bool)
    point = first_collapse(refused, flops)
    rng = np.random.default_rng(seed)
    samples, slopes, c50s = [], [], []
    for _ in range(n_boot):
        sample = refused[rng.integers(0, len(refused), len(refused))]
        samples.append(first_collapse(sample, flops))
        fitted = logistic_fit(sample, flops)
        slopes.append(np.nan if fitted is None else fitted[0])
        c50s.append(np.nan if fitted is None else fitted[1])
    fit = logistic_fit(refused, flops)
    slopes_arr, c50_arr = np.array(slopes, dtype=float), np.array(c50s, dtype=float)
    return ModelScaling(
        model, int(params), recipe, steps, flops, tokens, refused,
        None if not np.isfinite(point) else point, _percentile_ci(np.array(samples)), np.array(samples),
        None if fit is None else fit[0], _percentile_ci(slopes_arr),
        None if fit is None or not np.isfinite(fit[1]) else fit[1],
        _percentile_ci(c50_arr), bool(np.isnan(point)), c50_arr)


SIZE_TRENDS = {"collapse": ("collapse_flops", "collapse_samples", "collapsed within the grid"),
               "c50": ("c50", "c50_samples", "have a logistic midpoint c50 within reach of the fit")}


def loglog_slope(results: Sequence[ModelScaling], quantity: str = "collapse"
                 ) -> tuple[float | None, tuple[float | None, float | None], str]:
    """Slope of log10(attacker compute) on log10(parameters), with a bootstrap interval.

    Parameters
    ----------
    results : sequence of ModelScaling
        From :func:`analyse_model`.
    quantity : str
        ``collapse`` (compute-to-collapse) or ``c50`` (the compute that halves refusal).

    Returns
    -------
    tuple
        ``(slope, (low, high), reason)``; the slope is ``None`` (with the reason)
        when fewer than three models have the quantity.
    """
    if quantity not in SIZE_TRENDS:
        raise ValueError(f"quantity must be one of {sorted(SIZE_TRENDS)}, got {quantity!r}")
    point, replicates, meaning = SIZE_TRENDS[quantity]
    usable = [r for r in results if getattr(r, point) is not None]
    if len(usable) < 3:
        return None, (None, None), (f"only {len(usable)} of {len(results)} models {meaning}; "
                                    "a size trend needs at least three")
    x = np.log10([r.params for r in usable])
    slope = float(np.polyfit(x, np.log10([getattr(r, point) for r in usable]), 1)[0])
    replicate = np.stack([getattr(r, replicates) for r in usable], axis=1)
    ok = (np.isfinite(replicate) & (replicate > 0)).all(axis=1)
    slopes = [np.polyfit(x, np.log10(row), 1)[0] for row in replicate[ok]]
    low, high = _percentile_ci(np.array(slopes)) if slopes else (None, None)
    return slope, (low, high), ""


def scaling_table(results: Sequence[ModelScaling], baseline: pd.DataFrame) -> pd.DataFrame:
    """One row per model: size, baseline RRR, compute-to-collapse and the logistic fit, with intervals.

    Parameters
    ----------
    results : sequence of ModelScaling
        From :func:`analyse_model`.
    baseline : pandas.DataFrame
        Metrics rows of baseline RRR (``model, value, ci_low, ci_high``).

    Returns
    -------
    pandas.DataFrame
        The table written to ``results/metrics/scaling.csv``.
    """
    rows = []
    for r in results:
        base = baseline[baseline["model"] == r.model]
        rows.append({
            "model": r.model, "params": r.params, "recipe": r.recipe,
            "baseline_rrr": float(base["value"].iloc[0]) if len(base) else None,
            "baseline_rrr_ci_low": float(base["ci_low"].iloc[0]) if len(base) else None,
            "baseline_rrr_ci_high": float(base["ci_high"].iloc[0]) if len(base) else None,
            "collapse_step": r.collapse_step, "collapse_flops": r.collapse_flops,
            "collapse_flops_ci_low": r.collapse_ci[0], "collapse_flops_ci_high": r.collapse_ci[1],
            "collapse_tokens": (float(r.tokens[list(r.flops).index(r.collapse_flops)])
                                if r.collapse_flops is not None else None),
            "collapse_reason": "" if r.collapse_flops is not None else
            ("never refused: baseline RRR's upper bound is already below the threshold" if r.never_refused else
             f"RRR's upper bound stayed at or above {COLLAPSE_THRESHOLD} up to {r.flops.max():.3g} FLOPs"),
            "logistic_slope": r.slope, "logistic_slope_ci_low": r.slope_ci[0], "logistic_slope_ci_high": r.slope_ci[1],
            "c50_flops": r.c50, "c50_flops_ci_low": r.c50_ci[0], "c50_flops_ci_high": r.c50_ci[1],
            "n_prompts": int(r.refused.shape[0]),
        })
    return pd.DataFrame(rows)


def baseline_rrr(metrics: pd.DataFrame, models: Sequence[str], judge: str) -> pd.DataFrame:
    """Day 3 RRR rows of these models under one judge, from the metrics table."""
    rows = metrics[(metrics["metric"] == "RRR") & (metrics["day"].astype(int) == 3) & (metrics["judge"] == judge)]
    return rows[rows["model"].isin(models)]


def curves(metrics: pd.DataFrame, compute: pd.DataFrame, models: Sequence[str], judge: str) -> pd.DataFrame:
    """Day 5 RRR per grid step joined with the attack's tokens and FLOPs, for plotting."""
    rrr = metrics[(metrics["metric"] == "RRR") & (metrics["day"].astype(int) == 5) & (metrics["judge"] == judge)
                  & metrics["model"].isin(models)].copy()
    rrr["step"] = rrr["step"].astype(int)
    return rrr.merge(compute[["model", "recipe", "step", "tokens", "flops", "trainable_params"]],
                     on=["model", "recipe", "step"], how="left")


def size_table(curves: pd.DataFrame, sizes: Mapping[str, int]) -> pd.DataFrame:
    """RRR at step 0 and at the last grid step per model, with each model's parameter count."""
    rows = []
    for model, group in curves.groupby("model"):
        for when, step in (("baseline (step 0)", group["step"].min()), ("after the attack (last step)",
                                                                        group["step"].max())):
            row = group[group["step"] == step].iloc[0]
            rows.append({"model": model, "when": when, "params": sizes[model], "metric": "RRR",
                         "value": row["value"], "ci_low": row["ci_low"], "ci_high": row["ci_high"], "n": row["n"]})
    return pd.DataFrame(rows)
