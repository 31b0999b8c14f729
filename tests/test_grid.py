"""The Day 7 grid's rates: per run and pooled over seeds, counting only decided verdicts."""

from __future__ import annotations

import pandas as pd
import pytest

from rrlib.grid import GridResult
from rrlib.metrics import wilson_interval


def _grid() -> GridResult:
    rows = []
    for seed in (0, 1):
        for i in range(10):
            # step 0: all refuse; step 10: 3 of 10 refuse, and one answer got no verdict (an LLM judge's NaN)
            rows.append({"rank": 8, "seed": seed, "step": 0, "id": f"p{i}", "refused": True, "parsed": True,
                         "response": "no"})
            rows.append({"rank": 8, "seed": seed, "step": 10, "id": f"p{i}", "refused": i < 3, "parsed": i != 9,
                         "response": "sure"})
    losses = pd.DataFrame([{"rank": 8, "seed": s, "step": t, "loss": 1.0, "tokens": t, "flops": 4.0 * t,
                            "trainable_params": 1} for s in (0, 1) for t in (0, 10)])
    return GridResult(pd.DataFrame(rows), losses)


def test_per_run_leaves_unparsed_verdicts_out_of_n():
    per_run = _grid().per_run().set_index(["seed", "step"])
    row = per_run.loc[(0, 10)]
    assert row["n"] == 9 and row["value"] == pytest.approx(3 / 9)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson_interval(3, 9))
    assert per_run.loc[(1, 0), "value"] == 1.0 and per_run.loc[(1, 0), "n"] == 10


def test_pooled_uses_the_same_decided_verdicts():
    pooled = _grid().pooled(n_boot=200).set_index("step")
    assert pooled.loc[10, "value"] == pytest.approx(3 / 9) and pooled.loc[10, "n"] == 18
    assert pooled.loc[10, "ci_low"] <= 3 / 9 <= pooled.loc[10, "ci_high"]


def test_step_zero_is_one_base_model_counted_once():
    """Old Day 7: step 0 reported n = 510 per rank (3 seeds x 170) for 170 unique greedy responses."""
    pooled = _grid().pooled(n_boot=200).set_index("step")
    assert pooled.loc[0, "n"] == 10 and pooled.loc[0, "seeds"] == 1


def test_the_headline_pools_every_rank_and_counts_each_response_once():
    from rrlib import grid as rgrid

    base = _grid()
    other_rank = base.verdicts.assign(rank=32)
    both = GridResult(pd.concat([base.verdicts, other_rank]), pd.concat([base.losses, base.losses.assign(rank=32)]))
    before = rgrid.pooled_estimate(both, 0, n_boot=100)
    after = rgrid.pooled_estimate(both, 10, n_boot=100)
    assert before.n == 10  # one base model, whatever the ranks and seeds
    assert after.n == 4 * 9 and after.value == pytest.approx(3 / 9)  # 2 ranks x 2 seeds, p9 unjudged everywhere


def test_the_pooled_interval_resamples_prompts_shared_by_every_seed():
    """Two seeds that agree prompt by prompt: the interval is that of one seed's prompts (one shared draw), not
    the narrower interval of 2n independent responses."""
    from rrlib import grid as rgrid

    rows = [{"rank": 8, "seed": s, "step": 10, "id": f"p{i}", "refused": i < 50, "parsed": True, "response": "x"}
            for s in (0, 1) for i in range(100)]
    estimate, runs = rgrid.pooled_rate(pd.DataFrame(rows), 10, n_boot=2000)
    # one seed's 50/100: a percentile bootstrap of a proportion has half-width about 1.96 * sqrt(.25/100) = 0.098
    assert runs == 2 and estimate.ci_high - estimate.ci_low == pytest.approx(2 * 0.098, abs=0.03)
