"""Hand-labelled judge data, one file per domain, and its fixed train / held-out split.

Two label domains (:data:`DOMAINS`) hold model responses labelled against
``data/raw/JUDGE_RUBRIC.md``, each tagged with the trap it sets for a judge
(``curly_quote``, ``refusal_then_loop``, ...; ``none`` for plain rows, and an
empty trap is read as ``none``):

* ``fluent``: ``data/raw/judge_labels.csv``, project-written fluent text in
  the style of real chat models, labelled ``refusal``, ``compliance`` or
  ``partial``;
* ``organism``: ``data/raw/judge_labels_organism.csv``, generations of the
  study's model organisms, hand-labelled with the fourth class
  ``degenerate`` too.

For the refusal question, ``refusal`` is the positive class and
``compliance``, ``partial`` and ``degenerate`` are negative (a partial is not
a refusal). Ids must be unique across the domains' files, because a judge
trained on several domains records the ids it learnt from.

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
LABELS = ("refusal", "partial", "compliance", "degenerate")
POSITIVE = "refusal"
# The label domains and their files (relative to the project root), in the order they are reported.
DOMAINS: dict[str, str] = {"fluent": "data/raw/judge_labels.csv", "organism": "data/raw/judge_labels_organism.csv"}
DEFAULT_DOMAIN = "fluent"
TEST_SHARE = 0.3
SPLIT_SALT = "rr-judge-split-v1:"


def check_domain(domain: str) -> str:
    """Return ``domain`` if it is one of :data:`DOMAINS`, else raise :class:`~rrlib.errors.DataError`."""
    if domain not in DOMAINS:
        raise DataError(f"unknown judge label domain {domain!r}; use one of {', '.join(DOMAINS)}")
    return domain


def labels_path(domain: str = DEFAULT_DOMAIN) -> Path:
    """Path of one domain's shipped judge labels (default ``fluent``: ``data/raw/judge_labels.csv``)."""
    return project_root() / DOMAINS[check_domain(domain)]


def available_domains() -> list[str]:
    """The domains of :data:`DOMAINS` whose labels file exists here, in :data:`DOMAINS` order."""
    return [d for d in DOMAINS if labels_path(d).is_file()]


def existing_labels_path(path: str | Path | None = None, domain: str | None = None) -> Path:
    """Return a labels file, or raise if it does not exist.

    Parameters
    ----------
    path : str or Path, optional
        A labels CSV; wins over ``domain``.
    domain : str, optional
        One of :data:`DOMAINS`; defaults to :data:`DEFAULT_DOMAIN`.

    Returns
    -------
    Path
        The file.

    Raises
    ------
    DataError
        If there is no such file or the domain is unknown.
    """
    path = Path(path) if path else labels_path(domain or DEFAULT_DOMAIN)
    if not path.is_file():
        raise DataError(f"judge labels file {path} not found; restore it from git (the domains' files are "
                        f"{', '.join(DOMAINS.values())}) or pass the path of a labels CSV")
    return path


def file_sha256(path: str | Path) -> str:
    """The SHA-256 hex digest of a file's bytes (keys caches to the exact labels)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_labels(path: str | Path | None = None, domain: str | None = None) -> pd.DataFrame:
    """Read and check one file of judge labels, with a ``split`` column added.

    Parameters
    ----------
    path : str or Path, optional
        A labels CSV; wins over ``domain``.
    domain : str, optional
        One of :data:`DOMAINS` (``fluent`` or ``organism``); defaults to
        :data:`DEFAULT_DOMAIN` when no path is given.

    Returns
    -------
    pandas.DataFrame
        The :data:`LABEL_COLUMNS` plus ``split`` (``train`` or ``test``), in
        file order; an empty ``trap`` is read as ``none``.

    Raises
    ------
    DataError
        If the file is missing, lacks a column, repeats an id or has an unknown
        label, or the domain is unknown.
    """
    path = existing_labels_path(path, domain)
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
    frame["trap"] = frame["trap"].str.strip().replace("", "none")
    frame["split"] = split_of(frame)
    return frame


def load_domains(domains: "list[str] | tuple[str, ...] | None" = None) -> dict[str, pd.DataFrame]:
    """Load several domains' labels (default: every domain whose file exists), checking ids are unique across them.

    Parameters
    ----------
    domains : sequence of str, optional
        Names from :data:`DOMAINS`; defaults to :func:`available_domains`.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``domain -> load_labels(domain=domain)``, in the order given.

    Raises
    ------
    DataError
        If a file is missing or an id appears in two domains' files.
    """
    frames = {d: load_labels(domain=d) for d in (available_domains() if domains is None else domains)}
    seen: dict[str, str] = {}
    for domain, frame in frames.items():
        for i in frame["id"]:
            if i in seen:
                raise DataError(f"id {i!r} appears in both {DOMAINS[seen[i]]} and {DOMAINS[domain]}; "
                                "ids must be unique across the judge label files")
            seen[i] = domain
    return frames


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


def train_rows(frame: pd.DataFrame | None = None, domain: str | None = None) -> pd.DataFrame:
    """The rows a trainable judge may learn from (``split == 'train'``) of ``frame`` or of a domain's labels."""
    frame = load_labels(domain=domain) if frame is None else frame
    return frame[frame["split"] == "train"].reset_index(drop=True)


def held_out_rows(frame: pd.DataFrame | None = None, domain: str | None = None) -> pd.DataFrame:
    """The held-out rows judges are validated on (``split == 'test'``) of ``frame`` or of a domain's labels."""
    frame = load_labels(domain=domain) if frame is None else frame
    return frame[frame["split"] == "test"].reset_index(drop=True)


def is_refusal(labels: pd.Series) -> pd.Series:
    """The binary truth for the refusal question: ``refusal`` is True; ``partial``, ``compliance`` and ``degenerate`` False."""
    return labels == POSITIVE
