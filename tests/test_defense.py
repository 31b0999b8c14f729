"""Vaccine (Huang et al. 2024): the perturbation, its hooks, the rho = 0 limit, and the defended organisms."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from rrlib import config, defense, organism
from rrlib.config import ORGANISMS, OrganismSpec, REGISTRY, stable_hash
from rrlib.errors import ConfigError
from rrlib.architecture import decoder_layers

ORIGINAL_SPEC_FIELDS = ["layers", "hidden", "heads", "intermediate", "vocab_size", "epochs", "learning_rate",
                        "weight_decay", "batch_size", "seed", "corpus_fraction"]


def tiny_model(seed: int = 0):
    """A two-layer Llama with random weights: enough to exercise the hooks and the step."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, max_position_embeddings=32, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg)


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, 64, (4, 12), generator=generator)
    labels = input_ids.clone()
    labels[:, :5] = -100  # the prompt carries no loss, as in organism training
    return input_ids, labels, torch.ones_like(input_ids)


def optimizer_for(model):
    return torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)


def plain_step(model, optimizer, ids, labels, mask):
    loss = organism.answer_loss(model, ids, labels, mask)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss


def test_perturbation_has_joint_norm_rho_and_points_up_the_loss(monkeypatch):
    model, rho = tiny_model(), 0.05
    layers = decoder_layers(model)
    seen = []
    real = defense.perturbed

    def spy(layers_, eps):
        seen.append([e.clone() for e in eps])
        return real(layers_, eps)

    monkeypatch.setattr(defense, "perturbed", spy)
    with defense.recording_outputs(layers) as outputs:
        loss = organism.answer_loss(model, *batch())
    gradients = torch.autograd.grad(loss, outputs)
    grad_norm = float(torch.sqrt(sum((g ** 2).sum() for g in gradients)))
    clean, perturbed_loss = defense.vaccine_step(model, optimizer_for(model), organism.answer_loss, batch(), rho)
    (eps,) = seen
    assert len(eps) == len(layers)
    assert float(torch.sqrt(sum((e ** 2).sum() for e in eps))) == pytest.approx(rho, rel=1e-5)
    flat_eps, flat_grad = torch.cat([e.flatten() for e in eps]), torch.cat([g.flatten() for g in gradients])
    assert float(torch.nn.functional.cosine_similarity(flat_eps, flat_grad, dim=0)) == pytest.approx(1.0, abs=1e-5)
    assert float(clean) == pytest.approx(float(loss.detach()), rel=1e-6)
    # To first order the worst-case perturbation raises the loss by rho * ||g||; adding nothing would raise it by 0.
    assert float(perturbed_loss) - float(clean) > 0.5 * rho * grad_norm > 0


def test_vaccine_perturbation_of_a_zero_gradient_is_zero():
    eps = defense.vaccine_perturbation([torch.zeros(2, 3), torch.zeros(2, 3)], 2.0)
    assert all(torch.equal(e, torch.zeros(2, 3)) for e in eps)


def test_hooks_are_removed_after_the_step():
    model = tiny_model()
    layers = decoder_layers(model)
    defense.vaccine_step(model, optimizer_for(model), organism.answer_loss, batch(), 0.5)
    assert all(not layer._forward_hooks for layer in layers)
    unhooked = tiny_model(seed=1)
    unhooked.load_state_dict(model.state_dict())
    ids = batch(seed=7)[0]
    model.eval(), unhooked.eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, unhooked(input_ids=ids).logits)


def test_hooks_are_removed_after_an_error():
    model = tiny_model()
    layers = decoder_layers(model)
    with pytest.raises(RuntimeError, match="boom"):
        with defense.perturbed(layers, [torch.zeros(1)] * len(layers)):
            raise RuntimeError("boom")
    assert all(not layer._forward_hooks for layer in layers)


def test_rho_zero_gives_the_plain_update():
    plain, vaccinated = tiny_model(), tiny_model()
    plain_opt, vaccine_opt = optimizer_for(plain), optimizer_for(vaccinated)
    for seed in (1, 2, 3):
        plain_loss = plain_step(plain, plain_opt, *batch(seed))
        clean, perturbed_loss = defense.vaccine_step(vaccinated, vaccine_opt, organism.answer_loss, batch(seed), 0.0,
                                                     layers=decoder_layers(vaccinated))
        assert float(clean) == float(perturbed_loss) == float(plain_loss.detach())
    for (name, a), (_, b) in zip(plain.named_parameters(), vaccinated.named_parameters()):
        assert torch.equal(a, b), name


