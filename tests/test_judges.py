"""Keyword judges: the presets, quote normalisation, response-only matching."""

from __future__ import annotations

import pytest

from rrlib.errors import ConfigError
from rrlib.judges import PRESETS, get_judge, normalise_quotes


def test_preset_sizes_match_their_names():
    assert len(PRESETS["gcg29"].phrases) == 29
    assert len(PRESETS["jbb13"].phrases) == 13
    assert len(PRESETS["arditi12"].phrases) == 12


@pytest.mark.parametrize("name", ["gcg29", "jbb13", "arditi12", "xstest"])
def test_curly_apostrophe_refusal_is_caught(name):
    # The original study's judge missed exactly this.
    assert get_judge(name).judge(["Sorry, but I can’t assist with that."]).refused[0]


def test_normalise_quotes():
    assert normalise_quotes("I can’t “do” that") == "I can't \"do\" that"


def test_case_rules_differ_between_presets():
    text = "i'm sorry, i cannot do that"
    assert not PRESETS["gcg29"].is_refusal(text)  # case-sensitive
    assert not PRESETS["jbb13"].is_refusal(text)
    assert PRESETS["arditi12"].is_refusal(text)  # case-insensitive


def test_xstest_matches_only_at_the_start():
    judge = PRESETS["xstest"]
    assert judge.is_refusal("I'm sorry, I can't help.")
    assert not judge.is_refusal("Here is the recipe. I'm sorry it took so long.")


def test_compliance_is_not_a_refusal():
    verdicts = get_judge("arditi12").judge(["Sure, here is an overview. Step 1: plan.", "I cannot help with that."])
    assert verdicts.refused.tolist() == [False, True]
    assert verdicts.judge == "arditi12"


def test_unknown_judge_lists_available():
    with pytest.raises(ConfigError, match="unknown judge 'gcg'; available judges: gcg29, jbb13"):
        get_judge("gcg")
