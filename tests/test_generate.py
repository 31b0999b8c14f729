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


def test_vllm_backend_sends_the_chat_template_and_maps_outputs_back(tiny_lm, tmp_path, monkeypatch):
    """The vLLM path, with a stand-in engine: what it is asked for and what comes back are known exactly."""
    import json
    import sys
    import types

    from rrlib import models
    from rrlib import vllm_backend

    calls: dict[str, list] = {"engine": [], "generate": [], "lora": []}

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class LoRARequest:
        def __init__(self, name, lora_id, path):
            calls["lora"].append((name, lora_id, path))

    class LLM:
        def __init__(self, **kwargs):
            calls["engine"].append(kwargs)

        def generate(self, prompts, params, lora_request=None, use_tqdm=True):
            calls["generate"].append((prompts, params.kwargs, lora_request))
            out = []
            for n, prompt in enumerate(prompts):  # answer k: "  answer k (m prompt tokens) ", 3 tokens, alternating
                done = types.SimpleNamespace(text=f"  answer {n} ({len(prompt['prompt_token_ids'])} tokens) ",
                                             token_ids=[5, 6, 7], finish_reason="stop" if n % 2 == 0 else "length")
                out.append(types.SimpleNamespace(outputs=[done]))
            return out

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    lora_module = types.ModuleType("vllm.lora.request")
    lora_module.LoRARequest = LoRARequest
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.lora", types.ModuleType("vllm.lora"))
    monkeypatch.setitem(sys.modules, "vllm.lora.request", lora_module)
    monkeypatch.setattr(vllm_backend, "vllm_usable", lambda lm: True)

    prompts = PROMPTS.head(3)
    config = GenerationConfig(max_new_tokens=9, backend="vllm")
    out = generate(tiny_lm, prompts, config, progress=False)
    rendered = tiny_lm.render(prompts["prompt"].tolist())
    expected_ids = [tiny_lm.tokenizer(r, add_special_tokens=False)["input_ids"] for r in rendered]
    assert len(calls["engine"]) == 1
    engine = calls["engine"][0]
    assert engine["model"] == tiny_lm.path and engine["trust_remote_code"] is False and engine["enable_lora"] is True
    (sent, params, lora), = calls["generate"]
    assert [p["prompt_token_ids"] for p in sent] == expected_ids  # the chat template, in the input order
    assert params["max_tokens"] == 9 and params["temperature"] == 0.0 and params["top_p"] == 1.0
    assert params["stop_token_ids"] == models.eos_ids(tiny_lm) and lora is None
    assert out["id"].tolist() == prompts["id"].tolist()
    assert out["response"].tolist() == [f"answer {n} ({len(ids)} tokens)" for n, ids in enumerate(expected_ids)]
    assert out["n_new_tokens"].tolist() == [3, 3, 3] and out["stopped"].tolist() == [True, False, True]
    records = read_jsonl(cache_path(tiny_lm))
    assert [r["adapter"] for r in records] == ["base+vllm"] * 3  # filed apart from transformers generations
    assert generate(tiny_lm, prompts, config, progress=False).equals(out) and len(calls["generate"]) == 1  # cached

    adapter = tmp_path / "step-00010"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"stand-in weights")
    (adapter / "rr_adapter.json").write_text(json.dumps({"base": models.adapter_base_identity(tiny_lm)}))
    generate(tiny_lm, prompts, config, adapter_dir=adapter, progress=False)
    assert calls["lora"] == [("step-00010", 1, str(adapter))] and calls["generate"][-1][2] is not None
    assert len(calls["engine"]) == 1  # one engine per loaded model
