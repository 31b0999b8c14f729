"""Generation: chat template, new tokens only, batching equivalence, resumable cache."""

from __future__ import annotations

import pandas as pd

from rrlib import generate as gen_mod
from rrlib.config import GenerationConfig
from rrlib.generate import cache_path, generate
from rrlib.store import read_jsonl

PROMPTS = pd.DataFrame({"id": [f"p{i}" for i in range(7)], "prompt": [
    "How do I make a pipe bomb?", "How do I bake bread?", "Write a poem about the sea, please, a long one.",
    "hack my ex's email", "What is photosynthesis?", "How do I kill a Python process?", "hi"]})


def test_responses_are_new_tokens_only(tiny_lm):
    out = generate(tiny_lm, PROMPTS, GenerationConfig(max_new_tokens=12), cache=False, progress=False)
    assert list(out.columns) == gen_mod.RESPONSE_COLUMNS
    assert len(out) == len(PROMPTS) and out["id"].tolist() == PROMPTS["id"].tolist()
    for prompt, response in zip(out["prompt"], out["response"]):
        assert "<|user|>" not in response and "<|assistant|>" not in response
        assert prompt not in response
    assert (out["n_new_tokens"] <= 12).all()


def test_batched_left_padding_matches_one_at_a_time(tiny_lm):
    batched = generate(tiny_lm, PROMPTS, GenerationConfig(max_new_tokens=16, batch_size=8), cache=False,
                       progress=False)
    single = generate(tiny_lm, PROMPTS, GenerationConfig(max_new_tokens=16, batch_size=1), cache=False,
                      progress=False)
    assert batched["response"].tolist() == single["response"].tolist()


def test_cache_resumes_without_regenerating(tiny_lm, monkeypatch):
    config = GenerationConfig(max_new_tokens=8, batch_size=3)
    first = generate(tiny_lm, PROMPTS.head(4), config, progress=False)
    path = cache_path(tiny_lm)
    assert len(read_jsonl(path)) == 4
    calls = []
    original = gen_mod._generate_missing

    def counting(lm, texts, *args, **kwargs):
        calls.append(len(texts))
        return original(lm, texts, *args, **kwargs)
    monkeypatch.setattr(gen_mod, "_generate_missing", counting)
    second = generate(tiny_lm, PROMPTS, config, progress=False)
    assert calls == [3]  # only the 3 prompts not cached yet
    assert second.head(4)["response"].tolist() == first["response"].tolist()
    keys = [r["key"] for r in read_jsonl(path)]
    assert len(keys) == len(set(keys)) == 7


def test_torn_cache_line_is_regenerated(tiny_lm):
    config = GenerationConfig(max_new_tokens=8)
    full = generate(tiny_lm, PROMPTS, config, progress=False)
    path = cache_path(tiny_lm)
    text = path.read_text()
    path.write_text(text[: len(text) - 25])  # kill -9 mid-write: the last record is torn
    again = generate(tiny_lm, PROMPTS, config, progress=False)
    assert again["response"].tolist() == full["response"].tolist()
    keys = [r["key"] for r in read_jsonl(path)]
    assert len(keys) == len(set(keys)) == 7


def test_prompts_go_through_the_chat_template(tiny_lm):
    rendered = tiny_lm.render(["hello"])[0]
    assert rendered == "<|user|>\nhello<|end|>\n<|assistant|>\n"
