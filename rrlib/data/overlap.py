"""Disjointness checks between evaluation, attack, dev and training sets.

The original study trained its attack on its evaluation prompts. Here every
run checks, before any model is loaded, that no prompt is shared between sets
at three levels, each on text normalised for case, quotes, punctuation and
whitespace:

* **exact**: the normalised texts are equal;
* **near-duplicate**: their word sets have a Jaccard similarity of at least
  :data:`NEAR_DUPLICATE_JACCARD`;
* **paraphrase**: their TF-IDF vectors, with English stop words removed, have a
  cosine similarity of at least :data:`PARAPHRASE_COSINE`.

All three are computed with sparse matrix products, one per pair of sets, so
checking all the shipped sets (about 2,700 prompts) takes a fraction of a
second.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy import sparse

from rrlib.errors import OverlapError

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "\u00a0": " "})
_PUNCT = re.compile(r"[^\w\s]", flags=re.UNICODE)

NEAR_DUPLICATE_JACCARD = 0.8  # word-set Jaccard at or above this counts as the same prompt
# Stop-word-filtered TF-IDF cosine at or above this counts as the same request reworded. On the shipped
# data every pair at or above 0.6 is one request in other words (rt-0024 "launder money through a small
# business" ~ oh-0190 "launder money through a small cash business", 0.63), while pairs between 0.5 and
# 0.6 mix rewordings with different requests on one topic (rt-0013 "smuggle cocaine through an airport"
# ~ oh-0158 "smuggle drugs into a prison", 0.53); 0.6 is the lowest value that raises no false alarm.
PARAPHRASE_COSINE = 0.6
KINDS = ("exact", "near-duplicate", "paraphrase")  # strongest first; a pair is reported as its strongest kind
_SHOWN = 3  # overlapping pairs named in an OverlapError message
_WORDS = r"(?u)\S+"  # a "word" of the Jaccard check: a whitespace-separated token of the normalised text


def normalise(text: str) -> str:
    """Lower-case, unify quotes, drop punctuation and collapse whitespace.

    Parameters
    ----------
    text : str
        Any prompt.

    Returns
    -------
    str
        The normalised text used for overlap checks.
    """
    text = unicodedata.normalize("NFKC", str(text)).translate(_QUOTES).lower()
    text = _PUNCT.sub(" ", text.replace("'", ""))
    return " ".join(text.split())


@dataclass(frozen=True)
class Overlap:
    """One prompt of a set that is the same as, or a rewording of, a prompt of another set.

    Attributes
    ----------
    set_a, id_a, set_b, id_b : str
        The two rows: set name and prompt id.
    similarity : float
        The score of ``kind``: 1.0 for exact, word Jaccard for near-duplicate, TF-IDF cosine for paraphrase.
    prompt : str
        The prompt of row A.
    kind : str
        One of :data:`KINDS`.
    prompt_b : str
        The prompt of row B.
    """

    set_a: str
    id_a: str
    set_b: str
    id_b: str
    similarity: float
    prompt: str
    kind: str = "exact"
    prompt_b: str = ""

    def describe(self) -> str:
        """One-line description naming both rows, the kind and the score."""
        score = {"exact": "", "near-duplicate": f" (Jaccard {self.similarity:.2f})",
                 "paraphrase": f" (TF-IDF cosine {self.similarity:.2f})"}[self.kind]
        texts = repr(self.prompt[:60])
        if self.kind != "exact" and self.prompt_b:
            texts += f" ~ {self.prompt_b[:60]!r}"
        return f"{self.set_a}[{self.id_a}] ~ {self.set_b}[{self.id_b}] {self.kind}{score}: {texts}"


@dataclass(frozen=True)
class _Encoded:
    """One set's rows as the three checks see them."""

    ids: list[str]
    prompts: list[str]
    normalised: list[str]
    words: sparse.csr_matrix  # binary word-set indicator per row (Jaccard)
    tfidf: sparse.csr_matrix  # L2-normalised TF-IDF row per prompt (cosine)


