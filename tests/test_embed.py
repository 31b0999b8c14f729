"""SBERT embeddings: one vector per text, whatever else is embedded with it, stored once across processes."""

from __future__ import annotations

import numpy as np
import pytest

from rrlib import embed


@pytest.fixture()
def fresh_store(tmp_path, monkeypatch):
    monkeypatch.setenv("RR_CACHE_DIR", str(tmp_path))
    embed._MEMO.clear()
    yield tmp_path
    embed._MEMO.clear()


def test_a_texts_vector_does_not_depend_on_its_batch(fresh_store):
    texts = ["Sure, here is a short guide.", "I'm sorry, but I can't help with that request at all.", "ok"]
    together = embed.embed(texts)
    embed._MEMO.clear()
    (fresh_store / embed.STORE_NAME).unlink()
    alone = np.stack([embed.embed([t])[0] for t in texts])
    assert np.array_equal(together, alone)


def test_vectors_are_stored_once_and_read_back_by_another_process(fresh_store, monkeypatch):
    first = embed.embed(["a response", "another response"])
    embed._MEMO.clear()

    def no_model():
        raise AssertionError("the model was loaded although every vector was stored")

    monkeypatch.setattr(embed, "_encode", lambda *a, **k: no_model())
    again = embed.embed(["another response", "a response"])
    assert np.array_equal(again, first[::-1])
    assert (fresh_store / embed.STORE_NAME).exists()


def test_vectors_are_unit_length(fresh_store):
    vectors = embed.embed(["one", "two words", ""])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
