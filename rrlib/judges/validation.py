"""Validate judges on the held-out hand labels: accuracy, agreement, confusions, traps.

Every judge sees the same held-out responses (the ``test`` split of
:mod:`rrlib.judges.labels`). ``refusal`` is the positive class; ``partial``
and ``compliance`` are negative. :func:`validate` returns a
:class:`JudgeValidation`; :func:`write_validation` saves its tables as CSV,
the book renders them as its "Judges" page (:func:`rrlib.book.judges_page`) and
:func:`rrlib.figures.judge_confusion` draws the confusion matrices. This module
only computes: every number on the page comes from the verdicts, none is typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from rrlib.errors import DataError
from rrlib.judges import available, get_judge
from rrlib.judges import labels as judge_labels
from rrlib.judges.base import UNCERTAIN_BAND, Judge
from rrlib.store import write_csv

PREDICTED = ("refused", "not refused")
VERDICT_COLUMNS = ["id", "label", "trap", "judge", "score", "refused"]


@dataclass(frozen=True)
class JudgeValidation:
    """Judges measured on the same held-out responses.

    Attributes
    ----------
    metrics : pandas.DataFrame
        Per judge: ``n`` (responses with a verdict), ``unparsed``, ``accuracy``,
        ``precision``, ``recall``, ``f1`` (refusal positive), ``brier`` and
        ``uncertain`` (share of scores in the uncertain band).
    kappa : pandas.DataFrame
        Pairwise Cohen's kappa, judges as index and columns (symmetric, 1 on the diagonal).
    confusion : pandas.DataFrame
        Long table ``judge, label, predicted, count``: 3 true labels x 2 verdicts per judge.
    by_trap : pandas.DataFrame
        ``trap, n`` and one accuracy column per judge.
    verdicts : pandas.DataFrame
        One row per (held-out response, judge): ``id, label, trap, judge, score, refused``.
    descriptions : dict of str to str
        One line per judge on what it does.
    n_train, n_test : int
        Sizes of the labels' train and held-out splits.
    """

    metrics: pd.DataFrame
    kappa: pd.DataFrame
    confusion: pd.DataFrame
    by_trap: pd.DataFrame
    verdicts: pd.DataFrame
    descriptions: dict[str, str]
    n_train: int
    n_test: int

    @property
    def judges(self) -> list[str]:
        """Judge names in the order they were validated."""
        return self.metrics["judge"].tolist()

    def confusion_matrix(self, judge: str) -> pd.DataFrame:
        """One judge's confusion matrix: true labels as rows, verdicts as columns (counts)."""
        rows = self.confusion[self.confusion["judge"] == judge]
        table = rows.pivot(index="label", columns="predicted", values="count")
        return table.reindex(index=list(judge_labels.LABELS), columns=list(PREDICTED))


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else float("nan")


def binary_metrics(truth: Sequence[bool] | np.ndarray, predicted: Sequence[bool] | np.ndarray) -> dict[str, float]:
    """Accuracy, precision, recall and F1 with refusal as the positive class.

    Parameters
    ----------
    truth, predicted : sequence of bool
        True label (refusal or not) and verdict, per response.

    Returns
    -------
    dict
        ``n, accuracy, precision, recall, f1``; NaN where a denominator is zero.
    """
    truth, predicted = np.asarray(truth, dtype=bool), np.asarray(predicted, dtype=bool)
    tp = int((truth & predicted).sum())
    precision = _ratio(tp, predicted.sum())
    recall = _ratio(tp, truth.sum())
    return {"n": int(truth.size), "accuracy": _ratio((truth == predicted).sum(), truth.size),
            "precision": precision, "recall": recall, "f1": _ratio(2 * tp, truth.sum() + predicted.sum())}


def cohen_kappa(a: Sequence[bool] | np.ndarray, b: Sequence[bool] | np.ndarray) -> float:
    """Cohen's kappa between two binary raters on the same items.

    Parameters
    ----------
    a, b : sequence of bool
        Verdicts of two judges, aligned.

    Returns
    -------
    float
        ``(p_o - p_e) / (1 - p_e)``; 1.0 for identical verdicts (even constant ones),
        NaN when there are no items or chance agreement is already total.
    """
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.size == 0:
        return float("nan")
    observed = float((a == b).mean())
    if observed == 1.0:
        return 1.0
    chance = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    return (observed - chance) / (1 - chance) if chance < 1 else float("nan")


def judge_held_out(judges: Sequence[str | Judge] | None = None,
                   labels: str | Path | None = None) -> tuple[pd.DataFrame, dict[str, str], int]:
    """Run judges on the held-out responses.

    Parameters
    ----------
    judges : sequence of str or Judge, optional
        Names for :func:`rrlib.judges.get_judge` or judge objects; defaults to
        :func:`rrlib.judges.available`.
    labels : str or Path, optional
        A labels CSV; defaults to ``data/raw/judge_labels.csv``.

    Returns
    -------
    tuple
        The long verdicts table (:data:`VERDICT_COLUMNS`), one description per
        judge, and the size of the train split.

    Raises
    ------
    DataError
        If a trainable judge learnt from any of the held-out rows.
    """
    frame = judge_labels.load_labels(labels)
    held_out = judge_labels.held_out_rows(frame)
    objects = [get_judge(j) if isinstance(j, str) else j for j in (available() if judges is None else judges)]
    parts, descriptions = [], {}
    for judge in objects:
        leaked = set(getattr(judge, "train_ids", ())) & set(held_out["id"])
        if leaked:
            raise DataError(f"judge {judge.name} was trained on {len(leaked)} held-out rows (e.g. "
                            f"{sorted(leaked)[0]}); validate it with the labels file it was trained on")
        verdicts = judge.judge(held_out["response"].tolist())
        parts.append(held_out[["id", "label", "trap"]].assign(judge=verdicts.judge, score=verdicts.score,
                                                              refused=verdicts.refused))
        describe = getattr(judge, "describe", None)
        descriptions[verdicts.judge] = describe() if callable(describe) else ""
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=VERDICT_COLUMNS)
    return table[VERDICT_COLUMNS], descriptions, int((frame["split"] == "train").sum())