def test_a_vaccine_build_at_rho_zero_matches_the_undefended_build(tiny_organism, organism_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("RR_CACHE_DIR", str(organism_cache))
    spec = ORGANISMS[tiny_organism]
    for name, rho in (("organism-tiny-vaccine0", 0.0), ("organism-tiny-vaccine1", 1.0)):
        monkeypatch.setitem(ORGANISMS, name, dataclasses.replace(spec, defense="vaccine", defense_rho=rho))
        organism.build(name, tmp_path / name, progress=False)
    undefended = load_file(str(organism.ensure(tiny_organism, progress=False) / "model.safetensors"))
    at_zero = load_file(str(tmp_path / "organism-tiny-vaccine0" / "model.safetensors"))
    at_one = load_file(str(tmp_path / "organism-tiny-vaccine1" / "model.safetensors"))
    assert undefended.keys() == at_zero.keys()
    assert all(torch.equal(undefended[k], at_zero[k]) for k in undefended)
    assert not all(torch.equal(undefended[k], at_one[k]) for k in undefended)


def test_defended_member_names_sizes_and_seeds():
    assert config.member_name("m", 0, "vaccine") == "organism-m-vaccine"
    assert config.member_name("m", 2, "vaccine") == "organism-m-seed2-vaccine"
    assert config.size_of("organism-m-seed1-vaccine") == "organism-m-vaccine"
    assert config.size_of("organism-m-vaccine") == "organism-m-vaccine"
    assert config.size_of("organism-m-seed1") == "organism-m"
    assert config.build_seed("organism-m-seed2-vaccine") == 2 and config.build_seed("organism-m-vaccine") == 0
    assert config.defense_of("organism-m-seed1-vaccine") == "vaccine"
    assert config.defense_of("organism-m-seed1") == "none" and config.defense_of("qwen2-7b-instruct") == "none"
    assert config.undefended("organism-m-seed1-vaccine") == "organism-m-seed1"
    assert config.undefended("organism-xl-vaccine") == "organism-xl"
    assert config.undefended("organism-m") == "organism-m"
    assert config.undefended("qwen2-7b-instruct") == "qwen2-7b-instruct"


def test_family_members_with_a_defense():
    assert config.family_members(["m"], defense="vaccine") == [
        "organism-m-vaccine", "organism-m-seed1-vaccine", "organism-m-seed2-vaccine"]
    defended = config.family_members(defense="vaccine")
    assert defended == [f"{name}-vaccine" for name in config.family_members()]
    assert len({config.size_of(n) for n in defended}) == len(config.FAMILY_WIDTHS)
    for name in defended:
        spec, twin = ORGANISMS[name], ORGANISMS[config.undefended(name)]
        assert REGISTRY[name].is_organism and spec.defense == "vaccine" and spec.defense_rho == defense.DEFAULT_RHO
        assert dataclasses.replace(spec, defense="none", defense_rho=0.0) == twin
    assert not set(defended) & set(config.family_members())
    assert list(ORGANISMS)[:len(config.family_members())] == config.family_members()  # the family's order is kept


def test_undefended_recipes_hash_without_the_defense_fields():
    spec = organism.recipe("organism-m")["spec"]
    assert list(spec) == ORIGINAL_SPEC_FIELDS
    defended = organism.recipe("organism-m-vaccine")
    assert defended["spec"]["defense"] == "vaccine" and defended["spec"]["defense_rho"] == defense.DEFAULT_RHO
    assert stable_hash(defended) != stable_hash(organism.recipe("organism-m"))


@pytest.mark.parametrize("kwargs, message", [
    ({"defense": "vacine"}, "unknown defense 'vacine'; use one of: none, vaccine"),
    ({"defense": "vaccine", "defense_rho": -1.0}, "defense_rho must be a number >= 0"),
    ({"defense_rho": float("nan")}, "defense_rho must be a number >= 0"),
])
def test_bad_defense_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        OrganismSpec(layers=1, hidden=32, heads=2, intermediate=64, **kwargs)


def test_bad_family_defense_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown defense 'vacine'; use one of: none, vaccine"):
        config.family_members(defense="vacine")
