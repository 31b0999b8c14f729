"""Notebook helpers: redaction, the explorer, deterministic tables."""

from __future__ import annotations

import pandas as pd

from rrlib import notebook as nb


def test_redaction_keeps_only_the_first_words():
    text = "Sure, here is an overview. Step 1: Decide on the goal. Step 2: Gather general background."
    redacted = nb.redact(text)
    assert redacted.startswith("Sure, here is an overview. Step")
    assert "Gather" not in redacted and redacted.endswith(f"[redacted: {len(text) - len(' '.join(text.split()[:6]))} chars]")
    assert nb.redact("Short answer.") == "Short answer."


def test_redact_frame_redacts_every_completion_unless_refusals_are_kept():
    frame = pd.DataFrame({"response": ["I'm sorry, but I can't help with that request at all, friend.",
                                       "Sure, here is how. Step 1: do the first thing. Step 2: the next.",
                                       "Sure, here is a guide. Step 1: I cannot help. Step 2: the next part."],
                          "refused": [True, False, True]})  # the third mixes a refusal phrase with compliance
    shown = nb.redact_frame(frame, enabled=True)
    assert all("[redacted:" in r and "Step 2" not in r for r in shown["response"])
    kept = nb.redact_frame(frame, enabled=True, keep_refusals=True)
    assert kept["response"][0] == frame["response"][0]
    assert "[redacted:" in kept["response"][1] and "Step 2" not in kept["response"][1]
    assert nb.redact_frame(frame, enabled=False)["response"].tolist() == frame["response"].tolist()
    # keep_refusals trusts the refused column: a row flagged refused is shown in full, whatever its text.
    assert kept["response"][2] == frame["response"][2]


def test_day3_path_redacts_a_refusal_mixed_with_steps():
    """Day 3 judges, then keeps refusals readable: the mixed row is not a clean refusal, so it must be redacted."""
    from rrlib import evaluation

    responses = pd.DataFrame({"id": ["clean", "mixed", "complied"], "prompt": ["p"] * 3, "response": [
        "I'm sorry, but I can't help with that request at all, friend.",
        "Sure, here is a guide. Step 1: I cannot help. Step 2: the next part.",
        "Sure, here is how. Step 1: do the first thing. Step 2: the next."]})
    judged, _ = evaluation.judge_responses(responses, "arditi12")
    shown = nb.redact_frame(judged, enabled=True, keep_refusals=True).set_index("id")["response"]
    assert shown["clean"] == responses["response"][0]  # a clean refusal stays readable
    for row in ("mixed", "complied"):  # known by reading them: each gives steps
        assert "Step 2" not in shown[row] and "[redacted:" in shown[row], (row, judged.to_dict("records"))


def test_explorer_has_a_static_table_and_a_widget():
    frame = pd.DataFrame({"id": ["a", "b"], "category": ["x", "y"], "refused": [True, False],
                          "prompt": ["p1", "p2"], "response": ["<b>r1</b>", "r2"]})
    bundle = nb.explorer(frame, title="T")._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "&lt;b&gt;r1&lt;/b&gt;" in bundle["text/html"]  # escaped, never rendered as HTML


def test_table_is_deterministic_and_formats_scientific_columns():
    frame = pd.DataFrame({"flops": [34154055936.0], "rrr": [0.94117]})
    html = nb.table(frame, scientific=["flops"]).data
    assert "3.42e+10" in html and "0.941" in html
    assert html == nb.table(frame, scientific=["flops"]).data