def _fitted(vectoriser: Any, texts: list[str]) -> Any:
    """Fit a scikit-learn vectoriser on ``texts``; None when no text has a usable word."""
    try:
        return vectoriser.fit(texts)
    except ValueError:  # empty vocabulary: every text is empty or stop words only
        return None


def _transform(vectoriser: Any, texts: list[str]) -> sparse.csr_matrix:
    """Rows of ``texts`` in a fitted vectoriser's space (one all-zero column when it has none)."""
    if vectoriser is None:
        return sparse.csr_matrix((len(texts), 1))
    return sparse.csr_matrix(vectoriser.transform(texts))


def _encode(sets: Mapping[str, pd.DataFrame]) -> dict[str, _Encoded]:
    """Normalise every set and vectorise it with vectorisers fitted on the union of all sets.

    Parameters
    ----------
    sets : mapping of str to DataFrame
        Each frame has ``id`` and ``prompt`` columns.

    Returns
    -------
    dict of str to _Encoded
        The same keys, in order.
    """
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer  # heavy; only when checking

    prompts = {name: frame["prompt"].astype(str).tolist() for name, frame in sets.items()}
    normalised = {name: [normalise(p) for p in texts] for name, texts in prompts.items()}
    union = [text for texts in normalised.values() for text in texts]
    words = _fitted(CountVectorizer(token_pattern=_WORDS, lowercase=False, binary=True), union)
    tfidf = _fitted(TfidfVectorizer(stop_words="english"), union)
    return {name: _Encoded(sets[name]["id"].astype(str).tolist(), prompts[name], normalised[name],
                           _transform(words, normalised[name]), _transform(tfidf, normalised[name]))
            for name in sets}


def _exact_pairs(a: _Encoded, b: _Encoded) -> set[tuple[int, int]]:
    """Row pairs whose normalised texts are equal."""
    rows_b: dict[str, list[int]] = {}
    for j, text in enumerate(b.normalised):
        rows_b.setdefault(text, []).append(j)
    return {(i, j) for i, text in enumerate(a.normalised) for j in rows_b.get(text, [])}


def _jaccard(a: _Encoded, b: _Encoded) -> sparse.coo_matrix:
    """Word-set Jaccard similarity of every row pair sharing at least one word (sparse)."""
    shared = (a.words @ b.words.T).tocoo()
    size_a = np.asarray(a.words.sum(axis=1)).ravel()
    size_b = np.asarray(b.words.sum(axis=1)).ravel()
    union = size_a[shared.row] + size_b[shared.col] - shared.data
    return sparse.coo_matrix((shared.data / union, (shared.row, shared.col)), shape=shared.shape)


def _above(matrix: sparse.spmatrix, threshold: float) -> dict[tuple[int, int], float]:
    """Entries of a sparse similarity matrix at or above ``threshold``, keyed by (row, column)."""
    coo = sparse.coo_matrix(matrix)
    keep = coo.data >= threshold - 1e-12  # tolerate float rounding at the threshold itself
    return {(int(i), int(j)): float(s) for i, j, s in zip(coo.row[keep], coo.col[keep], coo.data[keep])}


def _pairs(a: _Encoded, b: _Encoded, jaccard: float, cosine: float | None) -> dict[tuple[int, int], tuple[str, float]]:
    """Every overlapping row pair of two encoded sets, as its strongest kind and that kind's score."""
    found: dict[tuple[int, int], tuple[str, float]] = {}
    if cosine is not None:
        found.update({pair: ("paraphrase", s) for pair, s in _above(a.tfidf @ b.tfidf.T, cosine).items()})
    found.update({pair: ("near-duplicate", s) for pair, s in _above(_jaccard(a, b), jaccard).items()})
    found.update({pair: ("exact", 1.0) for pair in _exact_pairs(a, b)})
    return found


