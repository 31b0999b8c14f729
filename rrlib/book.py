"""The HTML book: generated pages, the table of contents, and the build.

The book renders what papermill already executed (``execute_notebooks: off``).
The Runs section of ``_toc.yml`` and the Results and Reproducibility pages are
generated from ``results/``; nothing in them is typed by hand. plotly.js is
copied from the installed plotly package into ``book/_static`` so figures
render offline.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from rrlib.config import project_root, slug
from rrlib.errors import RRError
from rrlib.runner import DAY_NOTEBOOKS
from rrlib.store import atomic_write_text, read_metrics

BOOK_DIR = "book"
STATIC_DIR = "book/_static"
WIDGETS_DIR = "book/_widgets"
# ipywidgets' static renderer and its loader, served from the book itself (myst-nb defaults to a CDN).
WIDGET_PACKAGES = {"@jupyter-widgets/html-manager": "1.0.15", "requirejs": "2.3.8"}
STUDY_PAGES = ["book/metrics", "book/methods", "book/results", "book/judges", "book/original_study",
               "book/reproducibility"]
DAY_TITLES = {3: "Day 3 · Baseline", 4: "Day 4 · Attack", 5: "Day 5 · After the attack", 6: "Day 6 · Scaling",
              7: "Day 7 · LoRA grid"}


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


def executed_runs(root: Path | None = None) -> dict[str, list[int]]:
    """Models with executed runs and their Days, from ``results/runs/<model>/DayN.ipynb``."""
    runs_dir = (root or project_root()) / "results" / "runs"
    found: dict[str, list[int]] = {}
    for path in sorted(runs_dir.glob("*/Day*.ipynb")):
        stem = path.stem
        if stem[3:].isdigit() and int(stem[3:]) in DAY_NOTEBOOKS:
            found.setdefault(path.parent.name, []).append(int(stem[3:]))
    return {m: sorted(d) for m, d in found.items()}


def write_toc(root: Path | None = None) -> Path:
    """Write ``_toc.yml``: the study pages, then one Runs chapter per model.

    Returns
    -------
    Path
        The written ``_toc.yml``.
    """
    root = root or project_root()
    runs = executed_runs(root)
    chapters = []
    for model, days in runs.items():
        write_run_index(root, model, days)
        chapters.append({"file": f"book/runs/{model}",
                         "sections": [{"file": f"results/runs/{model}/Day{d}"} for d in days]})
    parts: list[dict[str, Any]] = [{"caption": "The study", "chapters": [{"file": p} for p in STUDY_PAGES
                                                                         if (root / f"{p}.md").exists()]}]
    if chapters:
        parts.append({"caption": "Runs", "chapters": chapters})
    toc = {"format": "jb-book", "root": "book/intro", "parts": parts}
    header = "# Generated by `rr book` (rrlib.book.write_toc): the Runs part lists results/runs/*/Day*.ipynb.\n"
    return atomic_write_text(root / "_toc.yml", header + yaml.safe_dump(toc, sort_keys=False))


def write_run_index(root: Path, model: str, days: list[int]) -> Path:
    """A landing page for one model's runs, with its metrics table."""
    metrics = read_metrics(root / "results" / "metrics" / "metrics.csv")
    rows = metrics[metrics["model"].map(slug) == model] if len(metrics) else metrics
    lines = [f"# {model}", "", f"Executed runs of **{model}**: "
             + ", ".join(f"[{DAY_TITLES[d]}](../../results/runs/{model}/Day{d}.ipynb)" for d in days) + ".", ""]
    headline = headline_table(rows)
    if len(headline):
        lines += ["Headline numbers (from `results/metrics/metrics.csv`):", "", markdown_table(headline), ""]
    return atomic_write_text(root / BOOK_DIR / "runs" / f"{model}.md", "\n".join(lines) + "\n")


