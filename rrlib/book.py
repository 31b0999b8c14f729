"""The HTML book: generated pages, the table of contents, and the build.

The book renders what papermill already executed (``execute_notebooks: off``).
The Runs part of ``_toc.yml`` and the Results, Judges and Reproducibility pages
(with the original-vs-ours and data-set fragments the hand-written pages
include) are generated from ``results/`` and ``data/``: the numbers come from
the results tables, and the page text from the Jinja templates in
``rrlib/templates/`` (:func:`render`). plotly.js is copied from the installed
plotly package into ``book/_static`` so figures render offline.

``root`` is the *project* root throughout; its results are under
``root / "results"``, and every path there comes from :mod:`rrlib.results`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import jinja2
import pandas as pd
import yaml

from rrlib import data, figures, judges, results
from rrlib.config import project_root
from rrlib.days import DAYS, parameters
from rrlib.errors import RRError
from rrlib.export import export_pngs
from rrlib.judges import labels as judge_labels
from rrlib.judges import validation
from rrlib.judges.base import UNCERTAIN_BAND
from rrlib.judges.validation import JudgeValidation
from rrlib.metrics import Estimate, estimate_from_table
from rrlib.narrative import fmt, original_comparison
from rrlib.store import atomic_write_text, read_json

BOOK_DIR = "book"
STATIC_DIR = "book/_static"
WIDGETS_DIR = "book/_widgets"
GENERATED_DIR = "book/_generated"
ORIGINAL_FRAGMENT = f"{GENERATED_DIR}/original_vs_ours.md"
DATA_FRAGMENT = f"{GENERATED_DIR}/data_sets.md"
TEMPLATES = Path(__file__).resolve().parent / "templates"
# ipywidgets' static renderer and its loader, served from the book itself (myst-nb defaults to a CDN).
WIDGET_PACKAGES = {"@jupyter-widgets/html-manager": "1.0.15", "requirejs": "2.3.8"}
STUDY_PAGES = ["book/metrics", "book/methods", "book/results", "book/judges", "book/original_study",
               "book/reproducibility"]
HEADLINE_METRICS = ("RRR", "CE", "over_refusal", "RD")
NOT_EXECUTED = "not executed on this machine"


def _results_root(root: Path) -> Path:
    """The results root of a project root (the book's convention: ``root / "results"``)."""
    return root / "results"


# ---------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------


def _cell(value: Any) -> str:
    """A table cell: floats to 3 decimals (missing as empty), pipes escaped, one line."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    if value is None or value is pd.NA:
        return ""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _fixed(value: float, digits: int = 3) -> str:
    return f"{float(value):.{digits}f}"


@functools.lru_cache(maxsize=1)
def templates() -> jinja2.Environment:
    """The Jinja environment of the book's page templates (``rrlib/templates/*.jinja``).

    Filters: ``cell`` (a table cell), ``fixed`` (a number to 3 decimals) and
    ``estimate`` (:func:`rrlib.narrative.fmt`). The ``table`` macro in
    ``_macros.jinja`` renders a DataFrame as a pipe table.
    """
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.filters.update(cell=_cell, fixed=_fixed, estimate=fmt)
    return env


def render(template: str, **context: Any) -> str:
    """Render one template of ``rrlib/templates`` (``results.md.jinja`` ...) with ``context``."""
    return templates().get_template(template).render(**context)


def markdown_table(frame: pd.DataFrame) -> str:
    """A MyST/GFM pipe table (floats to 3 decimals, pipes escaped), from the templates' ``table`` macro."""
    return templates().from_string('{% from "_macros.jinja" import table %}{{ table(frame) }}').render(frame=frame)


# ---------------------------------------------------------------------------
# Static files
# ---------------------------------------------------------------------------


def prepare_static(root: Path | None = None) -> Path:
    """Copy ``plotly.min.js`` from the plotly package into ``book/_static`` (no CDN).

    Returns
    -------
    Path
        The copied file.
    """
    import plotly

    root = root or project_root()
    target = root / STATIC_DIR / "plotly.min.js"
    source = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return target


def prepare_widgets(root: Path | None = None) -> Path:
    """Fetch require.js and the ipywidgets embed bundle into ``book/_widgets`` (once, with npm).

    The files are served from the book's own static folder, so widget outputs
    render offline. npm is needed only the first time (``make setup`` runs it).

    Returns
    -------
    Path
        The widgets folder.

    Raises
    ------
    RRError
        If the files are missing and npm cannot fetch them.
    """
    import tarfile
    import tempfile

    root = root or project_root()
    target = root / WIDGETS_DIR
    if (target / "embed-amd.js").exists() and (target / "require.js").exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise RRError("npm is needed once to fetch the ipywidgets renderer for the book "
                      "(apt-get install npm, or copy embed-amd.js and require.js into book/_widgets)")
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        specs = [f"{name}@{version}" for name, version in WIDGET_PACKAGES.items()]
        proc = subprocess.run([npm, "pack", "--silent", *specs], cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RRError(f"npm pack {' '.join(specs)} failed: {' '.join(proc.stderr.split())[:300]}")
        for tarball in Path(tmp).glob("*.tgz"):
            with tarfile.open(tarball) as archive:
                for member in archive.getmembers():
                    name = member.name
                    keep = (name == "package/require.js" or (name.startswith("package/dist/") and not
                            name.endswith((".map", "embed.js", "libembed-amd.js", ".txt"))))
                    if keep and member.isfile():
                        data = archive.extractfile(member)
                        if data is not None:
                            (target / Path(name).name).write_bytes(data.read())
    return target


# ---------------------------------------------------------------------------
# Table of contents and the run index pages
# ---------------------------------------------------------------------------


def write_toc(root: Path | None = None) -> Path:
    """Write ``_toc.yml``: the study pages, then one Runs chapter per run folder, its Days titled from :data:`DAYS`.

    Returns
    -------
    Path
        The written ``_toc.yml``.
    """
    root = root or project_root()
    results_root = _results_root(root)
    chapters = []
    for name, days in results.executed_runs(results_root).items():
        page = write_run_index(root, name, days)
        chapters.append({"file": page.relative_to(root).with_suffix("").as_posix(),
                         "sections": [{"file": results.run_file(name, day, "", results_root).relative_to(root)
                                       .as_posix(), "title": DAYS[day].title} for day in days]})
    parts: list[dict[str, Any]] = [{"caption": "The study", "chapters": [{"file": p} for p in STUDY_PAGES
                                                                         if (root / f"{p}.md").exists()]}]
    if chapters:
        parts.append({"caption": "Runs", "chapters": chapters})
    toc = {"format": "jb-book", "root": "book/intro", "parts": parts}
    header = "# Generated by `rr book` (rrlib.book.write_toc): the Runs part lists results/runs/*/Day*.ipynb.\n"
    return atomic_write_text(root / "_toc.yml", header + yaml.safe_dump(toc, sort_keys=False, allow_unicode=True))


def _rows_of_run(metrics: pd.DataFrame, name: str, results_root: Path) -> pd.DataFrame:
    """The metrics rows filed under run folder ``name``."""
    if metrics.empty:
        return metrics
    folders = {model: results.run_folder(model, results_root).name for model in metrics["model"].unique()}
    return metrics[metrics["model"].map(folders) == name]


def run_index_page(root: Path, name: str, days: list[int], metrics: pd.DataFrame,
                   source: str = "results/metrics/metrics.csv") -> str:
    """The landing page of one run folder: links to its Days and its headline numbers.

    Parameters
    ----------
    root : Path
        Project root.
    name : str
        Run folder name (``organism-m``, ``scaling`` ...).
    days : list of int
        Its executed Days.
    metrics : pandas.DataFrame
        The metrics table (its rows for this run are shown).
    source : str
        Where that table was read, as the page names it.

    Returns
    -------
    str
        The page's Markdown.
    """
    results_root = _results_root(root)
    page_dir = root / BOOK_DIR / "runs"
    runs = [{"title": DAYS[day].title,
             "link": Path(os.path.relpath(results.run_file(name, day, ".ipynb", results_root), page_dir)).as_posix()}
            for day in days]
    headline = headline_table(_rows_of_run(metrics, name, results_root))
    return render("run_index.md.jinja", name=name, runs=runs, headline=None if headline.empty else headline,
                  source=source)


def write_run_index(root: Path, name: str, days: list[int]) -> Path:
    """Write ``book/runs/<name>.md`` (:func:`run_index_page`); a run on other inputs reads its own metrics table."""
    path = results.table_path("metrics", name, _results_root(root), tagged=results.model_base(name) != name)
    page = run_index_page(root, name, days, results.read_metrics(path), path.relative_to(root).as_posix())
    return atomic_write_text(root / BOOK_DIR / "runs" / f"{name}.md", page)


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


def _estimate(rows: pd.DataFrame, metric: str, step: int) -> Estimate:
    """One metric at one step of some metrics rows (missing, with a reason, when absent)."""
    return estimate_from_table(rows.assign(step=rows["step"].astype(int)), metric, step)


def _primary_judge(rows: pd.DataFrame) -> str:
    """The judge behind the headline numbers: the judge of the CE rows (Day 5 records CE for its primary judge only)."""
    ce = rows.loc[rows["metric"] == "CE", "judge"]
    return str((ce if len(ce) else rows.loc[rows["metric"] == "RRR", "judge"]).mode().iloc[0])


def headline_table(metrics: pd.DataFrame, judge: str | None = None) -> pd.DataFrame:
    """Baseline vs after the attack (last grid step) per model: RRR, CE, over-refusal, response drift (RD).

    Parameters
    ----------
    metrics : pandas.DataFrame
        The metrics table.
    judge : str, optional
        Refusal judge to report; defaults to the most common judge of Day 5 RRR rows.

    Returns
    -------
    pandas.DataFrame
        One row per (model, recipe, metric) with ``baseline (step 0)`` and ``after attack`` columns
        (:func:`rrlib.narrative.fmt`); empty without Day 5 rows.
    """
    day5 = metrics[metrics["day"].astype(int) == 5] if len(metrics) else metrics
    if day5.empty:
        return pd.DataFrame()
    judge = judge or _primary_judge(day5)
    rows = []
    for model, group in day5.groupby("model", sort=True):
        for recipe, runs in group.groupby("recipe", sort=True):
            last = int(runs["step"].astype(int).max())
            for metric in HEADLINE_METRICS:
                want = "sbert" if metric == "RD" else judge
                sel = runs[(runs["metric"] == metric) & (runs["judge"] == want)]
                steps = set(sel["step"].astype(int))
                if not {0, last} <= steps:
                    continue
                after = _estimate(sel, metric, last)
                rows.append({"model": model, "recipe": recipe, "metric": metric, "judge": want,
                             "baseline (step 0)": fmt(_estimate(sel, metric, 0)),
                             "after attack": f"{fmt(after)} @ step {last}", "n": after.n})
    return pd.DataFrame(rows)


RESULT_FIGURES = (("RRR", "RRR_compare", "RRR across the attack grid", "RRR (95% Wilson)"),
                  ("CE", "CE_compare", "CE across the attack grid", "CE = 1 − RRR"),
                  ("RD", "RD_compare", "Response drift (RD) across the attack grid", "median SBERT cosine distance"))


def result_figures(metrics: pd.DataFrame, results_root: Path, judge: str) -> list[dict[str, str]]:
    """Draw and save the Results page's figures: RRR, CE and response drift across every model's attack grid.

    Returns
    -------
    list of dict
        Per figure: ``heading``, ``html`` (the self-drawing div) and ``saved`` (its HTML file, relative).
    """
    day5 = metrics[metrics["day"].astype(int) == 5]
    drawn = []
    for metric, name, heading, ylabel in RESULT_FIGURES:
        want = "sbert" if metric == "RD" else judge
        rows = day5[(day5["judge"] == want) & (day5["metric"] == metric)].copy()
        rows["model"] = rows["model"] + " · " + rows["recipe"]
        rows["step"] = rows["step"].astype(int)
        fig = figures.rate_by_step(rows, metric, f"{heading}, all models", ylabel,
                                   y_range=None if metric == "RD" else (0, 1.02))
        out = figures.show(fig, name, root=results_root)
        saved = Path(out.paths["html"])
        drawn.append({"heading": heading, "html": out.html(),
                      "saved": (Path(results_root.name) / saved.relative_to(results_root)).as_posix()})
    return drawn


def attack_comparisons(root: Path) -> list[dict[str, Any]]:
    """The Day 6 runs that compare several attacks or defenses: their page and what they compare."""
    results_root = _results_root(root)
    found = []
    for name, days in results.executed_runs(results_root).items():
        if 6 not in days:
            continue
        page = results.run_file(name, 6, ".ipynb", results_root)
        params = read_json(page).get("metadata", {}).get("rr", {}).get("parameters", {})  # as the runner recorded
        attacks, defenses = params.get("attacks") or ["lora"], params.get("defenses") or ["none"]
        if len(attacks) > 1 or len(defenses) > 1:
            found.append({"name": name, "attacks": ", ".join(attacks), "defenses": ", ".join(defenses),
                          "link": Path(os.path.relpath(page, root / BOOK_DIR)).as_posix()})
    return found


def results_page(metrics: pd.DataFrame, drawn: list[dict[str, str]] | None = None,
                 comparisons: list[dict[str, Any]] | None = None) -> str:
    """The Results page from the metrics table (and the figures drawn from it, :func:`result_figures`), with
    links to the attack-and-defense comparisons (:func:`attack_comparisons`)."""
    table = headline_table(metrics)
    if table.empty:
        return render("results.md.jinja", headline=None, comparisons=comparisons or [])
    organisms = sorted(m for m in table["model"].unique() if str(m).startswith("organism"))
    return render("results.md.jinja", headline=table, organisms=organisms, figures=drawn or [],
                  judge=_primary_judge(metrics[metrics["day"].astype(int) == 5]), comparisons=comparisons or [])


def write_results_page(root: Path | None = None) -> Path:
    """Generate ``book/results.md`` from ``results/metrics/metrics.csv`` and the figures it embeds."""
    root = root or project_root()
    results_root = _results_root(root)
    metrics = results.read_metrics(results.metrics_path(results_root))
    drawn = []
    if not headline_table(metrics).empty:
        drawn = result_figures(metrics, results_root, _primary_judge(metrics[metrics["day"].astype(int) == 5]))
    return atomic_write_text(root / BOOK_DIR / "results.md",
                             results_page(metrics, drawn, attack_comparisons(root)))


# ---------------------------------------------------------------------------
# The original study beside ours
# ---------------------------------------------------------------------------


def original_blocks(metrics: pd.DataFrame) -> list[dict[str, Any]]:
    """Per (model, refusal judge) of a Day 7 grid: the original study's headline beside ours.

    Our numbers are the ``grid-pooled`` rows of ``metrics.csv`` (pooled over
    every rank and seed), at step 0 and the grid's last step; RRR and CE under
    the refusal judge, the response drift (RD) under ``sbert``.

    Returns
    -------
    list of dict
        ``model``, ``judge``, ``organism`` and ``table`` (:func:`rrlib.narrative.original_comparison`).
    """
    pooled = metrics[(metrics["recipe"] == "grid-pooled") & (metrics["day"].astype(int) == 7)] if len(metrics) \
        else metrics
    blocks = []
    for model, rows in pooled.groupby("model", sort=True):
        last = int(rows["step"].astype(int).max())
        drift = rows[rows["judge"] == "sbert"]
        for judge in sorted(rows.loc[rows["metric"] == "RRR", "judge"].unique()):
            judged = rows[rows["judge"] == judge]
            ours = {metric: (_estimate(source, metric, 0), _estimate(source, metric, last))
                    for metric, source in (("RRR", judged), ("CE", judged), ("RD", drift))}
            blocks.append({"model": model, "judge": judge, "organism": str(model).startswith("organism"),
                           "table": original_comparison(str(model), ours, last)})
    return blocks


def original_fragment(metrics: pd.DataFrame) -> str:
    """The "ours" half of the original-study page (included by ``book/original_study.md``)."""
    return render("original_vs_ours.md.jinja", blocks=original_blocks(metrics))


def write_original_comparison(root: Path | None = None) -> Path:
    """Generate ``book/_generated/original_vs_ours.md`` from metrics.csv."""
    root = root or project_root()
    metrics = results.read_metrics(results.metrics_path(_results_root(root)))
    return atomic_write_text(root / ORIGINAL_FRAGMENT, original_fragment(metrics))


# ---------------------------------------------------------------------------
# The data sets (counted, not typed)
# ---------------------------------------------------------------------------


def data_sets() -> pd.DataFrame:
    """The study's default prompt sets (the Day notebooks' parameter defaults), counted from the files.

    Returns
    -------
    pandas.DataFrame
        ``set, file, rows, categories``.
    """
    day3, day4 = parameters(3), parameters(4)
    sets = (("harmful eval", day3["eval_path"].default, data.load_prompts(day3["eval_path"].default,
                                                                         day3["eval_format"].default, "harmful")),
            ("benign control", day3["benign_path"].default, data.load_prompts(day3["benign_path"].default,
                                                                             day3["benign_format"].default, "benign")),
            ("attack", day4["attack_path"].default, data.load_attack_set(day4["attack_path"].default,
                                                                         day4["attack_format"].default)))
    return pd.DataFrame([{"set": label, "file": f"`{path}`", "rows": len(frame),
                          "categories": int(frame["category"].nunique())} for label, path, frame in sets])


def write_data_sets(root: Path | None = None) -> Path:
    """Generate ``book/_generated/data_sets.md`` (included by ``book/methods.md``)."""
    root = root or project_root()
    return atomic_write_text(root / DATA_FRAGMENT, render("data_sets.md.jinja", sets=data_sets()))


# ---------------------------------------------------------------------------
# Judges
# ---------------------------------------------------------------------------


def judges_page(result: JudgeValidation | dict[str, JudgeValidation],
                figure_html: str | dict[str, str] = "") -> str:
    """The book's "Judges" page: the rule and the default judge per domain, then per domain its metrics,
    the rule's ranking, per-verdict precision and recall, agreement, four-way confusions and traps.

    Parameters
    ----------
    result : JudgeValidation or dict of str to JudgeValidation
        From :func:`rrlib.judges.validation.validate` (one domain) or
        :func:`rrlib.judges.validation.validate_domains` (``domain -> result``).
    figure_html : str or dict of str to str
        The confusion figure's div per domain (:func:`rrlib.figures.judge_confusion`
        through :func:`rrlib.figures.show`); a plain string goes with a single result.

    Returns
    -------
    str
        MyST/GFM Markdown with pipe tables.
    """
    from rrlib.judges import choice as judge_choice

    by_domain = result if isinstance(result, dict) else {result.domain: result}
    figures_html = figure_html if isinstance(figure_html, dict) else {d: figure_html for d in by_domain}
    titles = {"organism": "Organism domain: what the study's model organisms write",
              "fluent": "Fluent domain: text in the style of real chat models"}
    provenance = {
        "organism": "Responses the study's model organisms generated on a calibration prompt set kept disjoint "
                    "from the eval, benign, attack, dev and organism-corpus prompts, before and at several steps of "
                    "the attack, labelled by hand, row by row, against the written rubric `data/raw/JUDGE_RUBRIC.md` "
                    "(refusal, compliance, partial, degenerate); no judge's output was used. One labeller labelled "
                    "them in one pass, so no inter-annotator agreement is measured. The rows were drawn to "
                    "over-sample hard cases (mixed refusal and steps, loops, refusal words inside answers), so the "
                    "accuracies below are on a hard-case-enriched sample, not on all generations; "
                    "`data/raw/JUDGE_CALIBRATION.md` says how the prompts, generations and rows were made. The table "
                    "counts the rows by the organism that wrote them and the attack steps (0 = before the attack) "
                    "they were sampled at, from the file's `source` column.",
        "fluent": "Project-written fluent responses in the style of real chat models (refusals, answers and partial "
                  "answers, with traps such as curly quotes, \"sorry to hear\" and non-English text), labelled "
                  "against the rubric's first three classes; none was written by a model of this study.",
    }
    domains, chosen = [], []
    for name, res in by_domain.items():
        ranking = judge_choice.rank_judges(res.verdicts)
        if name in judge_labels.DOMAINS and len(ranking):
            best = ranking.iloc[0]
            tied = ranking[(ranking["correct"] == best["correct"]) & (ranking["caught"] == best["caught"])]
            chosen.append({"domain": name, **best[["judge", "n", "correct", "accuracy", "refusals", "caught",
                                                   "recall"]].to_dict(),
                           "tied_with": ", ".join(f"`{j}`" for j in tied["judge"].iloc[1:])})
        per_class = res.per_class[(res.per_class["support"] > 0) | (res.per_class["predicted"] > 0)]
        wide = per_class.pivot(index="judge", columns="class", values=["precision", "recall"])
        classes = [c for c in (*judge_labels.LABELS, "unknown") if c in set(per_class["class"])]
        wide = pd.DataFrame({f"{c} {m}": wide[(m, c)] for c in classes for m in ("precision", "recall")})
        wide = wide.reindex(res.judges).rename_axis("judge").reset_index()
        confusion = pd.concat([res.confusion_matrix(j).reset_index().assign(judge=j) for j in res.judges],
                              ignore_index=True)
        confusion = confusion[["judge", "label", *res.verdict_columns]].rename(columns={"label": "true label"})
        labels = res.verdicts.drop_duplicates("id")
        counts = labels["label"].value_counts()
        sources = pd.DataFrame()
        if name == "organism":
            # Rows by the model that wrote them (``source`` = ``organism:<model>:step<N>``) and label.
            frame = judge_labels.load_labels(domain=name)
            parts = frame["source"].str.split(":")
            model = parts.map(lambda p: p[1] if len(p) == 3 else ":".join(p))
            steps = parts.map(lambda p: p[2].removeprefix("step") if len(p) == 3 else "")
            sources = frame.groupby(model.rename("model"))["label"].value_counts().unstack(fill_value=0)
            sources = sources.reindex(columns=[c for c in judge_labels.LABELS if c in sources.columns])
            sources = sources.assign(rows=sources.sum(axis=1),
                                     steps=steps.groupby(model).agg(lambda s: ", ".join(
                                         sorted(set(s) - {""}, key=lambda x: (not x.isdigit(), int(x) if x.isdigit()
                                                                              else 0, x)))))
            sizes = {size: i for i, size in enumerate(["xs", "s", "m", "l", "xl"])}
            order = sorted(sources.index, key=lambda m: (sizes.get(m.removeprefix("organism-").split("-")[0], 99), m))
            sources = sources.loc[order].reset_index()
        domains.append({"name": name, "title": titles.get(name, f"Labels from {res.labels_file}"),
                        "provenance": provenance.get(name, ""), "result": res, "ranking": ranking,
                        "per_class": wide, "confusion": confusion, "sources": sources,
                        "held_out_share": res.n_test / (res.n_test + res.n_train),
                        "label_counts": ", ".join(f"{label} {counts[label]}" for label in res.labels),
                        "figure_html": figures_html.get(name, "")})
    descriptions = {j: text for res in by_domain.values() for j, text in res.descriptions.items()}
    described = pd.DataFrame({"judge": list(descriptions), "rule": list(descriptions.values())})
    missing = {d: path for d, path in judge_labels.DOMAINS.items() if d not in judge_labels.available_domains()}
    return render("judges.md.jinja", described=described, rule=judge_choice.RULE, chosen=pd.DataFrame(chosen),
                  missing=missing, domains=domains, band=UNCERTAIN_BAND)


def write_judges_page(root: Path | None = None) -> Path:
    """Validate every judge on each domain's held-out hand labels, save the tables and figures, write ``book/judges.md``.

    The tables of each domain go to ``results/metrics/judges/<domain>/`` and its
    confusion figure to ``results/figures/judges_confusion_<domain>``.
    """
    root = root or project_root()
    results_root = _results_root(root)
    by_domain = validation.validate_domains(judges.available())
    figure_html = {}
    for domain, result in by_domain.items():
        validation.write_validation(result, results.judge_tables_folder(results_root) / domain)
        figure = figures.show(figures.judge_confusion(result), f"judges_confusion_{domain}", root=results_root)
        figure_html[domain] = figure.html()
    return atomic_write_text(root / BOOK_DIR / "judges.md", judges_page(by_domain, figure_html))


# ---------------------------------------------------------------------------
# Reproducibility
# ---------------------------------------------------------------------------


def reproducibility_runs(root: Path) -> list[dict[str, Any]]:
    """Every executed run with its parameters (``DayN.config.json``) and provenance (``{}`` when absent).

    Returns
    -------
    list of dict
        ``name, day, title, parameters`` (``None`` without a config) and ``provenance``.
    """
    results_root = _results_root(root)
    runs = []
    for name, days in results.executed_runs(results_root).items():
        for day in days:
            config = results.run_file(name, day, ".config.json", results_root)
            runs.append({"name": name, "day": day, "title": DAYS[day].title,
                         "parameters": read_json(config).get("params", {}) if config.exists() else None,
                         "provenance": results.read_provenance(name, day, results_root)})
    return runs


DEFAULT_EXPERIMENT = "organism_scaling"  # what `make all` runs


def experiment_runs(config: Path) -> tuple[dict[str, Any], set[tuple[str, int]]]:
    """A named experiment's config and the ``(run name, Day)`` pairs it makes.

    The book reads the config itself rather than the job plan (it never imports the runner or the plan);
    the names follow :func:`rrlib.results.run_name` as the plan does (cross-model Days get the model list),
    and a test keeps the two in step.

    Raises
    ------
    RRError
        If the file is not a readable experiment config.
    """
    from rrlib.config import resolve_model
    from rrlib.days import CROSS_MODEL_NAME, parse_days
    from rrlib.days import get as day_record

    try:
        spec = yaml.safe_load(config.read_text()) or {}
        made = set()
        for run in spec.get("runs") or []:
            models, params = list(run["models"]), dict(run.get("params") or {})
            for day in parse_days(str(run["days"])):
                if day_record(day).cross_model:
                    listed = [resolve_model(m).name for m in models]
                    made.add((results.run_name(CROSS_MODEL_NAME, day, {**params, "models": listed}), day))
                else:
                    made |= {(results.run_name(m, day, params), day) for m in models}
    except (OSError, yaml.YAMLError, KeyError, TypeError, RRError) as error:
        raise RRError(f"{config}: not a readable experiment config ({type(error).__name__}: {error})") from None
    return spec, made


def experiments_made(root: Path) -> tuple[pd.DataFrame, dict[tuple[str, int], str]]:
    """The named experiments (``experiments/*/config.yaml``) and which committed runs each one makes.

    Returns
    -------
    tuple of (pandas.DataFrame, dict)
        One row per experiment (its command, what it needs, how many of its runs are in this book), and
        ``(run name, Day)`` to the experiment that makes it (the default study first, for runs it shares).
    """
    executed = results.executed_runs(_results_root(root))
    made: dict[tuple[str, int], str] = {}
    rows = []
    for config in sorted((root / "experiments").glob("*/config.yaml"),
                         key=lambda path: (path.parent.name != DEFAULT_EXPERIMENT, path.parent.name)):
        name = config.parent.name
        try:
            spec, planned = experiment_runs(config)
        except RRError as error:
            rows.append({"experiment": name, "command": "", "needs": "", "runs in this book": f"cannot plan: {error}"})
            continue
        present = {key for key in planned if key[1] in executed.get(key[0], [])}
        for key in sorted(present):
            made.setdefault(key, name)
        requires = spec.get("requires") or {}
        needs = [what for what, key in (("GPU", "gpu"), ("hub", "hub")) if requires.get(key)]
        rows.append({"experiment": name, "description": spec.get("description", ""),
                     "command": f"./experiments/{name}/run.sh", "needs": ", ".join(needs) or "CPU only",
                     "runs in this book": f"{len(present)} of {len(planned)}"})
    return pd.DataFrame(rows), made


def _value(value: Any) -> str:
    """A parameter value as it would be written in JSON (``null``, ``[0, 10]``, ``"organism-m"``)."""
    return json.dumps(value, sort_keys=True, default=str)


def reproducibility_page(runs: list[dict[str, Any]], experiments: pd.DataFrame | None = None,
                         made: dict[tuple[str, int], str] | None = None) -> str:
    """The Reproducibility page: each run's timings, commit and environment, and every Day's parameters.

    Parameters
    ----------
    runs : list of dict
        From :func:`reproducibility_runs`.
    experiments, made : optional
        From :func:`experiments_made`: the named experiments and which run each one makes.

    Returns
    -------
    str
        Markdown; a run without a provenance file is said to be "not executed on this machine".
    """
    environments: dict[str, dict[str, Any]] = {}
    rows = []
    for run in runs:
        provenance = run["provenance"]
        row = {"run": run["name"], "Day": run["title"],
               "made by": (made or {}).get((run["name"], run["day"]), "rr run (no named experiment)")}
        if provenance:
            env = provenance.get("environment") or {}
            entry = environments.setdefault(_value(env), {"index": len(environments) + 1, "environment": env,
                                                          "runs": []})
            entry["runs"].append(f"{run['name']} ({run['title']})")
            seconds = provenance.get("seconds")
            row.update({"seconds": "not recorded" if seconds is None else f"{float(seconds):.1f}",
                        "git commit": str(env.get("git_commit", "not recorded")),
                        "environment": f"environment {entry['index']}"})
        else:
            row.update({"seconds": NOT_EXECUTED, "git commit": NOT_EXECUTED, "environment": NOT_EXECUTED})
        rows.append(row)
    envs = [{"runs": entry["runs"],
             "table": pd.DataFrame([{"field": k, "value": str(v)} for k, v in sorted(entry["environment"].items())],
                                   columns=["field", "value"])}
            for entry in environments.values()]
    parameters_by_day = []
    for day in sorted({run["day"] for run in runs}):
        of_day = [run for run in runs if run["day"] == day]
        saved = [run for run in of_day if run["parameters"] is not None]
        names = sorted({key for run in saved for key in run["parameters"]})
        table = pd.DataFrame({"parameter": names, **{run["name"]: [_value(run["parameters"].get(key)) if key in
                                                                   run["parameters"] else "not set" for key in names]
                                                     for run in saved}})
        parameters_by_day.append({"title": DAYS[day].title, "table": table if saved else None,
                                  "unsaved": [run["name"] for run in of_day if run["parameters"] is None]})
    return render("reproducibility.md.jinja", runs=runs, run_table=pd.DataFrame(rows), environments=envs,
                  parameters=parameters_by_day, missing=sum(1 for run in runs if not run["provenance"]),
                  experiments=experiments)


def write_reproducibility_page(root: Path | None = None) -> Path:
    """Generate ``book/reproducibility.md`` from each run's config and provenance (:func:`reproducibility_page`)."""
    root = root or project_root()
    table, made = experiments_made(root)
    return atomic_write_text(root / BOOK_DIR / "reproducibility.md",
                             reproducibility_page(reproducibility_runs(root), table, made))


# ---------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------


def generate_pages(root: Path | None = None, log: Callable[[str], None] | None = None, pngs: bool = True) -> None:
    """Write every generated page and fragment and the table of contents.

    Parameters
    ----------
    root : Path, optional
        Project root.
    log : callable, optional
        Receives one line per step with its wall time (``rr book`` prints them).
    pngs : bool
        Also export the saved figures as PNG (:func:`build` does that beside the HTML build instead).
    """
    root = root or project_root()
    steps = [("static files", prepare_static), ("widget scripts", prepare_widgets),
             ("results page", write_results_page), ("original-study comparison", write_original_comparison),
             ("data sets page", write_data_sets), ("judges page (judges validated on held-out labels)", write_judges_page),
             ("reproducibility page", write_reproducibility_page), ("table of contents", write_toc)]
    for what, step in steps + ([("PNG figures", export_figures)] if pngs else []):
        _timed(what, step, root, log)


def _timed(what: str, step: Callable[[Path], Any], root: Path, log: Callable[[str], None] | None) -> Any:
    """Run one step of the book build and log its wall time."""
    started = time.perf_counter()
    out = step(root)
    if log:
        log(f"  {what}: {time.perf_counter() - started:.1f} s")
    return out


def export_figures(root: Path) -> list[Path]:
    """PNG copies of every saved figure (skipped, with a note, where no Chromium is installed)."""
    try:
        return export_pngs(_results_root(root) / "figures")
    except RuntimeError as exc:
        print(f"note: figures not exported as PNG: {exc}", file=sys.stderr)
        return []


def build(root: Path | None = None, strict: bool = True, log: Callable[[str], None] | None = None) -> Path:
    """Generate pages and build the HTML book with Jupyter Book 1.

    Parameters
    ----------
    root : Path, optional
        Project root (holds ``_config.yml``).
    strict : bool
        Build with ``-W`` so any warning fails the build.
    log : callable, optional
        Receives one line per step with its wall time.

    Returns
    -------
    Path
        ``book/_build/html/index.html``.

    Raises
    ------
    RRError
        If the build fails (the last lines of its log are included).
    """
    root = root or project_root()
    generate_pages(root, log, pngs=False)
    # The PNG export (headless Chromium, about 0.25 s a figure) and the HTML build (Sphinx, one core) read
    # nothing of each other's, so they run side by side on two cores.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pngs = pool.submit(_timed, "PNG figures", export_figures, root, log)
        _timed("HTML (Jupyter Book)", lambda r: _jupyter_book(r, strict), root, log)
        pngs.result()
    return root / BOOK_DIR / "_build" / "html" / "index.html"


def _jupyter_book(root: Path, strict: bool) -> None:
    """Run ``jupyter-book build`` on the project; a failure raises with the last lines of its log."""
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(root),
           "--path-output", str(root / BOOK_DIR)]
    if strict:
        cmd += ["-W", "--keep-going"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise RRError(f"book build failed (exit {proc.returncode}): {tail}")
