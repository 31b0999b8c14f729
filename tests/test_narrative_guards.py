"""Each sentence the old narrative printed against its own data, fed that data again: the sentence must not appear.

One test per contradiction listed in issue 12 (measured on the committed
results of the time), plus the static book pages that asserted untested claims.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from rrlib import narrative
from rrlib.config import project_root
from rrlib.metrics import Estimate


def _steps(rows: list[tuple[int, str, float, float, float]], n: int = 170) -> pd.DataFrame:
    return pd.DataFrame([{"step": s, "metric": m, "value": v, "ci_low": lo, "ci_high": hi, "n": n, "reason": ""}
                         for s, m, v, lo, hi in rows])


def test_a_model_that_never_refused_is_not_said_to_collapse_at_step_zero():
    """organism-xs (old): RRR 0/170 at every step; Day 5 said "first falls below 0.05 at step 0"."""
    rows = [(s, "RRR", 0.0, 0.0, 0.022) for s in (0, 10, 50)]
    rows += [(s, "over_refusal", 0.0, 0.0, 0.03) for s in (0, 10, 50)]
    text = narrative.describe_collapse("organism-xs", "arditi12", _steps(rows), True)
    assert "below 0.05 at step 0" not in text and "From step 0" not in text
    assert "already below 0.05 before the attack" in text


def test_a_collapse_that_does_not_last_is_not_called_the_collapse_step():
    rows = [(0, "RRR", 0.9, 0.85, 0.94), (10, "RRR", 0.0, 0.0, 0.022), (50, "RRR", 0.02, 0.006, 0.051),
            (100, "RRR", 0.0, 0.0, 0.022)]
    text = narrative.describe_collapse("m", "j", _steps(rows), False)
    assert "From step 100 on" in text and "step 10 on" not in text


def _evaluation(verdicts: list[str], responses: list[str]) -> SimpleNamespace:
    judged = pd.DataFrame({"id": [f"p{i}" for i in range(len(verdicts))], "verdict": verdicts,
                           "refused": [v == "refusal" for v in verdicts], "parsed": True, "response": responses})
    return SimpleNamespace(responses={0: judged, 200: judged})


def test_babble_that_opens_like_compliance_is_not_called_compliance():
    """organism-xs/s (old): "Sure, here is a a a a" passed the opening-words check as compliance."""
    evaluation = _evaluation(["degenerate"] * 150 + ["compliance"] * 20,
                             ["Sure, here is a a a a a a a a"] * 150 + ["Sure, here is a short guide. Step 1: Plan."] * 20)
    text = narrative.describe_compliance(evaluation)
    assert "compliance, not babble" not in text
    assert "150 degenerate" in text and "babble, not compliance" in text


def test_fluent_compliance_is_still_called_compliance():
    evaluation = _evaluation(["compliance"] * 168 + ["refusal"] * 2, ["Sure, here is a short guide. Step 1."] * 170)
    assert "The collapse is compliance, not babble." in narrative.describe_compliance(evaluation)


def _summary(probe0, probe1, cosine) -> pd.DataFrame:
    rows = [(0, "probe_accuracy", *probe0), (100, "probe_accuracy", *probe1), (100, "direction_cosine", *cosine),
            (0, "harmful_projection", 1.0, 0.9, 1.1), (100, "harmful_projection", 0.5, 0.4, 0.6)]
    return _steps(rows)


def test_a_rising_probe_accuracy_is_not_called_a_lost_distinction():
    """organism-xs (old): probe accuracy 0.570 -> 0.638 was reported as "the distinction is largely gone"."""
    summary = _summary((0.570, 0.49, 0.65), (0.638, 0.56, 0.71), (0.8, 0.7, 0.9))
    none = Estimate.missing("RRR", "not measured")
    text = narrative.describe_representations(summary, 1, none, none, none, True)
    assert "gone" not in text and "weaker" not in text
    assert "does not separate the prompts reliably even before the attack" in text


def test_bypass_is_not_claimed_when_ablation_raises_refusal_and_the_direction_flipped():
    """organism-m (old): "bypassed" printed although ablation raised RRR to 1.000 and the cosine was -0.203."""
    summary = _summary((0.95, 0.91, 0.97), (0.94, 0.90, 0.97), (-0.203, -0.3, -0.1))
    ablated = Estimate("RRR", 1.0, 0.978, 1.0, 170, "wilson95")
    baseline = Estimate("RRR", 0.94, 0.895, 0.966, 170, "wilson95")
    induced = Estimate("induced_refusal", 0.1, 0.05, 0.17, 128, "wilson95")
    text = narrative.describe_representations(summary, 2, ablated, induced, baseline, True)
    assert "bypassed the refusal mechanism rather than destroying" not in text
    assert "*raises* baseline refusal" in text and "do not settle" in text


def test_bypass_is_claimed_only_with_every_piece_of_evidence():
    summary = _summary((0.95, 0.91, 0.97), (0.94, 0.90, 0.97), (0.8, 0.7, 0.9))
    ablated = Estimate("RRR", 0.2, 0.15, 0.27, 170, "wilson95")
    baseline = Estimate("RRR", 0.94, 0.895, 0.966, 170, "wilson95")
    text = narrative.describe_representations(summary, 2, ablated, Estimate.missing("x", "-"), baseline, True)
    assert "bypassed" in text


def test_zero_drift_is_not_compared_with_a_sampling_noise_floor():
    """organism-xs (old): RD 0.000 was called "within the noise floor 0.678", though it lies below it."""
    rows = [(s, "RRR", 0.9, 0.85, 0.94) for s in (0, 50)] + [(s, "RD", 0.0, 0.0, 0.0) for s in (0, 50)]
    rows += [(s, "changed", 0.0, 0.0, 0.022) for s in (0, 50)] + [(s, "RD_mean", 0.0, 0.0, 0.0) for s in (0, 50)]
    text = narrative.describe_collapse("xs", "j", _steps(rows), True)
    assert "within" not in text and "sampling noise floor" not in text
    assert "noise floor is exactly 0" in text


def test_one_failing_build_is_not_a_claim_about_every_model_of_that_size():
    """Old Day 6: "below that size the organism does not learn refusal at all", from one build."""
    gate = pd.DataFrame([{"model": m, "size": "xs", "gate": g, "gate_reason": r} for m, g, r in (
        ("organism-xs", "fail", "baseline RRR 0.000 has lower bound 0.000 < 0.8"), ("organism-xs-seed1", "pass", ""),
        ("organism-xs-seed2", "pass", ""))])
    text = narrative.describe_gate(gate)
    assert "does not learn refusal" not in text
    assert "1 of 3 builds of size xs fail" in text
    all_fail = gate.assign(gate="fail", gate_reason="over-refuses")
    assert "All 3 builds of size xs fail" in narrative.describe_gate(all_fail)


def test_a_trend_whose_interval_includes_zero_has_no_sign():
    trend = SimpleNamespace(quantity="c50_tokens", slope=0.3, ci=(-0.2, 0.8), sizes=["a", "b", "c", "d"], reason="")
    text = narrative.describe_trend(trend, "attack tokens")
    assert "cannot tell" in text and "multiplies" not in text
    missing = SimpleNamespace(quantity="c50_flops", slope=np.nan, ci=(np.nan, np.nan), sizes=[],
                              reason="only 2 gated size(s) have a fitted c50_flops; a trend needs 4")
    assert "a trend needs 4" in narrative.describe_trend(missing, "FLOPs")


def test_static_book_pages_make_no_claim_that_no_run_measured():
    """original_study.md asserted why the original's RRR was 0.13; intro.md said "a few hundred" attack requests."""
    book = project_root() / "book"
    original = (book / "original_study.md").read_text(encoding="utf-8")
    assert "is what a template-less instruct model looks like" not in original
    assert "plausibly why" not in original
    assert "few hundred" not in (book / "intro.md").read_text(encoding="utf-8")


def test_the_corrected_gate_sentence_says_when_the_judge_error_changes_the_fit():
    table = pd.DataFrame({"model": ["a", "b"], "refusal_rule_corrected": ["pass", "fail"], "changes": [False, True]})
    assert "decides 1 of 2 members differently (b)" in narrative.describe_corrected_gate(table)
    same = table.assign(changes=False)
    assert "does not change which members are fitted" in narrative.describe_corrected_gate(same)
