"""Hand-labelled judge data and its fixed train / held-out split.

``data/raw/judge_labels.csv`` holds model responses labelled ``refusal``,
``compliance`` or ``partial``, each tagged with the trap it sets for a judge
(``curly_quote``, ``sorry_to_hear``, ...; ``none`` for plain rows). For the
refusal question, ``refusal`` is the positive class and ``compliance`` and
``partial`` are negative.

The split is deterministic and stratified by label: within each label, rows
are ordered by ``sha256(SPLIT_SALT + id)`` and the first ``round(TEST_SHARE *
n_label)`` are held out. It depends only on the ids and labels, never on row
order or a random state, so every process (and every judge) sees the same
held-out rows. Trainable judges fit on the train split only; validation uses
the held-out split only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from rrlib.config import project_root
from rrlib.errors import DataError

LABEL_COLUMNS = ("id", "prompt", "response", "label", "trap", "source")
LABELS = ("refusal", "partial", "compliance")
POSITIVE = "refusal"
TEST_SHARE = 0.3
SPLIT_SALT = "rr-judge-split-v1:"


def labels_path() -> Path:
    """Path of the shipped judge labels, ``data/raw/judge_labels.csv``."""
    return project_root() / "data" / "raw" / "judge_labels.csv"


def existing_labels_path(path: str | Path | None = None) -> Path:
    """Return the labels file (default :func:`labels_path`), or raise if it does not exist.

    Parameters
    ----------
    path : str or Path, optional
        A labels CSV.

    Returns
    -------
    Path
        The file.

    Raises
    ------
    DataError
        If there is no such file.
    """
    path = Path(path) if path else labels_path()
    if not path.is_file():
        raise DataError(f"judge labels file {path} not found; restore data/raw/judge_labels.csv from git "
                        "or pass the path of a labels CSV")
    return path


def file_sha256(path: str | Path) -> str:
    """The SHA-256 hex digest of a file's bytes (keys caches to the exact labels)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_labels(path: str | Path | None = None) -> pd.DataFrame:
    """Read and check the judge labels, with a ``split`` column added.

    Parameters
    ----------
    path : str or Path, optional
        A labels CSV; defaults to :func:`labels_path`.

    Returns
    -------
    pandas.DataFrame
        The :data:`LABEL_COLUMNS` plus ``split`` (``train`` or ``test``), in file order.

    Raises
    ------
    DataError
        If the file is missing, lacks a column, repeats an id or has an unknown label.
    """
    path = existing_labels_path(path)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in LABEL_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; "
                        f"a judge labels file needs {', '.join(LABEL_COLUMNS)}")
    repeated = frame["id"][frame["id"].duplicated()].tolist()
    if repeated:
        raise DataError(f"{path}: id {repeated[0]!r} appears more than once; give every row a unique id")
    unknown = sorted(set(frame["label"]) - set(LABELS))
    if unknown:
        raise DataError(f"{path}: unknown label(s) {', '.join(map(repr, unknown))}; "
                        f"use one of {', '.join(LABELS)}")
    frame = frame[list(LABEL_COLUMNS)].copy()
    frame["split"] = split_of(frame)
    return frame


def split_of(frame: pd.DataFrame, test_share: float = TEST_SHARE) -> pd.Series:
    """Assign each row to ``train`` or ``test``, stratified by label, by hashed id.

    Parameters
    ----------
    frame : pandas.DataFrame
        With ``id`` and ``label`` columns.
    test_share : float
        Share of each label's rows held out.

    Returns
    -------
    pandas.Series
        ``train`` or ``test`` per row, aligned with ``frame``.
    """
    rank_key = frame["id"].astype(str).map(lambda i: hashlib.sha256((SPLIT_SALT + i).encode()).hexdigest())
    split = pd.Series("train", index=frame.index, dtype=object)
    for _, rows in rank_key.groupby(frame["label"]):
        held_out = rows.sort_values().index[:round(test_share * len(rows))]
        split[held_out] = "test"
    return split


def train_rows(frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rows a trainable judge may learn from (``split == 'train'``)."""
    frame = load_labels() if frame is None else frame
    return frame[frame["split"] == "train"].reset_index(drop=True)


def held_out_rows(frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """The held-out rows judges are validated on (``split == 'test'``)."""
    frame = load_labels() if frame is None else frame
    return frame[frame["split"] == "test"].reset_index(drop=True)


def is_refusal(labels: pd.Series) -> pd.Series:
    """The binary truth for the refusal question: ``refusal`` is True, the rest False."""
    return labels == POSITIVE
