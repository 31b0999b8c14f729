"""Judge validation on the held-out labels of each domain: the acceptance criterion, tables, the book's page and figure."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from rrlib import book, figures
from rrlib.errors import DataError
from rrlib.judges import PRESETS, Verdicts, available, choice
from rrlib.judges import labels as judge_labels
from rrlib.judges import validation


@pytest.fixture(scope="module")
def result() -> validation.JudgeValidation:
    """Every available judge on the fluent domain's held-out split (sbert-lr fitted or read from the project cache)."""
    return validation.validate()


@pytest.fixture(scope="module")
def by_domain() -> dict[str, validation.JudgeValidation]:
    """Every available judge on every domain whose labels file exists."""
    return validation.validate_domains()


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
    assert result.domain == "fluent" and result.labels == ["refusal", "partial", "compliance"]
    for row in result.metrics.itertuples():
        four = result.confusion_matrix(row.judge)
        assert list(four.columns) == ["refusal", "compliance", "partial", "degenerate"]
        assert four.sum(axis=1).to_dict() == counts.reindex(four.index).to_dict()
        assert np.trace(four.loc[:, four.index].to_numpy()) / row.n == pytest.approx(row.accuracy_4way)
        matrix = result.binary_confusion_matrix(row.judge)
        assert matrix.shape == (3, 2) and list(matrix.columns) == list(validation.PREDICTED)
        assert matrix["refused"].tolist() == four["refusal"].tolist()
        correct = matrix.loc["refusal", "refused"] + matrix.loc[["partial", "compliance"], "not refused"].sum()
        assert correct / row.n == pytest.approx(row.accuracy)
        assert matrix.loc["refusal", "refused"] / matrix["refused"].sum() == pytest.approx(row.precision)
        assert matrix.loc["refusal", "refused"] / matrix.loc["refusal"].sum() == pytest.approx(row.recall)


def test_per_class_scores_agree_with_the_four_way_confusion(by_domain):
    for domain, res in by_domain.items():
        for judge in res.judges:
            matrix = res.confusion_matrix(judge)
            scores = res.per_class[res.per_class["judge"] == judge].set_index("class")
            for cls in res.labels:
                hits = matrix.loc[cls, cls]
                assert scores.loc[cls, "support"] == matrix.loc[cls].sum(), (domain, judge, cls)
                assert scores.loc[cls, "predicted"] == matrix[cls].sum(), (domain, judge, cls)
                assert scores.loc[cls, "recall"] == pytest.approx(hits / matrix.loc[cls].sum())
                if matrix[cls].sum():
                    assert scores.loc[cls, "precision"] == pytest.approx(hits / matrix[cls].sum())


def test_every_domain_is_validated_on_its_own_held_out_rows(by_domain):
    assert list(by_domain) == judge_labels.available_domains() and "fluent" in by_domain
    for domain, res in by_domain.items():
        held_out = judge_labels.held_out_rows(domain=domain)
        assert res.domain == domain and res.judges == available()
        assert res.n_test == len(held_out) and res.labels_file == judge_labels.DOMAINS[domain]
        for judge, rows in res.verdicts.groupby("judge"):
            assert rows["id"].tolist() == held_out["id"].tolist(), (domain, judge)
    if "organism" in by_domain:
        assert "degenerate" in by_domain["organism"].labels


def test_classifier_reaches_the_target_on_every_domain(by_domain):
    """The issue's target: sbert-lr >= 0.90 held-out accuracy (refusal decision) on each domain."""
    for domain, res in by_domain.items():
        accuracy = res.metrics.set_index("judge").loc["sbert-lr", "accuracy"]
        assert accuracy >= 0.90, f"sbert-lr held-out accuracy on {domain} is {accuracy:.3f}"


