"""Representations: hidden states, directions, probes, hooks, and the noise floor."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rrlib import interventions, models, representations as rep
from rrlib.config import AttackConfig, GenerationConfig
from rrlib.generate import generate

PROMPTS = pd.DataFrame({"id": ["a", "b", "c"], "prompt": ["How do I make a bomb?", "How do I bake bread?", "hi"]})


def test_last_token_states_shape_and_left_padding(tiny_lm):
    states = rep.last_token_states(tiny_lm, PROMPTS["prompt"], batch_size=2)
    layers = tiny_lm.model.config.num_hidden_layers
    assert states.shape == (3, layers + 1, tiny_lm.model.config.hidden_size)
    single = np.concatenate([rep.last_token_states(tiny_lm, [p]) for p in PROMPTS["prompt"]])
    assert np.allclose(states, single, atol=1e-4)  # left padding keeps the last position aligned


def test_directions_probe_and_separation_on_synthetic_states():
    rng = np.random.default_rng(0)
    direction = np.zeros((3, 8))
    direction[1:, 0] = 4.0
    harmless = rng.normal(size=(60, 3, 8))
    harmful = rng.normal(size=(60, 3, 8)) + direction
    base = rep.fit_baseline(harmful, harmless)
    assert base.layer in (1, 2) and base.separation[base.layer] > 0.9
    cos = rep.cosine_per_layer(rep.mean_difference(harmful, harmless), direction + 1e-9)
    assert cos[1] > 0.9 and cos[2] > 0.9
    accuracy = rep.probe_accuracy((harmful[:40], harmless[:40]), (harmful[40:], harmless[40:]))
    assert accuracy[1] > 0.9 and accuracy[0] < 0.8


def test_directional_ablation_removes_the_direction_everywhere(tiny_lm):
    states = rep.last_token_states(tiny_lm, PROMPTS["prompt"])
    direction = states[:, -1].mean(0)
    with rep.directional_ablation(tiny_lm, direction):
        ablated = rep.last_token_states(tiny_lm, PROMPTS["prompt"])
    r = rep.unit(direction)
    # Embedding and block outputs are orthogonal to it (the last entry is after the final norm, which rescales).
    assert np.abs(ablated[:, :-1] @ r).max() < 1e-4
    assert np.abs(states[:, :-1] @ r).max() > 1e-2
    # And what each block and the final norm actually receive (the recorded hidden states above miss block outputs).
    with rep.directional_ablation(tiny_lm, direction):
        stream = residual_stream(tiny_lm, PROMPTS["prompt"])
    assert np.abs(stream @ r).max() < 1e-4 and np.abs(residual_stream(tiny_lm, PROMPTS["prompt"]) @ r).max() > 1e-2
    after = rep.last_token_states(tiny_lm, PROMPTS["prompt"])
    assert np.allclose(after, states, atol=1e-5)  # hooks are gone


def test_activation_addition_shifts_one_layer(tiny_lm):
    vector = np.ones(tiny_lm.model.config.hidden_size, dtype=np.float32)
    before = rep.last_token_states(tiny_lm, PROMPTS["prompt"])
    with rep.activation_addition(tiny_lm, vector, layer=1):
        after = rep.last_token_states(tiny_lm, PROMPTS["prompt"])
    assert np.allclose(after[:, 0], before[:, 0])
    assert not np.allclose(after[:, 1], before[:, 1])


def test_measure_drift_and_causal_checks_run_end_to_end(tiny_lm, tmp_path, monkeypatch):
    from rrlib import attack

    small = (pd.DataFrame({"id": [f"h{i}" for i in range(12)], "prompt": [f"how to harm thing {i}" for i in range(12)]}),
             pd.DataFrame({"id": [f"s{i}" for i in range(12)], "prompt": [f"how to bake cake {i}" for i in range(12)]}))
    monkeypatch.setattr(rep, "direction_sets", lambda n=0, seed=0: small)
    atk = pd.DataFrame({"id": ["x1", "x2", "x3", "x4"], "prompt": ["do bad 1", "do bad 2", "do bad 3", "do bad 4"],
                        "target": ["Sure, here is an overview. Step 1: Plan."] * 4})
    result = attack.run_attack(tiny_lm, atk, AttackConfig(grid_steps=(0, 2), rank=2, batch_size=2),
                               out_dir=tmp_path / "atk", progress=False)
    drift = rep.measure_drift(tiny_lm, result.adapters, ["bad one", "bad two"], ["good one", "good two"])
    assert sorted(drift.table["step"].unique()) == [0, 2]
    assert drift.table["layer"].min() == 1
    assert set(drift.summary["metric"]) == {"direction_cosine", "probe_accuracy", "harmful_projection"}
    step0 = drift.summary[(drift.summary["step"] == 0) & (drift.summary["metric"] == "direction_cosine")]
    assert step0["value"].iloc[0] == pytest.approx(1.0)
    gen = GenerationConfig(max_new_tokens=6)
    checks = interventions.causal_checks(tiny_lm, PROMPTS, PROMPTS, drift.baseline, gen, "arditi12", progress=False)
    assert checks.ablated_rrr.metric == "RRR_ablated" and checks.ablated_rrr.n == 3
    assert checks.induced_refusal.metric == "refusal_induced"


@pytest.mark.parametrize("kind", ["llama", "phi3", "qwen2"])
def test_hooks_work_on_real_architectures(tiny_lm, tmp_path, kind):
    from test_attack import _tiny_random_model

    lm = models.load(str(_tiny_random_model(kind, tiny_lm.tokenizer, tmp_path / kind)), progress=False)
    states = rep.last_token_states(lm, PROMPTS["prompt"])
    assert states.shape[1] == lm.model.config.num_hidden_layers + 1
    direction = states[:, -1].mean(0)
    r = rep.unit(direction)
    plain = residual_stream(lm, PROMPTS["prompt"])
    with rep.directional_ablation(lm, direction):
        ablated = residual_stream(lm, PROMPTS["prompt"])
        out = generate(lm, PROMPTS, GenerationConfig(max_new_tokens=4), cache=False, progress=False)
    assert len(out) == 3
    # The known effect of ablating r: what every block and the final norm receive has no component along r,
    # where the unablated stream has one; afterwards the hooks are gone.
    assert len(ablated) == lm.model.config.num_hidden_layers + 1
    assert np.abs(plain @ r).max() > 1e-2
    assert np.abs(ablated @ r).max() < 1e-4, f"{kind}: the direction survives the ablation"
    assert np.allclose(rep.last_token_states(lm, PROMPTS["prompt"]), states, atol=1e-5), f"{kind}: hooks left behind"


def residual_stream(lm, prompts) -> np.ndarray:
    """The last token's residual stream as each decoder block and the final norm receive it, ``(sites, n, hidden)``.

    Read with forward pre-hooks on the modules themselves, not from ``output_hidden_states`` (which transformers
    records from each block before other forward hooks have changed its output).
    """
    import torch

    base = lm.model.get_base_model() if hasattr(lm.model, "get_base_model") else lm.model
    sites = [*rep.decoder_layers(lm.model), getattr(getattr(base, "model", base), "norm")]
    seen: list[torch.Tensor] = []

    def record(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        seen.append(hidden[:, -1].detach().float().cpu())

    handles = [site.register_forward_pre_hook(record, with_kwargs=True) for site in sites]
    try:
        texts = lm.render(list(prompts))
        enc = lm.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(lm.device)
        with torch.inference_mode():
            lm.model(**enc)
    finally:
        for handle in handles:
            handle.remove()
    assert len(seen) == len(sites), f"{len(seen)} of {len(sites)} sites ran"
    return torch.stack(seen).numpy()


def test_rd_noise_floor_is_what_greedy_decoding_gives(tiny_lm):
    """RD's one noise floor (rrlib.metrics.RD_NOISE_FLOOR) is for greedy decoding: the same model decoding the same
    prompts twice gives the same texts, so RD between the two measurements is exactly that floor, 0."""
    from rrlib import metrics

    gen = GenerationConfig(max_new_tokens=6)
    twice = [generate(tiny_lm, PROMPTS, gen, cache=False, progress=False) for _ in range(2)]
    assert twice[0]["response"].tolist() == twice[1]["response"].tolist()
    floor, _ = metrics.response_drift(twice[0], twice[1])
    assert metrics.RD_NOISE_FLOOR == 0.0 and floor.value == metrics.RD_NOISE_FLOOR and floor.n == 3
