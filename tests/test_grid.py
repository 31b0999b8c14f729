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