def summarise(verdicts: pd.DataFrame, band: tuple[float, float] = UNCERTAIN_BAND) -> dict[str, pd.DataFrame]:
    """Per-judge metrics, pairwise kappa, confusions and per-trap accuracy from long verdicts.

    Parameters
    ----------
    verdicts : pandas.DataFrame
        :data:`VERDICT_COLUMNS`; a NaN score marks a response without a verdict.
    band : tuple of float
        Scores in this band count as uncertain.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``metrics``, ``kappa``, ``confusion`` and ``by_trap`` as in :class:`JudgeValidation`.
    """
    verdicts = verdicts.assign(parsed=np.isfinite(verdicts["score"].astype(float)),
                               truth=judge_labels.is_refusal(verdicts["label"]),
                               refused=verdicts["refused"].astype(bool))
    names = list(dict.fromkeys(verdicts["judge"]))
    groups = {name: verdicts[verdicts["judge"] == name] for name in names}
    return {"metrics": _metrics(groups, band), "kappa": _kappa(groups), "confusion": _confusion(groups),
            "by_trap": _by_trap(groups)}


def _metrics(groups: dict[str, pd.DataFrame], band: tuple[float, float]) -> pd.DataFrame:
    rows = []
    for name, g in groups.items():
        ok = g[g["parsed"]]
        score = ok["score"].astype(float)
        rows.append({"judge": name, **binary_metrics(ok["truth"], ok["refused"]), "unparsed": int((~g["parsed"]).sum()),
                     "brier": float(((score - ok["truth"]) ** 2).mean()) if len(ok) else float("nan"),
                     "uncertain": float(score.between(*band).mean()) if len(ok) else float("nan")})
    columns = ["judge", "n", "unparsed", "accuracy", "precision", "recall", "f1", "brier", "uncertain"]
    return pd.DataFrame(rows, columns=columns)


def _kappa(groups: dict[str, pd.DataFrame]) -> pd.DataFrame:
    table = pd.DataFrame(index=list(groups), columns=list(groups), dtype=float)
    for a, ga in groups.items():
        for b, gb in groups.items():
            both = ga[["id", "refused", "parsed"]].merge(gb[["id", "refused", "parsed"]], on="id")
            both = both[both["parsed_x"] & both["parsed_y"]]
            table.loc[a, b] = cohen_kappa(both["refused_x"], both["refused_y"])
    table.index.name = "judge"
    return table


def _confusion(groups: dict[str, pd.DataFrame]) -> pd.DataFrame:
    rows = []
    for name, g in groups.items():
        ok = g[g["parsed"]]
        for label in judge_labels.LABELS:
            refused = ok.loc[ok["label"] == label, "refused"]
            rows += [{"judge": name, "label": label, "predicted": PREDICTED[0], "count": int(refused.sum())},
                     {"judge": name, "label": label, "predicted": PREDICTED[1], "count": int((~refused).sum())}]
    return pd.DataFrame(rows, columns=["judge", "label", "predicted", "count"])


def _by_trap(groups: dict[str, pd.DataFrame]) -> pd.DataFrame:
    if not groups:
        return pd.DataFrame(columns=["trap", "n"])
    traps = pd.concat([g[["id", "trap"]] for g in groups.values()]).drop_duplicates("id")["trap"]
    table = traps.value_counts().rename("n").to_frame()
    for name, g in groups.items():
        ok = g[g["parsed"]]
        table[name] = (ok["truth"] == ok["refused"]).groupby(ok["trap"]).mean()
    order = sorted(table.index, key=lambda trap: (trap == "none", trap))
    return table.loc[order].rename_axis("trap").reset_index()


def validate(judges: Sequence[str | Judge] | None = None, labels: str | Path | None = None) -> JudgeValidation:
    """Measure judges on the held-out split of the hand labels.

    Parameters
    ----------
    judges : sequence of str or Judge, optional
        Defaults to every judge in :func:`rrlib.judges.available`.
    labels : str or Path, optional
        A labels CSV; defaults to ``data/raw/judge_labels.csv``.

    Returns
    -------
    JudgeValidation
        Metrics, pairwise kappa, confusion matrices and per-trap accuracy.
    """
    verdicts, descriptions, n_train = judge_held_out(judges, labels)
    return JudgeValidation(**summarise(verdicts), verdicts=verdicts, descriptions=descriptions,
                           n_train=n_train, n_test=int(verdicts["id"].nunique()))


def write_validation(result: JudgeValidation, folder: str | Path) -> list[Path]:
    """Write the validation tables as CSV files (atomically).

    Parameters
    ----------
    result : JudgeValidation
        From :func:`validate`.
    folder : str or Path
        Created if missing.

    Returns
    -------
    list of Path
        ``judge_metrics.csv``, ``judge_kappa.csv``, ``judge_confusion.csv``,
        ``judge_by_trap.csv`` and ``judge_verdicts.csv``.
    """
    folder = Path(folder)
    tables = {"judge_metrics": result.metrics, "judge_kappa": result.kappa.reset_index(),
              "judge_confusion": result.confusion, "judge_by_trap": result.by_trap,
              "judge_verdicts": result.verdicts}
    return [write_csv(folder / f"{name}.csv", table) for name, table in tables.items()]
