"""Disjointness checks between evaluation, attack and training sets.

The original study trained its attack on its evaluation prompts. Here every
run checks, before any model is loaded, that no prompt is shared between sets,
exactly or as a near-duplicate after normalising case, quotes, punctuation and
whitespace.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from typing import Mapping, Sequence

import pandas as pd

from rrlib.errors import OverlapError

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "\u00a0": " "})
_PUNCT = re.compile(r"[^\w\s]", flags=re.UNICODE)

NEAR_DUPLICATE_JACCARD = 0.8  # word-set Jaccard at or above this counts as the same prompt


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
    """One shared prompt between two sets."""

    set_a: str
    id_a: str
    set_b: str
    id_b: str
    similarity: float
    prompt: str

    def describe(self) -> str:
        """One-line description naming both rows."""
        kind = "exact" if self.similarity >= 1.0 else f"near-duplicate (Jaccard {self.similarity:.2f})"
        return f"{self.set_a}[{self.id_a}] ~ {self.set_b}[{self.id_b}] {kind}: {self.prompt[:60]!r}"


def find_overlaps(sets: Mapping[str, pd.DataFrame], threshold: float = NEAR_DUPLICATE_JACCARD) -> list[Overlap]:
    """Find prompts shared between any two of the named sets.

    Parameters
    ----------
    sets : mapping of str to DataFrame
        Each frame has ``id`` and ``prompt`` columns.
    threshold : float
        Word-set Jaccard similarity at or above which two prompts count as the same.

    Returns
    -------
    list of Overlap
        Every cross-set pair that is exactly equal after normalisation or near-duplicate.
    """
    entries: list[tuple[str, str, frozenset[str], str, str]] = []
    for name, frame in sets.items():
        for pid, prompt in zip(frame["id"].astype(str), frame["prompt"].astype(str)):
            norm = normalise(prompt)
            entries.append((name, pid, frozenset(norm.split()), norm, prompt))
    index: dict[str, list[int]] = defaultdict(list)
    for i, (_, _, words, _, _) in enumerate(entries):
        for word in words:
            index[word].append(i)
    found: list[Overlap] = []
    for i, (name_a, id_a, words_a, norm_a, prompt_a) in enumerate(entries):
        shared: dict[int, int] = defaultdict(int)
        for word in words_a:
            for j in index[word]:
                if j > i and entries[j][0] != name_a:
                    shared[j] += 1
        for j, count in shared.items():
            name_b, id_b, words_b, norm_b, _ = entries[j]
            union = len(words_a | words_b)
            similarity = 1.0 if norm_a == norm_b else count / union if union else 0.0
            if similarity >= threshold:
                found.append(Overlap(name_a, id_a, name_b, id_b, similarity, prompt_a))
    return found


def check_disjoint(sets: Mapping[str, pd.DataFrame], threshold: float = NEAR_DUPLICATE_JACCARD) -> None:
    """Raise if any two sets share a prompt (exactly or near-duplicate).

    Parameters
    ----------
    sets : mapping of str to DataFrame
        Named prompt tables, e.g. ``{"eval": ..., "attack": ..., "benign": ...}``.
    threshold : float
        Near-duplicate Jaccard threshold.

    Raises
    ------
    OverlapError
        Naming the overlapping rows (up to three) and the total count.
    """
    found = find_overlaps(sets, threshold)
    if found:
        shown = "; ".join(o.describe() for o in found[:3])
        more = f" (+{len(found) - 3} more)" if len(found) > 3 else ""
        raise OverlapError(
            f"{len(found)} prompt(s) shared between sets: {shown}{more}; "
            "remove them from one set so evaluation stays held out"
        )


def overlap_summary(sets: Mapping[str, pd.DataFrame], threshold: float = NEAR_DUPLICATE_JACCARD) -> pd.DataFrame:
    """A table of set sizes and pairwise overlap counts, for display in a notebook."""
    names = list(sets)
    found = find_overlaps(sets, threshold)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            count = sum(1 for o in found if {o.set_a, o.set_b} == {a, b})
            rows.append({"set A": a, "n A": len(sets[a]), "set B": b, "n B": len(sets[b]),
                         "shared prompts": count})
    return pd.DataFrame(rows)
