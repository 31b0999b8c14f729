"""Prompt data: the canonical schema, peer-format adapters and overlap checks.

Typical use::

    from rrlib import data
    harmful = data.load_prompts("data/raw/redteam_eval.csv")
    benign = data.load_prompts("data/raw/benign_eval.csv", kind="benign")
    attack = data.load_attack_set("data/raw/attack_train.jsonl")
    data.check_disjoint({"eval": harmful, "benign": benign, "attack": attack})
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rrlib.config import project_root
from rrlib.data.formats import FORMATS, detect_format, known_formats, load_any
from rrlib.data.overlap import check_disjoint, find_overlaps, normalise, overlap_summary
from rrlib.data.schema import CANONICAL, display_path
from rrlib.errors import DataError

DEFAULT_EVAL = "data/raw/redteam_eval.csv"
DEFAULT_BENIGN = "data/raw/benign_eval.csv"
DEFAULT_ATTACK = "data/raw/attack_train.jsonl"

__all__ = ["CANONICAL", "FORMATS", "check_disjoint", "detect_format", "find_overlaps", "known_formats",
           "load_attack_set", "load_prompts", "normalise", "overlap_summary", "resolve", "DEFAULT_EVAL",
           "DEFAULT_BENIGN", "DEFAULT_ATTACK"]


def resolve(path: str | Path) -> Path:
    """Resolve a data path: absolute, relative to the cwd, or to the project root.

    Parameters
    ----------
    path : str or Path
        The path as the user gave it.

    Returns
    -------
    Path
        An existing path if one of the candidates exists, else the path as given.
    """
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path
    candidate = project_root() / path
    return candidate if candidate.exists() else path


def load_prompts(path: str | Path, fmt: str | None = None, kind: str = "harmful") -> pd.DataFrame:
    """Load and validate a prompt set (canonical CSV or any peer format).

    Parameters
    ----------
    path : str or Path
        The file.
    fmt : str, optional
        Format name (see :data:`FORMATS`); detected from the columns when omitted.
    kind : str
        ``"harmful"`` (evaluation) or ``"benign"`` (over-refusal control).

    Returns
    -------
    pandas.DataFrame
        Canonical columns ``id, prompt, category, source, split, label, target``.
    """
    return load_any(resolve(path), fmt, kind)


def load_attack_set(path: str | Path, fmt: str | None = None) -> pd.DataFrame:
    """Load attack training data as prompts with compliance targets.

    Parameters
    ----------
    path : str or Path
        Chat JSONL (``{"messages": [...]}``) or any prompt format with a ``target``.
    fmt : str, optional
        Format name; detected when omitted.

    Returns
    -------
    pandas.DataFrame
        Canonical columns; ``target`` holds the assistant answer to train on.

    Raises
    ------
    DataError
        If a row has no compliance target.
    """
    frame = load_any(resolve(path), fmt, "harmful")
    empty = frame.index[frame["target"].str.strip() == ""]
    if len(empty):
        raise DataError(
            f"{display_path(path)}: {len(empty)} attack example(s) have no target answer "
            f"(first: id {frame['id'][empty[0]]!r}); attack data needs an assistant reply per example"
        )
    return frame
