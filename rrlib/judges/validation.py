"""Validate judges on the held-out hand labels of each domain: accuracy, classes, agreement, confusions, traps.

Every judge sees the same held-out responses (the ``test`` split of
:mod:`rrlib.judges.labels`) of one label domain (``fluent`` or ``organism``,
:data:`rrlib.judges.labels.DOMAINS`); :func:`validate_domains` does every
domain whose labels file exists. Two questions are measured:

* **the refusal decision** (binary): the truth is ``label == "refusal"``
  and the judge's call is ``verdict == "refusal"`` (its ``refused``); a
  partial or degenerate response is not a refusal. ``accuracy``,
  ``precision``, ``recall`` and ``f1`` (refusal positive), the kappa table and
  the per-trap accuracy are about this decision, the one every refusal rate
  counts;
* **the four-way verdict**: the judge's ``verdict`` (refusal, compliance,
  partial, degenerate; ``unknown`` where it gave none) against the label:
  ``accuracy_4way``, per-class precision and recall (:attr:`JudgeValidation.per_class`),
  the four-way kappa and the confusion matrices. A domain whose labels have
  only three classes (fluent) simply has no degenerate row.

:func:`validate` returns a :class:`JudgeValidation`; :func:`write_validation`
saves its tables as CSV, the book renders them on its "Judges" page
(:func:`rrlib.book.judges_page`) and :func:`rrlib.figures.judge_confusion`
draws the confusion matrices. :func:`error_counts` gives a judge's held-out
hits for the judge-error correction (:func:`rrlib.correction.corrected_rate`).
This module only computes: every number on the page comes from the verdicts,
none is typed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from rrlib.config import project_root
from rrlib.errors import DataError
from rrlib.judges import available, get_judge
from rrlib.judges import labels as judge_labels
from rrlib.judges.base import UNCERTAIN_BAND, VERDICT_CLASSES, Judge
from rrlib.store import write_csv

PREDICTED = ("refused", "not refused")  # the binary decision's columns (JudgeValidation.binary_confusion_matrix)
VERDICTS = tuple(c for c in VERDICT_CLASSES if c != "unknown")  # the four verdicts a judge gives
VERDICT_COLUMNS = ["id", "label", "trap", "judge", "score", "refused", "verdict"]
CUSTOM_DOMAIN = "custom"  # the domain name of a labels file that is none of DOMAINS


@dataclass(frozen=True)
class JudgeValidation:
    """Judges measured on the same held-out responses of one label domain.

    Attributes
    ----------
    metrics : pandas.DataFrame
        Per judge: ``n`` (responses with a verdict), ``unparsed``, ``accuracy``,
        ``precision``, ``recall``, ``f1`` of the binary refusal decision
        (refusal positive), ``accuracy_4way`` (verdict equals label), ``brier``
        and ``uncertain`` (share of scores in the uncertain band).
    kappa : pandas.DataFrame
        Pairwise Cohen's kappa of the refusal decision, judges as index and
        columns (symmetric, 1 on the diagonal).
    confusion : pandas.DataFrame
        Long table ``judge, label, verdict, count``: every true label of the
        domain x every verdict (:data:`VERDICTS`, plus ``unknown`` when some
        judge gave no verdict).
    by_trap : pandas.DataFrame
        ``trap, n`` and one column per judge: accuracy of the refusal decision on that trap's rows.
    verdicts : pandas.DataFrame
        One row per (held-out response, judge): :data:`VERDICT_COLUMNS`.
    descriptions : dict of str to str
        One line per judge on what it does.
    n_train, n_test : int
        Sizes of the labels' train and held-out splits.
    per_class : pandas.DataFrame
        Per judge and verdict class: ``support`` (held-out rows with that
        label), ``predicted`` (rows given that verdict), ``precision`` and
        ``recall`` (NaN where the denominator is zero).
    kappa_4way : pandas.DataFrame
        Pairwise Cohen's kappa of the four-way verdicts.
    domain : str
        The label domain (``fluent``, ``organism``, or ``custom`` for another file).
    labels_file : str
        The labels file measured on.
    """

    metrics: pd.DataFrame
    kappa: pd.DataFrame
    confusion: pd.DataFrame
    by_trap: pd.DataFrame
    verdicts: pd.DataFrame
    descriptions: dict[str, str]
    n_train: int
    n_test: int
    per_class: pd.DataFrame = field(default_factory=pd.DataFrame)
    kappa_4way: pd.DataFrame = field(default_factory=pd.DataFrame)
    domain: str = judge_labels.DEFAULT_DOMAIN
    labels_file: str = ""

    @property
    def judges(self) -> list[str]:
        """Judge names in the order they were validated."""
        return self.metrics["judge"].tolist()

    @property
    def labels(self) -> list[str]:
        """The true labels present in the held-out rows, in :data:`~rrlib.judges.labels.LABELS` order."""
        present = set(self.verdicts["label"])
        return [label for label in judge_labels.LABELS if label in present]

    @property
    def verdict_columns(self) -> list[str]:
        """The confusion matrices' columns: :data:`VERDICTS`, plus ``unknown`` if any judge gave no verdict."""
        return list(dict.fromkeys(self.confusion["verdict"])) if len(self.confusion) else list(VERDICTS)

    def confusion_matrix(self, judge: str) -> pd.DataFrame:
        """One judge's four-way confusion matrix: true labels as rows, verdicts as columns (counts)."""
        rows = self.confusion[self.confusion["judge"] == judge]
        table = rows.pivot(index="label", columns="verdict", values="count")
        return table.reindex(index=self.labels, columns=self.verdict_columns).fillna(0).astype(int)

    def binary_confusion_matrix(self, judge: str) -> pd.DataFrame:
        """One judge's refusal decision by true label: rows labels, columns :data:`PREDICTED` (parsed rows only)."""
        matrix = self.confusion_matrix(judge)
        parsed = matrix.drop(columns=["unknown"], errors="ignore")
        refused = parsed["refusal"]
        return pd.DataFrame({PREDICTED[0]: refused, PREDICTED[1]: parsed.sum(axis=1) - refused})


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


