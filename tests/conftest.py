"""Shared fixtures: isolated results folders and a tiny organism built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RR_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

ROOT = Path(__file__).resolve().parents[1]
TINY = "organism-tiny"


def subprocess_env(results: Path) -> dict[str, str]:
    """The environment for an ``rr``/papermill subprocess writing to ``results``, sharing the real organism cache."""
    env = {**os.environ, "RR_RESULTS_DIR": str(results), "RR_PROGRESS": "0"}
    env.pop("RR_CACHE_DIR", None)  # share the real organism cache with `make all`
    return env


@pytest.fixture(autouse=True)
def isolated_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes results to its own temporary folder, never to results/."""
    results = tmp_path / "results"
    monkeypatch.setenv("RR_RESULTS_DIR", str(results))
    return results


def build_into(cache: Path, name: str) -> None:
    """Build organism ``name`` into the cache folder ``cache`` (``RR_CACHE_DIR`` set only for the build)."""
    from rrlib import organism

    previous = os.environ.get("RR_CACHE_DIR")
    os.environ["RR_CACHE_DIR"] = str(cache)
    try:
        organism.ensure(name, progress=False)
    finally:
        if previous is None:
            os.environ.pop("RR_CACHE_DIR")
        else:
            os.environ["RR_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def organism_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide organism cache for the tiny test organism."""
    return tmp_path_factory.mktemp("rr_cache")


@pytest.fixture(scope="session")
def tiny_organism(organism_cache: Path) -> str:
    """Register and build a one-layer organism (seconds on CPU) for plumbing tests."""
    from rrlib.config import OrganismSpec, register_organism

    register_organism(TINY, OrganismSpec(layers=1, hidden=32, heads=2, intermediate=64, vocab_size=512, epochs=1,
                                         learning_rate=5e-3, corpus_fraction=0.25))
    build_into(organism_cache, TINY)
    return TINY


@pytest.fixture
def tiny_lm(tiny_organism: str, organism_cache: Path, monkeypatch: pytest.MonkeyPatch):
    """The tiny organism loaded through rrlib.models.load."""
    from rrlib import models

    monkeypatch.setenv("RR_CACHE_DIR", str(organism_cache))
    return models.load(tiny_organism, progress=False)
