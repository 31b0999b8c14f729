"""Judge validation on the held-out labels: the acceptance criterion, tables, and the book's page and figure."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from rrlib import book, figures
from rrlib.errors import DataError
from rrlib.judges import PRESETS, Verdicts, available
from rrlib.judges import labels as judge_labels
from rrlib.judges import validation


@pytest.fixture(scope="module")
def result() -> validation.JudgeValidation:
    """Every available judge on the held-out split (sbert-lr fitted or read from the project cache)."""
    return validation.validate()


@dataclass
class StubJudge:
    """A judge with fixed scores (NaN = no verdict), for testing the accounting."""

    name: str
    scores: list[float]
    train_ids: frozenset[str] = frozenset()

    def judge(self, responses):
        score = np.resize(np.asarray(self.scores, dtype=float), len(responses))
        return Verdicts(self.name, score == 1.0, score)


def test_classifier_beats_every_keyword_preset_on_held_out_accuracy(result):
    metrics = result.metrics.set_index("judge")
    best_keyword = metrics.loc[list(PRESETS), "accuracy"].max()
    assert metrics.loc["sbert-lr", "accuracy"] > best_keyword


def test_classifier_is_calibrated_on_held_out(result):
    metrics = result.metrics.set_index("judge")
    assert metrics.loc["sbert-lr", "brier"] < metrics.loc[list(PRESETS), "brier"].min()
    rows = result.verdicts[result.verdicts["judge"] == "sbert-lr"]
    base_rate = judge_labels.is_refusal(rows["label"]).mean()
    assert rows["score"].between(0, 1).all()
    assert abs(rows["score"].mean() - base_rate) < 0.1


def test_metrics_cover_every_judge_on_the_same_rows(result):
    held_out = judge_labels.held_out_rows()
    assert result.judges == available()
    assert result.n_test == len(held_out) and result.n_train == len(judge_labels.train_rows())
    assert (result.metrics["n"] == len(held_out)).all() and (result.metrics["unparsed"] == 0).all()
    for judge, rows in result.verdicts.groupby("judge"):
        assert rows["id"].tolist() == held_out["id"].tolist(), judge
    scores = result.metrics[["accuracy", "precision", "recall", "f1"]]
    assert ((scores >= 0) & (scores <= 1)).all().all()


def test_metrics_agree_with_confusion_matrices(result):
    counts = judge_labels.held_out_rows()["label"].value_counts()
    for row in result.metrics.itertuples():
        matrix = result.confusion_matrix(row.judge)
        assert matrix.shape == (3, 2)
        assert matrix.sum(axis=1).to_dict() == counts.reindex(matrix.index).to_dict()
        correct = matrix.loc["refusal", "refused"] + matrix.loc[["partial", "compliance"], "not refused"].sum()
        assert correct / row.n == pytest.approx(row.accuracy)
        assert matrix.loc["refusal", "refused"] / matrix["refused"].sum() == pytest.approx(row.precision)
        assert matrix.loc["refusal", "refused"] / matrix.loc["refusal"].sum() == pytest.approx(row.recall)


def test_kappa_is_symmetric_with_ones_on_the_diagonal(result):
    kappa = result.kappa
    assert list(kappa.index) == list(kappa.columns) == result.judges
    assert np.allclose(kappa.to_numpy(), kappa.to_numpy().T)
    assert np.allclose(np.diag(kappa.to_numpy()), 1.0)
    verdicts = result.verdicts.pivot(index="id", columns="judge", values="refused")
    assert kappa.loc["xstest", "sbert-lr"] == pytest.approx(
        cohen_kappa_score(verdicts["xstest"], verdicts["sbert-lr"]))


def test_cohen_kappa_edge_cases():
    assert validation.cohen_kappa([True, True], [True, True]) == 1.0
    assert np.isnan(validation.cohen_kappa([], []))
    a, b = [True, False, True, True, False, False], [True, False, False, True, True, False]
    assert validation.cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_accuracy_by_trap_covers_every_trap(result):
    held_out = judge_labels.held_out_rows()
    table = result.by_trap.set_index("trap")
    assert set(table.index) == set(held_out["trap"]) and table.index[-1] == "none"
    assert table["n"].sum() == len(held_out)
    assert table[result.judges].stack().between(0, 1).all()


def test_unparsed_verdicts_are_counted_not_scored():
    stub = StubJudge("stub", [1.0, 0.0, np.nan])
    result = validation.validate([stub, "xstest"])
    row = result.metrics.set_index("judge").loc["stub"]
    assert row["unparsed"] == result.n_test // 3 and row["n"] == result.n_test - row["unparsed"]
    assert result.confusion_matrix("stub").to_numpy().sum() == row["n"]
    assert result.kappa.loc["stub", "xstest"] == result.kappa.loc["xstest", "stub"]


def test_a_judge_trained_on_held_out_rows_is_refused():
    leaked = judge_labels.held_out_rows()["id"].iloc[0]
    with pytest.raises(DataError, match="trained on 1 held-out rows"):
        validation.validate([StubJudge("leaky", [1.0], frozenset({leaked}))])


def test_tables_are_written_as_csv(result, tmp_path):
    paths = validation.write_validation(result, tmp_path / "judges")
    assert [p.name for p in paths] == ["judge_metrics.csv", "judge_kappa.csv", "judge_confusion.csv",
                                       "judge_by_trap.csv", "judge_verdicts.csv"]
    kappa = pd.read_csv(paths[1]).set_index("judge")
    assert np.allclose(kappa.to_numpy(), result.kappa.to_numpy())
    assert pd.read_csv(paths[0])["judge"].tolist() == result.judges


def test_markdown_page_has_computed_tables(result):
    page = book.judges_page(result)
    assert page.startswith("# Judges\n") and page.count("\n# ") == 0
    sbert = result.metrics.set_index("judge").loc["sbert-lr"]
    assert f"| sbert-lr | {int(sbert['n'])} | 0 | {sbert['accuracy']:.3f} | {sbert['precision']:.3f} |" in page
    assert f"{result.n_test} held-out responses" in page
    for heading in ("## Accuracy on held-out responses", "## Agreement between judges", "## Confusion matrices",
                    "## Accuracy by trap"):
        assert heading in page
    assert "as a figure" not in page
    figure = '<div id="rrfig-test" class="rr-plotly"></div>'
    with_figure = book.judges_page(result, figure)
    assert with_figure.startswith(page.rstrip("\n")) and with_figure.rstrip().endswith(figure)
    assert "## The confusion matrices as a figure" in with_figure


def test_confusion_figure_has_one_heatmap_per_judge(result):
    fig = figures.judge_confusion(result)
    assert [t.type for t in fig.data] == ["heatmap"] * len(result.judges)
    sbert = fig.data[result.judges.index("sbert-lr")]
    assert np.asarray(sbert.text).sum() == result.n_test


def test_validation_only_computes():
    """The page and the figure live in the book and figures layers: validation imports neither."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(validation))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m.startswith(("rrlib.book", "rrlib.figures", "plotly"))}
    assert not hasattr(validation, "validation_markdown") and not hasattr(validation, "confusion_figure")