def cohen_kappa(a: Sequence | np.ndarray, b: Sequence | np.ndarray) -> float:
    """Cohen's kappa between two raters on the same items (binary or any number of classes).

    Parameters
    ----------
    a, b : sequence
        Ratings of two judges, aligned: booleans (the refusal decision) or class names (verdicts).

    Returns
    -------
    float
        ``(p_o - p_e) / (1 - p_e)``, with ``p_e`` the chance agreement from
        each rater's class shares; 1.0 for identical ratings (even constant
        ones), NaN when there are no items or chance agreement is already total.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.size == 0:
        return float("nan")
    observed = float((a == b).mean())
    if observed == 1.0:
        return 1.0
    chance = float(sum((a == c).mean() * (b == c).mean() for c in np.union1d(a, b)))
    return (observed - chance) / (1 - chance) if chance < 1 else float("nan")


def domain_of(path: str | Path) -> str:
    """The domain whose labels file ``path`` is, or :data:`CUSTOM_DOMAIN` for any other file."""
    resolved = Path(path).resolve()
    for domain in judge_labels.DOMAINS:
        if judge_labels.labels_path(domain).resolve() == resolved:
            return domain
    return CUSTOM_DOMAIN


def _labels_file(labels: str | Path | None, domain: str | None) -> Path:
    if labels is None and domain is not None:
        judge_labels.check_domain(domain)
    return judge_labels.existing_labels_path(labels, domain)


def _all_labels_state() -> tuple[tuple[str, str], ...]:
    """(file, sha256) of every domain's labels file that exists: a trainable judge learns from all of them."""
    return tuple((str(judge_labels.labels_path(d)), judge_labels.file_sha256(judge_labels.labels_path(d)))
                 for d in judge_labels.available_domains())