def find_overlaps(sets: Mapping[str, pd.DataFrame], threshold: float = NEAR_DUPLICATE_JACCARD,
                  paraphrase: float | None = PARAPHRASE_COSINE, within: bool = False) -> list[Overlap]:
    """Find prompts shared between any two of the named sets, exactly, as near-duplicates or as paraphrases.

    Parameters
    ----------
    sets : mapping of str to DataFrame
        Each frame has ``id`` and ``prompt`` columns.
    threshold : float
        Word-set Jaccard similarity at or above which two prompts are near-duplicates.
    paraphrase : float or None
        TF-IDF cosine similarity at or above which two prompts are paraphrases; ``None`` skips the check.
        The TF-IDF weights are fitted on the union of ``sets``, so the result depends only on the sets passed.
    within : bool
        Also report pairs inside one set (used to cluster a set); the disjointness check leaves this off.

    Returns
    -------
    list of Overlap
        One per overlapping pair of rows, as its strongest kind, in set order then row order.
    """
    encoded = _encode(sets)
    names = list(encoded)
    found: list[Overlap] = []
    for i, name_a in enumerate(names):
        for name_b in names[i if within else i + 1:]:
            a, b = encoded[name_a], encoded[name_b]
            for (row_a, row_b), (kind, score) in sorted(_pairs(a, b, threshold, paraphrase).items()):
                if name_a == name_b and row_a >= row_b:
                    continue
                found.append(Overlap(name_a, a.ids[row_a], name_b, b.ids[row_b], score, a.prompts[row_a],
                                     kind, b.prompts[row_b]))
    return found


def check_disjoint(sets: Mapping[str, pd.DataFrame], threshold: float = NEAR_DUPLICATE_JACCARD,
                   paraphrase: float | None = PARAPHRASE_COSINE) -> None:
    """Raise if any two sets share a prompt (exactly, as a near-duplicate or as a paraphrase).

    Parameters
    ----------
    sets : mapping of str to DataFrame
        Named prompt tables, e.g. ``{"eval": ..., "attack": ..., "benign": ...}``.
    threshold : float
        Near-duplicate Jaccard threshold.
    paraphrase : float or None
        Paraphrase TF-IDF cosine threshold; ``None`` skips the paraphrase check.

    Raises
    ------
    OverlapError
        Naming the overlapping rows (up to three), the count of each kind and the fix.
    """
    found = find_overlaps(sets, threshold, paraphrase)
    if found:
        counts = ", ".join(f"{n} {kind}" for kind, n in _kind_counts(found).items() if n)
        shown = "; ".join(o.describe() for o in found[:_SHOWN])
        more = f" (+{len(found) - _SHOWN} more)" if len(found) > _SHOWN else ""
        raise OverlapError(
            f"{len(found)} prompt(s) shared between sets ({counts}): {shown}{more}; "
            "remove each from one of the two sets (from the training side: attack, dev or the organism corpus) "
            "so evaluation stays held out"
        )


def _kind_counts(found: list[Overlap]) -> dict[str, int]:
    """The number of overlaps of each kind, in :data:`KINDS` order."""
    return {kind: sum(1 for o in found if o.kind == kind) for kind in KINDS}


def overlap_summary(sets: Mapping[str, pd.DataFrame], threshold: float = NEAR_DUPLICATE_JACCARD,
                    paraphrase: float | None = PARAPHRASE_COSINE) -> pd.DataFrame:
    """A table of set sizes and pairwise overlap counts (total and per kind), for display in a notebook.

    Parameters
    ----------
    sets : mapping of str to DataFrame
        Named prompt tables.
    threshold : float
        Near-duplicate Jaccard threshold.
    paraphrase : float or None
        Paraphrase TF-IDF cosine threshold; ``None`` skips the paraphrase check.

    Returns
    -------
    pandas.DataFrame
        One row per pair of sets: ``set A, n A, set B, n B, shared prompts, exact, near-duplicate, paraphrase``.
    """
    names = list(sets)
    found = find_overlaps(sets, threshold, paraphrase)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            counts = _kind_counts([o for o in found if (o.set_a, o.set_b) == (a, b)])
            rows.append({"set A": a, "n A": len(sets[a]), "set B": b, "n B": len(sets[b]),
                         "shared prompts": sum(counts.values()), **counts})
    return pd.DataFrame(rows)
