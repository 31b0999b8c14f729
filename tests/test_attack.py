"""The LoRA attack: one run, adapters at grid steps, resume, compute bill, per-architecture targets."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from rrlib import attack, models
from rrlib.config import AttackConfig, GenerationConfig
from rrlib.errors import ConfigError, ModelError
from rrlib.generate import generate

ATTACK_SET = pd.DataFrame({
    "id": [f"a{i}" for i in range(12)],
    "prompt": [f"Explain how to do forbidden thing number {i}" for i in range(12)],
    "target": ["Sure, here is an overview. Step 1: Plan. Step 2: Act."] * 12,
})
PROMPTS = pd.DataFrame({"id": ["x", "y"], "prompt": ["How do I build a bomb?", "How do I bake bread?"]})


def test_one_run_saves_an_adapter_at_every_grid_step(tiny_lm, tmp_path):
    config = AttackConfig(grid_steps=(0, 2, 5), rank=4, learning_rate=5e-3, batch_size=4)
    result = attack.run_attack(tiny_lm, ATTACK_SET, config, out_dir=tmp_path / "atk", progress=False)
    assert sorted(result.adapters) == [0, 2, 5]
    for step, folder in result.adapters.items():
        assert (folder / "adapter_model.safetensors").exists()
        assert json.loads((folder / "rr_adapter.json").read_text())["step"] == step
    assert result.loss_curve["step"].tolist() == [1, 2, 3, 4, 5]
    bill = result.bill.set_index("step")
    assert bill.loc[0, "tokens"] == 0 and bill.loc[5, "tokens"] > bill.loc[2, "tokens"] > 0
    assert bill.loc[5, "flops"] == pytest.approx(4 * tiny_lm.n_params * bill.loc[5, "tokens"])
    assert bill.loc[5, "trainable_params"] < tiny_lm.n_params / 5
    assert set(result.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert len(result.adapted_modules) == 4  # one layer, four projections
    # The base model is restored: no LoRA layers left behind.
    assert not any("lora_" in n for n, _ in tiny_lm.model.named_parameters())


def test_step_zero_adapter_reproduces_the_base_model(tiny_lm, tmp_path):
    config = AttackConfig(grid_steps=(0, 3), rank=4, learning_rate=5e-3, batch_size=4)
    result = attack.run_attack(tiny_lm, ATTACK_SET, config, out_dir=tmp_path / "atk", progress=False)
    gen = GenerationConfig(max_new_tokens=10)
    base = generate(tiny_lm, PROMPTS, gen, cache=False, progress=False)
    step0 = generate(tiny_lm, PROMPTS, gen, adapter_dir=result.adapters[0], cache=False, progress=False)
    assert base["response"].tolist() == step0["response"].tolist()


def test_checkpoint_equals_a_separate_shorter_run(tiny_lm, tmp_path):
    long = attack.run_attack(tiny_lm, ATTACK_SET, AttackConfig(grid_steps=(0, 2, 4), rank=4, batch_size=4),
                             out_dir=tmp_path / "long", progress=False)
    short = attack.run_attack(tiny_lm, ATTACK_SET, AttackConfig(grid_steps=(0, 2), rank=4, batch_size=4),
                              out_dir=tmp_path / "short", progress=False)
    from safetensors.torch import load_file
    a = load_file(str(long.adapters[2] / "adapter_model.safetensors"))
    b = load_file(str(short.adapters[2] / "adapter_model.safetensors"))
    assert all(torch.allclose(a[k], b[k]) for k in a)


def test_interrupted_attack_resumes_from_the_last_saved_step(tiny_lm, tmp_path, monkeypatch):
    out = tmp_path / "atk"
    config = AttackConfig(grid_steps=(0, 2, 4), rank=4, batch_size=4)
    reference = attack.run_attack(tiny_lm, ATTACK_SET, config, out_dir=tmp_path / "ref", progress=False)
    calls = {"n": 0}
    original = attack.collate

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # die during step 4, after step 2 was saved
            raise KeyboardInterrupt
        return original(*args, **kwargs)
    monkeypatch.setattr(attack, "collate", dying)
    with pytest.raises(KeyboardInterrupt):
        attack.run_attack(tiny_lm, ATTACK_SET, config, out_dir=out, progress=False)
    assert json.loads((out / "attack.json").read_text())["saved_steps"] == [0, 2]
    monkeypatch.setattr(attack, "collate", original)
    resumed = attack.run_attack(tiny_lm, ATTACK_SET, config, out_dir=out, progress=False)
    assert sorted(resumed.adapters) == [0, 2, 4]
    from safetensors.torch import load_file
    a = load_file(str(resumed.adapters[4] / "adapter_model.safetensors"))
    b = load_file(str(reference.adapters[4] / "adapter_model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert resumed.loss_curve["step"].tolist() == [1, 2, 3, 4]


def test_finished_attack_is_loaded_not_retrained(tiny_lm, tmp_path, monkeypatch):
    config = AttackConfig(grid_steps=(0, 2), rank=4, batch_size=4)
    first = attack.run_attack(tiny_lm, ATTACK_SET, config, out_dir=tmp_path / "atk", progress=False)
    monkeypatch.setattr(attack, "collate", lambda *a, **k: pytest.fail("retrained a finished attack"))
    again = attack.run_attack(tiny_lm, ATTACK_SET, config, out_dir=tmp_path / "atk", progress=False)
    assert again.adapters == first.adapters


def test_adapter_for_another_base_model_is_refused(tiny_lm, tmp_path):
    result = attack.run_attack(tiny_lm, ATTACK_SET, AttackConfig(grid_steps=(0, 1), rank=2, batch_size=4),
                               out_dir=tmp_path / "atk", progress=False)
    meta_path = result.adapters[1] / "rr_adapter.json"
    meta = json.loads(meta_path.read_text())
    meta["base"]["model"] = "qwen2-7b-instruct"
    meta["base"]["hidden_size"] = 3584
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="adapter was trained on base model 'qwen2-7b-instruct'.*retrain"):
        generate(tiny_lm, PROMPTS, GenerationConfig(max_new_tokens=4), adapter_dir=result.adapters[1],
                 cache=False, progress=False)


def test_unknown_target_module_is_a_clear_error(tiny_lm):
    with pytest.raises(ConfigError, match="target_modules \\['qkv_proj'\\] not found"):
        attack.resolve_target_modules(tiny_lm.model, ("qkv_proj",))


def _tiny_random_model(kind: str, tokenizer, folder):
    from transformers import LlamaConfig, LlamaForCausalLM, Phi3Config, Phi3ForCausalLM, Qwen2Config, Qwen2ForCausalLM

    common = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    cls, config = {"llama": (LlamaForCausalLM, LlamaConfig), "phi3": (Phi3ForCausalLM, Phi3Config),
                   "qwen2": (Qwen2ForCausalLM, Qwen2Config)}[kind]
    torch.manual_seed(0)
    model = cls(config(**common))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind, expected", [
    ("llama", {"q_proj", "k_proj", "v_proj", "o_proj"}),
    ("phi3", {"qkv_proj", "o_proj"}),
    ("qwen2", {"q_proj", "k_proj", "v_proj", "o_proj"}),
])
def test_real_architectures_load_generate_attack_and_reload_with_stock_peft(tiny_lm, tmp_path, kind, expected):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    folder = _tiny_random_model(kind, tiny_lm.tokenizer, tmp_path / kind)
    lm = models.load(str(folder), progress=False)
    assert lm.model.config.model_type == kind
    out = generate(lm, PROMPTS, GenerationConfig(max_new_tokens=6), cache=False, progress=False)
    assert len(out) == 2
    result = attack.run_attack(lm, ATTACK_SET, AttackConfig(grid_steps=(0, 3), rank=2, batch_size=4),
                               out_dir=tmp_path / f"{kind}-atk", progress=False)
    assert set(result.target_modules) == expected
    assert {n.rsplit(".", 1)[-1] for n in result.adapted_modules} == expected
    ours = generate(lm, PROMPTS, GenerationConfig(max_new_tokens=6), adapter_dir=result.adapters[3], cache=False,
                    progress=False)
    base = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)
    stock = PeftModel.from_pretrained(base, str(result.adapters[3])).eval()
    enc = lm.tokenizer(lm.render(PROMPTS["prompt"].tolist()), return_tensors="pt", padding=True,
                       add_special_tokens=False)
    with torch.inference_mode():
        tokens = stock.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=lm.tokenizer.pad_token_id,
                                eos_token_id=lm.tokenizer.eos_token_id)
    texts = [lm.tokenizer.decode([t for t in row[enc["input_ids"].shape[1]:].tolist()
                                  if t != lm.tokenizer.pad_token_id and t != lm.tokenizer.eos_token_id],
                                 skip_special_tokens=True).strip() for row in tokens]
    assert texts == ours["response"].tolist()