@functools.lru_cache(maxsize=64)
def _named_verdicts(name: str, path: str, sha: str, state: tuple[tuple[str, str], ...]) -> tuple[pd.DataFrame, str]:
    """A named judge's verdicts on one labels file's held-out rows, once per process and labels state."""
    held_out = judge_labels.held_out_rows(judge_labels.load_labels(path))
    return _run_judge(get_judge(name), held_out)


def _run_judge(judge: Judge, held_out: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    leaked = set(getattr(judge, "train_ids", ())) & set(held_out["id"])
    if leaked:
        raise DataError(f"judge {judge.name} was trained on {len(leaked)} held-out rows (e.g. "
                        f"{sorted(leaked)[0]}); validate it with the labels file it was trained on")
    verdicts = judge.judge(held_out["response"].tolist())
    table = held_out[["id", "label", "trap"]].assign(judge=verdicts.judge, score=verdicts.score,
                                                      refused=verdicts.refused, verdict=verdicts.classes())
    describe = getattr(judge, "describe", None)
    return table[VERDICT_COLUMNS], describe() if callable(describe) else ""


def judge_held_out(judges: Sequence[str | Judge] | None = None, labels: str | Path | None = None,
                   domain: str | None = None) -> tuple[pd.DataFrame, dict[str, str], int]:
    """Run judges on the held-out responses of one labels file.

    Named judges' verdicts are kept for the rest of the process (keyed by the
    labels files' hashes), so the book, :func:`error_counts` and
    :func:`rrlib.judges.choice.choose_judge` judge each held-out row once.

    Parameters
    ----------
    judges : sequence of str or Judge, optional
        Names for :func:`rrlib.judges.get_judge` or judge objects; defaults to
        :func:`rrlib.judges.available`.
    labels : str or Path, optional
        A labels CSV; wins over ``domain``.
    domain : str, optional
        A label domain (``fluent`` or ``organism``); defaults to ``fluent`` when no file is given.

    Returns
    -------
    tuple
        The long verdicts table (:data:`VERDICT_COLUMNS`), one description per
        judge, and the size of the train split.

    Raises
    ------
    DataError
        If the labels file is missing or a trainable judge learnt from any of the held-out rows.
    """
    path = _labels_file(labels, domain)
    frame = judge_labels.load_labels(path)
    held_out = judge_labels.held_out_rows(frame)
    sha, state = judge_labels.file_sha256(path), _all_labels_state()
    parts, descriptions = [], {}
    for judge in (available() if judges is None else judges):
        if isinstance(judge, str):
            table, description = _named_verdicts(judge, str(path), sha, state)
        else:
            table, description = _run_judge(judge, held_out)
        parts.append(table)
        descriptions[str(table["judge"].iloc[0]) if len(table) else getattr(judge, "name", str(judge))] = description
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=VERDICT_COLUMNS)
    return table[VERDICT_COLUMNS], descriptions, int((frame["split"] == "train").sum())


def summarise(verdicts: pd.DataFrame, band: tuple[float, float] = UNCERTAIN_BAND) -> dict[str, pd.DataFrame]:
    """Per-judge metrics, per-class scores, pairwise kappas, confusions and per-trap accuracy from long verdicts.

    Parameters
    ----------
    verdicts : pandas.DataFrame
        :data:`VERDICT_COLUMNS` (``verdict`` may be missing: it is then
        ``refusal`` where refused, ``unknown`` where the score is NaN and
        ``compliance`` elsewhere); a NaN score marks a response without a verdict.
    band : tuple of float
        Scores in this band count as uncertain.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``metrics``, ``per_class``, ``kappa``, ``kappa_4way``, ``confusion``
        and ``by_trap`` as in :class:`JudgeValidation`.
    """
    parsed = np.isfinite(verdicts["score"].astype(float))
    refused = verdicts["refused"].astype(bool)
    if "verdict" not in verdicts:
        verdicts = verdicts.assign(verdict=np.where(~parsed, "unknown", np.where(refused, "refusal", "compliance")))
    verdicts = verdicts.assign(parsed=parsed, truth=judge_labels.is_refusal(verdicts["label"]), refused=refused,
                               verdict=verdicts["verdict"].astype(str))
    names = list(dict.fromkeys(verdicts["judge"]))
    groups = {name: verdicts[verdicts["judge"] == name] for name in names}
    return {"metrics": _metrics(groups, band), "per_class": _per_class(groups),
            "kappa": _kappa(groups, "refused"), "kappa_4way": _kappa(groups, "verdict"),
            "confusion": _confusion(groups), "by_trap": _by_trap(groups)}


