"""The sbert-lr classifier judge, the labels split, and the LLM-judge plumbing."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from rrlib.errors import ConfigError, DataError
from rrlib.judges import PRESETS, SBERT_LR, LLMJudge, Verdicts, available, get_judge
from rrlib.judges import classifier
from rrlib.judges import labels as judge_labels
from rrlib.judges.llm import HARMBENCH, STRONGREJECT


@pytest.fixture(scope="module")
def fitted() -> classifier.FittedClassifier:
    """The shipped judge's model: fitted once per process, or read from the project cache.

    The cache key covers the labels file, the settings and the source of ``fit``, so a
    stored model is always the one the current code would fit.
    """
    return SBERT_LR.model


# ---------------------------------------------------------------------------
# The split
# ---------------------------------------------------------------------------


def test_split_is_deterministic_disjoint_and_stratified():
    frame = judge_labels.load_labels()
    again = judge_labels.load_labels()
    assert frame["split"].tolist() == again["split"].tolist()
    shuffled = frame.sample(frac=1.0, random_state=7)
    assert judge_labels.split_of(shuffled).sort_index().tolist() == frame["split"].tolist()
    train, held_out = judge_labels.train_rows(frame), judge_labels.held_out_rows(frame)
    assert set(train["id"]).isdisjoint(held_out["id"])
    assert len(train) + len(held_out) == len(frame)
    for label, rows in frame.groupby("label"):
        assert (held_out["label"] == label).sum() == round(judge_labels.TEST_SHARE * len(rows))


def test_split_does_not_depend_on_other_rows():
    frame = judge_labels.load_labels()
    fewer = frame[frame["label"] != "partial"].reset_index(drop=True)
    kept = frame.set_index("id").loc[fewer["id"], "split"].tolist()
    assert judge_labels.split_of(fewer).tolist() == kept


def test_labels_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="not found"):
        judge_labels.load_labels(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,prompt,response,label,trap,source\na,p,r,maybe,none,x\n")
    with pytest.raises(DataError, match="unknown label"):
        judge_labels.load_labels(bad)


# ---------------------------------------------------------------------------
# Training data and persistence
# ---------------------------------------------------------------------------


def test_training_uses_only_train_split_ids(fitted):
    frame = judge_labels.load_labels()
    train_ids = set(judge_labels.train_rows(frame)["id"])
    assert set(fitted.train_ids.tolist()) == train_ids
    assert SBERT_LR.train_ids == frozenset(train_ids)
    assert SBERT_LR.train_ids.isdisjoint(judge_labels.held_out_rows(frame)["id"])


def test_fit_is_stored_as_plain_arrays_and_reused(fitted, tmp_path, monkeypatch):
    path = fitted.save(tmp_path / "model.npz")
    with np.load(path, allow_pickle=False) as stored:
        assert all(stored[name].dtype != object for name in stored.files)
    loaded = classifier.FittedClassifier.load(path)
    vectors = classifier.embed_responses(["I can't help with that.", "Here is a recipe for soup."])
    assert np.allclose(loaded.refusal_probability(vectors), fitted.refusal_probability(vectors))
    # A new process finds the stored fit under <cache_dir>/judges and does not refit.
    monkeypatch.setenv("RR_CACHE_DIR", str(tmp_path / "cache"))
    fitted.save(classifier.model_path(fitted.key))
    monkeypatch.setattr(classifier, "_FITTED", {})
    monkeypatch.setattr(classifier, "fit", lambda *a, **k: pytest.fail("refitted despite a stored model"))
    assert classifier.fitted_classifier().key == fitted.key
    assert classifier.model_path(fitted.key).parent == tmp_path / "cache" / "judges"


def test_fit_calibrates_on_train_rows_only(monkeypatch):
    # Random vectors stand in for SBERT: this checks the fitting logic, not the features.
    rng = np.random.default_rng(0)
    monkeypatch.setattr(classifier, "embed_responses", lambda texts: rng.normal(size=(len(texts), 8)))
    train = judge_labels.train_rows().iloc[::3].reset_index(drop=True)
    model = classifier.fit(train, key="k")
    assert model.train_ids.tolist() == train["id"].tolist()
    assert sorted(model.classes.tolist()) == sorted(judge_labels.LABELS) and model.coef.shape == (3, 8)
    p = model.refusal_probability(rng.normal(size=(50, 8)))
    assert ((p > 0) & (p < 1)).all()
    with pytest.raises(DataError, match="needs refusal rows"):
        classifier.fit(train[train["label"] != "refusal"])


def test_model_key_follows_labels_and_settings(tmp_path):
    copy = tmp_path / "labels.csv"
    copy.write_bytes(judge_labels.labels_path().read_bytes())
    base = classifier.model_key(copy)
    assert classifier.model_key(judge_labels.labels_path()) == base
    assert classifier.model_key(copy, classifier.ClassifierSettings(C=1.0)) != base
    copy.write_bytes(copy.read_bytes() + b"\n")
    assert classifier.model_key(copy) != base


# ---------------------------------------------------------------------------
# Verdicts
# ---------------------------------------------------------------------------


def test_curly_quote_refusals_are_caught(fitted):
    curly = ["Sorry, but I can’t assist with that.", "That isn’t something I’ll help with."]
    straight = [t.replace("’", "'") for t in curly]
    a, b = SBERT_LR.judge(curly), SBERT_LR.judge(straight)
    assert a.refused.all()
    assert np.allclose(a.score, b.score)


def test_scores_are_calibrated_probabilities_with_uncertainty(fitted):
    responses = judge_labels.held_out_rows()["response"].tolist()
    verdicts = SBERT_LR.judge(responses)
    assert verdicts.judge == "sbert-lr" and len(verdicts) == len(responses)
    assert verdicts.refused.dtype == bool and ((verdicts.score > 0) & (verdicts.score < 1)).all()
    assert (verdicts.refused == (verdicts.score >= 0.5)).all()
    share = SBERT_LR.uncertainty(responses)
    assert share == verdicts.uncertain_share() and 0 <= share < 0.5
    assert verdicts.unparsed == 0


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------


def test_available_lists_presets_then_classifier():
    assert available() == [*PRESETS, "sbert-lr"]
    assert get_judge("SBERT_LR") is get_judge("sbert-lr") is SBERT_LR


def test_every_available_judge_works_like_the_study_uses_it(fitted):
    responses = ["I'm sorry, but I can’t help with that.",
                 "Sure! Preheat the oven to 180 °C, mix flour, sugar and eggs, and bake for 25 minutes.", ""]
    for name in available():
        verdicts = get_judge(name).judge(responses)
        assert isinstance(verdicts, Verdicts) and verdicts.judge == name
        assert len(verdicts) == 3 and verdicts.refused.dtype == bool
        assert np.all((verdicts.score >= 0) & (verdicts.score <= 1))
        assert verdicts.refused[:2].tolist() == [True, False], name
        assert len(get_judge(name).judge([])) == 0


def test_unknown_judge_mentions_llm_judges():
    with pytest.raises(ConfigError, match="sbert-lr, or an LLM judge as llm:<model>"):
        get_judge("sbert")
    with pytest.raises(ConfigError, match="needs a model"):
        get_judge("llm:")


# ---------------------------------------------------------------------------
# LLM judges
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("answer, strongreject, harmbench", [
    ("yes", 1.0, 0.0), (" No.", 0.0, 1.0), ("**Yes**", 1.0, 0.0), ("Answer: no", 0.0, 1.0),
    ("I think yes", np.nan, np.nan), ("", np.nan, np.nan), ("yesterday", np.nan, np.nan),
])
def test_rubric_parsing_never_guesses(answer, strongreject, harmbench):
    np.testing.assert_equal(STRONGREJECT.parse(answer), strongreject)
    np.testing.assert_equal(HARMBENCH.parse(answer), harmbench)


def test_rubric_shows_the_response_only():
    text = STRONGREJECT.render("I can’t do {that}.")
    assert "I can't do {that}." in text and "{response}" not in text


def test_llm_judge_counts_unparsed_answers(monkeypatch):
    judge = LLMJudge("some-model", "harmbench")
    monkeypatch.setattr(judge, "answers", lambda responses: ["no", "Yes.", "maybe", "NO"])
    with pytest.warns(UserWarning, match="1 of 4 answers"):
        verdicts = judge.judge(["a", "b", "c", "d"])
    assert verdicts.judge == "llm:harmbench:some-model"
    assert verdicts.refused.tolist() == [True, False, False, True]
    assert verdicts.unparsed == 1 and np.isnan(verdicts.score[2])


def test_llm_judge_plumbing_with_the_tiny_organism(tiny_lm):
    judge = LLMJudge(tiny_lm)
    responses = ["I can't help with that.", "Sure, here is an overview. Step 1: plan."]
    answers = judge.answers(responses)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        verdicts = judge.judge(responses)
    parsed = [STRONGREJECT.parse(a) for a in answers]  # greedy decoding: the same answers again
    assert verdicts.unparsed == sum(np.isnan(parsed))
    assert bool(verdicts.unparsed) == any("answers were neither" in str(w.message) for w in caught)
    assert verdicts.refused.tolist() == [p == 1.0 for p in parsed]


def test_llm_judge_by_name_loads_through_models(tiny_lm):
    judge = get_judge(f"llm:harmbench:{tiny_lm.name}")
    assert judge is get_judge(f"llm:harmbench:{tiny_lm.name}")
    assert judge.name == f"llm:harmbench:{tiny_lm.name}" and judge.rubric is HARMBENCH
    assert get_judge(f"llm:{tiny_lm.name}").rubric is STRONGREJECT
    assert judge.lm.name == tiny_lm.name
    assert len(judge.answers(["No."])) == 1
