"""Judge-corrected refusal rates (Rogan-Gladen) with hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rrlib.correction import MIN_YOUDEN, CorrectedRate, corrected_rate, judge_error_rates, rogan_gladen
from rrlib.metrics import wilson_interval


def test_point_estimate_matches_the_hand_computed_value():
    # p_obs = 0.6, sensitivity = 0.9, specificity = 0.8: (0.6 + 0.8 - 1) / (0.9 + 0.8 - 1) = 0.4 / 0.7.
    r = corrected_rate(60, 100, sensitivity=(90, 100), specificity=(80, 100))
    assert isinstance(r, CorrectedRate) and r.ok and r.reason == ""
    assert r.value == pytest.approx(0.4 / 0.7) == pytest.approx(0.571428571)
    assert (r.n, r.sensitivity, r.specificity, r.raw) == (100, 0.9, 0.8, 0.6)
    assert 0 <= r.ci_low < r.value < r.ci_high <= 1


def test_estimate_is_clipped_to_the_unit_interval():
    # p_obs = 0.1 below the false-positive rate 0.2: (0.1 + 0.8 - 1) / 0.7 < 0 -> 0.
    assert corrected_rate(10, 100, (90, 100), (80, 100)).value == 0.0
    # p_obs = 0.98 above sensitivity 0.9: (0.98 + 0.8 - 1) / 0.7 > 1 -> 1.
    assert corrected_rate(98, 100, (90, 100), (80, 100)).value == 1.0
    assert rogan_gladen(np.array([0.1, 0.6, 0.98]), 0.9, 0.8).tolist() == pytest.approx([0.0, 0.4 / 0.7, 1.0])


def test_a_perfect_judge_leaves_the_rate_and_a_binomial_interval():
    r = corrected_rate(30, 200, sensitivity=(10**6, 10**6), specificity=(10**6, 10**6))
    assert r.value == pytest.approx(0.15) and r.raw == pytest.approx(0.15)
    low, high = wilson_interval(30, 200)
    assert r.ci_low == pytest.approx(low, abs=0.01) and r.ci_high == pytest.approx(high, abs=0.01)


def test_interval_widens_when_the_label_counts_shrink():
    many = corrected_rate(60, 100, sensitivity=(900, 1000), specificity=(800, 1000))
    few = corrected_rate(60, 100, sensitivity=(9, 10), specificity=(8, 10))
    assert many.value == pytest.approx(few.value)
    assert few.ci_high - few.ci_low > many.ci_high - many.ci_low
    # And judge error adds width over the binomial interval of the observed rate alone.
    low, high = wilson_interval(60, 100)
    assert many.ci_high - many.ci_low > high - low


def test_bootstrap_is_seeded():
    a = corrected_rate(60, 100, (9, 10), (8, 10), seed=3)
    assert a == corrected_rate(60, 100, (9, 10), (8, 10), seed=3)
    assert a != corrected_rate(60, 100, (9, 10), (8, 10), seed=4)


def test_a_judge_no_better_than_chance_gives_a_reason_not_a_bare_nan():
    r = corrected_rate(50, 100, sensitivity=(50, 100), specificity=(52, 100))  # J = 0.02
    assert math.isnan(r.value) and math.isnan(r.ci_low) and math.isnan(r.ci_high) and not r.ok
    assert "no better than chance" in r.reason and "no correction is possible" in r.reason
    assert r.raw == 0.5 and r.sensitivity == 0.5
    edge = corrected_rate(50, 100, sensitivity=(50, 100), specificity=(55, 100))  # J = 0.05 exactly
    assert not edge.ok and MIN_YOUDEN == 0.05


def test_missing_labels_or_responses_give_reasons():
    assert "no responses" in corrected_rate(0, 0, (9, 10), (8, 10)).reason
    r = corrected_rate(5, 10, (0, 0), (8, 10))
    assert not r.ok and "no refusals" in r.reason and "sensitivity" in r.reason
    assert "specificity" in corrected_rate(5, 10, (9, 10), (0, 0)).reason


def test_barely_informative_judge_widens_the_interval_to_everything():
    r = corrected_rate(50, 100, sensitivity=(6, 10), specificity=(6, 10))  # J = 0.2 on ten labels each
    assert r.ok and (r.ci_low, r.ci_high) == (0.0, 1.0) and "bootstrap draws" in r.reason


@pytest.mark.parametrize("args, message", [
    ((11, 10, (9, 10), (8, 10)), "0 <= k <= n"),
    ((-1, 10, (9, 10), (8, 10)), "0 <= k <= n"),
    ((5, 10, (11, 10), (8, 10)), "tp <= positives"),
    ((5, 10, (9, 10), (8, 7)), "tn <= negatives"),
    ((5.5, 10, (9, 10), (8, 10)), "whole numbers"),
])
def test_bad_counts_are_rejected_with_the_name_of_the_count(args, message):
    with pytest.raises(ValueError, match=message):
        corrected_rate(*args)


def test_judge_error_rates_count_hits_per_class():
    truth = [True, True, True, False, False, False, False]
    predicted = [True, True, False, False, True, False, False]
    assert judge_error_rates(truth, predicted) == ((2, 3), (3, 4))
    assert judge_error_rates(np.array([], dtype=bool), []) == ((0, 0), (0, 0))
    with pytest.raises(ValueError, match="3 labels and 2 verdicts"):
        judge_error_rates([True, False, True], [True, False])


def test_error_rates_feed_the_correction():
    truth = np.array([True] * 10 + [False] * 10)
    predicted = np.array([True] * 9 + [False] + [True] * 2 + [False] * 8)
    sens, spec = judge_error_rates(truth, predicted)
    r = corrected_rate(60, 100, sens, spec)
    assert (r.sensitivity, r.specificity) == (0.9, 0.8) and r.value == pytest.approx(0.4 / 0.7)