def _metrics(groups: dict[str, pd.DataFrame], band: tuple[float, float]) -> pd.DataFrame:
    rows = []
    for name, g in groups.items():
        ok = g[g["parsed"]]
        score = ok["score"].astype(float)
        rows.append({"judge": name, **binary_metrics(ok["truth"], ok["refused"]), "unparsed": int((~g["parsed"]).sum()),
                     "accuracy_4way": _ratio((ok["verdict"] == ok["label"]).sum(), len(ok)),
                     "brier": float(((score - ok["truth"]) ** 2).mean()) if len(ok) else float("nan"),
                     "uncertain": float(score.between(*band).mean()) if len(ok) else float("nan")})
    columns = ["judge", "n", "unparsed", "accuracy", "precision", "recall", "f1", "accuracy_4way", "brier",
               "uncertain"]
    return pd.DataFrame(rows, columns=columns)


def _per_class(groups: dict[str, pd.DataFrame]) -> pd.DataFrame:
    rows = []
    for name, g in groups.items():
        present = set(g["label"]) | set(g["verdict"])
        for cls in [c for c in VERDICT_CLASSES if c in present or c in VERDICTS]:
            is_true, is_said = g["label"] == cls, g["verdict"] == cls
            hits = int((is_true & is_said).sum())
            rows.append({"judge": name, "class": cls, "support": int(is_true.sum()), "predicted": int(is_said.sum()),
                         "precision": _ratio(hits, is_said.sum()), "recall": _ratio(hits, is_true.sum())})
    return pd.DataFrame(rows, columns=["judge", "class", "support", "predicted", "precision", "recall"])


def _kappa(groups: dict[str, pd.DataFrame], column: str) -> pd.DataFrame:
    table = pd.DataFrame(index=list(groups), columns=list(groups), dtype=float)
    for a, ga in groups.items():
        for b, gb in groups.items():
            both = ga[["id", column, "parsed"]].merge(gb[["id", column, "parsed"]], on="id")
            both = both[both["parsed_x"] & both["parsed_y"]]
            table.loc[a, b] = cohen_kappa(both[f"{column}_x"], both[f"{column}_y"])
    table.index.name = "judge"
    return table


def _confusion(groups: dict[str, pd.DataFrame]) -> pd.DataFrame:
    labels = [label for label in judge_labels.LABELS
              if any((g["label"] == label).any() for g in groups.values())]
    columns = list(VERDICTS) + (["unknown"] if any((g["verdict"] == "unknown").any() for g in groups.values()) else [])
    rows = []
    for name, g in groups.items():
        for label in labels:
            said = g.loc[g["label"] == label, "verdict"]
            rows += [{"judge": name, "label": label, "verdict": v, "count": int((said == v).sum())} for v in columns]
    return pd.DataFrame(rows, columns=["judge", "label", "verdict", "count"])


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


def validate(judges: Sequence[str | Judge] | None = None, labels: str | Path | None = None,
             domain: str | None = None) -> JudgeValidation:
    """Measure judges on the held-out split of one domain's hand labels.

    Parameters
    ----------
    judges : sequence of str or Judge, optional
        Defaults to every judge in :func:`rrlib.judges.available`.
    labels : str or Path, optional
        A labels CSV; wins over ``domain``.
    domain : str, optional
        ``fluent`` (the default) or ``organism`` (:data:`rrlib.judges.labels.DOMAINS`).

    Returns
    -------
    JudgeValidation
        Metrics, per-class scores, pairwise kappas, confusion matrices and per-trap accuracy.

    Raises
    ------
    DataError
        If the domain is unknown or its labels file is missing.
    """
    path = _labels_file(labels, domain)
    verdicts, descriptions, n_train = judge_held_out(judges, path)
    try:
        shown = path.resolve().relative_to(project_root().resolve()).as_posix()
    except ValueError:
        shown = str(path)
    return JudgeValidation(**summarise(verdicts), verdicts=verdicts, descriptions=descriptions,
                           n_train=n_train, n_test=int(verdicts["id"].nunique()), domain=domain_of(path),
                           labels_file=shown)


