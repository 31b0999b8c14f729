"""Prompt data: the canonical schema, peer-format adapters and overlap checks.

Typical use::

    from rrlib import data
    harmful = data.load_prompts("data/raw/redteam_eval.csv")
    benign = data.load_prompts("data/raw/benign_eval.csv", kind="benign")
    attack = data.load_attack_set("data/raw/attack_train.jsonl")
    data.check_disjoint({"eval": harmful, "benign": benign, "attack": attack})
    sets = data.load_sets()  # eval, benign, attack, dev and the organism corpus, checked disjoint
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rrlib.config import project_root
from rrlib.data.formats import FORMATS, detect_format, known_formats, load_any
from rrlib.data.overlap import (NEAR_DUPLICATE_JACCARD, PARAPHRASE_COSINE, Overlap, check_disjoint, find_overlaps,
                                normalise, overlap_summary)
from rrlib.data.schema import CANONICAL, display_path
from rrlib.errors import DataError

DEFAULT_EVAL = "data/raw/redteam_eval.csv"
DEFAULT_BENIGN = "data/raw/benign_eval.csv"
DEFAULT_ATTACK = "data/raw/attack_train.jsonl"
DEFAULT_BENIGN_TRAIN = "data/raw/benign_train.jsonl"  # benign instructions: the `benign` attack's data
DEFAULT_DEV_HARMFUL = "data/dev/dev_harmful.csv"  # tuning recipes and attack settings; eval is for reporting only
DEFAULT_DEV_BENIGN = "data/dev/dev_benign.csv"
# The organism's safety-training corpus (read by rrlib.organism, a layer above; the paths are repeated here
# so the check needs no upward import).
DEFAULT_CORPUS_HARMFUL = "data/organism/safety_harmful.csv"
DEFAULT_CORPUS_BENIGN = "data/organism/safety_benign.csv"
DEFAULT_CALIBRATION = "data/raw/judge_calibration_prompts.csv"  # the organism-domain judge labels' prompts

__all__ = ["CANONICAL", "FORMATS", "NEAR_DUPLICATE_JACCARD", "PARAPHRASE_COSINE", "Overlap", "PromptSets",
           "load_sets", "check_disjoint", "detect_format", "find_overlaps", "known_formats", "load_attack_set",
           "load_prompts", "normalise", "overlap_summary", "resolve", "DEFAULT_EVAL", "DEFAULT_BENIGN",
           "DEFAULT_ATTACK", "DEFAULT_DEV_HARMFUL", "DEFAULT_DEV_BENIGN", "DEFAULT_CORPUS_HARMFUL",
           "DEFAULT_CORPUS_BENIGN"]


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


# The optional sets of PromptSets, in display order: attribute (also its name in the overlap check) and label.
_OPTIONAL_SETS = (("attack", "attack (train)"), ("dev_harmful", "harmful (dev)"), ("dev_benign", "benign (dev)"),
                  ("corpus_harmful", "harmful (organism corpus)"), ("corpus_benign", "benign (organism corpus)"),
                  ("calibration", "judge calibration"))


@dataclass
class PromptSets:
    """The disjoint prompt sets of a study.

    ``harmful`` and ``benign`` are the held-out evaluation sets; ``attack`` trains the attack; ``dev_*`` tune
    recipes and attack settings; ``corpus_*`` safety-train the offline organisms; ``calibration`` holds the prompts whose organism responses
    were hand-labelled to validate the judges. Every set that is loaded
    takes part in the disjointness check.
    """

    harmful: pd.DataFrame
    benign: pd.DataFrame
    attack: pd.DataFrame | None = None
    dev_harmful: pd.DataFrame | None = None
    dev_benign: pd.DataFrame | None = None
    corpus_harmful: pd.DataFrame | None = None
    corpus_benign: pd.DataFrame | None = None
    calibration: pd.DataFrame | None = None

    def _labelled(self) -> list[tuple[str, str, pd.DataFrame]]:
        """(check name, summary label, frame) of every loaded set, eval and benign first."""
        found = [("eval", "harmful (eval)", self.harmful), ("benign", "benign (control)", self.benign)]
        optional = [(name, label, getattr(self, name)) for name, label in _OPTIONAL_SETS]
        return found + [entry for entry in optional if entry[2] is not None]

    def named(self) -> dict[str, pd.DataFrame]:
        """The sets by the names the overlap check reports (``eval``, ``benign``, ``attack``, ``dev_harmful``, ...)."""
        return {name: frame for name, _, frame in self._labelled()}

    def summary(self) -> pd.DataFrame:
        """Size, source file, format and categories of each set."""
        return pd.DataFrame([{"set": label, "prompts": len(frame), "categories": frame["category"].nunique(),
                              "format": frame.attrs.get("format", ""),
                              "file": display_path(frame.attrs.get("path", ""))}
                             for _, label, frame in self._labelled()])


def load_sets(eval_path: str = DEFAULT_EVAL, benign_path: str = DEFAULT_BENIGN,
              attack_path: str | None = DEFAULT_ATTACK, eval_format: str | None = None,
              benign_format: str | None = None, attack_format: str | None = None,
              limit: int | None = None, dev_harmful_path: str | None = DEFAULT_DEV_HARMFUL,
              dev_benign_path: str | None = DEFAULT_DEV_BENIGN,
              corpus_harmful_path: str | None = DEFAULT_CORPUS_HARMFUL,
              corpus_benign_path: str | None = DEFAULT_CORPUS_BENIGN,
              calibration_path: str | None = DEFAULT_CALIBRATION) -> PromptSets:
    """Load the eval, benign, attack, dev and organism-corpus sets and check that they are disjoint.

    The check runs on every loaded set, in full, before any model is loaded: no prompt may be shared between
    two sets exactly, as a near-duplicate or as a paraphrase (see :mod:`rrlib.data.overlap`). Duplicates
    inside one set are allowed.

    Parameters
    ----------
    eval_path, benign_path, attack_path : str
        Files in any known format (``attack_path`` may be ``None``).
    eval_format, benign_format, attack_format : str, optional
        Explicit formats; detected from the columns when omitted.
    limit : int, optional
        Keep only the first ``limit`` prompts of the eval and benign sets (quick smoke runs); the check
        always sees the full sets.
    dev_harmful_path, dev_benign_path : str, optional
        The dev split (canonical CSV); ``None`` leaves it out.
    corpus_harmful_path, corpus_benign_path : str, optional
        The organism's safety-training prompts (canonical CSV); ``None`` leaves them out.
    calibration_path : str, optional
        The judge-calibration prompts (canonical CSV, harmful and benign); ``None`` leaves them out.

    Returns
    -------
    PromptSets
        Validated sets.

    Raises
    ------
    rrlib.errors.OverlapError
        If any two sets share a prompt, naming the rows.
    """
    sets = PromptSets(load_prompts(eval_path, eval_format, kind="harmful"),
                      load_prompts(benign_path, benign_format, kind="benign"),
                      load_attack_set(attack_path, attack_format) if attack_path else None,
                      _optional(dev_harmful_path, "harmful"), _optional(dev_benign_path, "benign"),
                      _optional(corpus_harmful_path, "harmful"), _optional(corpus_benign_path, "benign"),
                      _optional(calibration_path, "benign"))
    check_disjoint(sets.named())
    if limit:
        sets.harmful, sets.benign = _head(sets.harmful, limit), _head(sets.benign, limit)
    return sets


def _optional(path: str | None, kind: str) -> pd.DataFrame | None:
    """A canonical prompt file, or None when no path is given."""
    return load_prompts(path, kind=kind) if path else None


def _head(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    """The first ``n`` rows, keeping the frame's attrs (source path and format)."""
    out = frame.head(int(n)).copy()
    out.attrs.update(frame.attrs)
    return out
