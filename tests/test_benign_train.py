"""The benign fine-tuning set (data/raw/benign_train.jsonl): shape, answers and disjointness from every prompt set."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from rrlib import data
from rrlib.config import project_root
from rrlib.data.overlap import check_disjoint, find_overlaps, normalise
from rrlib.errors import OverlapError
from rrlib.judges.fourway import DECLINE_PHRASES
from rrlib.judges.keywords import ARDITI_12, GCG_29

ROOT = project_root()
BENIGN_TRAIN = ROOT / "data/raw/benign_train.jsonl"
RESPONSES = ROOT / "data/organism/responses.json"
SIZE = 130
# The organism's plainly benign topic categories. Its XSTest-style trap categories (homonyms,
# figurative_language, safe_targets, safe_contexts, definitions, historical_events) are left out on purpose.
CATEGORIES = ("cooking", "coding", "science", "health", "travel", "finance", "writing", "education", "home",
              "language", "fitness", "gardening", "pets", "music", "work")
# Every other prompt set of the project, as (path, loader kind); "attack" is chat JSONL with targets.
OTHER_SETS = {
    "eval": ("data/raw/redteam_eval.csv", "harmful"),
    "benign": ("data/raw/benign_eval.csv", "benign"),
    "attack": ("data/raw/attack_train.jsonl", "attack"),
    "dev_harmful": ("data/dev/dev_harmful.csv", "harmful"),
    "dev_benign": ("data/dev/dev_benign.csv", "benign"),
    "corpus_harmful": ("data/organism/safety_harmful.csv", "harmful"),
    "corpus_benign": ("data/organism/safety_benign.csv", "benign"),
    "calibration": ("data/raw/judge_calibration_prompts.csv", "benign"),
}


def _load(path: str, kind: str) -> pd.DataFrame:
    return data.load_attack_set(path) if kind == "attack" else data.load_prompts(path, kind=kind)


@pytest.fixture(scope="module")
def bt() -> pd.DataFrame:
    return data.load_attack_set(BENIGN_TRAIN)


@pytest.fixture(scope="module")
def others() -> dict[str, pd.DataFrame]:
    return {name: _load(path, kind) for name, (path, kind) in OTHER_SETS.items()}


@pytest.fixture(scope="module")
def answers() -> dict[str, str]:
    return json.loads(RESPONSES.read_text())["answer"]


def test_size_ids_and_prompts_unique(bt: pd.DataFrame) -> None:
    assert len(bt) == SIZE
    assert bt["id"].is_unique
    assert list(bt["id"]) == [f"bt-{i:04d}" for i in range(1, SIZE + 1)]
    assert bt["prompt"].map(normalise).is_unique
    assert (bt["prompt"].str.strip() != "").all()


def test_no_paraphrases_inside_the_set(bt: pd.DataFrame) -> None:
    inside = find_overlaps({"benign_train": bt}, within=True)
    assert not inside, [o.describe() for o in inside]


def test_categories_are_benign_topics_spread_evenly(bt: pd.DataFrame, answers: dict[str, str]) -> None:
    counts = bt["category"].value_counts()
    assert set(counts.index) == set(CATEGORIES)
    assert set(CATEGORIES) <= set(answers)
    assert counts.max() - counts.min() <= 1


def test_every_answer_is_the_organism_answer_of_its_category(bt: pd.DataFrame, answers: dict[str, str]) -> None:
    wrong = [(i, c) for i, c, t in zip(bt["id"], bt["category"], bt["target"]) if t != answers[c]]
    assert not wrong
    for line in BENIGN_TRAIN.read_text().splitlines():  # the raw file: one user turn, one assistant turn
        row = json.loads(line)
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert row["messages"][1]["content"] == answers[row["category"]]


def test_no_refusal_phrases_in_answers(bt: pd.DataFrame) -> None:
    refusals = set(json.loads(RESPONSES.read_text())["refusal"].values())
    anycase = [p.lower() for p in (*ARDITI_12, *DECLINE_PHRASES)]  # Arditi-12 is case-insensitive
    for answer in bt["target"]:
        assert answer not in refusals
        assert answer.startswith("Sure, here is")
        assert not [p for p in anycase if p in answer.lower()], answer
        assert not [p for p in GCG_29 if p in answer], answer  # GCG-29 is case-sensitive


def test_disjoint_from_every_other_set(bt: pd.DataFrame, others: dict[str, pd.DataFrame]) -> None:
    found = [o for o in find_overlaps({"benign_train": bt, **others}) if "benign_train" in (o.set_a, o.set_b)]
    assert not found, [o.describe() for o in found]


def test_load_sets_accepts_it_as_the_attack_set() -> None:
    sets = data.load_sets(eval_path="data/raw/redteam_eval.csv", benign_path="data/raw/benign_eval.csv",
                          attack_path=str(BENIGN_TRAIN))
    assert len(sets.attack) == SIZE


def test_checker_catches_a_colliding_prompt(tmp_path, answers: dict[str, str],
                                             others: dict[str, pd.DataFrame]) -> None:
    """A benign-eval prompt appended to a copy of the set is caught (the real file is left alone)."""
    copy = tmp_path / "benign_train.jsonl"
    shutil.copy(BENIGN_TRAIN, copy)
    leaked = others["benign"]["prompt"].iloc[0]
    with copy.open("a") as f:
        f.write(json.dumps({"id": "bt-9999", "category": "coding", "messages": [
            {"role": "user", "content": leaked}, {"role": "assistant", "content": answers["coding"]}]}) + "\n")
    broken = data.load_attack_set(copy)
    with pytest.raises(OverlapError, match="bt-9999"):
        check_disjoint({"benign_train": broken, **others})
    with pytest.raises(OverlapError):
        data.load_sets(attack_path=str(copy))