def validate_domains(judges: Sequence[str | Judge] | None = None,
                     domains: Sequence[str] | None = None) -> dict[str, JudgeValidation]:
    """:func:`validate` on each label domain.

    Parameters
    ----------
    judges : sequence of str or Judge, optional
        Defaults to every judge in :func:`rrlib.judges.available`.
    domains : sequence of str, optional
        Defaults to every domain whose labels file exists
        (:func:`rrlib.judges.labels.available_domains`), in
        :data:`~rrlib.judges.labels.DOMAINS` order.

    Returns
    -------
    dict of str to JudgeValidation
        One result per domain.
    """
    domains = judge_labels.available_domains() if domains is None else list(domains)
    return {domain: validate(judges, domain=domain) for domain in domains}


def error_counts(judge: str | Judge, domain: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """A judge's hits on one domain's held-out labels, for :func:`rrlib.correction.corrected_rate`.

    The truth is ``label == "refusal"``; the judge's call is ``verdict ==
    "refusal"`` (a response it gave no verdict on counts as not refused).
    Named judges are run once per process and labels state.

    Parameters
    ----------
    judge : str or Judge
        A judge name (:func:`rrlib.judges.get_judge`) or object.
    domain : str
        ``fluent`` or ``organism``.

    Returns
    -------
    tuple
        ``((tp, positives), (tn, negatives))``: held-out refusals it called
        refusals, out of held-out refusals; held-out non-refusals it did not
        call refusals, out of held-out non-refusals.

    Raises
    ------
    DataError
        If the domain is unknown or its labels file is missing.
    """
    judge_labels.check_domain(domain)
    if isinstance(judge, str):
        return _named_error_counts(judge, domain, _all_labels_state())
    return _error_counts(judge, domain)


@functools.lru_cache(maxsize=64)
def _named_error_counts(judge: str, domain: str, state: tuple[tuple[str, str], ...]):
    return _error_counts(judge, domain)


def _error_counts(judge: str | Judge, domain: str) -> tuple[tuple[int, int], tuple[int, int]]:
    verdicts, _, _ = judge_held_out([judge], domain=domain)
    truth = judge_labels.is_refusal(verdicts["label"]).to_numpy(dtype=bool)
    predicted = (verdicts["verdict"] == "refusal").to_numpy(dtype=bool)
    return (int((truth & predicted).sum()), int(truth.sum())), (int((~truth & ~predicted).sum()), int((~truth).sum()))


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
        ``judge_by_trap.csv``, ``judge_verdicts.csv``, ``judge_per_class.csv``
        and ``judge_kappa_4way.csv``, floats rounded to :data:`STORED_DECIMALS` decimals.
    """
    folder = Path(folder)
    tables = {"judge_metrics": result.metrics, "judge_kappa": result.kappa.reset_index(),
              "judge_confusion": result.confusion, "judge_by_trap": result.by_trap,
              "judge_verdicts": result.verdicts, "judge_per_class": result.per_class,
              "judge_kappa_4way": result.kappa_4way.reset_index()}
    # Scores are rounded to 6 decimals: sbert-lr's probabilities differ by up to ~3e-9 between a fresh clone
    # and a long-lived tree (an SBERT vector depends slightly on the batch it was embedded in), and the tables
    # are committed.
    return [write_csv(folder / f"{name}.csv", table.round(STORED_DECIMALS)) for name, table in tables.items()]


STORED_DECIMALS = 6  # decimals kept in the committed validation tables
