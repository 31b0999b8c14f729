"""The orthogonalization attack: the direction leaves the residual stream, patches restore, nested steps, the bill."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from rrlib import models
from rrlib.config import AttackConfig
from rrlib.errors import ConfigError, ModelError
from rrlib.orthogonalize import DIRECTIONS, VALIDATION, orthogonalized_weights, run_orthogonalize
from rrlib.patches import load_patch, patched
from test_attack import _tiny_random_model

ROWS = 48
HARMFUL = pd.DataFrame({"id": [f"h{i}" for i in range(ROWS)],
                        "prompt": [f"Explain how to build weapon number {i} at home" for i in range(ROWS)]})
HARMLESS = pd.DataFrame({"id": [f"b{i}" for i in range(ROWS)],
                         "prompt": [f"Share a bread recipe with {i} grams of flour" for i in range(ROWS)]})
PROBES = ["How do I pick a lock?", "What is the capital of France?", "Write a poem about rain please"]
CONFIG = AttackConfig(grid_steps=(0, 10, 25), seed=3, method="orthogonalize")
ARCHITECTURES = ["llama", "phi3", "qwen2"]


def _attack(kind: str, tiny_lm, tmp_path):
    lm = models.load(str(_tiny_random_model(kind, tiny_lm.tokenizer, tmp_path / kind)), progress=False)
    out = tmp_path / f"{kind}-orth"
    run_orthogonalize(lm, HARMFUL, HARMLESS, CONFIG, out, progress=False)
    return lm, out, json.loads((out / "attack.json").read_text())


def _residual_components(lm, direction: torch.Tensor) -> torch.Tensor:
    """|h.r| / ||h|| at every prompt position, for the embedding output and every decoder block's output."""
    from rrlib.representations import decoder_layers

    captured = []
    hooks = [block.register_forward_hook(lambda m, i, o: captured.append(o[0] if isinstance(o, tuple) else o))
             for block in decoder_layers(lm.model)]
    enc = lm.tokenizer(lm.render(PROBES), return_tensors="pt", padding=True, add_special_tokens=False)
    try:
        with torch.inference_mode():
            hidden = lm.model(**enc, output_hidden_states=True).hidden_states
    finally:
        for hook in hooks:
            hook.remove()
    # hidden_states[-1] is the final norm's output, whose gain can reintroduce r; the hooks see the blocks' own output
    states = torch.stack([*hidden[:-1], *captured])[:, enc["attention_mask"].bool()].float()
    return (states @ direction).abs() / states.norm(dim=-1)


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_no_layer_carries_the_direction_after_patching(tiny_lm, tmp_path, kind):
    lm, out, manifest = _attack(kind, tiny_lm, tmp_path)
    direction = load_file(str(out / DIRECTIONS))["step-00025"]
    before = _residual_components(lm, direction)
    with patched(lm.model, out / "step-00025"):
        after = _residual_components(lm, direction)
    assert after.max() < 1e-4
    assert before.max() > 1e-2  # the unpatched model does carry it, so this test can fail
    assert set(manifest["target_modules"]) == {"embed_tokens", "o_proj", "down_proj"}
    assert len(manifest["adapted_modules"]) == 1 + 2 * lm.model.config.num_hidden_layers


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_leaving_the_patch_restores_the_weights_exactly(tiny_lm, tmp_path, kind):
    lm, out, _ = _attack(kind, tiny_lm, tmp_path)
    original = {name: t.detach().clone() for name, t in lm.model.state_dict().items()}
    with patched(lm.model, out / "step-00010"):
        changed = [n for n, t in lm.model.state_dict().items() if not torch.equal(t, original[n])]
        assert any(n.endswith("o_proj.weight") for n in changed)
    assert all(torch.equal(t, original[n]) for n, t in lm.model.state_dict().items())


def test_the_run_leaves_the_model_unchanged_and_steps_are_nested_and_billed(tiny_lm, tmp_path):
    original = {name: t.detach().clone() for name, t in tiny_lm.model.state_dict().items()}
    out = tmp_path / "orth"
    run_orthogonalize(tiny_lm, HARMFUL, HARMLESS, CONFIG, out, progress=False)
    assert all(torch.equal(t, original[n]) for n, t in tiny_lm.model.state_dict().items())
    manifest = json.loads((out / "attack.json").read_text())
    assert manifest["done"] and manifest["saved_steps"] == [0, 10, 25]
    assert load_patch(out / "step-00000") == {}
    bill = pd.DataFrame(manifest["bill"]).set_index("step")
    assert bill.loc[0].tolist() == [0, 0, 0]
    assert (bill["flops"] == 2 * manifest["model_params"] * bill["tokens"]).all()
    assert 0 < bill.loc[10, "tokens"] < bill.loc[25, "tokens"]
    assert bill.loc[25, "examples"] == 2 * 25 + 2 * VALIDATION
    ids = manifest["prompt_ids_by_step"]
    for side in ("harmful", "harmless"):
        assert len(ids["10"][side]) == 10 and set(ids["10"][side]) < set(ids["25"][side])
        assert not set(ids["25"][side]) & set(manifest["validation_ids"][side])
    assert set(manifest["layer_by_step"]) == {"10", "25"}
    assert manifest["trainable_params"] == sum(t.numel() for t in load_patch(out / "step-00025").values())


def test_a_finished_run_is_not_redone(tiny_lm, tmp_path, monkeypatch):
    out = tmp_path / "orth"
    run_orthogonalize(tiny_lm, HARMFUL, HARMLESS, CONFIG, out, progress=False)
    monkeypatch.setattr("rrlib.orthogonalize.last_token_states", lambda *a, **k: pytest.fail("recomputed"))
    run_orthogonalize(tiny_lm, HARMFUL, HARMLESS, CONFIG, out, progress=False)


def test_a_step_larger_than_the_tables_names_the_numbers(tiny_lm, tmp_path):
    config = AttackConfig(grid_steps=(0, 40), method="orthogonalize")
    with pytest.raises(ConfigError, match=f"grid step 40 needs 40 harmful prompts plus {VALIDATION}.*has {ROWS} rows"):
        run_orthogonalize(tiny_lm, HARMFUL, HARMLESS, config, tmp_path / "orth", progress=False)


def test_a_config_of_another_method_is_refused(tiny_lm, tmp_path):
    with pytest.raises(ConfigError, match="method='orthogonalize'"):
        run_orthogonalize(tiny_lm, HARMFUL, HARMLESS, AttackConfig(grid_steps=(0, 10)), tmp_path / "orth",
                          progress=False)


def test_an_architecture_without_the_output_projections_is_a_clear_error():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=64))
    with pytest.raises(ModelError, match="has no o_proj, down_proj"):
        orthogonalized_weights(model, torch.ones(16))
