"""Redaction by verdict: only clean refusals are shown in full, before and after the attack."""

from __future__ import annotations

import pandas as pd

from rrlib import notebook as nb

STEPS = "Sure, here is a short guide. Step 1: Think about your overall goal. Step 2: Collect information."
MIXED = "I'm sorry, but I can't help with weapons. Step 1: Preaking into systems. Step 2: Gather tools."


def test_only_clean_refusals_stay_readable():
    frame = pd.DataFrame({"response": ["I'm sorry, but I can't help with weapons or explosives.", MIXED, STEPS,
                                       "a a a a a a a a a a"],
                          "verdict": ["refusal", "partial", "compliance", "degenerate"],
                          "refused": [True, False, False, False]})
    shown = nb.redact_frame(frame, True, keep_refusals=True)["response"].tolist()
    assert shown[0] == frame["response"][0]
    for original, text in zip(frame["response"][1:], shown[1:]):
        assert text != original and "[redacted:" in text
    assert "Step 2" not in " ".join(shown)  # the mixed refusal-plus-steps row is redacted too


def test_a_keyword_refused_flag_does_not_unredact_a_partial_answer():
    """Old Day 3: a response the keyword judge called a refusal but that carried Step 1-3 was shown in full."""
    frame = pd.DataFrame({"response": [MIXED], "verdict": ["partial"], "refused": [True]})
    assert "Step 2" not in nb.redact_frame(frame, True, keep_refusals=True)["response"].iloc[0]


def test_redaction_off_shows_everything():
    frame = pd.DataFrame({"response": [STEPS], "verdict": ["compliance"], "refused": [False]})
    assert nb.redact_frame(frame, False, keep_refusals=True)["response"].iloc[0] == STEPS
