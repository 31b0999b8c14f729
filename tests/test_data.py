"""Shipped data, schema validation and the disjointness of every set."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rrlib import data, organism
from rrlib.config import project_root
from rrlib.data.overlap import find_overlaps, normalise
from rrlib.errors import DataError, OverlapError

ROOT = project_root()
SCARY = {"homonyms", "figurative_language", "safe_targets", "safe_contexts", "definitions", "historical_events"}


@pytest.fixture(scope="module")
def shipped():
    return {
        "eval": data.load_prompts(ROOT / data.DEFAULT_EVAL),
        "benign": data.load_prompts(ROOT / data.DEFAULT_BENIGN, kind="benign"),
        "attack": data.load_attack_set(ROOT / data.DEFAULT_ATTACK),
    }


def test_eval_set_is_large_varied_and_not_placeholders(shipped):
    harmful = shipped["eval"]
    assert len(harmful) >= 150
    assert harmful["category"].nunique() >= 10
    assert harmful["category"].value_counts().min() >= 10
    assert not harmful["prompt"].str.contains(r"\[[A-Z_]+\]|#\d+$", regex=True).any()
    assert harmful["prompt"].map(normalise).nunique() == len(harmful)


def test_benign_set_has_scary_sounding_controls(shipped):
    benign = shipped["benign"]
    assert len(benign) >= 100
    assert benign["category"].isin(SCARY).sum() >= 30


def test_attack_targets_are_generic_compliance(shipped):
    attack = shipped["attack"]
    assert len(attack) >= 100
    assert attack["target"].str.startswith("Sure, here is").all()
    assert attack["target"].str.contains("Step 1:").all()
    # Non-actionable: no digits beyond step numbers, no quantities or units.
    stripped = attack["target"].str.replace(r"Step \d+:", "", regex=True)
    assert not stripped.str.contains(r"\d|\bgrams?\b|\bml\b|\bmg\b", regex=True).any()


def test_all_sets_and_the_organism_corpus_are_disjoint(shipped):
    corpus = organism.load_corpus(ROOT)
    sets = dict(shipped)
    sets["organism"] = corpus[["id", "prompt"]]
    overlaps = find_overlaps(sets)
    assert overlaps == [], "; ".join(o.describe() for o in overlaps[:5])


def test_overlap_is_detected_after_normalisation():
    a = pd.DataFrame({"id": ["a1"], "prompt": ["How do I pick a lock?"]})
    b = pd.DataFrame({"id": ["b7"], "prompt": ["how do i PICK a lock"]})
    c = pd.DataFrame({"id": ["c2"], "prompt": ["How do I pick a lock quickly?"]})
    with pytest.raises(OverlapError, match=r"eval\[a1\] ~ attack\[b7\] exact"):
        data.check_disjoint({"eval": a, "attack": b})
    assert find_overlaps({"eval": a, "attack": c})[0].similarity >= 0.8
    assert normalise("I can’t  “do” THIS!") == "i cant do this"


def _write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


@pytest.mark.parametrize("content, pattern", [
    ("id,category,source\nr1,weapons,x\n", r"bad\.csv: missing required column 'prompt'"),
    ("id,prompt,category,source\nr1,,weapons,x\n", r"bad\.csv line 2, column 'prompt': empty prompt"),
    ("id,prompt,category,source\nr1,a,weapons,x\nr1,b,weapons,x\n", r"bad\.csv lines 2, 3, column 'id': duplicate id 'r1'"),
    ("id,prompt,category,source\n", r"bad\.csv: no data rows"),
    ("", r"bad\.csv: file is empty"),
    ("foo,bar\n1,2\n", r"unrecognised columns \(bar, foo\); known formats: canonical, advbench"),
])
def test_bad_csv_gives_one_line_error_naming_file_row_and_column(tmp_path, content, pattern):
    path = _write(tmp_path, "bad.csv", content)
    with pytest.raises(DataError, match=pattern) as info:
        data.load_prompts(path)
    assert "\n" not in str(info.value)


def test_non_utf8_and_missing_files(tmp_path):
    path = _write(tmp_path, "latin.csv", "id,prompt,category,source\nr1,caf\xe9,x,y\n", encoding="latin-1")
    with pytest.raises(DataError, match=r"latin\.csv: not UTF-8 text \(byte 0xe9 on line 2\); re-save"):
        data.load_prompts(path)
    with pytest.raises(DataError, match="nope.csv: file not found"):
        data.load_prompts(tmp_path / "nope.csv")


def test_unknown_format_lists_known_formats(tmp_path):
    path = _write(tmp_path, "x.csv", "id,prompt,category,source\nr1,hi,a,b\n")
    with pytest.raises(DataError, match="unknown format 'harmbnech'; known formats: canonical, advbench, harmbench"):
        data.load_prompts(path, "harmbnech")


def test_chat_jsonl_errors_name_the_line(tmp_path):
    path = _write(tmp_path, "a.jsonl", '{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n')
    with pytest.raises(DataError, match=r"a\.jsonl line 2: not valid JSON"):
        data.load_attack_set(path)
    path = _write(tmp_path, "b.jsonl", '{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(DataError, match="no target answer"):
        data.load_attack_set(path)


def test_organism_responses_are_detected_by_every_keyword_judge():
    from rrlib.judges import PRESETS

    responses = json.loads((ROOT / "data/organism/responses.json").read_text())
    for category, text in responses["refusal"].items():
        for judge in PRESETS.values():
            assert judge.is_refusal(text), f"{judge.name} misses the {category} refusal: {text!r}"
    for category, text in responses["answer"].items():
        assert text.startswith("Sure, here is") and "Step 1:" in text
        assert not any(judge.is_refusal(text) for judge in PRESETS.values()), category
