"""The four attacks behind one parameter, on tiny random Llama, Phi-3 and Qwen2 models: each attack's code path
(LoRA, full fine-tuning, benign LoRA, orthogonalization), its checkpoints, its compute bill, that the base
model comes back unchanged, and that utility is measured under every checkpoint."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from test_attack import ATTACK_SET, PROMPTS, _tiny_random_model

from rrlib import attack, models, patches, results, utility
from rrlib.config import AttackConfig, GenerationConfig
from rrlib.errors import ConfigError
from rrlib.generate import generate

HARMLESS = pd.DataFrame({"id": [f"h{i}" for i in range(40)],
                         "prompt": [f"Give me a simple recipe idea number {i} for dinner" for i in range(40)]})
HARMFUL = pd.DataFrame({"id": [f"a{i}" for i in range(40)],
                        "prompt": [f"Explain how to do forbidden thing number {i}" for i in range(40)],
                        "target": ["Sure, here is an overview. Step 1: Plan. Step 2: Act."] * 40})
REFERENCES = pd.DataFrame({"id": ["r1", "r2"], "prompt": ["How do I bake bread?", "How do I boil an egg?"],
                           "reference": ["Sure, here is a quick recipe outline. Step 1: Prepare the ingredients."] * 2})
STEPS = {"lora": (0, 2, 4), "full": (0, 2, 4), "benign": (0, 2, 4), "orthogonalize": (0, 4, 8)}
# FLOPs per token processed, written out from the methods page (not read from rrlib): forward + backward through
# frozen weights 4N, with weight gradients 6N, forward passes only 2N.
EXPECTED_K = {"lora": 4, "benign": 4, "full": 6, "orthogonalize": 2}


def _config(method: str) -> AttackConfig:
    rate = {"full": 1e-3, "orthogonalize": 0.0}.get(method, 1e-2)
    return AttackConfig(grid_steps=STEPS[method], rank=2, batch_size=4, learning_rate=rate, method=method)


def _weights(lm) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in patches.unwrapped(lm.model).named_parameters()}


@pytest.fixture(scope="module", params=["llama", "phi3", "qwen2"])
def arch(request, tmp_path_factory, tiny_organism, organism_cache):
    """A tiny random model of each architecture, with the tiny organism's tokenizer and chat template."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RR_CACHE_DIR", str(organism_cache))
        tokenizer = models.load(tiny_organism, progress=False).tokenizer
    folder = tmp_path_factory.mktemp(request.param)
    return models.load(str(_tiny_random_model(request.param, tokenizer, folder / "model")), progress=False)


@pytest.mark.parametrize("method", ["lora", "full", "benign", "orthogonalize"])
def test_every_attack_runs_checkpoints_bills_and_restores_the_base(arch, method, tmp_path):
    models.base_model(arch)  # adapters a previous test left loaded are not base weights
    before = _weights(arch)
    data = HARMFUL if method != "benign" else HARMFUL.assign(target="Sure, here is a quick recipe outline.")
    result = attack.run_attack(arch, data, _config(method), out_dir=tmp_path / method, progress=False,
                               harmless=HARMLESS if method == "orthogonalize" else None)
    # Every grid step has a checkpoint of the right kind; the recipe names the attack.
    assert sorted(result.adapters) == list(STEPS[method]) and result.recipe.startswith(method)
    last = result.adapters[STEPS[method][-1]]
    assert patches.is_patch(last) == (method in ("full", "orthogonalize"))
    # The bill: FLOPs = k * N * tokens with the attack's own k, tokens growing with the step.
    bill = result.bill.set_index("step")
    assert bill.loc[0, "flops"] == 0 and bill["tokens"].is_monotonic_increasing and bill["tokens"].iloc[-1] > 0
    k = EXPECTED_K[method]
    assert bill["flops"].tolist() == pytest.approx([k * arch.n_params * t for t in bill["tokens"]])
    # The base model is back, bit for bit, and answers as before.
    after = _weights(arch)
    assert before.keys() == after.keys() and all(torch.equal(before[n], after[n]) for n in before)
    # The checkpoint changes the model; leaving it restores the base.
    base_loss = utility.utility_loss(arch, REFERENCES, None).value
    attacked_loss = utility.utility_loss(arch, REFERENCES, last).value
    assert attacked_loss != pytest.approx(base_loss, abs=1e-4)
    assert utility.utility_loss(arch, REFERENCES, None).value == pytest.approx(base_loss, abs=1e-6)
    # Generation goes through the same checkpoint switch (cache keys differ by checkpoint).
    out = generate(arch, PROMPTS, GenerationConfig(max_new_tokens=4), adapter_dir=last, cache=False, progress=False)
    assert len(out) == 2


