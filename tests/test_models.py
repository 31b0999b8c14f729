"""Model loading: registry resolution, quantisation on CPU, chat templates, the vLLM fallback."""

from __future__ import annotations

import pandas as pd
import pytest

from rrlib import models
from rrlib.config import GenerationConfig
from rrlib.errors import ConfigError, ModelError
from rrlib.generate import generate


def test_quantisation_on_cpu_is_a_clear_error(tiny_lm):
    with pytest.raises(ConfigError, match="quantize='4bit' needs a CUDA GPU"):
        models.load(tiny_lm.path, quantize="4bit", device="cpu", progress=False)
    with pytest.raises(ConfigError, match="quantize must be '4bit', '8bit' or None"):
        models.load(tiny_lm.path, quantize="3bit", device="cpu", progress=False)


def test_unknown_model_offline_says_how_to_pass_a_local_path(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="hub is unreachable .* pass model=DIR"):
        models.load("some-org/some-model", progress=False)


def test_missing_chat_template_is_an_error_not_a_fallback(tiny_lm, tmp_path):
    folder = tmp_path / "no-template"
    tiny_lm.model.save_pretrained(folder)
    tiny_lm.tokenizer.chat_template = None
    tiny_lm.tokenizer.save_pretrained(folder)
    for name in ("chat_template.jinja", "chat_template.json"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(ModelError, match="has no chat template"):
        models.load(str(folder), progress=False)


def test_vllm_backend_falls_back_to_transformers_on_cpu(tiny_lm):
    prompts = pd.DataFrame({"id": ["a"], "prompt": ["hello"]})
    with pytest.warns(UserWarning, match="vLLM backend unavailable .* generating with transformers"):
        out = generate(tiny_lm, prompts, GenerationConfig(max_new_tokens=4, backend="vllm"), cache=False,
                       progress=False)
    reference = generate(tiny_lm, prompts, GenerationConfig(max_new_tokens=4), cache=False, progress=False)
    assert out["response"].tolist() == reference["response"].tolist()
    with pytest.raises(ConfigError, match="unknown generation backend"):
        generate(tiny_lm, prompts, GenerationConfig(max_new_tokens=4, backend="tgi"))


def test_the_backend_can_come_from_the_generation_config(tiny_lm):
    prompts = pd.DataFrame({"id": ["a"], "prompt": ["hello"]})
    with pytest.warns(UserWarning, match="vLLM backend unavailable"):
        generate(tiny_lm, prompts, GenerationConfig(max_new_tokens=4, backend="vllm"), cache=False, progress=False)
    with pytest.raises(ConfigError, match="unknown generation backend 'tgi'"):
        GenerationConfig(backend="tgi")