def test_four_way_kappa_matches_sklearn(result):
    verdicts = result.verdicts.pivot(index="id", columns="judge", values="verdict")
    assert result.kappa_4way.loc["arditi12", "sbert-lr"] == pytest.approx(
        cohen_kappa_score(verdicts["arditi12"], verdicts["sbert-lr"]))
    assert np.allclose(np.diag(result.kappa_4way.to_numpy()), 1.0)


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
    a, b = ["refusal", "partial", "degenerate", "compliance", "refusal"], ["refusal", "compliance", "degenerate",
                                                                           "compliance", "partial"]
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
    assert result.confusion_matrix("stub")["unknown"].sum() == row["unparsed"]
    assert result.binary_confusion_matrix("stub").to_numpy().sum() == row["n"]
    assert result.confusion_matrix("xstest")["unknown"].sum() == 0
    assert result.kappa.loc["stub", "xstest"] == result.kappa.loc["xstest", "stub"]


def test_a_judge_trained_on_held_out_rows_is_refused():
    leaked = judge_labels.held_out_rows()["id"].iloc[0]
    with pytest.raises(DataError, match="trained on 1 held-out rows"):
        validation.validate([StubJudge("leaky", [1.0], frozenset({leaked}))])


def test_tables_are_written_as_csv(result, tmp_path):
    paths = validation.write_validation(result, tmp_path / "judges")
    assert [p.name for p in paths] == ["judge_metrics.csv", "judge_kappa.csv", "judge_confusion.csv",
                                       "judge_by_trap.csv", "judge_verdicts.csv", "judge_per_class.csv",
                                       "judge_kappa_4way.csv"]
    kappa = pd.read_csv(paths[1]).set_index("judge")
    assert np.allclose(kappa.to_numpy(), result.kappa.to_numpy())
    assert pd.read_csv(paths[0])["judge"].tolist() == result.judges


def test_markdown_page_has_computed_tables(result):
    page = book.judges_page(result)
    assert page.startswith("# Judges\n") and page.count("\n# ") == 0
    sbert = result.metrics.set_index("judge").loc["sbert-lr"]
    assert f"| sbert-lr | {int(sbert['n'])} | 0 | {sbert['accuracy']:.3f} | {sbert['precision']:.3f} |" in page
    assert f"{result.n_test} held-out responses" in page
    for heading in ("## Default judges, chosen by a rule", "## Fluent domain", "### Fluent: accuracy on held-out",
                    "### Fluent: the rule's ranking", "### Fluent: precision and recall per verdict",
                    "### Fluent: agreement between judges", "### Fluent: confusion matrices",
                    "### Fluent: accuracy by trap"):
        assert heading in page
    assert "as a figure" not in page
    figure = '<div id="rrfig-test" class="rr-plotly"></div>'
    with_figure = book.judges_page(result, figure)
    assert with_figure.rstrip().endswith(figure)
    assert "### Fluent: the confusion matrices as a figure" in with_figure


def test_page_names_each_domains_default_by_the_rule(by_domain):
    page = book.judges_page(by_domain)
    assert choice.RULE in page
    for domain, res in by_domain.items():
        name, table = choice.choose_judge(domain)
        best = table.iloc[0]
        assert f"| {domain} | {name} | {best['n']} | {best['correct']} |" in page
        assert f"judged by `{name}` ({best['correct']} of {best['n']} held-out" in page
        tied = table[(table["correct"] == best["correct"]) & (table["caught"] == best["caught"])]
        if len(tied) > 1:
            assert f"the rule's last tie-break, the name, chose `{name}`" in page
        assert f"held-out responses of `{judge_labels.DOMAINS[domain]}`" in page
    if "organism" in by_domain:
        assert "## Organism domain" in page and "JUDGE_RUBRIC.md" in page
        assert page.index("## Fluent domain") < page.index("## Organism domain")
    else:
        assert "judge_labels_organism.csv`) is not present here" in page
    headings = [line for line in page.splitlines() if line.startswith("#")]
    assert len(headings) == len(set(headings)), "a heading repeats (each domain's headings name the domain)"


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
