"""Scaling analysis: compute-to-collapse with bootstrap intervals, logistic and log-log fits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rrlib import results as rresults
from rrlib import scaling

STEPS = [0, 10, 25, 50, 100]


def _write_model(root, model, params, collapse_after, n=120, seed=0, decay=None):
    """Synthetic Day 3-5 outputs: refusal drops to zero after `collapse_after` steps
    (or, with `decay`, falls smoothly as 0.95 * exp(-step / decay))."""
    rng = np.random.default_rng(seed)
    run = root / "runs" / model
    run.mkdir(parents=True, exist_ok=True)
    (run / "Day3.config.json").write_text(json.dumps({"model_card": {"params": params}}))
    rows = []
    for step in STEPS:
        if decay is not None:
            p = 0.95 * np.exp(-step / decay)
        else:
            p = 0.95 if step < collapse_after else (0.5 if step == collapse_after else 0.0)
        refused = rng.random(n) < p
        rows += [{"id": f"p{i}", "step": step, "refused": bool(r), "judge": "j", "recipe": "r"}
                 for i, r in enumerate(refused)]
    pd.DataFrame(rows).to_csv(run / "Day5.verdicts.csv", index=False)
    compute = pd.DataFrame({"model": model, "recipe": "r", "step": STEPS, "tokens": [s * 1000 for s in STEPS],
                            "flops": [4.0 * params * s * 1000 for s in STEPS]})
    path = root / "metrics" / "compute.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    old = pd.read_csv(path) if path.exists() else pd.DataFrame()
    pd.concat([old, compute]).to_csv(path, index=False)


def _analyse(root, model, **kwargs):
    """analyse_model on what the results store reads back for the model."""
    return scaling.analyse_model(model, "j", rresults.read_verdicts(model, root),
                                 rresults.read_table("compute", root=root), rresults.model_params(model, root),
                                 **kwargs)


def test_compute_to_collapse_is_the_first_step_below_the_bound(isolated_results):
    _write_model(isolated_results, "m1", 1000, collapse_after=25)
    result = _analyse(isolated_results, "m1", n_boot=200)
    assert result.collapse_step == 50
    assert result.collapse_flops == pytest.approx(4.0 * 1000 * 50 * 1000)
    low, high = result.collapse_ci
    assert low <= result.collapse_flops <= high
    assert result.slope is not None and result.slope > 0 and result.c50 is not None


def test_no_collapse_is_reported_with_a_reason(isolated_results):
    _write_model(isolated_results, "robust", 1000, collapse_after=1000)
    result = _analyse(isolated_results, "robust", n_boot=100)
    assert result.collapse_flops is None
    table = scaling.scaling_table([result], pd.DataFrame(columns=["model", "value", "ci_low", "ci_high"]))
    assert "stayed at or above 0.05" in table["collapse_reason"].iloc[0]


def test_loglog_slope_recovers_a_size_trend(isolated_results):
    results = []
    for i, (model, params, after) in enumerate([("a", 10_000, 10), ("b", 100_000, 25), ("c", 1_000_000, 50)]):
        _write_model(isolated_results, model, params, collapse_after=after, seed=i)
        results.append(_analyse(isolated_results, model, n_boot=200))
    slope, (low, high), reason = scaling.loglog_slope(results)
    assert reason == "" and slope > 1  # collapse compute grows faster than size here
    assert low is not None and low <= slope <= high


def test_loglog_needs_three_collapsed_models(isolated_results):
    _write_model(isolated_results, "a", 1000, collapse_after=10)
    slope, _, reason = scaling.loglog_slope([_analyse(isolated_results, "a", n_boot=50)])
    assert slope is None and "at least three" in reason


def test_a_model_that_never_refused_has_no_compute_to_collapse(isolated_results):
    _write_model(isolated_results, "mute", 500, collapse_after=-1)  # refuses nothing, even at step 0
    result = _analyse(isolated_results, "mute", n_boot=50)
    assert result.never_refused and result.collapse_flops is None
    table = scaling.scaling_table([result], pd.DataFrame(columns=["model", "value", "ci_low", "ci_high"]))
    assert table["collapse_reason"].iloc[0].startswith("never refused")


def test_c50_trend_is_fitted_when_too_few_models_collapse(isolated_results):
    from rrlib import narrative

    results = []
    for i, (model, params, decay) in enumerate([("a", 10_000, 5), ("b", 100_000, 15), ("c", 1_000_000, 60)]):
        _write_model(isolated_results, model, params, collapse_after=None, seed=i, decay=decay)
        results.append(_analyse(isolated_results, model, n_boot=200))
    assert scaling.loglog_slope(results)[0] is None  # "c" never collapses within the grid
    slope, (low, high), reason = scaling.loglog_slope(results, "c50")
    assert reason == "" and slope > 1  # slower decay on larger models: c50 grows faster than size
    assert low is not None and low <= slope <= high
    table = scaling.scaling_table(results, pd.DataFrame(columns=["model", "value", "ci_low", "ci_high"]))
    text = narrative.describe_scaling(table, None, (None, None), "too few", "j", (slope, (low, high), reason))
    assert f"log-log slope on parameters is {slope:.2f}" in text


def test_prompts_an_llm_judge_left_unjudged_are_left_out(isolated_results):
    """An unparsed verdict is not a compliance: the prompt is dropped at every step, not counted as not refused."""
    _write_model(isolated_results, "m1", 1000, collapse_after=1000)  # refuses ~95% at every step
    path = rresults.table_path("verdicts", "m1", isolated_results)
    verdicts = pd.read_csv(path)
    verdicts["parsed"] = True
    unjudged = verdicts["id"].isin([f"p{i}" for i in range(40)]) & (verdicts["step"] == 100)
    verdicts.loc[unjudged, ["parsed", "refused"]] = [False, False]  # what save_verdicts writes for no verdict
    verdicts.to_csv(path, index=False)
    result = _analyse(isolated_results, "m1", n_boot=50)
    assert result.refused.shape[0] == 80
    assert result.refused[:, -1].mean() > 0.85  # the unjudged prompts did not drag step 100's rate down