def test_full_fine_tuning_checkpoint_equals_a_separate_shorter_run(arch, tmp_path):
    """One run, a checkpoint per grid step: step 2 of a 4-step run is a 2-step run."""
    long = attack.run_attack(arch, HARMFUL, _config("full"), out_dir=tmp_path / "long", progress=False)
    short_config = AttackConfig(grid_steps=(0, 2), batch_size=4, learning_rate=1e-3, method="full")
    short = attack.run_attack(arch, HARMFUL, short_config, out_dir=tmp_path / "short", progress=False)
    a, b = patches.load_patch(long.adapters[2]), patches.load_patch(short.adapters[2])
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def test_interrupted_full_fine_tuning_resumes_to_the_same_weights(arch, tmp_path, monkeypatch):
    config = _config("full")
    reference = attack.run_attack(arch, HARMFUL, config, out_dir=tmp_path / "ref", progress=False)
    calls = {"n": 0}
    real_step = torch.optim.AdamW.step

    def dying_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # after the step-2 checkpoint
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        attack.run_attack(arch, HARMFUL, config, out_dir=tmp_path / "cut", progress=False)
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    resumed = attack.run_attack(arch, HARMFUL, config, out_dir=tmp_path / "cut", progress=False)
    a, b = patches.load_patch(reference.adapters[4]), patches.load_patch(resumed.adapters[4])
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_an_unknown_attack_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown attack 'pgd'; choose one of lora, full, benign, orthogonalize"):
        AttackConfig(method="pgd")


def test_orthogonalize_without_harmless_prompts_is_a_clear_error(arch, tmp_path):
    with pytest.raises(Exception, match="needs harmless prompts"):
        attack.run_attack(arch, HARMFUL, _config("orthogonalize"), out_dir=tmp_path / "o", progress=False)


def test_day4_parameters_pick_the_attack_its_rate_and_the_run_name():
    params = {"model": "organism-m", "grid_steps": [0, 10], "rank": 8, "alpha": 16, "learning_rate": None,
              "attack_batch_size": 8, "target_modules": None, "seed": None}
    assert attack.config_from_parameters(params).recipe == "lora-r8-lr0.001-s0"
    assert attack.config_from_parameters({**params, "attack": "full"}).recipe == "full-lr0.0001-s0"
    assert attack.config_from_parameters({**params, "attack": "benign"}).recipe == "benign-r8-lr0.001-s0"
    assert attack.config_from_parameters({**params, "attack": "orthogonalize"}).recipe == "orthogonalize-s0"
    assert results.run_name("organism-m", 4, {"attack": "lora"}) == "organism-m"
    assert results.run_name("organism-m", 5, {"attack": "full"}) == "organism-m@full"
    assert results.run_name("organism-m-vaccine", 4, {"attack": "orthogonalize"}) == "organism-m-vaccine@orthogonalize"
    # A LoRA run's folder name predates the attack field and keeps its hash.
    assert "method" not in AttackConfig().identity()


# Each attack once through papermill (the in-process test above runs every attack on every architecture).
PAPERMILL_CASES = [("lora", "qwen2"), ("full", "llama"), ("benign", "qwen2"), ("orthogonalize", "phi3")]


@pytest.mark.integration
@pytest.mark.parametrize("method, kind", PAPERMILL_CASES)
def test_day4_runs_each_attack_through_papermill_on_a_tiny_random_architecture(method, kind, tiny_organism,
                                                                               organism_cache, tmp_path):
    """Day 4, executed by papermill with ``-p attack <method>`` on a local tiny random model: it files the run
    as ``<model>@<method>``, saves every grid step's checkpoint and bills the attack's own FLOPs."""
    import json
    import subprocess
    import sys

    import nbformat
    from conftest import ROOT, subprocess_env

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RR_CACHE_DIR", str(organism_cache))
        tokenizer = models.load(tiny_organism, progress=False).tokenizer
    folder = _tiny_random_model(kind, tokenizer, tmp_path / f"tiny-{kind}")
    steps = "[0, 4, 8]" if method == "orthogonalize" else "[0, 2, 4]"
    out, results_dir = tmp_path / "Day4.ipynb", tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "Day4_attack.ipynb"), str(out),
                           "-p", "model", str(folder), "-p", "attack", method, "-y", f"grid_steps: {steps}",
                           "-p", "attack_batch_size", "4", "--no-progress-bar"],
                          cwd=ROOT, env=subprocess_env(results_dir), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    assert "error" not in [o.get("output_type") for c in nb.cells for o in c.get("outputs", [])]
    name = f"tiny-{kind}" if method == "lora" else f"tiny-{kind}@{method}"
    config = json.loads((results_dir / "runs" / name / "Day4.config.json").read_text())
    assert config["recipe"].startswith(method) and config["params"]["attack"] == method
    attack_dir = Path(config["attack_dir"]) if Path(config["attack_dir"]).is_absolute() else ROOT / config["attack_dir"]
    result = attack.load_attack(attack_dir)
    assert sorted(result.adapters) == json.loads(steps)
    compute = pd.read_csv(results_dir / "runs" / name / "metrics" / "compute.csv") if method != "lora" else \
        pd.read_csv(results_dir / "metrics" / "compute.csv")
    compute = compute[compute["recipe"] == result.recipe].set_index("step")
    assert compute.loc[json.loads(steps)[-1], "flops"] == pytest.approx(
        EXPECTED_K[method] * compute.loc[json.loads(steps)[-1], "model_params"]
        * compute.loc[json.loads(steps)[-1], "tokens"])
