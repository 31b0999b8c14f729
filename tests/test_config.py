"""Typed configs: registry resolution, unknown keys and value checks."""

from __future__ import annotations

import pytest

from rrlib.config import (AttackConfig, GenerationConfig, ORGANISMS, REGISTRY, from_mapping, resolve_model,
                          stable_hash)
from rrlib.errors import ConfigError


def test_registry_has_the_named_models():
    for name in ["tinyllama-1.1b-chat", "phi-3-mini-4k-instruct", "qwen2-7b-instruct", "qwen2.5-0.5b-instruct",
                 "qwen2.5-1.5b-instruct", "qwen2.5-3b-instruct", "qwen2.5-7b-instruct"]:
        spec = REGISTRY[name]
        assert spec.params and spec.params > 1e8 and spec.family and spec.dtype == "bfloat16"
    assert REGISTRY["phi-3-mini-4k-instruct"].source == "microsoft/Phi-3-mini-4k-instruct"
    assert all(REGISTRY[n].is_organism for n in ORGANISMS)


def test_resolve_local_path_and_hub_id(tmp_path):
    local = resolve_model(str(tmp_path))
    assert local.family == "local" and local.source == str(tmp_path.resolve())
    hub = resolve_model("someorg/Some-Model-7B")
    assert hub.family == "hub" and hub.source == "someorg/Some-Model-7B" and hub.name == "someorg-some-model-7b"


def test_unknown_organism_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown organism 'organism-zz'.*known organisms"):
        resolve_model("organism-zz")


def test_unknown_keys_are_rejected_with_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown key\\(s\\) rnak.*valid keys are:.*rank"):
        from_mapping(AttackConfig, {"rnak": 8}, where="experiments/x/config.yaml")


@pytest.mark.parametrize("kwargs, message", [
    ({"grid_steps": (0, 50, 25)}, "strictly increase"),
    ({"grid_steps": (0, 10, 10)}, "strictly increase"),
    ({"grid_steps": ()}, "at least one step"),
    ({"rank": -4}, "positive integer"),
    ({"rank": 0}, "positive integer"),
    ({"learning_rate": 0}, "learning_rate must be > 0"),
    ({"dropout": 1.5}, "dropout"),
])
def test_attack_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AttackConfig(**kwargs)


def test_generation_config_key_ignores_batch_size_and_unused_sampling_fields():
    a = GenerationConfig(batch_size=8)
    b = GenerationConfig(batch_size=64, temperature=0.7)
    assert a.cache_key() == b.cache_key()
    assert GenerationConfig(do_sample=True, seed=1).cache_key() != GenerationConfig(do_sample=True, seed=2).cache_key()
    with pytest.raises(ConfigError):
        GenerationConfig(max_new_tokens=0)


def test_stable_hash_is_content_based():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
    assert stable_hash(AttackConfig()) == stable_hash(AttackConfig())


def test_temporary_env_sets_removes_and_restores(monkeypatch):
    import os

    from rrlib.envvars import temporary_env

    monkeypatch.setenv("RR_T_KEEP", "before")
    monkeypatch.delenv("RR_T_NEW", raising=False)
    with temporary_env(RR_T_KEEP=None, RR_T_NEW="x"):
        assert "RR_T_KEEP" not in os.environ and os.environ["RR_T_NEW"] == "x"
    assert os.environ["RR_T_KEEP"] == "before" and "RR_T_NEW" not in os.environ
