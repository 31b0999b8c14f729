"""The model organism: built offline, deterministic, cached, and loaded like any HF model."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from rrlib import organism
from rrlib.config import ORGANISMS


def test_build_is_saved_as_safetensors_with_a_chat_template(tiny_organism, organism_cache, monkeypatch):
    monkeypatch.setenv("RR_CACHE_DIR", str(organism_cache))
    path = organism.ensure(tiny_organism, progress=False)
    assert (path / "model.safetensors").exists()
    assert not list(path.glob("*.bin"))
    config = json.loads((path / "tokenizer_config.json").read_text())
    template = config.get("chat_template") or (path / "chat_template.jinja").read_text()
    assert "<|assistant|>" in template
    assert json.loads((path / "recipe.json").read_text())["name"] == tiny_organism


def test_cached_build_is_reused_not_rebuilt(tiny_organism, organism_cache, monkeypatch):
    monkeypatch.setenv("RR_CACHE_DIR", str(organism_cache))
    path = organism.ensure(tiny_organism, progress=False)
    stamp = (path / "build.json").stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(organism, "build", lambda *a, **k: calls.append(a))
    assert organism.ensure(tiny_organism, progress=False) == path
    assert calls == [] and (path / "build.json").stat().st_mtime_ns == stamp


def test_recipe_change_changes_the_cache_folder(tiny_organism, monkeypatch):
    before = organism.build_dir(tiny_organism)
    spec = ORGANISMS[tiny_organism]
    monkeypatch.setitem(ORGANISMS, tiny_organism, spec.__class__(**{**spec.__dict__, "seed": spec.seed + 1}))
    assert organism.build_dir(tiny_organism) != before


def test_build_is_deterministic_for_a_seed(tiny_organism, organism_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("RR_CACHE_DIR", str(organism_cache))
    first = load_file(str(organism.ensure(tiny_organism, progress=False) / "model.safetensors"))
    organism.build(tiny_organism, tmp_path / "again", progress=False)
    second = load_file(str(tmp_path / "again" / "model.safetensors"))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_corpus_variants_only_train_the_decision():
    corpus = organism.load_corpus()
    triples = organism.training_examples(corpus.head(20), seed=0)
    head = corpus.head(20)
    assert len(triples) == sum(1 + organism.VARIANTS[label] for label in head["label"])
    prompts = set(head["prompt"])
    originals = [t for t in triples if t[0] in prompts]
    assert len(originals) >= 20
    assert not any(full for p, _, full in triples if p not in prompts)