def markdown_table(frame: pd.DataFrame) -> str:
    """A MyST/GFM pipe table (floats to 3 decimals, pipes escaped)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if pd.isna(v) else f"{v:.3f}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def _interval(row: pd.Series) -> str:
    if pd.isna(row["value"]):
        return f"not computable ({row['reason']})" if row.get("reason") else "not computable"
    return f"{row['value']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def headline_table(metrics: pd.DataFrame, judge: str | None = None) -> pd.DataFrame:
    """Baseline vs after the attack (last grid step) per model: RRR, CE, over-refusal, RD.

    Parameters
    ----------
    metrics : pandas.DataFrame
        The metrics table.
    judge : str, optional
        Refusal judge to report; defaults to the most common judge of Day 5 RRR rows.

    Returns
    -------
    pandas.DataFrame
        One row per (model, metric) with ``baseline`` and ``after attack`` columns.
    """
    day5 = metrics[metrics["day"].astype(int) == 5] if len(metrics) else metrics
    if day5.empty:
        return pd.DataFrame()
    if judge is None:
        judge = day5.loc[day5["metric"] == "RRR", "judge"].mode().iloc[0]
    rows = []
    for model, group in day5.groupby("model", sort=True):
        for recipe, runs in group.groupby("recipe", sort=True):
            last = int(runs["step"].astype(int).max())
            for metric in ("RRR", "CE", "over_refusal", "RD"):
                want = "sbert" if metric == "RD" else judge
                sel = runs[(runs["metric"] == metric) & (runs["judge"] == want)]
                base = sel[sel["step"].astype(int) == 0]
                after = sel[sel["step"].astype(int) == last]
                if base.empty or after.empty:
                    continue
                rows.append({"model": model, "recipe": recipe, "metric": metric, "judge": want,
                             "baseline (step 0)": _interval(base.iloc[0]),
                             f"after attack": f"{_interval(after.iloc[0])} @ step {last}",
                             "n": int(after.iloc[0]["n"])})
    return pd.DataFrame(rows)


def write_results_page(root: Path | None = None) -> Path:
    """Generate ``book/results.md`` from ``results/metrics/*.csv`` and the figures it embeds."""
    from rrlib import figures

    root = root or project_root()
    metrics = read_metrics(root / "results" / "metrics" / "metrics.csv")
    lines = ["# Results", "",
             "This page is generated by `rr book` from `results/metrics/metrics.csv`; nothing on it is typed by hand. "
             "Every rate carries a 95% Wilson interval and RD a bootstrap interval. Rows from model organisms are "
             "labelled as such: they exercise the pipeline offline and are not claims about production models.", ""]
    table = headline_table(metrics)
    if table.empty:
        lines += ["No Day 5 results yet. Run `make all` (or `rr run --days 3-5`) first.", ""]
    else:
        organisms = sorted(m for m in table["model"].unique() if str(m).startswith("organism"))
        lines += ["## Baseline vs after the attack", "", markdown_table(table), ""]
        if organisms:
            lines += [f"Model organisms in this table: {', '.join(organisms)}.", ""]
        day5 = metrics[metrics["day"].astype(int) == 5]
        judge = day5.loc[day5["metric"] == "RRR", "judge"].mode().iloc[0]
        for metric, title, ylabel in (("RRR", "RRR_compare", "RRR (95% Wilson)"), ("CE", "CE_compare", "CE = 1 − RRR"),
                                      ("RD", "RD_compare", "median SBERT cosine distance")):
            want = "sbert" if metric == "RD" else judge
            rows = day5[(day5["judge"] == want) & (day5["metric"] == metric)].copy()
            rows["model"] = rows["model"] + " · " + rows["recipe"]
            rows["step"] = rows["step"].astype(int)
            fig = figures.rate_by_step(rows, metric, f"{metric} across the attack grid, all models", ylabel,
                                       y_range=None if metric == "RD" else (0, 1.02))
            out = figures.show(fig, title, root=root / "results")
            lines += [f"## {metric} across the attack grid", "", out.html(), "",
                      f"Interactive figure also saved as `results/figures/{title}.html`.", ""]
    return atomic_write_text(root / BOOK_DIR / "results.md", "\n".join(lines) + "\n")


def write_reproducibility_page(root: Path | None = None) -> Path:
    """Generate ``book/reproducibility.md``: versions, hardware, commit and each run's parameters."""
    import nbformat

    root = root or project_root()
    lines = ["# Reproducibility", "",
             "Generated by `rr book` from the executed notebooks and their saved configs. Every run can be "
             "repeated with `rr run --models <model> --days <day> --force`, or with papermill directly using the "
             "parameters listed here.", ""]
    rows = []
    env: dict[str, Any] = {}
    for model, days in executed_runs(root).items():
        for day in days:
            path = root / "results" / "runs" / model / f"Day{day}.ipynb"
            nb = nbformat.read(path, as_version=4)
            meta = nb.metadata.get("rr", {})
            pm = nb.metadata.get("papermill", {})
            config_path = path.with_name(f"Day{day}.config.json")
            if config_path.exists():
                config = json.loads(config_path.read_text())
                env = config.get("environment", env)
            rows.append({"model": model, "day": day, "parameters": json.dumps(pm.get("parameters", {}), sort_keys=True),
                         "seconds": round(float(pm.get("duration") or meta.get("seconds") or 0), 1),
                         "source": meta.get("source", "")})
    if env:
        lines += ["## Environment of the last recorded run", "",
                  markdown_table(pd.DataFrame([{"field": k, "value": v} for k, v in sorted(env.items())])), ""]
    if rows:
        lines += ["## Runs and their papermill parameters", "", markdown_table(pd.DataFrame(rows)), ""]
    lines += ["## Seeds and determinism", "",
              "Organisms are built with a fixed seed and cached by a hash of their recipe; decoding is greedy; "
              "attacks use a seeded data order and a constant learning rate; bootstrap intervals use seed 0.", ""]
    return atomic_write_text(root / BOOK_DIR / "reproducibility.md", "\n".join(lines) + "\n")


def generate_pages(root: Path | None = None) -> None:
    """Write every generated page and the table of contents."""
    root = root or project_root()
    prepare_static(root)
    prepare_widgets(root)
    write_results_page(root)
    write_original_comparison(root)
    write_judges_page(root)
    write_reproducibility_page(root)
    write_toc(root)
    export_figures(root)


ORIGINAL_FRAGMENT = "book/_generated/original_vs_ours.md"


def write_original_comparison(root: Path | None = None) -> Path:
    """Generate the "ours" half of the original-study page from metrics.csv (included by original_study.md)."""
    from rrlib.study import ORIGINAL_HEADLINE

    root = root or project_root()
    metrics = read_metrics(root / "results" / "metrics" / "metrics.csv")
    pooled = metrics[(metrics["recipe"] == "grid-pooled")] if len(metrics) else metrics
    lines = []
    if pooled.empty:
        lines.append("No Day 7 grid has been run yet; run `make all` to fill this table.")
    for (model, judge), rows in pooled.groupby(["model", "judge"]):
        last = int(rows["step"].astype(int).max())
        table = []
        for metric in ("RRR", "CE", "RD"):
            before = rows[(rows["metric"] == metric) & (rows["step"].astype(int) == 0)]
            after = rows[(rows["metric"] == metric) & (rows["step"].astype(int) == last)]
            if before.empty or after.empty:
                continue
            table.append({"metric": metric, "original: baseline": ORIGINAL_HEADLINE[metric][0],
                          "original: after LoRA": ORIGINAL_HEADLINE[metric][1],
                          f"{model}: baseline": _interval(before.iloc[0]),
                          f"{model}: after {last} steps": _interval(after.iloc[0])})
        organism = " (a model organism, built offline)" if str(model).startswith("organism") else ""
        lines += [f"**{model}**{organism}, judge `{judge}`, pooled over every rank and seed of its Day 7 grid, "
                  "95% intervals:", "",
                  markdown_table(pd.DataFrame(table)), ""]
    return atomic_write_text(root / ORIGINAL_FRAGMENT, "\n".join(lines) + "\n")


def write_judges_page(root: Path | None = None) -> Path:
    """Generate ``book/judges.md``: every judge validated on the held-out hand labels."""
    from rrlib import figures, judges
    from rrlib.judges import validation

    root = root or project_root()
    result = validation.validate(judges.available())
    validation.write_validation(result, root / "results" / "metrics" / "judges")
    figure = figures.show(validation.confusion_figure(result), "judges_confusion", root=root / "results")
    text = validation.validation_markdown(result) + "\n\n## The confusion matrices as a figure\n\n" + figure.html() + "\n"
    return atomic_write_text(root / BOOK_DIR / "judges.md", text)


def export_figures(root: Path) -> list[Path]:
    """PNG copies of every saved figure (skipped, with a note, where no Chromium is installed)."""
    from rrlib.export import export_pngs

    try:
        return export_pngs(root / "results" / "figures")
    except RuntimeError as exc:
        print(f"note: figures not exported as PNG: {exc}", file=sys.stderr)
        return []


def build(root: Path | None = None, strict: bool = True) -> Path:
    """Generate pages and build the HTML book with Jupyter Book 1.

    Parameters
    ----------
    root : Path, optional
        Project root (holds ``_config.yml``).
    strict : bool
        Build with ``-W`` so any warning fails the build.

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
    generate_pages(root)
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(root), "--path-output", str(root / BOOK_DIR)]
    if strict:
        cmd += ["-W", "--keep-going"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise RRError(f"book build failed (exit {proc.returncode}): {tail}")
    return root / BOOK_DIR / "_build" / "html" / "index.html"
