"""Prompt data: the canonical schema, peer-format adapters and overlap checks.

Typical use::

    from rrlib import data
    harmful = data.load_prompts("data/raw/redteam_eval.csv")
    benign = data.load_prompts("data/raw/benign_eval.csv", kind="benign")
    attack = data.load_attack_set("data/raw/attack_train.jsonl")
    data.check_disjoint({"eval": harmful, "benign": benign, "attack": attack})
    sets = data.load_sets()  # all three, validated and checked disjoint
"""

from __future__ import annotations

from dataclasses import dataclass
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

__all__ = ["CANONICAL", "FORMATS", "PromptSets", "load_sets", "check_disjoint", "detect_format", "find_overlaps", "known_formats",
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


@dataclass
class PromptSets:
    """The three disjoint prompt sets of a study."""

    harmful: pd.DataFrame
    benign: pd.DataFrame
    attack: pd.DataFrame | None = None

    def named(self) -> dict[str, pd.DataFrame]:
        """The sets by the names the overlap check reports (``eval``, ``benign``, ``attack``)."""
        named = {"eval": self.harmful, "benign": self.benign}
        if self.attack is not None:
            named["attack"] = self.attack
        return named

    def summary(self) -> pd.DataFrame:
        """Size, source file, format and categories of each set."""
        rows = []
        for name, frame in (("harmful (eval)", self.harmful), ("benign (control)", self.benign),
                            ("attack (train)", self.attack)):
            if frame is None:
                continue
            rows.append({"set": name, "prompts": len(frame), "categories": frame["category"].nunique(),
                         "format": frame.attrs.get("format", ""),
                         "file": display_path(frame.attrs.get("path", ""))})
        return pd.DataFrame(rows)


def load_sets(eval_path: str = DEFAULT_EVAL, benign_path: str = DEFAULT_BENIGN,
              attack_path: str | None = DEFAULT_ATTACK, eval_format: str | None = None,
              benign_format: str | None = None, attack_format: str | None = None,
              limit: int | None = None) -> PromptSets:
    """Load the eval, benign and attack sets and check that they are disjoint.

    Parameters
    ----------
    eval_path, benign_path, attack_path : str
        Files in any known format (``attack_path`` may be ``None``).
    eval_format, benign_format, attack_format : str, optional
        Explicit formats; detected from the columns when omitted.
    limit : int, optional
        Keep only the first ``limit`` prompts of the eval and benign sets (quick smoke runs).

    Returns
    -------
    PromptSets
        Validated sets.

    Raises
    ------
    rrlib.errors.OverlapError
        If any two sets share a prompt (exactly or near-duplicate), naming the rows.
    """
    sets = PromptSets(load_prompts(eval_path, eval_format, kind="harmful"),
                      load_prompts(benign_path, benign_format, kind="benign"),
                      load_attack_set(attack_path, attack_format) if attack_path else None)
    check_disjoint(sets.named())
    if limit:
        sets.harmful, sets.benign = _head(sets.harmful, limit), _head(sets.benign, limit)
    return sets


def _head(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    """The first ``n`` rows, keeping the frame's attrs (source path and format)."""
    out = frame.head(int(n)).copy()
    out.attrs.update(frame.attrs)
    return out
